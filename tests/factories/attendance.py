"""Lectures, sessions and enrollments for attendance tests, written straight through the
Piccolo models in the tenant's ``TenantScope`` (not through ``api/lectures.py``), plus
helpers that check attendance through the API under test.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from models.scope import TenantScope
from models.tables import Enrollment, EnrollmentStatus, Lecture, LectureSession
from tests.factories import bulk_students

_seq = itertools.count(1)

# Mondays, so the default weekly sessions fall on one weekday.
FIRST_DAY = dt.date(2026, 3, 2)


@dataclass
class Klass:
    """A lecture with its sessions and actively enrolled students (one 반)."""

    lecture: uuid.UUID
    sessions: list[uuid.UUID]
    dates: list[dt.date]
    students: list[uuid.UUID]


async def create_lecture(tenant: Any, **overrides: Any) -> uuid.UUID:
    n = next(_seq)
    values: dict[str, Any] = {"title": f"수학 {n}반", "subject": "수학", "status": "open"}
    values.update(overrides)
    row = TenantScope(tenant.id).new(Lecture, **values)
    await row.save()
    return uuid.UUID(str(row.id))


async def create_sessions(
    tenant: Any,
    lecture_id: uuid.UUID,
    count: int,
    *,
    first: dt.date = FIRST_DAY,
    every: dt.timedelta = dt.timedelta(days=7),
) -> tuple[list[uuid.UUID], list[dt.date]]:
    """``count`` sessions numbered 1.., one every ``every`` from ``first`` (one INSERT)."""
    scope = TenantScope(tenant.id)
    rows = [
        scope.new(
            LectureSession,
            lecture=lecture_id,
            seq=i + 1,
            date=first + every * i,
            topic=f"{i + 1}강",
        )
        for i in range(count)
    ]
    if rows:
        await LectureSession.insert(*rows)
    return [uuid.UUID(str(r.id)) for r in rows], [r.date for r in rows]


async def enroll(
    tenant: Any,
    lecture_id: uuid.UUID,
    student_ids: Sequence[uuid.UUID],
    *,
    status: EnrollmentStatus = EnrollmentStatus.active,
) -> None:
    scope = TenantScope(tenant.id)
    rows = [
        scope.new(
            Enrollment,
            lecture=lecture_id,
            student=s,
            status=status.value,
            dropped_at=dt.datetime.now(dt.UTC) if status == EnrollmentStatus.dropped else None,
        )
        for s in student_ids
    ]
    if rows:
        await Enrollment.insert(*rows)


async def create_class(
    tenant: Any, *, students: int = 3, sessions: int = 1, **lecture: Any
) -> Klass:
    """A lecture, ``sessions`` weekly sessions and ``students`` new students enrolled."""
    lecture_id = await create_lecture(tenant, **lecture)
    session_ids, dates = await create_sessions(tenant, lecture_id, sessions)
    student_ids = await bulk_students(tenant.id, students) if students else []
    await enroll(tenant, lecture_id, student_ids)
    return Klass(lecture_id, session_ids, dates, student_ids)


# --- through the API under test --------------------------------------------------------


REPORT = "/api/v1/attendance/report"
VALIDATION = "/problems/validation"

# Statuses to give a class's students in turn (``pattern_for``).
PATTERN = ["present", "present", "late", "absent", "excused", "present"]


def pattern_for(students: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    return {s: PATTERN[i % len(PATTERN)] for i, s in enumerate(students)}


def lecture_report_path(lecture_id: Any) -> str:
    return f"/api/v1/lectures/{lecture_id}/attendance/report"


def errors_of(response: Any) -> dict[str, str]:
    """The ``{field: message}`` of a 422 validation problem, asserting it is one."""
    # Imported here: tests.bola loads tests.bola_cases, which import this module.
    from tests.bola import assert_problem

    assert_problem(response, 422, VALIDATION)
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def sheet_path(session_id: Any) -> str:
    return f"/api/v1/sessions/{session_id}/attendance"


def check_path(session_id: Any, student_id: Any) -> str:
    return f"/api/v1/sessions/{session_id}/attendance/{student_id}"


async def check(
    tenant: Any,
    session_id: Any,
    student_id: Any,
    status: str,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    """One check, asserting it was accepted."""
    r = await tenant.client.put(
        check_path(session_id, student_id),
        json={"status": status, **body},
        headers=headers or await tenant.headers(),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def check_many(
    tenant: Any,
    session_id: Any,
    statuses: dict[uuid.UUID, str],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A bulk check of ``{student: status}``, asserting it was accepted; returns the sheet."""
    r = await tenant.client.put(
        sheet_path(session_id),
        json={"items": [{"student_id": str(s), "status": st} for s, st in statuses.items()]},
        headers=headers or await tenant.headers(),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def drop(tenant: Any, lecture_id: uuid.UUID, student_id: uuid.UUID) -> None:
    """End a student's enrollment, as the office does when a student leaves a class."""
    await (
        TenantScope(tenant.id)
        .update(
            Enrollment,
            {
                Enrollment.status: EnrollmentStatus.dropped.value,
                Enrollment.dropped_at: dt.datetime.now(dt.UTC),
            },
        )
        .where((Enrollment.lecture == lecture_id) & (Enrollment.student == student_id))
    )
