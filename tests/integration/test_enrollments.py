"""Enrollments over HTTP, against real Postgres: capacity, drop and re-enrol, the roster
and a student's lectures."""

from __future__ import annotations

import asyncio
import uuid

from tests.bola import assert_problem
from tests.factories import bulk_students, create_student
from tests.factories.lectures import LECTURES as BASE
from tests.factories.lectures import (
    all_pages,
    bulk_enrollments,
    create_lecture,
    enrol,
    enrollments_url,
)

# --- enrollments ----------------------------------------------------------------------


async def test_fill_to_capacity_then_lecture_full(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, capacity=2)
    a, b, c = [await create_student(tenant, h) for _ in range(3)]
    r = await tenant.client.post(enrollments_url(lecture), json={"student_id": a["id"]}, headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "active" and body["source"] == "manual" and body["dropped_at"] is None
    await enrol(tenant, lecture["id"], b["id"], h, source="import")
    r = await tenant.client.post(enrollments_url(lecture), json={"student_id": c["id"]}, headers=h)
    assert_problem(r, 409, "/problems/lecture-full")
    assert r.json()["capacity"] == 2 and r.json()["enrolled"] == 2
    # Enrolling an already active student again changes nothing, full or not.
    again = await tenant.client.post(
        enrollments_url(lecture), json={"student_id": a["id"]}, headers=h
    )
    assert again.status_code == 200 and again.json() == body
    lecture_now = (await tenant.client.get(f"{BASE}/{lecture['id']}", headers=h)).json()
    assert lecture_now["enrolled_count"] == 2


async def test_concurrent_enrolments_never_exceed_capacity(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, capacity=3)
    students = await bulk_students(tenant.id, 10)
    results = await asyncio.gather(
        *(
            tenant.client.post(enrollments_url(lecture), json={"student_id": str(sid)}, headers=h)
            for sid in students
        )
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 3 + [409] * 7, [r.text for r in results]
    assert all(
        r.json()["type"] == "/problems/lecture-full" for r in results if r.status_code == 409
    )
    roster = (await tenant.client.get(f"{BASE}/{lecture['id']}/roster", headers=h)).json()
    assert len(roster["items"]) == 3
    lecture_now = (await tenant.client.get(f"{BASE}/{lecture['id']}", headers=h)).json()
    assert lecture_now["enrolled_count"] == 3


async def test_concurrent_enrolments_of_one_student_make_one_row(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    student = await create_student(tenant, h)
    results = await asyncio.gather(
        *(
            tenant.client.post(
                enrollments_url(lecture), json={"student_id": student["id"]}, headers=h
            )
            for _ in range(5)
        )
    )
    assert sorted(r.status_code for r in results) == [200] * 4 + [201], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1


async def test_drop_and_re_enrol_reuses_the_row(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, capacity=1)
    student, other = await create_student(tenant, h), await create_student(tenant, h)
    first = await enrol(tenant, lecture["id"], student["id"], h)
    drop_url = f"{enrollments_url(lecture)}/{student['id']}"
    assert (await tenant.client.delete(drop_url, headers=h)).status_code == 204
    mine = await tenant.client.get(f"/api/v1/students/{student['id']}/lectures", headers=h)
    [entry] = mine.json()["items"]
    assert entry["status"] == "dropped" and entry["dropped_at"] is not None
    assert (await tenant.client.get(f"{BASE}/{lecture['id']}/roster", headers=h)).json()[
        "items"
    ] == []
    assert (await tenant.client.delete(drop_url, headers=h)).status_code == 204  # no-op
    entry_again = (
        await tenant.client.get(f"/api/v1/students/{student['id']}/lectures", headers=h)
    ).json()["items"][0]
    assert entry_again["dropped_at"] == entry["dropped_at"]

    # The freed seat can be taken; then the dropped student no longer fits.
    await enrol(tenant, lecture["id"], other["id"], h)
    r = await tenant.client.post(
        enrollments_url(lecture), json={"student_id": student["id"]}, headers=h
    )
    assert_problem(r, 409, "/problems/lecture-full")
    await tenant.client.delete(f"{enrollments_url(lecture)}/{other['id']}", headers=h)
    r = await tenant.client.post(
        enrollments_url(lecture), json={"student_id": student["id"], "source": "import"}, headers=h
    )
    assert r.status_code == 201, r.text
    back = r.json()
    assert back["id"] == first["id"] and back["status"] == "active"
    assert back["dropped_at"] is None and back["source"] == "import"
    assert back["enrolled_at"] > first["enrolled_at"]


async def test_drop_of_a_student_never_enrolled_is_404(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    student = await create_student(tenant, h)
    r = await tenant.client.delete(f"{enrollments_url(lecture)}/{student['id']}", headers=h)
    assert_problem(r, 404, "/problems/not-found")
    r = await tenant.client.delete(f"{enrollments_url(lecture)}/not-a-uuid", headers=h)
    assert_problem(r, 404, "/problems/not-found")


async def test_enrolling_a_student_who_is_not_here_is_a_field_error(tenant, make_tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    deleted = await create_student(tenant, h)
    await tenant.client.delete(f"/api/v1/students/{deleted['id']}", headers=h)
    other = await make_tenant()
    foreign = await create_student(other)
    answers = []
    for sid in (deleted["id"], foreign["id"], str(uuid.uuid4())):
        r = await tenant.client.post(enrollments_url(lecture), json={"student_id": sid}, headers=h)
        assert_problem(r, 422, "/problems/validation")
        answers.append(r.json()["errors"])
    assert (
        answers[0]
        == answers[1]
        == answers[2]
        == [{"field": "student_id", "message": "no such student"}]
    )
    r = await tenant.client.post(
        enrollments_url(lecture), json={"student_id": "nope", "source": "fax"}, headers=h
    )
    assert {e["field"] for e in r.json()["errors"]} == {"student_id", "source"}


async def test_closed_lecture_takes_no_enrolments(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, status="closed")
    student = await create_student(tenant, h)
    r = await tenant.client.post(
        enrollments_url(lecture), json={"student_id": student["id"]}, headers=h
    )
    assert_problem(r, 409, "/problems/lecture-closed")


async def test_capacity_cannot_drop_below_the_enrolled(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, capacity=5)
    await bulk_enrollments(tenant.id, lecture["id"], await bulk_students(tenant.id, 3))
    url = f"{BASE}/{lecture['id']}"
    r = await tenant.client.patch(url, json={"capacity": 2}, headers=h)
    assert_problem(r, 409, "/problems/capacity-below-enrolled")
    r = await tenant.client.patch(url, json={"capacity": 3}, headers=h)
    assert r.status_code == 200 and r.json()["capacity"] == 3


async def test_roster_lists_active_live_students_by_name(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    names = ["하지민", "김가온", "박나래", "이다인", "최라온"]
    made = [await create_student(tenant, h, name=n, school="한빛고", grade="고1") for n in names]
    for s in made:
        await enrol(tenant, lecture["id"], s["id"], h)
    await tenant.client.delete(f"{enrollments_url(lecture)}/{made[0]['id']}", headers=h)
    await tenant.client.delete(f"/api/v1/students/{made[1]['id']}", headers=h)

    roster = await all_pages(tenant.client, f"{BASE}/{lecture['id']}/roster", h, limit=2)
    assert [r["name"] for r in roster] == ["박나래", "이다인", "최라온"]
    first = roster[0]
    assert first["student_id"] == made[2]["id"] and first["phone"] == made[2]["phone"]
    assert first["school"] == "한빛고" and first["grade"] == "고1"
    assert first["student_status"] == "active" and first["source"] == "manual"
    lecture_now = (await tenant.client.get(f"{BASE}/{lecture['id']}", headers=h)).json()
    assert lecture_now["enrolled_count"] == 3  # the same students the roster shows


async def test_a_students_lectures(tenant):
    h = await tenant.headers()
    student = await create_student(tenant, h)
    lectures = [
        await create_lecture(tenant, h, title=title) for title in ("가 국어", "나 수학", "다 영어")
    ]
    for lecture in lectures:
        await enrol(tenant, lecture["id"], student["id"], h)
    await tenant.client.delete(f"{enrollments_url(lectures[1])}/{student['id']}", headers=h)
    url = f"/api/v1/students/{student['id']}/lectures"

    listed = await all_pages(tenant.client, url, h, limit=2)
    assert [(i["title"], i["status"]) for i in listed] == [
        ("가 국어", "active"),
        ("나 수학", "dropped"),
        ("다 영어", "active"),
    ]
    assert listed[0]["lecture_id"] == lectures[0]["id"] and listed[0]["lecture_status"] == "open"
    active = (await tenant.client.get(url, params={"status": "active"}, headers=h)).json()
    assert [i["title"] for i in active["items"]] == ["가 국어", "다 영어"]

    nobody = await create_student(tenant, h)
    r = await tenant.client.get(f"/api/v1/students/{nobody['id']}/lectures", headers=h)
    assert r.status_code == 200 and r.json()["items"] == []
    await tenant.client.delete(f"/api/v1/students/{student['id']}", headers=h)
    assert_problem(await tenant.client.get(url, headers=h), 404, "/problems/not-found")
