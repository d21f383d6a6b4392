"""Students and guardians over HTTP, against real Postgres."""

from __future__ import annotations

import pytest

from tests.factories import bulk_students, create_student, student_payload, unique_mobile

BASE = "/api/v1/students"


async def test_create_normalises_and_returns_guardians(tenant):
    h = await tenant.headers()
    r = await tenant.client.post(
        BASE,
        json=student_payload(
            name="  김민수 ",
            phone="+82 10 1234 5678",
            school="한빛중",
            guardians=[
                {"name": "이영희", "phone": "1098765432", "relation": "mother", "is_primary": True}
            ],
        ),
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "김민수" and body["phone"] == "010-1234-5678"
    assert body["guardians"][0]["phone"] == "010-9876-5432"
    assert body["guardians"][0]["relation"] == "mother" and body["enrollment_count"] == 0


async def test_every_field_error_is_listed(tenant):
    h = await tenant.headers()
    r = await tenant.client.post(
        BASE,
        json={
            "name": "x",
            "phone": "12345",
            "guardians": [{"phone": "nope"}, {"phone": "010-1111-2222"}],
        },
        headers=h,
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"phone", "guardians[0].phone"}
    # A blank name is the schema's (its pattern), refused before the phones are read.
    r = await tenant.client.post(BASE, json={"name": " ", "phone": "12345"}, headers=h)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "name", "message": "must not be empty", "source": "body"}
    ]


async def test_siblings_share_one_guardian(tenant):
    h = await tenant.headers()
    mom = unique_mobile()
    a = await create_student(tenant, h, guardians=[{"name": "엄마", "phone": mom}])
    b = await create_student(tenant, h, guardians=[{"name": "", "phone": mom.replace("-", "")}])
    assert a["guardians"][0]["id"] == b["guardians"][0]["id"]
    assert b["guardians"][0]["name"] == "엄마"  # an empty name does not erase the known one


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("ㄱㅁㅅ", True),
        ("ㄱㅁ", True),
        ("민수", True),
        ("ㅂㅁㅅ", False),
        ("5678", True),
        ("한빛", True),
    ],
)
async def test_search(tenant, query, expect):
    h = await tenant.headers()
    s = await create_student(tenant, h, name="김민수", phone="010-2222-5678", school="한빛중학교")
    r = await tenant.client.get(BASE, params={"q": query}, headers=h)
    assert r.status_code == 200, r.text
    ids = {item["id"] for item in r.json()["items"]}
    assert (s["id"] in ids) is expect


async def test_search_by_guardian_phone_tail(tenant):
    h = await tenant.headers()
    s = await create_student(tenant, h, guardians=[{"phone": "010-3333-9137"}])
    r = await tenant.client.get(BASE, params={"q": "9137"}, headers=h)
    assert s["id"] in {i["id"] for i in r.json()["items"]}


async def test_cursor_pages_are_stable_and_complete(tenant):
    h = await tenant.headers()
    ids = set(map(str, await bulk_students(tenant.id, 23)))
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        r = await tenant.client.get(BASE, params=params, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [i["id"] for i in page["items"]]
        names = [i["name"] for i in page["items"]]
        assert names == sorted(names)
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 23 and set(seen) == ids


async def test_sort_newest_first_with_cursor(tenant):
    h = await tenant.headers()
    made = [await create_student(tenant, h) for _ in range(5)]
    r = await tenant.client.get(BASE, params={"sort": "-created_at", "limit": 3}, headers=h)
    first = r.json()
    r = await tenant.client.get(
        BASE, params={"sort": "-created_at", "limit": 3, "cursor": first["next_cursor"]}, headers=h
    )
    order = [i["id"] for i in first["items"] + r.json()["items"]]
    assert order == [m["id"] for m in reversed(made)]


async def test_bad_cursor_and_limit_are_field_errors(tenant):
    h = await tenant.headers()
    r = await tenant.client.get(BASE, params={"cursor": "garbage!", "limit": 500}, headers=h)
    assert r.status_code == 422
    r = await tenant.client.get(BASE, params={"cursor": "garbage"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"


async def test_patch_changes_only_given_fields(tenant):
    h = await tenant.headers()
    s = await create_student(tenant, h, school="A중")
    r = await tenant.client.patch(f"{BASE}/{s['id']}", json={"grade": "중3"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["grade"] == "중3" and r.json()["school"] == "A중"
    assert r.json()["guardians"] == s["guardians"]
    r = await tenant.client.patch(f"{BASE}/{s['id']}", json={"guardians": []}, headers=h)
    assert r.json()["guardians"] == []


async def test_soft_delete_restore_and_list_deleted(tenant):
    h = await tenant.headers()
    s = await create_student(tenant, h)
    assert (await tenant.client.delete(f"{BASE}/{s['id']}", headers=h)).status_code == 204
    assert (await tenant.client.get(f"{BASE}/{s['id']}", headers=h)).status_code == 404
    listed = (await tenant.client.get(BASE, headers=h)).json()["items"]
    assert s["id"] not in {i["id"] for i in listed}
    deleted = (await tenant.client.get(f"{BASE}/deleted", headers=h)).json()["items"]
    assert s["id"] in {i["id"] for i in deleted}
    r = await tenant.client.post(f"{BASE}/{s['id']}/restore", headers=h)
    assert r.status_code == 200 and r.json()["deleted_at"] is None
    assert (await tenant.client.post(f"{BASE}/{s['id']}/restore", headers=h)).status_code == 404


async def test_deleted_duplicates_dry_run_then_fix(tenant):
    h = await tenant.headers()
    mom = unique_mobile()
    twins = [
        await create_student(tenant, h, name="박지우", guardians=[{"phone": mom}]) for _ in range(3)
    ]
    for t in twins:
        await tenant.client.delete(f"{BASE}/{t['id']}", headers=h)
    r = await tenant.client.get(f"{BASE}/duplicates", headers=h)
    report = r.json()
    assert r.status_code == 200 and report["removable"] == 2 and not report["fixed"]
    group = report["groups"][0]
    assert group["keep"] == twins[0]["id"]  # deleted first
    assert len((await tenant.client.get(f"{BASE}/deleted", headers=h)).json()["items"]) == 3
    r = await tenant.client.post(f"{BASE}/duplicates/fix", headers=h)
    assert r.json()["fixed"] and r.json()["removable"] == 2
    left = [
        i["id"] for i in (await tenant.client.get(f"{BASE}/deleted", headers=h)).json()["items"]
    ]
    assert left == [twins[0]["id"]]
    assert (await tenant.client.get(f"{BASE}/duplicates", headers=h)).json()["removable"] == 0


async def test_purge_removes_only_old_deletions(tenant):
    from models.students import purge_deleted
    from models.tables import Student

    h = await tenant.headers()
    old, recent = await create_student(tenant, h), await create_student(tenant, h)
    for s in (old, recent):
        await tenant.client.delete(f"{BASE}/{s['id']}", headers=h)
    await Student.raw(
        "UPDATE student SET deleted_at = now() - interval '31 days' WHERE id = {}", old["id"]
    )
    assert await purge_deleted(dry_run=True) >= 1
    assert await Student.exists().where(Student.id == old["id"])
    assert await purge_deleted() >= 1
    assert not await Student.exists().where(Student.id == old["id"])
    assert await Student.exists().where(Student.id == recent["id"])


async def test_roles(tenant):
    teacher = await tenant.headers(await tenant.add_user("teacher"), "password-123")
    student = await tenant.headers(await tenant.add_user("student"), "password-123")
    assert (await tenant.client.get(BASE, headers=teacher)).status_code == 200
    assert (
        await tenant.client.post(BASE, json=student_payload(), headers=teacher)
    ).status_code == 403
    assert (await tenant.client.get(BASE, headers=student)).status_code == 403


async def test_list_page_is_one_query_not_one_per_row(tenant, count_queries):
    h = await tenant.headers()
    await bulk_students(tenant.id, 60, guardians_per_student=2)
    count_queries.count = 0
    r = await tenant.client.get(BASE, params={"limit": 50}, headers=h)
    assert r.status_code == 200 and len(r.json()["items"]) == 50
    assert all(len(i["guardians"]) == 2 for i in r.json()["items"])
    assert count_queries.count <= 2, count_queries.statements


async def test_read_model_follows_every_writer(tenant):
    """guardians and enrollment_count are kept by triggers, whoever writes."""
    from models.tables import Enrollment, Lecture

    h = await tenant.headers()
    mom = unique_mobile()
    a = await create_student(tenant, h, guardians=[{"name": "엄마", "phone": mom}])
    b = await create_student(tenant, h, guardians=[{"name": "엄마", "phone": mom}])
    # Renaming the shared guardian through one sibling shows on the other.
    await tenant.client.patch(
        f"{BASE}/{a['id']}", json={"guardians": [{"name": "김엄마", "phone": mom}]}, headers=h
    )
    got = (await tenant.client.get(f"{BASE}/{b['id']}", headers=h)).json()
    assert got["guardians"][0]["name"] == "김엄마"
    listed = {
        i["id"]: i
        for i in (await tenant.client.get(BASE, params={"q": mom[-4:]}, headers=h)).json()["items"]
    }
    assert listed[b["id"]]["guardians"][0]["name"] == "김엄마"
    # Enrollments written straight to the table (as an import would) are counted.
    lectures = [Lecture(tenant=tenant.id, title=f"L{i}") for i in range(2)]
    for lec in lectures:
        await lec.save()
    await Enrollment.insert(
        *[Enrollment(tenant=tenant.id, student=a["id"], lecture=lec.id) for lec in lectures]
    )
    assert (await tenant.client.get(f"{BASE}/{a['id']}", headers=h)).json()["enrollment_count"] == 2
    await Enrollment.update({Enrollment.status: "dropped"}).where(
        Enrollment.lecture == lectures[0].id
    )
    assert (await tenant.client.get(f"{BASE}/{a['id']}", headers=h)).json()["enrollment_count"] == 1
    await Enrollment.delete().where(Enrollment.student == a["id"])
    assert (await tenant.client.get(f"{BASE}/{a['id']}", headers=h)).json()["enrollment_count"] == 0


async def test_restore_does_not_overfill_a_lecture(tenant):
    from models.tables import Enrollment, Lecture

    h = await tenant.headers()
    leaving, newcomer = await create_student(tenant, h), await create_student(tenant, h)
    lecture = Lecture(tenant=tenant.id, title="정원 1명", capacity=1, status="open")
    await lecture.save()
    await Enrollment(tenant=tenant.id, student=leaving["id"], lecture=lecture.id).save()
    await tenant.client.delete(f"{BASE}/{leaving['id']}", headers=h)
    # The seat is free while the student is deleted; someone takes it.
    await Enrollment(tenant=tenant.id, student=newcomer["id"], lecture=lecture.id).save()
    r = await tenant.client.post(f"{BASE}/{leaving['id']}/restore", headers=h)
    assert r.status_code == 409 and r.json()["type"] == "/problems/lecture-full"
    assert r.json()["lectures"][0]["title"] == "정원 1명"
    assert (await tenant.client.get(f"{BASE}/{leaving['id']}", headers=h)).status_code == 404
    await Enrollment.update({Enrollment.status: "dropped"}).where(
        Enrollment.student == leaving["id"]
    )
    assert (
        await tenant.client.post(f"{BASE}/{leaving['id']}/restore", headers=h)
    ).status_code == 200
