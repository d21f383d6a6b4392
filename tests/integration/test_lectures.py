"""Lectures, sessions and enrollments over HTTP, against real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.bola import assert_problem
from tests.factories import bulk_students, create_student
from tests.factories.lectures import (
    DEFAULT_SESSION_COUNT,
    add_session,
    bulk_enrollments,
    bulk_lectures,
    create_lecture,
    enrol,
    generate_sessions,
    lecture_payload,
    record_attendance,
    user_id,
)

BASE = "/api/v1/lectures"


def sessions_url(lecture: dict[str, Any]) -> str:
    return f"{BASE}/{lecture['id']}/sessions"


def enrollments_url(lecture: dict[str, Any]) -> str:
    return f"{BASE}/{lecture['id']}/enrollments"


async def all_pages(client: Any, url: str, headers: dict[str, str], **params: Any) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        r = await client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


# --- lectures: CRUD and validation ----------------------------------------------------


async def test_create_normalises_and_reads_back(tenant):
    h = await tenant.headers()
    teacher = await user_id(await tenant.add_user("teacher"))
    r = await tenant.client.post(
        BASE,
        json=lecture_payload(
            title="  중3   영어  ",
            code=" ENG-3 ",
            teacher_id=str(teacher),
            capacity=12,
            schedule=[
                {"weekday": 3, "start": "19:00", "end": "21:00"},
                {"weekday": 1, "start": "19:00", "end": "21:00"},
            ],
        ),
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["title"] == "중3 영어" and body["code"] == "ENG-3"
    assert body["teacher_id"] == str(teacher) and body["teacher_name"] == "teacher"
    assert body["capacity"] == 12 and body["enrolled_count"] == 0 and body["session_count"] == 0
    assert [s["weekday"] for s in body["schedule"]] == [1, 3]  # stored in weekday order
    got = await tenant.client.get(f"{BASE}/{body['id']}", headers=h)
    assert got.status_code == 200 and got.json() == body


async def test_every_field_error_is_listed(tenant):
    h = await tenant.headers()
    r = await tenant.client.post(
        BASE,
        json={
            "title": "  ",
            "subject": "가" * 101,
            "code": "X" * 33,
            "teacher_id": str(uuid.uuid4()),
            "capacity": 0,
            "schedule": [
                {"weekday": 7, "start": "9:00", "end": "10:00"},
                {"weekday": 0, "start": "10:00", "end": "09:00"},
                {"weekday": 0, "start": "09:00", "end": "10:00"},
                {"weekday": 0, "start": "09:30", "end": "10:30"},
                {"weekday": 1, "start": "09:30", "end": "10:30"},
            ],
            "start_date": "2026-03-10",
            "end_date": "2026-03-01",
        },
        headers=h,
    )
    assert_problem(r, 422, "/problems/validation")
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "title",
        "subject",
        "code",
        "teacher_id",
        "capacity",
        "schedule[0].weekday",
        "schedule[0].start",
        "schedule[1].end",
        "schedule[3]",
        "end_date",
    }


async def test_type_errors_are_all_listed_too(tenant):
    h = await tenant.headers()
    r = await tenant.client.post(
        BASE,
        json={"title": 5, "capacity": "many", "start_date": "someday", "colour": "red"},
        headers=h,
    )
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"title", "capacity", "start_date", "colour"}


async def test_schedule_length_is_bounded(tenant):
    h = await tenant.headers()
    slots = [{"weekday": i % 7, "start": f"{i // 7:02d}:00", "end": f"{i // 7:02d}:30"}
             for i in range(51)]  # fmt: skip
    r = await tenant.client.post(BASE, json=lecture_payload(schedule=slots), headers=h)
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "schedule", "message": "at most 50 weekly slots"}]
    r = await tenant.client.post(BASE, json=lecture_payload(schedule=slots[:50]), headers=h)
    assert r.status_code == 201, r.text


async def test_teacher_must_be_a_teacher_owner_or_admin_of_this_academy(tenant, make_tenant):
    h = await tenant.headers()
    other = await make_tenant()
    ok = [
        await user_id(await tenant.add_user("teacher")),
        await user_id(await tenant.add_user("admin")),
        await user_id(tenant.owner_email),
    ]
    refused = [
        await user_id(await tenant.add_user("staff")),
        await user_id(await tenant.add_user("student")),
        await user_id(await other.add_user("teacher")),
        uuid.uuid4(),
    ]
    for teacher in ok:
        r = await tenant.client.post(BASE, json=lecture_payload(teacher_id=str(teacher)), headers=h)
        assert r.status_code == 201, r.text
    messages = set()
    for teacher in refused:
        r = await tenant.client.post(BASE, json=lecture_payload(teacher_id=str(teacher)), headers=h)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["teacher_id"]
        messages.add(r.json()["errors"][0]["message"])
    assert len(messages) == 1  # another academy's teacher looks like no one at all


async def test_code_is_unique_per_academy(tenant, make_tenant):
    h = await tenant.headers()
    first = await create_lecture(tenant, h, code="MATH-1")
    r = await tenant.client.post(BASE, json=lecture_payload(code="MATH-1"), headers=h)
    assert_problem(r, 409, "/problems/lecture-code-taken")
    assert r.json()["errors"] == [{"field": "code", "message": "already used by another lecture"}]
    other = await make_tenant()
    await create_lecture(other, code="MATH-1")  # another academy may use it

    second = await create_lecture(tenant, h, code="MATH-2")
    r = await tenant.client.patch(f"{BASE}/{second['id']}", json={"code": "MATH-1"}, headers=h)
    assert_problem(r, 409, "/problems/lecture-code-taken")
    # No code (null or empty) is never a conflict.
    for code in (None, "", "  "):
        made = await create_lecture(tenant, h, code=code)
        assert made["code"] is None
    assert (await tenant.client.get(f"{BASE}/{first['id']}", headers=h)).json()["code"] == "MATH-1"


async def test_patch_changes_only_given_fields_and_checks_dates_against_stored_ones(tenant):
    h = await tenant.headers()
    teacher = await user_id(await tenant.add_user("teacher"))
    lecture = await create_lecture(tenant, h, teacher_id=str(teacher), capacity=10)
    url = f"{BASE}/{lecture['id']}"
    r = await tenant.client.patch(url, json={"subject": "심화 수학", "capacity": None}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["subject"] == "심화 수학" and body["capacity"] is None
    assert body["title"] == lecture["title"] and body["schedule"] == lecture["schedule"]
    assert body["teacher_id"] == str(teacher)
    assert body["updated_at"] > lecture["updated_at"]

    r = await tenant.client.patch(url, json={"end_date": "2026-03-01"}, headers=h)  # < start
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "end_date", "message": "must be on or after start_date"}
    ]
    r = await tenant.client.patch(url, json={"start_date": "2026-04-01"}, headers=h)  # > end
    assert [e["field"] for e in r.json()["errors"]] == ["start_date"]

    slots = [{"weekday": 5, "start": "10:00", "end": "12:00"}]
    r = await tenant.client.patch(url, json={"schedule": slots}, headers=h)
    assert r.status_code == 200 and r.json()["schedule"] == slots
    r = await tenant.client.patch(
        url, json={"teacher_id": None, "schedule": [], "status": "closed"}, headers=h
    )
    assert r.json()["teacher_id"] is None and r.json()["teacher_name"] is None
    assert r.json()["schedule"] == [] and r.json()["status"] == "closed"


async def test_list_filters_search_and_counts(tenant):
    h = await tenant.headers()
    teacher = await user_id(await tenant.add_user("teacher"))
    algebra = await create_lecture(
        tenant, h, title="고1 대수", subject="수학", code="ALG-1", teacher_id=str(teacher)
    )
    physics = await create_lecture(tenant, h, title="물리 기초", subject="과학", status="planned")
    closed = await create_lecture(tenant, h, title="지난 강의", subject="국어", status="closed")
    students = await bulk_students(tenant.id, 3)
    await bulk_enrollments(tenant.id, algebra["id"], students[:2])
    await bulk_enrollments(tenant.id, algebra["id"], students[2:], status="dropped")
    await bulk_enrollments(tenant.id, physics["id"], students[:1])

    async def ids(**params: Any) -> list[str]:
        r = await tenant.client.get(BASE, params=params, headers=h)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    everything = (await tenant.client.get(BASE, headers=h)).json()["items"]
    counts = {i["id"]: i["enrolled_count"] for i in everything}
    assert counts == {algebra["id"]: 2, physics["id"]: 1, closed["id"]: 0}
    assert [i["title"] for i in everything] == sorted(i["title"] for i in everything)
    assert await ids(q="대수") == [algebra["id"]]
    assert await ids(q="과학") == [physics["id"]]
    assert await ids(q="alg-") == [algebra["id"]]  # code, case-insensitive
    assert await ids(q="%") == []  # a literal percent sign, not a wildcard
    assert await ids(status="closed") == [closed["id"]]
    assert await ids(teacher_id=str(teacher)) == [algebra["id"]]
    assert await ids(status="open", teacher_id=str(teacher), q="고1") == [algebra["id"]]
    r = await tenant.client.get(BASE, params={"status": "archived"}, headers=h)
    assert r.status_code == 400 or r.status_code == 422


async def test_cursor_pages_are_stable_and_complete(tenant):
    h = await tenant.headers()
    made = {str(i) for i in await bulk_lectures(tenant.id, 23)}
    for sort in ("title", "-title", "created_at", "-created_at"):
        seen = await all_pages(tenant.client, BASE, h, limit=10, sort=sort)
        ids = [i["id"] for i in seen]
        assert len(ids) == len(set(ids)) == 23 and set(ids) == made, sort
        if sort.endswith("title"):
            titles = [i["title"] for i in seen]
            assert titles == sorted(titles, reverse=sort == "-title")


async def test_bad_cursor_and_limit_are_field_errors(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    for url in (BASE, sessions_url(lecture), f"{BASE}/{lecture['id']}/roster"):
        r = await tenant.client.get(url, params={"cursor": "garbage"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor", url
        r = await tenant.client.get(url, params={"limit": 0}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit", url
    # A cursor of one list is refused by another (title/id vs seq).
    await bulk_lectures(tenant.id, 3)
    page = (await tenant.client.get(BASE, params={"limit": 1}, headers=h)).json()
    r = await tenant.client.get(
        sessions_url(lecture), params={"cursor": page["next_cursor"]}, headers=h
    )
    assert r.status_code == 422
    r = await tenant.client.get(
        BASE, params={"cursor": page["next_cursor"], "sort": "-created_at"}, headers=h
    )
    assert r.status_code == 422


async def test_delete_only_without_students_or_records(tenant):
    h = await tenant.headers()
    empty = await create_lecture(tenant, h)
    await generate_sessions(tenant, empty["id"], h)
    assert (await tenant.client.delete(f"{BASE}/{empty['id']}", headers=h)).status_code == 204
    assert_problem(await tenant.client.get(f"{BASE}/{empty['id']}", headers=h), 404)
    assert_problem(await tenant.client.delete(f"{BASE}/{empty['id']}", headers=h), 404)

    busy = await create_lecture(tenant, h)
    student = await create_student(tenant, h)
    await enrol(tenant, busy["id"], student["id"], h)
    r = await tenant.client.delete(f"{BASE}/{busy['id']}", headers=h)
    assert_problem(r, 409, "/problems/lecture-has-students")
    await tenant.client.delete(f"{enrollments_url(busy)}/{student['id']}", headers=h)
    # Dropped students only: nothing recorded yet, so it may go.
    assert (await tenant.client.delete(f"{BASE}/{busy['id']}", headers=h)).status_code == 204

    kept = await create_lecture(tenant, h)
    session = await add_session(tenant, kept["id"], h)
    await record_attendance(tenant.id, session["id"], student["id"])
    r = await tenant.client.delete(f"{BASE}/{kept['id']}", headers=h)
    assert_problem(r, 409, "/problems/lecture-has-records")
    assert (await tenant.client.get(f"{BASE}/{kept['id']}", headers=h)).status_code == 200


# --- sessions -------------------------------------------------------------------------


async def test_generate_numbers_sessions_in_date_order(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(
        tenant,
        h,
        schedule=[
            {"weekday": 2, "start": "16:00", "end": "17:30"},
            {"weekday": 0, "start": "18:00", "end": "19:00"},
            {"weekday": 0, "start": "16:00", "end": "17:30"},
        ],
        start_date="2026-03-02",
        end_date="2026-03-11",
    )
    assert await generate_sessions(tenant, lecture["id"], h) == {"created": 6, "existing": 0}
    sessions = (await tenant.client.get(sessions_url(lecture), headers=h)).json()["items"]
    assert [(s["seq"], s["date"], s["start_time"], s["end_time"]) for s in sessions] == [
        (1, "2026-03-02", "16:00", "17:30"),
        (2, "2026-03-02", "18:00", "19:00"),
        (3, "2026-03-04", "16:00", "17:30"),
        (4, "2026-03-09", "16:00", "17:30"),
        (5, "2026-03-09", "18:00", "19:00"),
        (6, "2026-03-11", "16:00", "17:30"),
    ]
    got = await tenant.client.get(f"{BASE}/{lecture['id']}", headers=h)
    assert got.json()["session_count"] == 6


async def test_regeneration_is_idempotent_and_keeps_edited_sessions(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    first = await generate_sessions(tenant, lecture["id"], h)
    assert first == {"created": DEFAULT_SESSION_COUNT, "existing": 0}
    again = await generate_sessions(tenant, lecture["id"], h)
    assert again == {"created": 0, "existing": DEFAULT_SESSION_COUNT}

    before = await all_pages(tenant.client, sessions_url(lecture), h)
    second = before[1]
    r = await tenant.client.patch(
        f"/api/v1/sessions/{second['id']}", json={"topic": "이차방정식"}, headers=h
    )
    assert r.status_code == 200 and r.json()["topic"] == "이차방정식"
    extra = await add_session(tenant, lecture["id"], h)
    assert extra["seq"] == DEFAULT_SESSION_COUNT + 1

    # One more week: only its two sessions are new, numbered after the hand-added one.
    r = await tenant.client.patch(
        f"{BASE}/{lecture['id']}", json={"end_date": "2026-04-05"}, headers=h
    )
    assert r.status_code == 200
    assert await generate_sessions(tenant, lecture["id"], h) == {
        "created": 2,
        "existing": DEFAULT_SESSION_COUNT,
    }
    after = await all_pages(tenant.client, sessions_url(lecture), h)
    assert [s["seq"] for s in after] == list(range(1, DEFAULT_SESSION_COUNT + 4))
    by_id = {s["id"]: s for s in after}
    for old in before:  # untouched: same numbers, same rows
        assert by_id[old["id"]]["seq"] == old["seq"]
    assert by_id[second["id"]]["topic"] == "이차방정식"
    assert [s["date"] for s in after[-2:]] == ["2026-03-30", "2026-04-01"]


async def test_generation_needs_dates_and_a_sane_range(tenant):
    h = await tenant.headers()
    undated = await create_lecture(tenant, h, start_date=None, end_date=None)
    r = await tenant.client.post(f"{sessions_url(undated)}/generate", headers=h)
    assert_problem(r, 409, "/problems/cannot-generate")
    assert {e["field"] for e in r.json()["errors"]} == {"start_date", "end_date"}

    decades = await create_lecture(tenant, h, end_date="2062-03-29")
    r = await tenant.client.post(f"{sessions_url(decades)}/generate", headers=h)
    assert_problem(r, 409, "/problems/cannot-generate")
    assert (await tenant.client.get(sessions_url(decades), headers=h)).json()["items"] == []

    no_slots = await create_lecture(tenant, h, schedule=[])
    assert await generate_sessions(tenant, no_slots["id"], h) == {"created": 0, "existing": 0}


async def test_concurrent_generations_create_each_session_once(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    results = await asyncio.gather(
        *(tenant.client.post(f"{sessions_url(lecture)}/generate", headers=h) for _ in range(4))
    )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sum(r.json()["created"] for r in results) == DEFAULT_SESSION_COUNT
    sessions = await all_pages(tenant.client, sessions_url(lecture), h)
    assert [s["seq"] for s in sessions] == list(range(1, DEFAULT_SESSION_COUNT + 1))


async def test_sessions_list_pages_by_number(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    await generate_sessions(tenant, lecture["id"], h)
    r = await tenant.client.get(sessions_url(lecture), params={"limit": 3}, headers=h)
    assert [s["seq"] for s in r.json()["items"]] == [1, 2, 3] and r.json()["next_cursor"]
    seen = await all_pages(tenant.client, sessions_url(lecture), h, limit=3)
    assert [s["seq"] for s in seen] == list(range(1, DEFAULT_SESSION_COUNT + 1))
    empty = await create_lecture(tenant, h)
    r = await tenant.client.get(sessions_url(empty), headers=h)
    assert r.status_code == 200 and r.json() == {"items": [], "limit": 50, "next_cursor": None}


async def test_session_validation_and_edit(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    r = await tenant.client.post(
        sessions_url(lecture),
        json={"date": "2026-05-01", "start_time": "25:00", "end_time": "9:00", "topic": "x" * 201},
        headers=h,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"start_time", "end_time", "topic"}
    r = await tenant.client.post(
        sessions_url(lecture),
        json={"date": "2026-05-01", "start_time": "11:00", "end_time": "10:00"},
        headers=h,
    )
    assert r.json()["errors"] == [{"field": "end_time", "message": "must be after start_time"}]

    session = await add_session(tenant, lecture["id"], h, start_time="10:00", end_time="11:00")
    assert session["seq"] == 1 and session["video_id"] is None
    url = f"/api/v1/sessions/{session['id']}"
    # Checked against the stored end time: 12:00 would start after it ends.
    r = await tenant.client.patch(url, json={"start_time": "12:00"}, headers=h)
    assert r.json()["errors"] == [{"field": "start_time", "message": "must be before end_time"}]
    video = str(uuid.uuid4())
    r = await tenant.client.patch(
        url,
        json={"date": "2026-05-02", "start_time": "12:00", "end_time": "13:30", "video_id": video},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["date"], body["start_time"], body["end_time"]) == ("2026-05-02", "12:00", "13:30")
    assert body["video_id"] == video and body["seq"] == 1 and body["topic"] == "보강"
    r = await tenant.client.patch(url, json={"start_time": None, "video_id": None}, headers=h)
    assert r.json()["start_time"] is None and r.json()["video_id"] is None
    assert (await tenant.client.get(url, headers=h)).json() == r.json()


async def test_session_delete_leaves_a_gap_and_spares_attendance(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    await generate_sessions(tenant, lecture["id"], h)
    sessions = await all_pages(tenant.client, sessions_url(lecture), h)
    url = f"/api/v1/sessions/{sessions[2]['id']}"
    assert (await tenant.client.delete(url, headers=h)).status_code == 204
    assert_problem(await tenant.client.get(url, headers=h), 404)
    left = await all_pages(tenant.client, sessions_url(lecture), h)
    assert 3 not in [s["seq"] for s in left] and len(left) == DEFAULT_SESSION_COUNT - 1
    assert (await add_session(tenant, lecture["id"], h))["seq"] == DEFAULT_SESSION_COUNT + 1

    student = await create_student(tenant, h)
    await record_attendance(tenant.id, sessions[0]["id"], student["id"])
    r = await tenant.client.delete(f"/api/v1/sessions/{sessions[0]['id']}", headers=h)
    assert_problem(r, 409, "/problems/session-has-attendance")


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


# --- roles ----------------------------------------------------------------------------


async def test_roles(tenant):
    owner = await tenant.headers()
    teacher = await tenant.headers(await tenant.add_user("teacher"), "password-123")
    staff = await tenant.headers(await tenant.add_user("staff"), "password-123")
    student_h = await tenant.headers(await tenant.add_user("student"), "password-123")
    parent_h = await tenant.headers(await tenant.add_user("parent"), "password-123")
    lecture = await create_lecture(tenant, owner)
    session = await add_session(tenant, lecture["id"], owner)
    student = await create_student(tenant, owner)
    session_url = f"/api/v1/sessions/{session['id']}"
    c = tenant.client

    # Staff (the office) writes lectures and enrollments.
    made = await c.post(BASE, json=lecture_payload(), headers=staff)
    assert made.status_code == 201
    r = await c.post(enrollments_url(lecture), json={"student_id": student["id"]}, headers=staff)
    assert r.status_code == 201

    # Teachers read everything and edit sessions, but write nothing else.
    reads = [
        BASE,
        f"{BASE}/{lecture['id']}",
        sessions_url(lecture),
        session_url,
        f"{BASE}/{lecture['id']}/roster",
        f"/api/v1/students/{student['id']}/lectures",
    ]
    for url in reads:
        assert (await c.get(url, headers=teacher)).status_code == 200, url
    r = await c.patch(session_url, json={"topic": "함수의 극한"}, headers=teacher)
    assert r.status_code == 200 and r.json()["topic"] == "함수의 극한"
    writes = [
        ("POST", BASE, lecture_payload()),
        ("PATCH", f"{BASE}/{lecture['id']}", {"title": "x"}),
        ("DELETE", f"{BASE}/{made.json()['id']}", None),
        ("POST", f"{sessions_url(lecture)}/generate", None),
        ("POST", sessions_url(lecture), {"date": "2026-05-01"}),
        ("DELETE", session_url, None),
        ("POST", enrollments_url(lecture), {"student_id": student["id"]}),
        ("DELETE", f"{enrollments_url(lecture)}/{student['id']}", None),
    ]
    for method, url, body in writes:
        r = await c.request(method, url, json=body, headers=teacher)
        assert_problem(r, 403, "/problems/forbidden")

    # Student and parent accounts see none of it.
    for headers in (student_h, parent_h):
        for url in reads:
            assert_problem(await c.get(url, headers=headers), 403, "/problems/forbidden")
        for method, url, body in [*writes, ("PATCH", session_url, {"topic": "x"})]:
            r = await c.request(method, url, json=body, headers=headers)
            assert r.status_code == 403, (method, url)
    assert_problem(await c.get(BASE), 401, "/problems/unauthenticated")


# --- query counts ---------------------------------------------------------------------


async def test_lecture_list_is_one_query_not_one_per_row(tenant, count_queries):
    rows = 50
    h = await tenant.headers()
    teacher = await user_id(await tenant.add_user("teacher"))
    lectures = await bulk_lectures(tenant.id, rows, teacher=teacher)
    students = await bulk_students(tenant.id, 3)
    for lecture in lectures:
        await bulk_enrollments(tenant.id, lecture, students)
    count_queries.count = 0
    r = await tenant.client.get(BASE, params={"limit": rows}, headers=h)
    assert r.status_code == 200 and len(r.json()["items"]) == rows
    assert all(i["enrolled_count"] == 3 and i["teacher_name"] for i in r.json()["items"])
    assert count_queries.count <= 2, count_queries.statements


async def test_roster_sessions_and_student_lectures_are_one_query(tenant, count_queries):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, end_date="2026-09-30")
    await generate_sessions(tenant, lecture["id"], h)
    students = await bulk_students(tenant.id, 60)
    await bulk_enrollments(tenant.id, lecture["id"], students)
    lecture_ids = await bulk_lectures(tenant.id, 50)
    for lid in lecture_ids:
        await bulk_enrollments(tenant.id, lid, students[:1])
    for url, expected in (
        (f"{BASE}/{lecture['id']}/roster", 50),
        (sessions_url(lecture), 50),
        (f"/api/v1/students/{students[0]}/lectures", 50),
    ):
        count_queries.count = 0
        r = await tenant.client.get(url, params={"limit": 50}, headers=h)
        assert r.status_code == 200 and len(r.json()["items"]) == expected, url
        assert count_queries.count <= 2, (url, count_queries.statements)


async def test_routes_are_in_the_openapi_schema(client):
    spec = (await client.get("/schema/openapi.json")).json()
    for path in (
        "/api/v1/lectures",
        "/api/v1/lectures/{lecture_id}",
        "/api/v1/lectures/{lecture_id}/sessions/generate",
        "/api/v1/sessions/{session_id}",
        "/api/v1/lectures/{lecture_id}/enrollments/{student_id}",
        "/api/v1/lectures/{lecture_id}/roster",
        "/api/v1/students/{student_id}/lectures",
    ):
        assert path in spec["paths"], path
