"""Access tokens end with what should end them (finding 6 of the security probe): a
deactivation, a role change or a new password takes effect on the very next request, not
when the token expires."""

from __future__ import annotations

import uuid
from typing import Any

from models.tables import User
from tests.bola import assert_problem
from tests.factories.attendance import create_class

USERS = "/api/v1/users"
UNAUTHENTICATED = "/problems/unauthenticated"


async def _user_id(email: str) -> uuid.UUID:
    row = await User.select(User.id).where(User.email == email).first()
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def _patch_user(tenant: Any, client: Any, email: str, **values: Any) -> None:
    r = await client.patch(
        f"{USERS}/{await _user_id(email)}", json=values, headers=await tenant.headers()
    )
    assert r.status_code == 200, r.text


async def test_a_deactivated_teachers_token_cannot_write_attendance(
    tenant: Any, client: Any
) -> None:
    email = await tenant.add_user("teacher")
    klass = await create_class(tenant, students=1, teacher=await _user_id(email))
    headers = await tenant.headers(email, "password-123")
    check = f"/api/v1/sessions/{klass.sessions[0]}/attendance/{klass.students[0]}"
    r = await client.put(check, json={"status": "present"}, headers=headers)
    assert r.status_code == 200, r.text

    await _patch_user(tenant, client, email, is_active=False)
    r = await client.put(check, json={"status": "absent"}, headers=headers)
    assert_problem(r, 401, UNAUTHENTICATED)


async def test_a_deactivated_admins_token_cannot_create_accounts(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("admin")
    headers = await tenant.headers(email, "password-123")
    await _patch_user(tenant, client, email, is_active=False)
    body = {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "role": "teacher"}
    r = await client.post(USERS, json=body, headers=headers)
    assert_problem(r, 401, UNAUTHENTICATED)
    assert await User.count().where(User.email == body["email"]) == 0


async def test_a_downgraded_admin_cannot_list_users(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("admin")
    headers = await tenant.headers(email, "password-123")
    assert (await client.get(USERS, headers=headers)).status_code == 200

    await _patch_user(tenant, client, email, role="teacher")
    r = await client.get(USERS, headers=headers)
    assert r.status_code in (401, 403), r.text
    # Logged in again, the account acts as what it is now.
    r = await client.get(USERS, headers=await tenant.headers(email, "password-123"))
    assert_problem(r, 403, "/problems/forbidden")


async def test_a_token_issued_before_a_password_reset_is_refused(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("teacher")
    headers = await tenant.headers(email, "password-123")
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200

    r = await client.post(
        f"{USERS}/{await _user_id(email)}/password",
        json={"password": "a-new-password-456"},
        headers=await tenant.headers(),
    )
    assert r.status_code == 200, r.text
    assert_problem(await client.get("/api/v1/auth/me", headers=headers), 401, UNAUTHENTICATED)
    fresh = await tenant.headers(email, "a-new-password-456")
    assert (await client.get("/api/v1/auth/me", headers=fresh)).status_code == 200


async def test_an_unrelated_change_keeps_tokens_valid(tenant: Any, client: Any) -> None:
    email = await tenant.add_user("teacher")
    headers = await tenant.headers(email, "password-123")
    await _patch_user(tenant, client, email, name="renamed")
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
