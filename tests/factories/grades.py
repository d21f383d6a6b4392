"""Factories for exams and scores, and the lectures and enrollments they need.

Lectures and enrollments are rows made with the Piccolo models through ``TenantScope`` (the
lectures API is someone else's and may change); exams and scores go through the grades API,
as a teacher would enter them, except ``bulk_exams`` (straight into the database, for list
and query-count tests).
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from typing import Any

from tests.factories import bulk_students, create_student

_seq = itertools.count(1)

API = "/api/v1"


async def create_lecture(tenant: Any, **overrides: Any) -> uuid.UUID:
    from models.scope import TenantScope
    from models.tables import Lecture

    values: dict[str, Any] = {"title": f"수학 {next(_seq)}반", "subject": "수학", "status": "open"}
    values.update(overrides)
    row = TenantScope(tenant.id).new(Lecture, **values)
    await row.save()
    return uuid.UUID(str(row.id))


async def enroll(
    tenant: Any, lecture_id: Any, *student_ids: Any, status: str = "active"
) -> list[uuid.UUID]:
    """Enroll the students in the lecture (one INSERT for all of them)."""
    from models.scope import TenantScope
    from models.tables import Enrollment

    if not student_ids:
        return []
    scope = TenantScope(tenant.id)
    rows = [
        scope.new(Enrollment, student=uuid.UUID(str(s)), lecture=lecture_id, status=status)
        for s in student_ids
    ]
    await Enrollment.insert(*rows)
    return [uuid.UUID(str(r.id)) for r in rows]


def exam_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": f"{next(_seq)}회 모의고사",
        "date": "2026-03-15",
        "max_score": 100,
    }
    payload.update(overrides)
    return payload


async def create_exam(
    tenant: Any, lecture_id: Any, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """Through the API."""
    headers = headers or await tenant.headers()
    r = await tenant.client.post(
        f"/api/v1/lectures/{lecture_id}/exams", json=exam_payload(**overrides), headers=headers
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def class_with_students(
    tenant: Any, count: int, *, lecture_id: Any = None
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A lecture with ``count`` actively enrolled students (students made with COPY)."""
    lecture = lecture_id or await create_lecture(tenant)
    students = await bulk_students(tenant.id, count)
    await enroll(tenant, lecture, *students)
    return lecture, students


async def enrolled_student(
    tenant: Any, lecture_id: Any, headers: dict[str, str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """One student through the students API, enrolled in the lecture."""
    student = await create_student(tenant, headers, **overrides)
    await enroll(tenant, lecture_id, student["id"])
    return student


async def put_scores(
    tenant: Any,
    exam_id: Any,
    scores: dict[Any, float],
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Through the bulk API; asserts it succeeded."""
    headers = headers or await tenant.headers()
    r = await tenant.client.put(
        f"/api/v1/exams/{exam_id}/scores",
        json=[{"student_id": str(s), "score": v} for s, v in scores.items()],
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def scored_exam(
    tenant: Any, scores: list[float], headers: dict[str, str] | None = None, **exam: Any
) -> tuple[dict[str, Any], list[uuid.UUID]]:
    """A new lecture, one enrolled student per score, an exam and those scores (by API)."""
    headers = headers or await tenant.headers()
    lecture, students = await class_with_students(tenant, len(scores))
    created = await create_exam(tenant, lecture, headers, **exam)
    if scores:
        await put_scores(tenant, created["id"], dict(zip(students, scores, strict=True)), headers)
    return created, students


async def bulk_exams(
    tenant: Any,
    lecture_id: Any,
    students: list[uuid.UUID],
    count: int,
    *,
    start: dt.date = dt.date(2026, 1, 1),
) -> list[uuid.UUID]:
    """``count`` exams on consecutive days, each scored for every student (score varies by
    student and exam), straight into the database: two INSERTs."""
    from models.scope import TenantScope
    from models.tables import Exam, Score

    scope = TenantScope(tenant.id)
    exams = [
        scope.new(
            Exam,
            lecture=lecture_id,
            title=f"{i + 1}회 단원평가",
            date=start + dt.timedelta(days=i),
            max_score=Decimal(100),
        )
        for i in range(count)
    ]
    await Exam.insert(*exams)
    scores = [
        scope.new(
            Score,
            exam=e.id,
            student=s,
            score=Decimal((i * 7 + j * 13) % 101),
            source="manual",
        )
        for i, e in enumerate(exams)
        for j, s in enumerate(students)
    ]
    if scores:
        await Score.insert(*scores)
    return [uuid.UUID(str(e.id)) for e in exams]


# --- reading back through the API under test --------------------------------------------


async def score_audit(tenant: Any) -> list[dict[str, Any]]:
    """The tenant's audit rows of scores, oldest first."""
    from models.tables import AuditLog

    rows = (
        await AuditLog.select()
        .where((AuditLog.tenant == tenant.id) & (AuditLog.entity == "score"))
        .order_by(AuditLog.id)
    )
    return list(rows)


def field_errors(response: Any) -> list[str]:
    """The fields a 422 response names, in its order."""
    assert response.status_code == 422, response.text
    return [e["field"] for e in response.json()["errors"]]


async def exam_scores(tenant: Any, exam_id: Any, h: dict[str, str]) -> dict[str, Any]:
    """An exam's score list, asserting it was served."""
    r = await tenant.client.get(f"{API}/exams/{exam_id}/scores", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())
