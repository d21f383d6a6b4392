"""Message rows: the store every send goes through, the claim, the shared rate bucket, the
outcomes a provider reports, the fallback rows of failed Alimtalk, and the message log.

The exactly-once rules these statements keep are told in ``actors/messaging.py``: a row
per idempotency key, inserted before any provider call (``insert_messages``); a claim
committed before the call (``claim``); the provider's id recorded when it answers
(``mark_accepted``); a claim older than the lease taken back only by a sender that asks
the provider first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from models import db
from models.db import as_struct, connection, transaction
from models.pages import Page, Params, keyset, keyset_page
from models.pages import as_datetime as cursor_datetime
from models.pages import as_uuid as cursor_uuid
from models.scope import TenantScope
from models.tables import Message as MessageTable
from ops.settings import get_settings
from pipelines.messaging.providers import DeliveryState, Report
from pipelines.messaging.rows import NewMessage, fallback_row

# (message id, provider code, reason)
Failure = tuple[Any, str, str]


class MessageRecord(msgspec.Struct):
    """A message row as the sending steps see it."""

    id: uuid.UUID
    tenant: uuid.UUID
    job: uuid.UUID | None
    idempotency_key: str
    parent: uuid.UUID | None
    student: uuid.UUID | None
    guardian: uuid.UUID | None
    to_phone: str
    from_phone: str
    channel: str
    subject: str
    body: str
    template_code: str
    kakao_template_id: str
    pf_id: str
    variables: dict[str, Any] | None
    strip_unencodable: bool
    advertising: bool
    status: str
    error: str | None
    created_at: dt.datetime


class Claimed(MessageRecord):
    """A claimed row, with what it was before the claim: ``queued``, or a ``sending``
    whose claim (``was_claimed``) had outlived the lease."""

    was: str
    was_claimed: dt.datetime | None


class Polled(msgspec.Struct):
    id: uuid.UUID
    tenant: uuid.UUID
    provider_message_id: str
    polls: int


class Stale(msgspec.Struct):
    id: uuid.UUID
    tenant: uuid.UUID
    job: uuid.UUID | None


class JobTally(msgspec.Struct):
    """A send job's own messages (not their fallbacks), by outcome."""

    total: int
    open: int
    failed: int
    sent: int

    @property
    def done(self) -> int:
        return self.total - self.open


class Applied(msgspec.Struct):
    """What delivery reports changed: of ``final`` reports (delivered or failed), the rows
    that became delivered and failed; ``fallbacks`` are the new fallback rows, by tenant,
    for the caller to send."""

    final: int
    delivered: int
    failed: int
    fallbacks: dict[uuid.UUID, list[uuid.UUID]]

    def counts(self) -> dict[str, int]:
        """Counts by outcome (none when no report was final)."""
        return {"delivered": self.delivered, "failed": self.failed} if self.final else {}


# The message log's shape of a row (the API answers with it as it is).
class Message(msgspec.Struct):
    id: uuid.UUID
    job_id: uuid.UUID | None
    event_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    student_id: uuid.UUID | None
    guardian_id: uuid.UUID | None
    to: str
    sender: str
    channel: str
    subject: str
    body: str
    template_code: str
    status: str
    error: str | None
    provider: str
    provider_message_id: str | None
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    updated_at: dt.datetime


# --- the store ---------------------------------------------------------------------------

INSERT_MESSAGES = """
    INSERT INTO message (id, tenant, job, event_id, idempotency_key, parent, student, guardian,
        to_phone, from_phone, channel, subject, body, template_code, kakao_template_id, pf_id,
        variables, strip_unencodable, advertising, status, error, created_at, updated_at)
    SELECT gen_random_uuid(), $1, $2, $3, u.key, u.parent, u.student, u.guardian,
        u.to_phone, u.from_phone, u.channel, u.subject, u.body, u.template_code, u.kakao_id,
        u.pf_id, u.variables, u.strip, u.ad, u.status, u.error, now(), now()
    FROM unnest($4::text[], $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::text[],
                $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[],
                $16::jsonb[], $17::bool[], $18::bool[], $19::text[], $20::text[])
         AS u(key, parent, student, guardian, to_phone, from_phone, channel, subject, body,
              template_code, kakao_id, pf_id, variables, strip, ad, status, error)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, status
"""


async def insert_messages(
    tenant_id: Any,
    rows: Sequence[NewMessage],
    *,
    job_id: Any = None,
    event_id: Any = None,
) -> list[uuid.UUID]:
    """Insert rows whose key is new (one statement); returns the ids of new queued rows."""
    if not rows:
        return []
    cols: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        cols["key"].append(r.key)
        cols["parent"].append(r.parent)
        cols["student"].append(r.student)
        cols["guardian"].append(r.guardian)
        cols["to"].append(r.to_phone)
        cols["from"].append(r.from_phone)
        cols["channel"].append(r.channel)
        cols["subject"].append(r.subject)
        cols["body"].append(r.body)
        cols["code"].append(r.template_code)
        cols["kakao"].append(r.kakao_template_id)
        cols["pf"].append(r.pf_id)
        cols["vars"].append(r.variables or {})
        cols["strip"].append(r.strip_unencodable)
        cols["ad"].append(r.advertising)
        cols["status"].append(r.status)
        cols["error"].append(r.error)
    inserted = await TenantScope(tenant_id).fetch(
        INSERT_MESSAGES,
        uuid.UUID(str(job_id)) if job_id else None,
        uuid.UUID(str(event_id)) if event_id else None,
        *cols.values(),
    )
    return [r["id"] for r in inserted if r["status"] == "queued"]


async def insert_fallbacks(failed: Sequence[MessageRecord]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """An SMS/LMS row for each failed Alimtalk row (``pipelines.messaging.rows.fallback_row``),
    in the caller's transaction. Returns the new queued ids by tenant: a ``send_batch`` is
    of one tenant."""
    rows: dict[uuid.UUID, list[NewMessage]] = defaultdict(list)
    for r in failed:
        row = fallback_row(r)
        if row is not None:
            rows[r.tenant].append(row)
    parent_job: dict[uuid.UUID | None, uuid.UUID | None] = {r.id: r.job for r in failed}
    new: dict[uuid.UUID, list[uuid.UUID]] = {}
    async with transaction():
        for tenant_id, tenant_rows in rows.items():
            job_id = parent_job.get(tenant_rows[0].parent)
            new[tenant_id] = await insert_messages(tenant_id, tenant_rows, job_id=job_id)
    return new


async def queued_of_job(job_id: Any) -> list[uuid.UUID]:
    """Every queued row of a send job, in id order."""
    async with connection() as conn:
        found = await conn.fetch(
            "SELECT id FROM message WHERE job = $1 AND status = 'queued' ORDER BY id",
            uuid.UUID(str(job_id)),
        )
    return [r["id"] for r in found]


async def job_tally(job_id: Any) -> JobTally:
    """Fan-in count: the job is done once none of its messages is queued or being sent."""
    found = await db.row(
        JobTally,
        """
        SELECT count(*) AS total,
               count(*) FILTER (WHERE status IN ('queued', 'sending')) AS open,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status IN ('sent', 'delivered', 'fallback_sent')) AS sent
        FROM message WHERE job = $1 AND parent IS NULL
        """,
        uuid.UUID(str(job_id)),
    )
    assert found is not None  # an aggregate always has its row
    return found


async def stale_messages(older_than_seconds: float, limit: int = 1000) -> list[Stale]:
    """Rows left open too long: their ``send_batch`` was lost (dead-lettered, or never sent
    after a commit)."""
    return await db.rows(
        Stale,
        """
        SELECT id, tenant, job FROM message
        WHERE status IN ('queued', 'sending')
          AND updated_at < now() - make_interval(secs => $1)
        ORDER BY tenant, id LIMIT $2
        """,
        older_than_seconds,
        limit,
    )


# --- sending -----------------------------------------------------------------------------

CLAIM = """
    WITH c AS (
        SELECT id, status AS was, claimed_at AS was_claimed FROM message
        WHERE id = ANY($2::uuid[]) AND tenant = $1
          AND (status = 'queued'
               OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $3)))
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    )
    UPDATE message m SET status = 'sending', claimed_at = now(), attempts = m.attempts + 1,
                         updated_at = now()
    FROM c WHERE m.id = c.id
    RETURNING m.*, c.was, c.was_claimed
"""


async def tenants_of(ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    async with connection() as conn:
        found = await conn.fetch(
            "SELECT DISTINCT tenant FROM message WHERE id = ANY($1::uuid[])", list(ids)
        )
    return [r["tenant"] for r in found]


async def claim(tenant_id: uuid.UUID, ids: Sequence[uuid.UUID], lease: float) -> list[Claimed]:
    """``queued -> sending`` (committed before any provider call), and ``sending`` rows
    whose claim is older than ``lease``; rows another sender holds locked are skipped."""
    return await TenantScope(tenant_id).rows(Claimed, CLAIM, list(ids), lease)


async def queued_among(tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    return await TenantScope(tenant_id).values(
        "SELECT id FROM message WHERE id = ANY($2::uuid[]) AND tenant = $1 AND status = 'queued'",
        list(ids),
    )


async def held_seconds(tenant_id: uuid.UUID, ids: Sequence[uuid.UUID], lease: float) -> Any:
    """How long until the newest claim someone else holds on these rows runs out (None
    when none is held)."""
    return await TenantScope(tenant_id).value(
        """
        SELECT EXTRACT(EPOCH FROM max(claimed_at) + make_interval(secs => $3) - now())
        FROM message WHERE id = ANY($2::uuid[]) AND tenant = $1 AND status = 'sending'
        """,
        list(ids),
        lease,
    )


async def acquire_rate(key: str, n: int) -> float:
    """Take ``n`` tokens from the shared bucket; returns how long to wait before sending.

    Tokens may go negative (a debt the next callers wait out), so one statement both
    reserves and tells the wait: no lock is held while waiting.
    """
    s = get_settings()
    rate = max(s.messaging_rate_per_second, 0.001)
    capacity = max(rate, float(s.messaging_batch_size))
    tokens = await db.value(
        """
        INSERT INTO message_rate_bucket AS b (key, tokens, updated_at)
        VALUES ($1, $2::float8 - $4::float8, clock_timestamp())
        ON CONFLICT (key) DO UPDATE SET
            tokens = LEAST($2::float8, b.tokens
                + EXTRACT(EPOCH FROM clock_timestamp() - b.updated_at)::float8 * $3::float8)
                - $4::float8,
            updated_at = clock_timestamp()
        RETURNING tokens
        """,
        key,
        capacity,
        rate,
        float(n),
    )
    return max(0.0, -float(tokens) / rate)


async def refund_rate(key: str, n: int) -> None:
    await db.execute(
        "UPDATE message_rate_bucket SET tokens = tokens + $2::float8 WHERE key = $1",
        key,
        float(n),
    )


async def release(ids: Iterable[Any]) -> None:
    """Back to ``queued``: the provider certainly did not take them."""
    await db.execute(
        """
        UPDATE message SET status = 'queued', claimed_at = NULL, updated_at = now()
        WHERE id = ANY($1::uuid[]) AND status = 'sending'
        """,
        list(ids),
    )


async def mark_accepted(provider: str, accepted: Sequence[tuple[Any, Report]]) -> None:
    """Record the provider's ids; a fallback that went out marks its Alimtalk row."""
    if not accepted:
        return
    async with connection() as conn:
        rows = await conn.fetch(
            """
            UPDATE message m SET
                status = CASE WHEN u.state = 'delivered' THEN 'delivered' ELSE 'sent' END,
                provider = $1, provider_message_id = u.pid, provider_code = u.code,
                sent_at = COALESCE(m.sent_at, now()),
                delivered_at = CASE WHEN u.state = 'delivered' THEN now() END,
                error = NULL, updated_at = now()
            FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS u(id, pid, code, state)
            WHERE m.id = u.id AND m.status IN ('queued', 'sending')
            RETURNING m.parent
            """,
            provider,
            [a[0] for a in accepted],
            [a[1].provider_message_id for a in accepted],
            [a[1].code for a in accepted],
            [a[1].state.value for a in accepted],
        )
        parents = [r["parent"] for r in rows if r["parent"] is not None]
        if parents:
            await conn.execute(
                """
                UPDATE message SET status = 'fallback_sent', updated_at = now()
                WHERE id = ANY($1::uuid[]) AND status = 'failed'
                """,
                parents,
            )


async def mark_failed(failures: Sequence[Failure]) -> list[MessageRecord]:
    """(id, code, reason) -> failed. Returns the rows that changed (for fallback)."""
    if not failures:
        return []
    async with connection() as conn:
        rows = [
            as_struct(MessageRecord, r)
            for r in await conn.fetch(
                """
                UPDATE message m SET status = 'failed', provider_code = u.code, error = u.reason,
                                     updated_at = now()
                FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, code, reason)
                WHERE m.id = u.id AND m.status IN ('queued', 'sending', 'sent')
                RETURNING m.*
                """,
                [f[0] for f in failures],
                [f[1] for f in failures],
                [f[2][:2000] for f in failures],
            )
        ]
        fallbacks_failed = [(r.parent, r.error) for r in rows if r.parent is not None]
        if fallbacks_failed:
            await conn.execute(
                """
                UPDATE message m SET error = m.error || '; the SMS/LMS fallback failed too: '
                                             || u.reason, updated_at = now()
                FROM unnest($1::uuid[], $2::text[]) AS u(id, reason) WHERE m.id = u.id
                """,
                [f[0] for f in fallbacks_failed],
                [f[1] or "" for f in fallbacks_failed],
            )
    return rows


# --- delivery status ---------------------------------------------------------------------


async def take_polls(ids: Sequence[uuid.UUID]) -> list[Polled]:
    """Count one more poll of each sent row the provider has an id for; rows that moved on
    (delivered, failed) are left out."""
    return await db.rows(
        Polled,
        """
        UPDATE message SET polls = polls + 1
        WHERE id = ANY($1::uuid[]) AND status = 'sent' AND provider_message_id IS NOT NULL
        RETURNING id, tenant, provider_message_id, polls
        """,
        list(ids),
    )


async def apply_reports(tenant_id: Any, reports: Sequence[Report]) -> Applied:
    """Delivery results (from a poll or the webhook) -> statuses; a failed Alimtalk row gets
    its fallback row in the same transaction (never failed without it). Only this tenant's
    rows are touched; a report for an unknown id is ignored."""
    done = [r for r in reports if r.state != DeliveryState.pending]
    if not done:
        return Applied(0, 0, 0, {})
    scope = TenantScope(tenant_id)
    delivered = await scope.values(
        """
        UPDATE message SET status = 'delivered', delivered_at = now(), provider_code = u.code,
                           updated_at = now()
        FROM unnest($2::text[], $3::text[]) AS u(pid, code)
        WHERE message.tenant = $1 AND message.provider_message_id = u.pid
          AND message.status IN ('sent', 'sending')
        RETURNING message.id
        """,
        [r.provider_message_id for r in done if r.state == DeliveryState.delivered],
        [r.code for r in done if r.state == DeliveryState.delivered],
    )
    failed_reports = [r for r in done if r.state == DeliveryState.failed]
    ids = {
        r["provider_message_id"]: r["id"]
        for r in await scope.fetch(
            """
            SELECT id, provider_message_id FROM message
            WHERE tenant = $1 AND provider_message_id = ANY($2::text[])
            """,
            [r.provider_message_id for r in failed_reports],
        )
    }
    async with transaction():
        failed = await mark_failed(
            [
                (ids[r.provider_message_id], r.code, r.reason or f"provider status {r.code}")
                for r in failed_reports
                if r.provider_message_id in ids
            ]
        )
        fallbacks = await insert_fallbacks(failed)
    return Applied(len(done), len(delivered), len(failed), fallbacks)


# --- the log -----------------------------------------------------------------------------

MESSAGE_SELECT = """
    SELECT id, job AS job_id, event_id, parent AS parent_id, student AS student_id,
           guardian AS guardian_id, to_phone AS "to", from_phone AS sender, channel, subject,
           body, template_code, status, error, provider, provider_message_id, attempts,
           created_at, sent_at, delivered_at, updated_at
    FROM message
"""
NEWEST_FIRST = keyset(("created_at", cursor_datetime), ("id", cursor_uuid), descending=True)


async def list_messages(
    scope: TenantScope,
    *,
    status: str | None,
    student_id: uuid.UUID | None,
    job_id: uuid.UUID | None,
    created_from: dt.datetime | None,
    created_before: dt.datetime | None,
    cursor: str | None,
    limit: int,
) -> Page[Message]:
    """The log, newest first, filtered by what is given."""
    params = Params()
    where = ["tenant = $1"]
    if status is not None:
        where.append(f"status = {params(status)}")
    if student_id is not None:
        where.append(f"student = {params(student_id)}")
    if job_id is not None:
        where.append(f"job = {params(job_id)}")
    if created_from is not None:
        where.append(f"created_at >= {params(created_from)}")
    if created_before is not None:
        where.append(f"created_at < {params(created_before)}")
    return await keyset_page(
        scope,
        Message,
        select=MESSAGE_SELECT,
        where=where,
        params=params,
        key=NEWEST_FIRST,
        cursor=cursor,
        limit=limit,
    )


async def get_message(scope: TenantScope, message_id: Any) -> Message:
    return await scope.one(
        Message,
        MessageTable,
        f"{MESSAGE_SELECT} WHERE tenant = $1 AND id = $2",
        message_id,
    )
