"""Attendance over HTTP, against real Postgres: single and bulk checks, the audit log, the
outbox, the sheet, roles and tenancy. Reports are in test_attendance_reports.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from typing import Any

from models.scope import TenantScope
from models.tables import Attendance, AuditLog, OutboxEvent, User
from tests.bola import NOT_FOUND_TYPE, assert_problem
from tests.factories import create_student
from tests.factories.attendance import (
    PATTERN,
    REPORT,
    check,
    check_many,
    check_path,
    create_class,
    drop,
    enroll,
    errors_of,
    lecture_report_path,
    pattern_for,
    sheet_path,
)


async def audit_rows(tenant: Any) -> list[dict[str, Any]]:
    rows = (
        await TenantScope(tenant.id)
        .select(AuditLog)
        .where(AuditLog.entity == "attendance")
        .order_by(AuditLog.id)
    )
    return list(rows)


async def events(tenant: Any) -> list[dict[str, Any]]:
    rows = await TenantScope(tenant.id).select(OutboxEvent).order_by(OutboxEvent.created_at)
    return list(rows)


async def my_id(tenant: Any, headers: dict[str, str]) -> str:
    r = await tenant.client.get("/api/v1/auth/me", headers=headers)
    return str(r.json()["id"])


# --- one check -------------------------------------------------------------------------


async def test_single_check_records_status_note_who_and_when(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    started = dt.datetime.now(dt.UTC)
    body = await check(tenant, k.sessions[0], k.students[0], "present", h, note="  일찍 옴 ")
    assert body["status"] == "present" and body["note"] == "일찍 옴"
    assert body["session_id"] == str(k.sessions[0]) and body["student_id"] == str(k.students[0])
    assert body["checked_by"] == await my_id(tenant, h)
    checked_at = dt.datetime.fromisoformat(body["checked_at"])
    assert started - dt.timedelta(seconds=5) <= checked_at <= dt.datetime.now(dt.UTC)


async def test_explicit_checked_at_is_kept(tenant):
    k = await create_class(tenant)
    at = "2026-03-02T09:05:00+09:00"
    body = await check(tenant, k.sessions[0], k.students[0], "late", checked_at=at)
    assert dt.datetime.fromisoformat(body["checked_at"]) == dt.datetime.fromisoformat(at)


async def test_single_check_lists_every_field_error(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    r = await tenant.client.put(
        check_path(k.sessions[0], k.students[0]),
        json={"status": "absent", "note": "x" * 501, "checked_at": future},
        headers=h,
    )
    assert set(errors_of(r)) == {"note"}  # the schema's (its length), checked first
    r = await tenant.client.put(
        check_path(k.sessions[0], k.students[0]),
        json={"status": "absent", "note": "x", "checked_at": future},
        headers=h,
    )
    assert set(errors_of(r)) == {"checked_at"}
    r = await tenant.client.put(
        check_path(k.sessions[0], k.students[0]), json={"status": "sleeping"}, headers=h
    )
    assert set(errors_of(r)) == {"status"}
    assert await audit_rows(tenant) == []


async def test_upsert_keeps_one_row_per_session_and_student(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    await check(tenant, k.sessions[0], k.students[0], "present", h)
    body = await check(tenant, k.sessions[0], k.students[0], "late", h, note="버스")
    assert body["status"] == "late" and body["note"] == "버스"
    rows = (
        await TenantScope(tenant.id)
        .select(Attendance)
        .where((Attendance.session == k.sessions[0]) & (Attendance.student == k.students[0]))
    )
    assert len(rows) == 1 and rows[0]["status"] == "late"


async def test_every_change_is_audited_with_before_and_after(tenant):
    h = await tenant.headers()
    me = await my_id(tenant, h)
    k = await create_class(tenant)
    await check(tenant, k.sessions[0], k.students[0], "absent", h, note="연락 없음")
    await check(tenant, k.sessions[0], k.students[0], "excused", h, note="병원")
    created, updated = await audit_rows(tenant)
    assert created["action"] == "create" and created["before"] is None
    assert created["after"]["status"] == "absent" and created["after"]["note"] == "연락 없음"
    assert created["after"]["session_id"] == str(k.sessions[0])
    assert created["after"]["student_id"] == str(k.students[0])
    assert updated["action"] == "update"
    assert updated["before"] == created["after"]
    assert updated["after"]["status"] == "excused" and updated["after"]["note"] == "병원"
    assert str(created["actor"]) == str(updated["actor"]) == me
    assert created["entity_id"] == updated["entity_id"]  # the attendance row


async def test_resubmit_of_the_same_check_writes_nothing(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    first = await check(tenant, k.sessions[0], k.students[0], "absent", h, note="감기")
    # The same status again, with the note omitted (kept) or repeated: no-ops.
    again = await check(tenant, k.sessions[0], k.students[0], "absent", h)
    await check(tenant, k.sessions[0], k.students[0], "absent", h, note="감기")
    assert again == first  # same note, same checked_at
    assert len(await audit_rows(tenant)) == 1
    assert len(await events(tenant)) == 1


async def test_note_edit_is_audited_but_keeps_time_and_emits_nothing_new(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    first = await check(tenant, k.sessions[0], k.students[0], "late", h)
    edited = await check(tenant, k.sessions[0], k.students[0], "late", h, note="지각 사유: 버스")
    assert edited["note"] == "지각 사유: 버스" and edited["checked_at"] == first["checked_at"]
    assert [a["action"] for a in await audit_rows(tenant)] == ["create", "update"]
    assert len(await events(tenant)) == 1


# --- the outbox ------------------------------------------------------------------------


async def test_absence_records_one_event_however_often_it_is_sent(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    session, student = k.sessions[0], k.students[0]
    await check(tenant, session, student, "absent", h, note="무단")
    await check(tenant, session, student, "absent", h, note="무단")
    (event,) = await events(tenant)
    assert event["kind"] == "attendance.absent"
    assert event["dedupe_key"] == f"attendance.absent:{session}:{student}"
    assert event["payload"] == {
        "session_id": str(session),
        "student_id": str(student),
        "lecture_id": str(k.lecture),
        "date": k.dates[0].isoformat(),
        "status": "absent",
        "note": "무단",
    }
    assert event["processed_at"] is None

    # absent -> present does not withdraw the event (messaging decides); absent again is
    # the same event (its dedupe key), not a second one.
    await check(tenant, session, student, "present", h)
    await check(tenant, session, student, "absent", h)
    assert [e["dedupe_key"] for e in await events(tenant)] == [event["dedupe_key"]]


async def test_lateness_records_a_late_event_and_presence_none(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=3)
    await check(tenant, k.sessions[0], k.students[0], "late", h)
    await check(tenant, k.sessions[0], k.students[1], "present", h)
    await check(tenant, k.sessions[0], k.students[2], "excused", h)
    (event,) = await events(tenant)
    assert event["kind"] == "attendance.late" and event["payload"]["status"] == "late"
    assert event["payload"]["student_id"] == str(k.students[0])


async def test_a_failed_check_records_no_event(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    outsider = (await create_student(tenant, h))["id"]
    r = await tenant.client.put(
        check_path(k.sessions[0], outsider), json={"status": "absent"}, headers=h
    )
    assert r.status_code == 422
    assert await events(tenant) == [] and await audit_rows(tenant) == []


# --- enrollment and tenancy ------------------------------------------------------------


async def test_student_not_actively_enrolled_is_a_field_error(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=2)
    other = await create_class(tenant, students=1)
    never = (await create_student(tenant, h))["id"]
    await drop(tenant, k.lecture, k.students[1])
    for student in (never, k.students[1], other.students[0]):
        r = await tenant.client.put(
            check_path(k.sessions[0], student), json={"status": "present"}, headers=h
        )
        assert errors_of(r) == {"student_id": "not actively enrolled in this session's lecture"}
    sheet = (await tenant.client.get(sheet_path(k.sessions[0]), headers=h)).json()
    assert [i["student_id"] for i in sheet["items"]] == [str(k.students[0])]
    assert sheet["items"][0]["check"] is None


async def test_session_or_student_of_another_tenant_is_404(make_tenant):
    a, b = await make_tenant(), await make_tenant()
    ha = await a.headers()
    ka, kb = await create_class(a), await create_class(b)
    cases = [
        (kb.sessions[0], ka.students[0], "lecture_session"),  # their session
        (ka.sessions[0], kb.students[0], "student"),  # their student
        (kb.sessions[0], kb.students[0], "lecture_session"),  # both theirs
        (uuid.uuid4(), ka.students[0], "lecture_session"),
        (ka.sessions[0], uuid.uuid4(), "student"),
        ("not-a-uuid", ka.students[0], "lecture_session"),
        (ka.sessions[0], "not-a-uuid", "student"),
    ]
    for session, student, table in cases:
        r = await a.client.put(check_path(session, student), json={"status": "absent"}, headers=ha)
        assert_problem(r, 404, NOT_FOUND_TYPE)
        assert r.json()["detail"].startswith(f"{table} "), r.json()
    r = await a.client.get(sheet_path(kb.sessions[0]), headers=ha)
    assert_problem(r, 404, NOT_FOUND_TYPE)
    r = await a.client.put(sheet_path(kb.sessions[0]), json={"items": []}, headers=ha)
    assert_problem(r, 404, NOT_FOUND_TYPE)
    # In a bulk, another academy's student is just "not enrolled" (nothing to probe).
    r = await a.client.put(
        sheet_path(ka.sessions[0]),
        json={"items": [{"student_id": str(kb.students[0]), "status": "absent"}]},
        headers=ha,
    )
    assert set(errors_of(r)) == {"items[0].student_id"}
    # Nothing of b's changed.
    assert await audit_rows(b) == [] and await events(b) == []
    assert await audit_rows(a) == []


async def test_soft_deleted_student_cannot_be_checked_and_leaves_the_sheet(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=2)
    gone = k.students[1]
    assert (await tenant.client.delete(f"/api/v1/students/{gone}", headers=h)).status_code == 204
    r = await tenant.client.put(
        check_path(k.sessions[0], gone), json={"status": "absent"}, headers=h
    )
    assert_problem(r, 404, NOT_FOUND_TYPE)
    sheet = (await tenant.client.get(sheet_path(k.sessions[0]), headers=h)).json()
    assert [i["student_id"] for i in sheet["items"]] == [str(k.students[0])]


# --- bulk ------------------------------------------------------------------------------


async def test_bulk_checks_thirty_students_in_one_request(tenant):
    h = await tenant.headers()
    me = await my_id(tenant, h)
    k = await create_class(tenant, students=30)
    wanted = pattern_for(k.students)
    sheet = await check_many(tenant, k.sessions[0], wanted, h)

    assert sheet["session_id"] == str(k.sessions[0]) and sheet["lecture_id"] == str(k.lecture)
    assert sheet["date"] == k.dates[0].isoformat() and sheet["seq"] == 1
    assert len(sheet["items"]) == 30
    got = {i["student_id"]: i["check"] for i in sheet["items"]}
    assert {s: c["status"] for s, c in got.items()} == {str(s): v for s, v in wanted.items()}
    assert {c["checked_by"] for c in got.values()} == {me}
    names = [i["name"] for i in sheet["items"]]
    assert names == sorted(names)
    expected_counts = {st: list(wanted.values()).count(st) for st in PATTERN}
    assert sheet["counts"] == {**expected_counts, "unchecked": 0}

    audit = await audit_rows(tenant)
    assert len(audit) == 30 and {a["action"] for a in audit} == {"create"}
    assert {a["after"]["student_id"]: a["after"]["status"] for a in audit} == {
        str(s): v for s, v in wanted.items()
    }
    assert {str(a["actor"]) for a in audit} == {me}
    kinds = sorted(e["kind"] for e in await events(tenant))
    assert kinds == sorted(f"attendance.{v}" for v in wanted.values() if v in ("absent", "late"))


async def test_bulk_retry_records_each_event_once_and_audits_nothing_new(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=12)
    wanted = pattern_for(k.students)
    first = await check_many(tenant, k.sessions[0], wanted, h)
    audit, outbox = await audit_rows(tenant), await events(tenant)
    retried = await check_many(tenant, k.sessions[0], wanted, h)
    assert retried == first
    assert await audit_rows(tenant) == audit
    assert await events(tenant) == outbox
    absent = sum(1 for v in wanted.values() if v == "absent")
    assert sum(1 for e in outbox if e["kind"] == "attendance.absent") == absent


async def test_bulk_writes_only_what_changes(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=3)
    s0, s1, s2 = k.students
    await check(tenant, k.sessions[0], s0, "present", h)
    await check(tenant, k.sessions[0], s1, "absent", h, note="감기")
    sheet = await check_many(tenant, k.sessions[0], {s0: "present", s1: "absent", s2: "late"}, h)
    audit = await audit_rows(tenant)
    assert [(a["action"], a["after"]["student_id"]) for a in audit[2:]] == [("create", str(s2))]
    notes = {i["student_id"]: i["check"]["note"] for i in sheet["items"]}
    assert notes[str(s1)] == "감기"  # a bulk row without a note keeps the note
    r = await tenant.client.put(
        sheet_path(k.sessions[0]),
        json={"items": [{"student_id": str(s1), "status": "excused", "note": "병원 진료"}]},
        headers=h,
    )
    assert r.status_code == 200
    last = (await audit_rows(tenant))[-1]
    assert last["action"] == "update"
    assert last["before"]["status"] == "absent" and last["before"]["note"] == "감기"
    assert last["after"]["status"] == "excused" and last["after"]["note"] == "병원 진료"


async def test_bulk_lists_every_bad_row_and_writes_nothing(make_tenant):
    tenant, other = await make_tenant(), await make_tenant()
    h = await tenant.headers()
    k = await create_class(tenant, students=4)
    outsider = (await create_student(tenant, h))["id"]
    foreign = (await create_class(other, students=1)).students[0]
    # The rows' shape (the schema's: an id, a status) is checked first, every row of it.
    shape = [
        {"student_id": str(k.students[0]), "status": "absent"},  # 0: fine
        {"student_id": str(k.students[1]), "status": "sleeping"},  # 1: bad status
        {"student_id": "not-a-uuid", "status": "present"},  # 2: bad id
        {"student_id": "", "status": ""},  # 3: two errors
        {"student_id": str(k.students[3]), "status": "present", "note": "x" * 501},  # 4
    ]
    r = await tenant.client.put(sheet_path(k.sessions[0]), json={"items": shape}, headers=h)
    assert [e["field"] for e in r.json()["errors"]] == [
        "items[1].status",
        "items[2].student_id",
        "items[3].student_id",
        "items[3].status",
        "items[4].note",
    ]
    items = [
        {"student_id": str(k.students[0]), "status": "absent"},  # 0: fine
        {"student_id": str(k.students[1]), "status": "present"},  # 1: fine
        {"student_id": str(k.students[2]), "status": "late"},  # 2: fine
        {"student_id": str(k.students[0]), "status": "late"},  # 3: listed twice
        {"student_id": outsider, "status": "present"},  # 4: not enrolled
        {"student_id": str(foreign), "status": "present"},  # 5: another academy's
    ]
    r = await tenant.client.put(sheet_path(k.sessions[0]), json={"items": items}, headers=h)
    errors = r.json()["errors"]
    assert [e["field"] for e in errors] == [
        "items[3].student_id",
        "items[4].student_id",
        "items[5].student_id",
    ]
    assert errors_of(r)["items[3].student_id"] == "listed twice"
    assert errors_of(r)["items[4].student_id"] == errors_of(r)["items[5].student_id"]
    sheet = (await tenant.client.get(sheet_path(k.sessions[0]), headers=h)).json()
    assert all(i["check"] is None for i in sheet["items"])
    assert await audit_rows(tenant) == [] and await events(tenant) == []


async def test_bulk_body_shape_errors(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    r = await tenant.client.put(
        sheet_path(k.sessions[0]), json={"items": [{"status": "present"}]}, headers=h
    )
    assert r.status_code == 422
    r = await tenant.client.put(sheet_path(k.sessions[0]), json={"rows": []}, headers=h)
    assert r.status_code == 422


async def test_bulk_issues_the_same_statements_for_30_and_50_students(tenant, count_queries):
    h = await tenant.headers()
    small, large = await create_class(tenant, students=30), await create_class(tenant, students=50)
    # A token's first request looks its account up; the ones after are served from memory.
    assert (await tenant.client.get("/api/v1/auth/me", headers=h)).status_code == 200
    counts = []
    for k in (small, large):
        count_queries.count, count_queries.statements = 0, []
        await check_many(tenant, k.sessions[0], pattern_for(k.students), h)
        counts.append(count_queries.count)
    assert counts[0] == counts[1], count_queries.statements
    # BEGIN, the session lock, the sheet with its checks, the write, COMMIT.
    assert counts[0] <= 5, count_queries.statements
    # A retry (nothing changes) costs no more.
    count_queries.count, count_queries.statements = 0, []
    await check_many(tenant, large.sessions[0], pattern_for(large.students), h)
    assert count_queries.count <= counts[1], count_queries.statements


async def test_concurrent_checks_of_one_student_keep_the_audit_chain(tenant):
    """Checks of one session serialise on its lock: each audit row's "before"
    is the previous row's "after", and there is exactly one "create"."""
    h = await tenant.headers()
    k = await create_class(tenant)
    statuses = ["present", "absent", "late", "excused", "present", "absent", "late", "excused"]
    responses = await asyncio.gather(
        *(
            tenant.client.put(
                check_path(k.sessions[0], k.students[0]), json={"status": s}, headers=h
            )
            for s in statuses
        )
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    audit = await audit_rows(tenant)
    assert [a["action"] for a in audit].count("create") == 1 and audit[0]["action"] == "create"
    for previous, row in itertools.pairwise(audit):
        assert row["before"] == previous["after"]
    sheet = (await tenant.client.get(sheet_path(k.sessions[0]), headers=h)).json()
    (mine,) = [i for i in sheet["items"] if i["student_id"] == str(k.students[0])]
    assert mine["check"]["status"] == audit[-1]["after"]["status"]


# --- the sheet -------------------------------------------------------------------------


async def test_sheet_lists_active_enrollees_with_check_or_null_in_one_query(tenant, count_queries):
    h = await tenant.headers()
    k = await create_class(tenant, students=4)
    dropped = (await create_student(tenant, h))["id"]
    await enroll(tenant, k.lecture, [uuid.UUID(dropped)])
    await check(tenant, k.sessions[0], dropped, "absent", h)
    await drop(tenant, k.lecture, uuid.UUID(dropped))
    await check(tenant, k.sessions[0], k.students[0], "late", h, note="10분")

    count_queries.count, count_queries.statements = 0, []
    r = await tenant.client.get(sheet_path(k.sessions[0]), headers=h)
    assert count_queries.count == 1, count_queries.statements
    sheet = r.json()
    assert {i["student_id"] for i in sheet["items"]} == {str(s) for s in k.students}
    by_id = {i["student_id"]: i for i in sheet["items"]}
    assert by_id[str(k.students[0])]["check"]["status"] == "late"
    assert by_id[str(k.students[0])]["check"]["note"] == "10분"
    assert all(by_id[str(s)]["check"] is None for s in k.students[1:])
    assert sheet["counts"] == {"present": 0, "late": 1, "absent": 0, "excused": 0, "unchecked": 3}
    assert sheet["topic"] == "1강" and sheet["lecture_title"].startswith("수학")


async def test_sheet_of_a_session_without_students_is_empty(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=0)
    r = await tenant.client.get(sheet_path(k.sessions[0]), headers=h)
    assert r.status_code == 200 and r.json()["items"] == []
    assert r.json()["counts"]["unchecked"] == 0


# --- roles -----------------------------------------------------------------------------


async def test_staff_roles_check_and_read_students_and_parents_cannot(tenant):
    emails = {role: await tenant.add_user(role) for role in ("admin", "teacher", "staff")}
    # A teacher checks the lectures they teach (test_teacher_scope.py: only those).
    teacher = await User.select(User.id).where(User.email == emails["teacher"]).first()
    k = await create_class(tenant, students=2, sessions=1, teacher=teacher["id"])
    session, student = k.sessions[0], k.students[0]
    for role in ("admin", "teacher", "staff"):
        h = await tenant.headers(emails[role], "password-123")
        await check(tenant, session, student, "present" if role != "teacher" else "late", h)
        assert (await tenant.client.get(sheet_path(session), headers=h)).status_code == 200
        await check_many(tenant, session, {student: "present"}, h)
        assert (await tenant.client.get(REPORT, headers=h)).status_code == 200
        r = await tenant.client.get(lecture_report_path(k.lecture), headers=h)
        assert r.status_code == 200
    for role in ("student", "parent"):
        h = await tenant.headers(await tenant.add_user(role), "password-123")
        requests = [
            tenant.client.put(check_path(session, student), json={"status": "absent"}, headers=h),
            tenant.client.put(sheet_path(session), json={"items": []}, headers=h),
            tenant.client.get(sheet_path(session), headers=h),
            tenant.client.get(REPORT, headers=h),
            tenant.client.get(lecture_report_path(k.lecture), headers=h),
        ]
        for request in requests:
            assert_problem(await request, 403, "/problems/forbidden")
    r = await tenant.client.get(sheet_path(session))
    assert_problem(r, 401, "/problems/unauthenticated")
