"""Authentication: login, access tokens, refresh rotation and reuse detection, logout,
``/me``, login rate limits, role guards, and one e-mail in several academies."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import itertools
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from litestar import Litestar, get

from api.auth import (
    ALGORITHM,
    Principal,
    issue_access_token,
    require_admin,
    require_staff,
)
from api.errors import EXCEPTION_HANDLERS
from models.tables import LoginAttempt, RefreshToken, Role, User
from ops.passwords import hash_password
from ops.settings import get_settings
from tests.bola import PROBLEM_JSON, assert_problem

LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
UNAUTHENTICATED = "/problems/unauthenticated"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _principal(email: str) -> Principal:
    row = await User.select().where(User.email == email).first()
    assert row is not None
    return Principal(
        user_id=row["id"],
        tenant_id=row["tenant"],
        role=Role(row["role"]),
        token_version=row["token_version"],
    )


async def _family_of(refresh_token: str) -> list[dict[str, Any]]:
    token_hash = hashlib.sha256(refresh_token.encode()).hexdigest()
    row = await RefreshToken.select(RefreshToken.family).where(
        RefreshToken.token_hash == token_hash
    )
    assert row, "refresh token not stored"
    return list(await RefreshToken.select().where(RefreshToken.family == row[0]["family"]))


_client_numbers = itertools.count(1)


def _unique_client() -> str:
    """A client address no other test of this session uses (the rate-limit rows persist)."""
    n = next(_client_numbers)
    return f"10.9.{n // 250}.{n % 250 + 1}"


@pytest_asyncio.fixture
async def client_at(app: Any) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """Clients of the app seen from a given address (the per-client rate limit's key)."""
    opened: list[httpx.AsyncClient] = []

    def make(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 1234))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(c)
        return c

    yield make
    for c in opened:
        await c.aclose()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change settings for one test; the environment and the settings cache are restored."""

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


# --- login -----------------------------------------------------------------------------


async def test_login_ok(tenant: Any, client: Any) -> None:
    r = await client.post(LOGIN, json={"email": tenant.owner_email, "password": tenant.password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == get_settings().access_token_ttl_seconds
    assert body["access_token"] and body["refresh_token"]

    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    user = await User.select().where(User.email == tenant.owner_email).first()
    assert user is not None
    assert claims["sub"] == str(user["id"])
    assert claims["tid"] == str(tenant.id)
    assert claims["role"] == "owner"
    assert user["last_login_at"] is not None

    family = await _family_of(body["refresh_token"])
    assert len(family) == 1 and family[0]["user"] == user["id"]
    assert family[0]["token_hash"] != body["refresh_token"]  # stored hashed
    attempts = await LoginAttempt.select().where(LoginAttempt.email == tenant.owner_email)
    assert [a["succeeded"] for a in attempts] == [True]


async def test_login_email_is_case_and_space_insensitive(tenant: Any, client: Any) -> None:
    email = f"  {tenant.owner_email.upper()} "
    r = await client.post(LOGIN, json={"email": email, "password": tenant.password})
    assert r.status_code == 200, r.text


async def test_wrong_password_and_unknown_email_look_the_same(tenant: Any, client: Any) -> None:
    wrong = await client.post(LOGIN, json={"email": tenant.owner_email, "password": "nope-nope"})
    unknown = await client.post(
        LOGIN, json={"email": f"nobody-{uuid.uuid4().hex}@example.com", "password": "nope-nope"}
    )
    for r in (wrong, unknown):
        assert_problem(r, 401, UNAUTHENTICATED)
        assert r.headers["www-authenticate"].lower().startswith("bearer")
        assert "access_token" not in r.json()
    a, b = wrong.json(), unknown.json()
    assert set(a) == set(b)
    assert {k: v for k, v in a.items() if k != "request_id"} == {
        k: v for k, v in b.items() if k != "request_id"
    }
    failures = await LoginAttempt.select().where(LoginAttempt.email == tenant.owner_email)
    assert [f["succeeded"] for f in failures] == [False]


async def test_inactive_user_cannot_log_in(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("teacher")
    await User.update({User.is_active: False}).where(User.email == email)
    r = await client.post(LOGIN, json={"email": email, "password": "password-123"})
    assert_problem(r, 401, UNAUTHENTICATED)


# --- access tokens ---------------------------------------------------------------------


async def test_me_returns_user_and_tenant(tenant: Any, client: Any) -> None:
    r = await client.get(ME, headers=await tenant.headers())
    assert r.status_code == 200, r.text
    me = r.json()
    user = await User.select().where(User.email == tenant.owner_email).first()
    assert user is not None
    assert me["id"] == str(user["id"])
    assert me["email"] == tenant.owner_email
    assert me["role"] == "owner"
    assert me["student_id"] is None
    assert me["tenant"] == {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": f"학원 {tenant.slug}",
    }


async def test_me_for_a_teacher(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("teacher")
    r = await client.get(ME, headers=await tenant.headers(email, "password-123"))
    assert r.status_code == 200, r.text
    assert r.json()["email"] == email and r.json()["role"] == "teacher"


async def test_expired_access_token_is_401(tenant: Any, client: Any) -> None:
    token = issue_access_token(await _principal(tenant.owner_email), ttl=-10)
    r = await client.get(ME, headers=bearer(token))
    assert_problem(r, 401, UNAUTHENTICATED)
    assert r.headers["www-authenticate"].lower().startswith("bearer")


async def test_freshly_minted_access_token_works(tenant: Any, client: Any) -> None:
    token = issue_access_token(await _principal(tenant.owner_email))
    r = await client.get(ME, headers=bearer(token))
    assert r.status_code == 200, r.text


def _reencode_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    raw = json.dumps(claims, separators=(",", ":")).encode()
    forged = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_tampered_token_is_401(tenant: Any, client: Any) -> None:
    teacher = await tenant.add_user("teacher")
    token = (await tenant.login(teacher, "password-123"))["access_token"]
    assert (await client.get(ME, headers=bearer(token))).status_code == 200

    escalated = _reencode_payload(token, role="owner")
    assert escalated != token
    assert_problem(await client.get(ME, headers=bearer(escalated)), 401, UNAUTHENTICATED)

    other_tenant = _reencode_payload(token, tid=str(uuid.uuid4()))
    assert_problem(await client.get(ME, headers=bearer(other_tenant)), 401, UNAUTHENTICATED)

    header, payload, _ = token.split(".")
    wrong_sig = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}), "another-secret-key-" * 3
    )
    for bad in (wrong_sig, f"{header}.{payload}.", f"{header}.{payload}", "garbage"):
        assert_problem(await client.get(ME, headers=bearer(bad)), 401, UNAUTHENTICATED)


async def test_unsigned_and_non_access_tokens_are_401(tenant: Any, client: Any) -> None:
    principal = await _principal(tenant.owner_email)
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(principal.user_id),
        "tid": str(principal.tenant_id),
        "role": "owner",
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
    }
    unsigned = jwt.encode({**claims, "typ": "access"}, None, algorithm="none")
    refresh_typed = jwt.encode(
        {**claims, "typ": "refresh"}, get_settings().secret_key, algorithm=ALGORITHM
    )
    bad_role = jwt.encode(
        {**claims, "typ": "access", "role": "superuser"},
        get_settings().secret_key,
        algorithm=ALGORITHM,
    )
    for token in (unsigned, refresh_typed, bad_role):
        assert_problem(await client.get(ME, headers=bearer(token)), 401, UNAUTHENTICATED)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Authorization": "Basic dTpw"}],
    ids=["none", "empty", "bearer-without-token", "basic"],
)
async def test_missing_token_is_401_with_www_authenticate(client: Any, headers: Any) -> None:
    r = await client.get(ME, headers=headers)
    assert_problem(r, 401, UNAUTHENTICATED)
    assert r.headers["www-authenticate"].lower().startswith("bearer")


# --- refresh tokens --------------------------------------------------------------------


async def test_refresh_rotates(tenant: Any, client: Any) -> None:
    first = await tenant.login()
    r = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = await client.get(ME, headers=bearer(second["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == tenant.owner_email

    family = await _family_of(second["refresh_token"])
    assert len(family) == 2
    assert sum(row["used_at"] is not None for row in family) == 1

    # The rotated token is spent.
    again = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert_problem(again, 401)


async def test_unknown_refresh_token_is_401(client: Any) -> None:
    r = await client.post(REFRESH, json={"refresh_token": secrets.token_urlsafe(32)})
    assert_problem(r, 401, UNAUTHENTICATED)


async def test_expired_refresh_token_is_401(tenant: Any, client: Any) -> None:
    tokens = await tenant.login()
    family = await _family_of(tokens["refresh_token"])
    await RefreshToken.update(
        {RefreshToken.expires_at: dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)}
    ).where(RefreshToken.id == family[0]["id"])
    r = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert_problem(r, 401, UNAUTHENTICATED)


async def test_stale_login_rows_are_purged(tenant: Any, client: Any) -> None:
    from models.auth import purge_expired
    from models.tables import LoginAttempt

    tokens = await tenant.login()
    family = await _family_of(tokens["refresh_token"])
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    await RefreshToken.update({RefreshToken.expires_at: long_ago}).where(
        RefreshToken.id == family[0]["id"]
    )
    await LoginAttempt.update({LoginAttempt.created_at: long_ago}).where(
        LoginAttempt.email == tenant.owner_email
    )
    fresh = await tenant.login()
    purged = await purge_expired()
    assert purged["refresh_tokens"] >= 1 and purged["login_attempts"] >= 1
    assert not await RefreshToken.exists().where(RefreshToken.id == family[0]["id"])
    assert not await LoginAttempt.exists().where(
        (LoginAttempt.email == tenant.owner_email)
        & (LoginAttempt.created_at < long_ago + dt.timedelta(hours=1))
    )
    # What still matters stays: the new login's token and its attempt.
    r = await client.post(REFRESH, json={"refresh_token": fresh["refresh_token"]})
    assert r.status_code == 200, r.text
    assert await LoginAttempt.exists().where(LoginAttempt.email == tenant.owner_email)


async def test_refresh_reuse_revokes_the_whole_family(tenant: Any, client: Any) -> None:
    r0 = (await tenant.login())["refresh_token"]
    r1 = (await client.post(REFRESH, json={"refresh_token": r0})).json()["refresh_token"]
    r2 = (await client.post(REFRESH, json={"refresh_token": r1})).json()["refresh_token"]
    other_login = (await tenant.login())["refresh_token"]

    reuse = await client.post(REFRESH, json={"refresh_token": r0})
    assert_problem(reuse, 401, "/problems/token-reuse")

    family = await _family_of(r2)
    assert len(family) == 3
    assert all(row["revoked_at"] is not None for row in family), family
    latest = await client.post(REFRESH, json={"refresh_token": r2})
    assert_problem(latest, 401, UNAUTHENTICATED)

    # Another login (another family) is not affected.
    ok = await client.post(REFRESH, json={"refresh_token": other_login})
    assert ok.status_code == 200, ok.text


async def test_logout_revokes_the_family(tenant: Any, client: Any) -> None:
    r0 = (await tenant.login())["refresh_token"]
    r1 = (await client.post(REFRESH, json={"refresh_token": r0})).json()["refresh_token"]
    other_login = (await tenant.login())["refresh_token"]

    out = await client.post(LOGOUT, json={"refresh_token": r1})
    assert out.status_code == 204, out.text
    assert all(row["revoked_at"] is not None for row in await _family_of(r1))

    assert_problem(await client.post(REFRESH, json={"refresh_token": r1}), 401)
    assert_problem(await client.post(REFRESH, json={"refresh_token": r0}), 401)
    ok = await client.post(REFRESH, json={"refresh_token": other_login})
    assert ok.status_code == 200, ok.text


async def test_logout_with_unknown_token_is_204(client: Any) -> None:
    r = await client.post(LOGOUT, json={"refresh_token": secrets.token_urlsafe(32)})
    assert r.status_code == 204, r.text


# --- rate limits -----------------------------------------------------------------------


async def test_account_is_locked_after_max_failures(
    tenant: Any, client_at: Callable[[str], httpx.AsyncClient]
) -> None:
    settings = get_settings()
    limit = settings.login_max_failures_per_account  # 5, from tests/conftest.py
    c = client_at(_unique_client())
    for _ in range(limit):
        r = await c.post(LOGIN, json={"email": tenant.owner_email, "password": "wrong-password"})
        assert_problem(r, 401, UNAUTHENTICATED)

    r = await c.post(LOGIN, json={"email": tenant.owner_email, "password": tenant.password})
    assert_problem(r, 429, "/problems/rate-limited")
    assert r.headers["retry-after"] == str(settings.login_window_seconds)
    assert "access_token" not in r.json()

    # Per account and client: the account's owner, elsewhere, still gets in (a stranger
    # cannot lock them out); other accounts from this client are not affected.
    elsewhere = client_at(_unique_client())
    r = await elsewhere.post(LOGIN, json={"email": tenant.owner_email, "password": tenant.password})
    assert r.status_code == 200, r.text
    teacher = await tenant.add_user("teacher")
    r = await c.post(LOGIN, json={"email": teacher, "password": "password-123"})
    assert r.status_code == 200, r.text

    failures = await LoginAttempt.count().where(
        (LoginAttempt.email == tenant.owner_email) & (LoginAttempt.succeeded.eq(False))
    )
    assert failures == limit


async def test_parallel_wrong_passwords_cannot_pass_the_limit(
    tenant: Any, client_at: Callable[[str], httpx.AsyncClient]
) -> None:
    """Finding 5: twenty wrong passwords at once are not all checked; the limit holds."""
    limit = get_settings().login_max_failures_per_account
    email = await tenant.add_user("teacher")
    c = client_at(_unique_client())
    body = {"email": email, "password": "wrong-password"}
    answers = await asyncio.gather(*(c.post(LOGIN, json=body) for _ in range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * limit + [429] * (20 - limit), statuses
    assert await LoginAttempt.count().where(LoginAttempt.email == email) == limit


async def test_an_account_is_locked_everywhere_after_the_global_limit(
    tenant: Any,
    client_at: Callable[[str], httpx.AsyncClient],
    settings_env: Callable[..., None],
) -> None:
    settings_env(LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL="3")
    email = await tenant.add_user("teacher")
    for _ in range(3):  # each from its own client: no (account, client) limit is reached
        r = await client_at(_unique_client()).post(
            LOGIN, json={"email": email, "password": "wrong-password"}
        )
        assert_problem(r, 401, UNAUTHENTICATED)
    r = await client_at(_unique_client()).post(
        LOGIN, json={"email": email, "password": "password-123"}
    )
    assert_problem(r, 429, "/problems/rate-limited")


async def test_client_is_limited_after_max_attempts(
    tenant: Any,
    client_at: Callable[[str], httpx.AsyncClient],
    settings_env: Callable[..., None],
) -> None:
    settings_env(LOGIN_MAX_ATTEMPTS_PER_CLIENT="3")
    host = _unique_client()
    c = client_at(host)
    for _ in range(3):  # distinct unknown e-mails: no account reaches its own limit
        r = await c.post(
            LOGIN, json={"email": f"probe-{uuid.uuid4().hex}@example.com", "password": "x" * 10}
        )
        assert_problem(r, 401, UNAUTHENTICATED)

    r = await c.post(LOGIN, json={"email": tenant.owner_email, "password": tenant.password})
    assert_problem(r, 429, "/problems/rate-limited")
    assert r.headers["retry-after"] == str(get_settings().login_window_seconds)
    assert await LoginAttempt.count().where(LoginAttempt.client == host) == 3

    # Another client, same account: fine.
    other = client_at(_unique_client())
    r = await other.post(LOGIN, json={"email": tenant.owner_email, "password": tenant.password})
    assert r.status_code == 200, r.text


async def test_successful_logins_count_towards_the_client_limit(
    tenant: Any,
    client_at: Callable[[str], httpx.AsyncClient],
    settings_env: Callable[..., None],
) -> None:
    settings_env(LOGIN_MAX_ATTEMPTS_PER_CLIENT="2")
    c = client_at(_unique_client())
    body = {"email": tenant.owner_email, "password": tenant.password}
    for _ in range(2):
        assert (await c.post(LOGIN, json=body)).status_code == 200
    assert_problem(await c.post(LOGIN, json=body), 429, "/problems/rate-limited")


def test_settings_are_restored_after_a_settings_env_test() -> None:
    expected = int(os.environ["LOGIN_MAX_ATTEMPTS_PER_CLIENT"])  # 1000, from tests/conftest.py
    assert get_settings().login_max_attempts_per_client == expected


# --- role guards -----------------------------------------------------------------------


@get("/admin-only", guards=[require_admin], sync_to_thread=False)
def _admin_only() -> dict[str, bool]:
    return {"ok": True}


@get("/staff-only", guards=[require_staff], sync_to_thread=False)
def _staff_only() -> dict[str, bool]:
    return {"ok": True}


@pytest_asyncio.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    mini = Litestar([_admin_only, _staff_only], exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=mini)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def test_require_admin_with_real_logins(tenant: Any, guarded: httpx.AsyncClient) -> None:
    teacher = await tenant.add_user("teacher")
    r = await guarded.get("/admin-only", headers=await tenant.headers(teacher, "password-123"))
    assert_problem(r, 403, "/problems/forbidden")
    assert r.headers["content-type"].startswith(PROBLEM_JSON)

    r = await guarded.get("/admin-only", headers=await tenant.headers())
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True}

    r = await guarded.get("/admin-only")
    assert_problem(r, 401, UNAUTHENTICATED)


ADMIN_ROLES = {Role.owner, Role.admin}
STAFF_ROLES = {Role.owner, Role.admin, Role.teacher, Role.staff}


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
async def test_role_guards_matrix(role: Role, tenant: Any, guarded: httpx.AsyncClient) -> None:
    token = issue_access_token(await _principal(await tenant.add_user(role.value)))
    for path, allowed in (("/admin-only", ADMIN_ROLES), ("/staff-only", STAFF_ROLES)):
        r = await guarded.get(path, headers=bearer(token))
        if role in allowed:
            assert r.status_code == 200, (path, r.text)
        else:
            assert_problem(r, 403, "/problems/forbidden")


# --- one e-mail in several academies ---------------------------------------------------


async def test_same_email_and_password_in_two_tenants_needs_the_slug(
    make_tenant: Any, client: Any
) -> None:
    a, b = await make_tenant(), await make_tenant()
    email = f"same-{uuid.uuid4().hex[:8]}@example.com"
    for t in (a, b):
        await User(
            tenant=t.id,
            email=email,
            role=Role.teacher.value,
            name="same",
            password_hash=hash_password("one-password"),
        ).save()
    r = await client.post(LOGIN, json={"email": email, "password": "one-password"})
    assert_problem(r, 400, "/problems/tenant-required")
    r = await client.post(
        LOGIN, json={"email": email, "password": "one-password", "tenant": b.slug}
    )
    assert r.status_code == 200, r.text


async def test_same_email_in_two_tenants_needs_the_slug(make_tenant: Any, client: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    email = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    for t, password in ((a, "password-in-a"), (b, "password-in-b")):
        await User(
            tenant=t.id,
            email=email,
            role=Role.teacher.value,
            name="shared",
            password_hash=hash_password(password),
        ).save()

    # Without a slug, the password decides: it opens only academy a.
    r = await client.post(LOGIN, json={"email": email, "password": "password-in-a"})
    assert r.status_code == 200, r.text
    me = await client.get(ME, headers=bearer(r.json()["access_token"]))
    assert me.json()["tenant"]["slug"] == a.slug
    # A wrong password learns nothing about how many academies share the e-mail.
    r = await client.post(LOGIN, json={"email": email, "password": "wrong-password"})
    assert_problem(r, 401, UNAUTHENTICATED)

    for t, password in ((a, "password-in-a"), (b, "password-in-b")):
        r = await client.post(LOGIN, json={"email": email, "password": password, "tenant": t.slug})
        assert r.status_code == 200, r.text
        me = await client.get(ME, headers=bearer(r.json()["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json()["tenant"]["slug"] == t.slug
        assert me.json()["email"] == email

    # The other academy's password does not open this one.
    r = await client.post(
        LOGIN, json={"email": email, "password": "password-in-b", "tenant": a.slug}
    )
    assert_problem(r, 401, UNAUTHENTICATED)
    # A slug the e-mail is not in.
    r = await client.post(
        LOGIN, json={"email": email, "password": "password-in-a", "tenant": "no-such-academy"}
    )
    assert_problem(r, 401, UNAUTHENTICATED)


async def test_slug_is_accepted_for_a_single_tenant_email(tenant: Any, client: Any) -> None:
    r = await client.post(
        LOGIN,
        json={"email": tenant.owner_email, "password": tenant.password, "tenant": tenant.slug},
    )
    assert r.status_code == 200, r.text
