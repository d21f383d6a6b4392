"""Authentication (JWT access + rotating refresh tokens), role guards and the tenant scope.

* Access tokens are short-lived HS256 JWTs carrying user, tenant, role, the log-in they
  belong to and the account's token version. Every request checks the account as it is
  now: a deactivation, a role change or a new password (each bumps the version) ends its
  tokens at once, and the role a request acts with is the account's, not the token's.
* Refresh tokens are opaque, stored hashed, and rotate on every use. Tokens issued from one
  login form a family; presenting an already-used refresh token (a sign it was stolen)
  revokes the whole family.
* Login is rate-limited per account and client (failures), per account (failures, a higher
  limit) and per client (attempts), counted in Postgres so every API process sees the same
  numbers; an attempt is recorded and judged in one step, so parallel ones cannot pass.
* ``tenant_scope`` (a ``TenantScope`` for the caller's tenant) is the only way handlers query
  tenant data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import msgspec
from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT, HTTP_429_TOO_MANY_REQUESTS

from api.errors import Problem
from api.list_cache import ACCOUNT_STATE
from models import accounts
from models import auth as logins
from models.accounts import Holder, Me
from models.auth import StoredToken
from models.db import transaction
from models.limits import Key, Secret, Title
from models.scope import TenantScope
from models.tables import Role
from ops.passwords import verify_password
from ops.settings import get_settings

ALGORITHM = "HS256"
STAFF_ROLES = (Role.owner, Role.admin, Role.teacher, Role.staff)


class Principal(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    student_id: uuid.UUID | None = None
    guardian_id: uuid.UUID | None = None
    # The account's token version when the token was issued, and the log-in (refresh
    # family) it belongs to.
    token_version: int = 0
    session_id: uuid.UUID | None = None


# --- schemas ---------------------------------------------------------------------------


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Title = msgspec.field()
    password: Secret
    tenant: Key | None = None  # slug; needed only when the e-mail exists in several academies


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret


class TokenPair(msgspec.Struct):
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


# --- tokens ----------------------------------------------------------------------------


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def issue_access_token(principal: Principal, ttl: int | None = None) -> str:
    settings = get_settings()
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(principal.user_id),
        "tid": str(principal.tenant_id),
        "role": principal.role.value,
        "typ": "access",
        "iat": now,
        "exp": now
        + dt.timedelta(seconds=ttl if ttl is not None else settings.access_token_ttl_seconds),
        "jti": secrets.token_hex(8),
        "ver": principal.token_version,
    }
    if principal.session_id:
        claims["ssn"] = str(principal.session_id)
    if principal.student_id:
        claims["sid"] = str(principal.student_id)
    if principal.guardian_id:
        claims["gid"] = str(principal.guardian_id)
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


# Tokens whose signature was verified, so a client's burst of requests verifies it once
# (the account is still checked on every request, ``current_principal``). Entries expire
# with the token itself; the cache is per process and bounded (some 20 MB when full: every
# token one process sees in a busy hour).
_verified: dict[str, tuple[float, Principal]] = {}
_VERIFIED_MAX = 32768


def decode_access_token(token: str) -> Principal:
    hit = _verified.get(token)
    if hit is not None and hit[0] > time.time():
        return hit[1]
    principal, expires = _decode_access_token(token)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[token] = (expires, principal)
    return principal


def _decode_access_token(token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            get_settings().secret_key,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "iat", "sub", "tid", "role"]},
        )
    except jwt.ExpiredSignatureError:
        raise NotAuthorizedException("access token expired") from None
    except jwt.PyJWTError:
        raise NotAuthorizedException("invalid access token") from None
    if claims.get("typ") != "access":
        raise NotAuthorizedException("not an access token")
    try:
        principal = Principal(
            user_id=uuid.UUID(claims["sub"]),
            tenant_id=uuid.UUID(claims["tid"]),
            role=Role(claims["role"]),
            student_id=uuid.UUID(claims["sid"]) if claims.get("sid") else None,
            guardian_id=uuid.UUID(claims["gid"]) if claims.get("gid") else None,
            token_version=int(claims.get("ver", -1)),
            session_id=uuid.UUID(claims["ssn"]) if claims.get("ssn") else None,
        )
        return principal, float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        raise NotAuthorizedException("invalid access token") from None


async def current_principal(claimed: Principal) -> Principal:
    """The caller as the database says now: role, active flag and links from the account,
    and a 401 when the account is gone or disabled, or the token's version is not the
    account's (a role change, deactivation or password change since it was issued).

    The account comes from ``ACCOUNT_STATE``, kept honest by the database's notifications:
    no round trip while it is warm, one look-up by primary key otherwise.
    """

    async def load() -> bytes:
        found = await accounts.holder(claimed.user_id)
        return b"null" if found is None else msgspec.json.encode(found)

    found = _admitted(
        await ACCOUNT_STATE.fetch(claimed.tenant_id, claimed.user_id, load),
        claimed.tenant_id,
        claimed.token_version,
        claimed.session_id,
    )
    if found is None:
        raise NotAuthorizedException("access token revoked")
    return found


@functools.lru_cache(maxsize=8192)
def _admitted(
    account: bytes, tenant: uuid.UUID, token_version: int, session_id: uuid.UUID | None
) -> Principal | None:
    """The principal a token of ``tenant``/``token_version`` is, by the account's stored
    state (``account``: as cached); None if the state refuses it. Remembered by the state
    itself, so a changed account is decided afresh; a client's every request after the
    first skips the decoding."""
    state = msgspec.json.decode(account, type=Holder | None)
    if (
        state is None
        or state.tenant != tenant
        or not state.is_active
        or state.token_version != token_version
    ):
        return None
    return _principal_of(state, session_id=session_id)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _issue_pair(user: Holder, family: uuid.UUID | None = None) -> TokenPair:
    settings = get_settings()
    raw = secrets.token_urlsafe(32)
    family = family or uuid.uuid4()
    principal = _principal_of(user, session_id=family)
    await logins.store_refresh_token(
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        family=family,
        token_hash=_hash_token(raw),
        expires_at=utcnow() + dt.timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    return TokenPair(
        access_token=issue_access_token(principal),
        refresh_token=raw,
        expires_in=settings.access_token_ttl_seconds,
    )


async def _rotate(token: StoredToken) -> TokenPair:
    """Spend ``token`` (locked by the caller) and issue the next pair."""
    if token.expires_at <= utcnow():
        raise NotAuthorizedException("refresh token expired")
    user = await accounts.holder(token.user)
    if user is None or not user.is_active:
        raise NotAuthorizedException("account disabled")
    await logins.mark_used(token.id)
    return await _issue_pair(user, family=token.family)


def _principal_of(user: Holder, session_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        tenant_id=user.tenant,
        role=Role(user.role),
        student_id=user.student_id,
        guardian_id=user.guardian_id,
        token_version=user.token_version,
        session_id=session_id,
    )


# --- the connection's principal, guards, dependencies ----------------------------------


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    cached = connection.state.get("principal")
    if isinstance(cached, Principal):
        return cached
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("missing bearer token")
    principal = await current_principal(decode_access_token(token.strip()))
    connection.state["principal"] = principal
    return principal


# Guards are async: a sync guard costs a thread-pool hop on every request.
async def require_auth(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    await authenticate(connection)


def require_roles(
    *roles: Role,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]:
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if (await authenticate(connection)).role not in allowed:
            raise PermissionDeniedException(
                f"requires one of the roles: {', '.join(sorted(r.value for r in allowed))}"
            )

    return guard


require_staff = require_roles(*STAFF_ROLES)
require_admin = require_roles(Role.owner, Role.admin)


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return await authenticate(request)


def scope_of(principal: Principal) -> TenantScope:
    """The caller's scope: their academy, and for a teacher the lectures they teach."""
    teacher = principal.user_id if principal.role is Role.teacher else None
    return TenantScope(principal.tenant_id, teacher_id=teacher)


async def provide_scope(principal: NamedDependency[Principal]) -> TenantScope:
    return scope_of(principal)


async def require_own_lecture(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """For the routes of a lecture's resources: a teacher reaches only those of the
    lectures they teach (``TenantScope.check_own``), answered like an unknown id."""
    scope = scope_of(await authenticate(connection))
    for name, value in connection.path_params.items():
        await scope.check_own(name, value)


# --- rate limiting ---------------------------------------------------------------------


async def _admit(email: str, client: str) -> int:
    """Record the attempt, or refuse it with a 429 when a limit is reached (see
    ``logins.admit_login_attempt``)."""
    settings = get_settings()
    attempt = await logins.admit_login_attempt(
        email,
        client,
        logins.LoginLimits(
            per_account_client=settings.login_max_failures_per_account,
            per_account=settings.login_max_failures_per_account_global,
            per_client=settings.login_max_attempts_per_client,
            window=settings.login_window_seconds,
        ),
    )
    if attempt is None:
        raise Problem(
            HTTP_429_TOO_MANY_REQUESTS,
            "too many login attempts; try again later",
            headers={"Retry-After": str(settings.login_window_seconds)},
        )
    return attempt


# --- routes ----------------------------------------------------------------------------


def _client_of(request: Request[Any, Any, Any]) -> str:
    return (request.client.host if request.client else "unknown")[:64]


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post("/login", status_code=HTTP_200_OK, summary="Log in with e-mail and password")
    async def login(
        self, request: Request[Any, Any, Any], data: JSONBody[LoginRequest]
    ) -> TokenPair:
        email = data.email.strip().lower()
        client = _client_of(request)
        attempt = await _admit(email, client)

        candidates = await accounts.login_candidates(email, data.tenant or None)
        if candidates:
            hashes = [c.password_hash for c in candidates]
            matches = await asyncio.to_thread(
                lambda: [verify_password(h, data.password) for h in hashes]
            )
            candidates = [c for c, ok in zip(candidates, matches, strict=True) if ok]
        else:
            await asyncio.to_thread(verify_password, None, data.password)  # same cost
        if len(candidates) > 1:
            # Only said to someone who knows the password of several of these accounts
            # (so the attempt is not a failure).
            await logins.login_succeeded(attempt)
            raise Problem(
                400,
                "this e-mail belongs to several academies: pass `tenant` (the academy's slug)",
                type_="/problems/tenant-required",
            )
        user = candidates[0] if candidates else None
        ok = user is not None and user.is_active
        if not ok or user is None:
            raise NotAuthorizedException("invalid e-mail or password")
        await logins.login_succeeded(attempt)
        await accounts.touch_last_login(user.id)
        return await _issue_pair(user)

    @post("/refresh", status_code=HTTP_200_OK, summary="Rotate a refresh token")
    async def refresh(self, data: JSONBody[RefreshRequest]) -> TokenPair:
        async with transaction():
            token = await logins.lock_refresh_token(_hash_token(data.refresh_token))
            if token is None:
                raise NotAuthorizedException("invalid refresh token")
            if token.revoked_at is not None:
                raise NotAuthorizedException("refresh token revoked")
            reused = token.used_at is not None
            if reused:
                # Reuse of a rotated token: assume theft, end every session of this login.
                await logins.revoke_family(token.family)
            else:
                pair = await _rotate(token)
        if reused:
            # Raised only after COMMIT: raised inside the transaction, it rolled the
            # revocation back and the stolen family stayed usable.
            raise Problem(
                401,
                "refresh token reuse detected; this login's sessions are revoked",
                type_="/problems/token-reuse",
            )
        return pair

    @post("/logout", status_code=HTTP_204_NO_CONTENT, summary="Revoke a refresh token's login")
    async def logout(self, data: JSONBody[RefreshRequest]) -> None:
        await logins.revoke_family_of(_hash_token(data.refresh_token))

    @get("/me", guards=[require_auth], summary="The caller's account")
    async def me(
        self, principal: NamedDependency[Principal], tenant_scope: NamedDependency[TenantScope]
    ) -> Me:
        return await accounts.me(tenant_scope, principal.user_id)
