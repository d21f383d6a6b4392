"""Guardians as a resource: search by phone tail or name in cursor pages, one guardian,
a change of phone that every sibling sees, the students of a guardian, and roles as on
students. Another academy's guardian is the BOLA matrix's (``tests/bola_cases``)."""

from __future__ import annotations

from typing import Any

from tests.bola import assert_problem
from tests.factories import create_student, unique_mobile


async def _siblings(tenant: Any, headers: dict[str, str], phone: str) -> list[dict[str, Any]]:
    """Two students sharing one mother (by phone), the second one naming her too."""
    mother = {"name": "김엄마", "phone": phone, "relation": "mother", "is_primary": True}
    return [
        await create_student(tenant, headers, name=name, guardians=[mother])
        for name in ("가나다", "나다라")
    ]


async def test_search_by_phone_tail_and_name(tenant: Any, client: Any) -> None:
    headers = await tenant.headers()
    phone = unique_mobile()
    kids = await _siblings(tenant, headers, phone)
    await create_student(tenant, headers)  # someone else's guardian

    r = await client.get("/api/v1/guardians", params={"q": phone[-4:]}, headers=headers)
    assert r.status_code == 200, r.text
    found = r.json()["items"]
    assert [g["phone"] for g in found] == [phone]
    assert found[0]["id"] == kids[0]["guardians"][0]["id"] == kids[1]["guardians"][0]["id"]
    assert found[0]["student_count"] == 2

    # Dashes in the tail are fine; a name matches anywhere in it.
    r = await client.get("/api/v1/guardians", params={"q": phone[-6:]}, headers=headers)
    assert [g["phone"] for g in r.json()["items"]] == [phone]
    r = await client.get("/api/v1/guardians", params={"q": "엄마"}, headers=headers)
    assert [g["name"] for g in r.json()["items"]] == ["김엄마"]


async def test_cursor_pages_cover_every_guardian_once(tenant: Any, client: Any) -> None:
    headers = await tenant.headers()
    for _ in range(5):
        await create_student(tenant, headers)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/v1/guardians", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [g["id"] for g in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5

    r = await client.get("/api/v1/guardians", params={"cursor": "garbage"}, headers=headers)
    assert_problem(r, 422)


async def test_a_phone_change_reaches_every_sibling(tenant: Any, client: Any) -> None:
    headers = await tenant.headers()
    kids = await _siblings(tenant, headers, unique_mobile())
    guardian_id = kids[0]["guardians"][0]["id"]
    new_phone = unique_mobile()

    # Written any way the import accepts it, stored in the one canonical form.
    r = await client.patch(
        f"/api/v1/guardians/{guardian_id}",
        json={"phone": new_phone.replace("-", "")},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == new_phone

    for kid in kids:
        r = await client.get(f"/api/v1/students/{kid['id']}", headers=headers)
        assert [g["phone"] for g in r.json()["guardians"]] == [new_phone]
    r = await client.get("/api/v1/students", params={"q": new_phone[-4:]}, headers=headers)
    assert {s["id"] for s in r.json()["items"]} == {k["id"] for k in kids}

    r = await client.get(f"/api/v1/guardians/{guardian_id}/students", headers=headers)
    assert r.status_code == 200, r.text
    assert [s["name"] for s in r.json()["items"]] == ["가나다", "나다라"]


async def test_bad_or_taken_phone_is_refused(tenant: Any, client: Any) -> None:
    headers = await tenant.headers()
    first, other = await create_student(tenant, headers), await create_student(tenant, headers)
    guardian_id = first["guardians"][0]["id"]
    path = f"/api/v1/guardians/{guardian_id}"

    r = await client.patch(path, json={"phone": "12", "name": "x" * 101}, headers=headers)
    assert_problem(r, 422)
    # The name's length is the schema's (``maxLength``): refused before the phone is read.
    assert {e["field"] for e in r.json()["errors"]} == {"name"}
    r = await client.patch(path, json={"phone": "12", "name": "x"}, headers=headers)
    assert_problem(r, 422)
    assert {e["field"] for e in r.json()["errors"]} == {"phone"}

    taken = other["guardians"][0]["phone"]
    r = await client.patch(path, json={"phone": taken}, headers=headers)
    assert_problem(r, 409, "/problems/guardian-phone-taken")
    r = await client.get(path, headers=headers)
    assert r.json()["phone"] == first["guardians"][0]["phone"]


async def test_roles_match_students(tenant: Any, client: Any) -> None:
    student = await create_student(tenant)
    guardian_id = student["guardians"][0]["id"]
    teacher = await tenant.headers(await tenant.add_user("teacher"), "password-123")
    r = await client.get(f"/api/v1/guardians/{guardian_id}", headers=teacher)
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/guardians/{guardian_id}", json={"name": "바꿈"}, headers=teacher
    )
    assert_problem(r, 403)
    r = await client.get("/api/v1/guardians")
    assert_problem(r, 401)
