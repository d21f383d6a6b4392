"""Log-in sessions: refresh tokens and log-in attempts.

* Refresh tokens are stored hashed. The tokens issued from one log-in form a family;
  revoking a session revokes its family.
* Log-in attempts are counted here, in Postgres, so every API process applies the same
  rate limits.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from models import db
from models.scope import TenantScope
from ops.settings import get_settings


class StoredToken(msgspec.Struct):
    id: uuid.UUID
    user: uuid.UUID
    family: uuid.UUID
    expires_at: dt.datetime
    used_at: dt.datetime | None
    revoked_at: dt.datetime | None


# --- refresh tokens ---------------------------------------------------------------------


async def store_refresh_token(
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    family: uuid.UUID,
    token_hash: str,
    expires_at: dt.datetime,
) -> None:
    await db.execute(
        """
        INSERT INTO refresh_token (id, tenant, "user", family, token_hash, expires_at, created_at)
        VALUES ($1, $2, $3, $4, $5, $6, now())
        """,
        uuid.uuid4(),
        tenant_id,
        user_id,
        family,
        token_hash,
        expires_at,
    )


async def lock_refresh_token(token_hash: str) -> StoredToken | None:
    """The token, locked until the caller's transaction ends: two refreshes with one token
    are served one after the other, so the second sees it used."""
    return await db.row(
        StoredToken, "SELECT * FROM refresh_token WHERE token_hash = $1 FOR UPDATE", token_hash
    )


async def mark_used(token_id: uuid.UUID) -> None:
    await db.execute("UPDATE refresh_token SET used_at = now() WHERE id = $1", token_id)


async def revoke_family(family: uuid.UUID) -> None:
    """End every session of one log-in."""
    await db.execute(
        "UPDATE refresh_token SET revoked_at = now() WHERE family = $1 AND revoked_at IS NULL",
        family,
    )


async def revoke_family_of(token_hash: str) -> None:
    """End every session of the log-in that issued ``token_hash`` (nothing if unknown)."""
    await db.execute(
        """
        UPDATE refresh_token SET revoked_at = now()
        WHERE family = (SELECT family FROM refresh_token WHERE token_hash = $1)
          AND revoked_at IS NULL
        """,
        token_hash,
    )


async def revoke_sessions(scope: TenantScope, user_id: uuid.UUID) -> None:
    """End every session of an account."""
    await scope.execute(
        'UPDATE refresh_token SET revoked_at = now() WHERE tenant = $1 AND "user" = $2 '
        "AND revoked_at IS NULL",
        user_id,
    )


# --- log-in attempts --------------------------------------------------------------------


class LoginLimits(msgspec.Struct, frozen=True):
    """Within ``window`` seconds: failed log-ins of one account from one client, of one
    account from every client, and attempts (failed or not) of one client."""

    per_account_client: int
    per_account: int
    per_client: int
    window: int


async def admit_login_attempt(email: str, client: str, limits: LoginLimits) -> int | None:
    """Record an attempt and decide, atomically: the attempt's id when it is within the
    limits, ``None`` (nothing recorded) when it is not.

    The attempt is recorded as failed and counts as one until ``login_succeeded`` says
    otherwise, so attempts still checking their password count against the limit. The
    account's and the client's advisory locks (always taken in that order, so two
    attempts cannot deadlock) serialise the count and the insert: parallel attempts are
    admitted one at a time and cannot all see the same count.
    """
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "login:" + email)
        await db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "client:" + client
        )
        admitted: int | None = await db.value(
            """
            WITH recent AS (
                SELECT email, client, succeeded FROM login_attempt
                WHERE (email = $1 OR client = $2)
                  AND created_at > now() - make_interval(secs => $6)
            )
            INSERT INTO login_attempt (email, client, succeeded, created_at)
            SELECT $1, $2, false, now()
            WHERE (SELECT count(*) FROM recent
                   WHERE email = $1 AND client = $2 AND NOT succeeded) < $3
              AND (SELECT count(*) FROM recent WHERE email = $1 AND NOT succeeded) < $4
              AND (SELECT count(*) FROM recent WHERE client = $2) < $5
            RETURNING id
            """,
            email,
            client,
            limits.per_account_client,
            limits.per_account,
            limits.per_client,
            float(limits.window),
        )
    return admitted


async def login_succeeded(attempt_id: int) -> None:
    await db.execute("UPDATE login_attempt SET succeeded = true WHERE id = $1", attempt_id)


class _Purged(msgspec.Struct):
    login_attempts: int
    refresh_tokens: int


async def purge_expired() -> dict[str, int]:
    """Drop login attempts older than the rate-limit window and refresh tokens expired a
    day ago: neither can change an answer again, and both tables grow with every login."""
    now = dt.datetime.now(dt.UTC)
    window = dt.timedelta(seconds=get_settings().login_window_seconds)
    found = await db.row(
        _Purged,
        """
        WITH attempts AS (DELETE FROM login_attempt WHERE created_at < $1 RETURNING 1),
             tokens AS (DELETE FROM refresh_token WHERE expires_at < $2 RETURNING 1)
        SELECT (SELECT count(*) FROM attempts) AS login_attempts,
               (SELECT count(*) FROM tokens) AS refresh_tokens
        """,
        now - window,
        now - dt.timedelta(days=1),
    )
    assert found is not None  # an aggregate always returns its row
    return msgspec.structs.asdict(found)
