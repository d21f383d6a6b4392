"""Attendance reports over HTTP, against real Postgres: per student and per lecture, with
known numbers, date ranges, paging and parameter errors."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from tests.factories import create_student
from tests.factories.attendance import (
    REPORT,
    check_many,
    create_class,
    create_lecture,
    create_sessions,
    drop,
    enroll,
    errors_of,
    lecture_report_path,
    pattern_for,
)

# --- reports ---------------------------------------------------------------------------


async def _school(tenant: Any, h: dict[str, str]) -> dict[str, Any]:
    """Known numbers. Lecture A: 4 weekly sessions, students s1 s2 (and s4, dropped after
    being checked); lecture B: 2 sessions, students s1 s3.

        A   s1: present late    absent  -          s2: excused present present present
        B   s1: absent  absent                     s3: present -
    """
    a = await create_class(tenant, students=0, sessions=4, title="A반")
    b_lecture = await create_lecture(tenant, title="B반")
    b_sessions, b_dates = await create_sessions(tenant, b_lecture, 2)
    s1, s2, s3, s4 = [uuid.UUID((await create_student(tenant, h, name=n))["id"]) for n in (
        "가나다", "나다라", "다라마", "라마바"
    )]  # fmt: skip
    await enroll(tenant, a.lecture, [s1, s2, s4])
    await enroll(tenant, b_lecture, [s1, s3])
    sheet = [
        {s1: "present", s2: "excused", s4: "absent"},
        {s1: "late", s2: "present"},
        {s1: "absent", s2: "present"},
        {s2: "present"},
    ]
    for session, statuses in zip(a.sessions, sheet, strict=True):
        await check_many(tenant, session, statuses, h)
    await drop(tenant, a.lecture, s4)
    await check_many(tenant, b_sessions[0], {s1: "absent", s3: "present"}, h)
    await check_many(tenant, b_sessions[1], {s1: "absent"}, h)
    return {"a": a, "b": b_lecture, "b_dates": b_dates, "s": (s1, s2, s3, s4)}


def _row(sessions, present, late, absent, excused, unchecked, rate):
    return {
        "sessions": sessions,
        "present": present,
        "late": late,
        "absent": absent,
        "excused": excused,
        "unchecked": unchecked,
        "rate": rate,
    }


def _rows(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        i["student_id"]: {k: v for k, v in i.items() if k not in ("student_id", "name")}
        for i in page["items"]
    }


async def test_student_report_counts_known_numbers(tenant, count_queries):
    h = await tenant.headers()
    w = await _school(tenant, h)
    s1, s2, s3, _ = (str(s) for s in w["s"])
    a = w["a"]

    count_queries.count, count_queries.statements = 0, []
    r = await tenant.client.get(REPORT, headers=h)
    assert r.status_code == 200, r.text
    assert count_queries.count == 1, count_queries.statements
    assert [i["name"] for i in r.json()["items"]] == ["가나다", "나다라", "다라마"]  # s4 dropped
    assert _rows(r.json()) == {
        s1: _row(6, 1, 1, 3, 0, 1, 0.4),
        s2: _row(4, 3, 0, 0, 1, 0, 0.75),
        s3: _row(2, 1, 0, 0, 0, 1, 1.0),
    }

    r = await tenant.client.get(REPORT, params={"lecture_id": str(a.lecture)}, headers=h)
    assert _rows(r.json()) == {s1: _row(4, 1, 1, 1, 0, 1, 0.6667), s2: _row(4, 3, 0, 0, 1, 0, 0.75)}

    # Second and third weeks: A's sessions 2 and 3, B's session 2.
    params = {"from": a.dates[1].isoformat(), "to": a.dates[2].isoformat()}
    r = await tenant.client.get(REPORT, params=params, headers=h)
    assert _rows(r.json()) == {
        s1: _row(3, 0, 1, 2, 0, 0, 0.3333),
        s2: _row(2, 2, 0, 0, 0, 0, 1.0),
        s3: _row(1, 0, 0, 0, 0, 1, None),
    }

    # No session in range: enrolled students are still listed, with nothing to rate.
    later = (a.dates[-1] + dt.timedelta(days=1)).isoformat()
    r = await tenant.client.get(REPORT, params={"from": later}, headers=h)
    assert _rows(r.json()) == {s: _row(0, 0, 0, 0, 0, 0, None) for s in (s1, s2, s3)}


async def test_student_report_pages_with_a_cursor(tenant):
    h = await tenant.headers()
    k = await create_class(tenant, students=7)
    await check_many(tenant, k.sessions[0], pattern_for(k.students), h)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await tenant.client.get(REPORT, params=params, headers=h)).json()
        assert len(page["items"]) <= 3
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(i["student_id"] for i in seen) == sorted(str(s) for s in k.students)
    keys = [(i["name"], i["student_id"]) for i in seen]
    assert keys == sorted(keys)


async def test_report_parameter_errors(tenant):
    h = await tenant.headers()
    k = await create_class(tenant)
    bad_range = {"from": "2026-03-10", "to": "2026-03-01"}
    r = await tenant.client.get(REPORT, params=bad_range, headers=h)
    assert set(errors_of(r)) == {"to"}
    r = await tenant.client.get(lecture_report_path(k.lecture), params=bad_range, headers=h)
    assert set(errors_of(r)) == {"to"}
    r = await tenant.client.get(REPORT, params={"cursor": "garbage"}, headers=h)
    assert set(errors_of(r)) == {"cursor"}
    r = await tenant.client.get(REPORT, params={"from": "yesterday"}, headers=h)
    assert r.status_code == 422


async def test_lecture_report_summary_and_sessions(tenant, count_queries):
    h = await tenant.headers()
    w = await _school(tenant, h)
    a = w["a"]

    count_queries.count, count_queries.statements = 0, []
    r = await tenant.client.get(lecture_report_path(a.lecture), headers=h)
    assert r.status_code == 200, r.text
    assert count_queries.count == 2, count_queries.statements
    report = r.json()
    assert report["title"] == "A반" and report["from"] is None and report["to"] is None
    assert report["enrolled"] == 2 and report["session_count"] == 4  # s4 was dropped
    totals = {k: report[k] for k in ("present", "late", "absent", "excused", "unchecked")}
    assert totals == {"present": 4, "late": 1, "absent": 1, "excused": 1, "unchecked": 1}
    assert report["rate"] == round(5 / 7, 4)
    per_session = [
        (s["seq"], s["present"], s["late"], s["absent"], s["excused"], s["unchecked"], s["rate"])
        for s in report["sessions"]
    ]
    assert per_session == [
        (1, 1, 0, 0, 1, 0, 0.5),
        (2, 1, 1, 0, 0, 0, 1.0),
        (3, 1, 0, 1, 0, 0, 0.5),
        (4, 1, 0, 0, 0, 1, 1.0),
    ]
    assert [s["session_id"] for s in report["sessions"]] == [str(s) for s in a.sessions]

    # The same numbers as the per-student report of the lecture.
    students = (
        await tenant.client.get(REPORT, params={"lecture_id": str(a.lecture)}, headers=h)
    ).json()["items"]
    for key, total in totals.items():
        assert sum(i[key] for i in students) == total

    params = {"from": a.dates[1].isoformat(), "to": a.dates[2].isoformat()}
    report = (
        await tenant.client.get(lecture_report_path(a.lecture), params=params, headers=h)
    ).json()
    assert report["from"] == params["from"] and report["to"] == params["to"]
    assert report["session_count"] == 2 and report["rate"] == 0.75
    assert (report["present"], report["late"], report["absent"]) == (2, 1, 1)


async def test_lecture_report_without_sessions_or_students(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    r = await tenant.client.get(lecture_report_path(lecture), headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["enrolled"] == 0 and body["session_count"] == 0 and body["sessions"] == []
    assert body["rate"] is None
