"""Account management: who may create which role, family links, last owner, password reset."""

from __future__ import annotations

import uuid

from tests.factories import create_student

BASE = "/api/v1/users"


async def test_owner_creates_a_parent_who_then_sees_the_child(tenant):
    h = await tenant.headers()
    child = await create_student(tenant, h)
    r = await tenant.client.post(
        BASE,
        json={
            "email": "Mom@Example.com",
            "role": "parent",
            "guardian_id": child["guardians"][0]["id"],
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["account"]["email"] == "mom@example.com" and len(created["password"]) >= 12
    parent = await tenant.headers("mom@example.com", created["password"])
    kids = (await tenant.client.get("/api/v1/me/students", headers=parent)).json()["items"]
    assert [k["id"] for k in kids] == [child["id"]]


async def test_links_are_validated_together(tenant, make_tenant):
    h = await tenant.headers()
    other_child = await create_student(await make_tenant())
    r = await tenant.client.post(
        BASE,
        json={
            "email": "x",
            "role": "student",
            "guardian_id": str(uuid.uuid4()),
            "password": "short",
        },
        headers=h,
    )
    assert r.status_code == 422
    # The address and the password's length are the schema's, checked first.
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors.keys() == {"email", "password"}
    assert errors["email"] == "not an e-mail address"
    r = await tenant.client.post(
        BASE,
        json={"email": "x@example.com", "role": "student", "guardian_id": str(uuid.uuid4())},
        headers=h,
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"student_id", "guardian_id"}
    # Another academy's student cannot be linked.
    r = await tenant.client.post(
        BASE,
        json={"email": "s@example.com", "role": "student", "student_id": other_child["id"]},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "student_id"


async def test_admin_cannot_create_owners_or_admins(tenant):
    admin = await tenant.headers(await tenant.add_user("admin"), "password-123")
    for role in ("owner", "admin"):
        r = await tenant.client.post(
            BASE, json={"email": f"{role}@x.example", "role": role}, headers=admin
        )
        assert r.status_code == 403
    r = await tenant.client.post(
        BASE, json={"email": "t@x.example", "role": "teacher"}, headers=admin
    )
    assert r.status_code == 201
    teacher = await tenant.headers(await tenant.add_user("teacher"), "password-123")
    assert (await tenant.client.get(BASE, headers=teacher)).status_code == 403


async def test_duplicate_email_is_a_conflict(tenant):
    h = await tenant.headers()
    r = await tenant.client.post(
        BASE, json={"email": tenant.owner_email, "role": "staff"}, headers=h
    )
    assert r.status_code == 409


async def test_last_owner_stays(tenant):
    h = await tenant.headers()
    owners = (await tenant.client.get(BASE, params={"role": "owner"}, headers=h)).json()["items"]
    assert len(owners) == 1
    r = await tenant.client.patch(f"{BASE}/{owners[0]['id']}", json={"role": "admin"}, headers=h)
    assert r.status_code == 409
    r = await tenant.client.patch(f"{BASE}/{owners[0]['id']}", json={"is_active": False}, headers=h)
    assert r.status_code == 409


async def test_deactivation_and_password_reset_end_sessions(tenant):
    h = await tenant.headers()
    email = await tenant.add_user("staff")
    tokens = await tenant.login(email, "password-123")
    users = (await tenant.client.get(BASE, params={"role": "staff"}, headers=h)).json()["items"]
    uid = next(u["id"] for u in users if u["email"] == email)
    r = await tenant.client.post(f"{BASE}/{uid}/password", json={}, headers=h)
    assert r.status_code == 200 and r.json()["password"]
    refreshed = await tenant.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    new_password = r.json()["password"]
    await tenant.login(email, new_password)
    r = await tenant.client.patch(f"{BASE}/{uid}", json={"is_active": False}, headers=h)
    assert r.status_code == 200 and r.json()["is_active"] is False
    r = await tenant.client.post(
        "/api/v1/auth/login", json={"email": email, "password": new_password}
    )
    assert r.status_code == 401
