"""What the Excel exports read: one query per sheet, in the order the sheet lists it."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import msgspec

from models.enrollments import ACTIVE
from models.scope import TenantScope
from models.tables import Exam as ExamTable
from models.tables import Lecture as LectureTable


class StudentLine(msgspec.Struct):
    """A live student, with their first guardian."""

    name: str
    phone: str | None
    school: str
    grade: str
    status: str
    birth_date: dt.date | None
    guardian_name: str | None
    guardian_phone: str | None
    enrollment_count: int
    created_at: dt.datetime


class RosterLine(msgspec.Struct):
    """An active enrollment of a lecture."""

    title: str
    name: str
    phone: str | None
    school: str
    grade: str
    guardian_phone: str | None
    source: str
    enrolled_at: dt.datetime


class AttendanceLine(msgspec.Struct):
    date: dt.date
    title: str
    seq: int
    name: str
    status: str
    note: str
    checked_at: dt.datetime | None


class ScoreLine(msgspec.Struct):
    title: str
    date: dt.date | None
    name: str
    school: str
    grade: str
    score: Decimal
    max_score: Decimal
    source: str
    updated_at: dt.datetime


class Titled(msgspec.Struct):
    """What an export's file name needs of the lecture or exam it is about."""

    id: uuid.UUID
    title: str


async def titled(scope: TenantScope, table: type[LectureTable | ExamTable], row_id: Any) -> Titled:
    """One of this academy's lectures or exams (``table``), or ``NotFoundInTenant``."""
    return await scope.one(
        Titled,
        table,
        f"SELECT id, title FROM {table._meta.tablename} WHERE tenant = $1 AND id = $2",
        row_id,
    )


async def student_lines(scope: TenantScope) -> list[StudentLine]:
    return await scope.rows(
        StudentLine,
        """
        SELECT s.name, s.phone, s.school, s.grade, s.status, s.birth_date,
               s.guardians_json->0->>'name' AS guardian_name,
               s.guardians_json->0->>'phone' AS guardian_phone,
               s.enrollment_count, s.created_at
        FROM student s WHERE s.tenant = $1 AND s.deleted_at IS NULL
        ORDER BY s.name, s.id
        """,
    )


async def roster_lines(scope: TenantScope, lecture_id: uuid.UUID) -> list[RosterLine]:
    return await scope.rows(
        RosterLine,
        f"""
        SELECT l.title, s.name, s.phone, s.school, s.grade,
               s.guardians_json->0->>'phone' AS guardian_phone, e.source, e.enrolled_at
        FROM enrollment e
        JOIN student s ON s.id = e.student
        JOIN lecture l ON l.id = e.lecture
        WHERE e.tenant = $1 AND e.lecture = $2 AND {ACTIVE}
        ORDER BY s.name, s.id
        """,
        lecture_id,
    )


async def attendance_lines(
    scope: TenantScope, date_from: dt.date, date_to: dt.date, lecture_id: uuid.UUID | None
) -> list[AttendanceLine]:
    """Every check in the date range (of one lecture, if given)."""
    return await scope.rows(
        AttendanceLine,
        """
        SELECT ls.date, l.title, ls.seq, s.name, a.status, a.note, a.checked_at
        FROM attendance a
        JOIN lecture_session ls ON ls.id = a.session
        JOIN lecture l ON l.id = ls.lecture
        JOIN student s ON s.id = a.student
        WHERE a.tenant = $1 AND ls.date BETWEEN $2 AND $3
          AND ($4::uuid IS NULL OR ls.lecture = $4)
        ORDER BY ls.date, l.title, ls.seq, s.name, s.id
        """,
        date_from,
        date_to,
        lecture_id,
    )


async def score_lines(scope: TenantScope, exam_id: uuid.UUID) -> list[ScoreLine]:
    return await scope.rows(
        ScoreLine,
        """
        SELECT x.title, x.date, s.name, s.school, s.grade, sc.score, x.max_score, sc.source,
               sc.updated_at
        FROM score sc
        JOIN exam x ON x.id = sc.exam
        JOIN student s ON s.id = sc.student
        WHERE sc.tenant = $1 AND sc.exam = $2 AND s.deleted_at IS NULL
        ORDER BY s.name, s.id
        """,
        exam_id,
    )
