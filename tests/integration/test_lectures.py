"""Lectures over HTTP, against real Postgres: CRUD and validation, lists, deletes, roles
across the lectures API, query counts and the schema. Sessions are in test_sessions.py,
enrollments and rosters in test_enrollments.py."""

from __future__ import annotations

import uuid
from typing import Any

from tests.bola import assert_problem
from tests.factories import bulk_students, create_student
from tests.factories.lectures import LECTURES as BASE
from tests.factories.lectures import (
    add_session,
    all_pages,
    bulk_enrollments,
    bulk_lectures,
    create_lecture,
    enrol,
    enrollments_url,
    generate_sessions,
    lecture_payload,
    record_attendance,
    sessions_url,
    user_id,
)

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
    # The body's shape (the schema's rules) is checked first, every field of it.
    r = await tenant.client.post(
        BASE,
        json={
            "title": "  ",
            "capacity": 0,
            "schedule": [{"weekday": 7, "start": "9:00", "end": "10:00"}],
        },
        headers=h,
    )
    assert_problem(r, 422, "/problems/validation")
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert errors.keys() == {"title", "capacity", "schedule[0].weekday", "schedule[0].start"}
    assert errors["title"] == "must not be empty"
    r = await tenant.client.post(
        BASE, json={"title": "x", "schedule": [{"weekday": 1, "start": "9:00", "end": "10:00"}]},
        headers=h,
    )  # fmt: skip
    assert_problem(r, 422, "/problems/validation")
    assert r.json()["errors"] == [
        {"field": "schedule[0].start", "message": 'must be a time "HH:MM" between 00:00 and 23:59',
         "source": "body"}
    ]  # fmt: skip
    # Then the rules between fields and against the data, all of them at once.
    r = await tenant.client.post(
        BASE,
        json={
            "title": "x",
            "teacher_id": str(uuid.uuid4()),
            "schedule": [
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
    assert fields == {"teacher_id", "schedule[0].end", "schedule[2]", "end_date"}
    # Lengths are the body's own shape: refused, all of them, before the rules above run.
    r = await tenant.client.post(
        BASE, json={"title": "x" * 201, "subject": "가" * 101, "code": "X" * 33}, headers=h
    )
    assert_problem(r, 422, "/problems/validation")
    assert {e["field"] for e in r.json()["errors"]} == {"title", "subject", "code"}


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
    assert [e["field"] for e in r.json()["errors"]] == ["schedule"]
    assert "50" in r.json()["errors"][0]["message"]
    # The schema says so too, so a client is told before it asks.
    spec = (await tenant.client.get("/schema/openapi.json")).json()
    schedule = spec["components"]["schemas"]["LectureCreate"]["properties"]["schedule"]
    assert schedule["maxItems"] == 50
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


# --- roles ----------------------------------------------------------------------------


async def test_roles(tenant):
    owner = await tenant.headers()
    teacher_email = await tenant.add_user("teacher")
    teacher = await tenant.headers(teacher_email, "password-123")
    staff = await tenant.headers(await tenant.add_user("staff"), "password-123")
    student_h = await tenant.headers(await tenant.add_user("student"), "password-123")
    parent_h = await tenant.headers(await tenant.add_user("parent"), "password-123")
    # The lecture is the teacher's: a teacher reaches only the lectures they teach.
    lecture = await create_lecture(tenant, owner, teacher_id=str(await user_id(teacher_email)))
    session = await add_session(tenant, lecture["id"], owner)
    student = await create_student(tenant, owner)
    session_url = f"/api/v1/sessions/{session['id']}"
    c = tenant.client

    # Staff (the office) writes lectures and enrollments.
    made = await c.post(BASE, json=lecture_payload(), headers=staff)
    assert made.status_code == 201
    r = await c.post(enrollments_url(lecture), json={"student_id": student["id"]}, headers=staff)
    assert r.status_code == 201

    # Teachers read their lectures and edit their sessions, but write nothing else.
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
