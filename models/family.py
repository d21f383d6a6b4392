"""The family app (a student's or parent's own view): the query layer.

A ``Viewer`` is a student account (its student) or a parent account (its guardian record).
It sees only its students: any other student answers 404, exactly like an id that does not
exist.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import msgspec

from models.enrollments import ACTIVE
from models.pages import Page, Params, as_date, as_text, as_uuid, keyset, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.students import Guardian
from models.tables import Student as StudentTable


class Viewer(msgspec.Struct, frozen=True):
    """Who is looking: ``student_id`` for a student account, ``guardian_id`` for a parent
    account (the other one None)."""

    student_id: uuid.UUID | None
    guardian_id: uuid.UUID | None


class MyStudent(msgspec.Struct):
    id: uuid.UUID
    name: str
    school: str
    grade: str
    status: str
    guardians: list[Guardian]


class MyLecture(msgspec.Struct):
    id: uuid.UUID
    title: str
    subject: str
    teacher_name: str | None
    schedule: list[dict[str, Any]]
    start_date: dt.date | None
    end_date: dt.date | None
    status: str
    enrolled_at: dt.datetime


class MySession(msgspec.Struct):
    id: uuid.UUID
    lecture_id: uuid.UUID
    lecture_title: str
    seq: int
    date: dt.date
    start_time: dt.time | None
    end_time: dt.time | None
    topic: str
    attendance: str | None  # present | late | absent | excused | None (not checked)
    note: str | None


class MyScore(msgspec.Struct):
    exam_id: uuid.UUID
    exam_title: str
    lecture_title: str
    date: dt.date | None
    score: Decimal
    max_score: Decimal
    rank: int
    takers: int


# The students the viewer may see: $2 = the student account's student, $3 = the parent
# account's guardian (``_viewing`` supplies both). Every read here starts from it.
VISIBLE = """
    s.tenant = $1 AND s.deleted_at IS NULL AND (
        s.id = $2::uuid
        OR EXISTS (SELECT 1 FROM student_guardian sg
                   WHERE sg.student = s.id AND sg.guardian = $3::uuid))
"""
MY_STUDENT_SELECT = """
    SELECT s.id, s.name, s.school, s.grade, s.status, s.guardians_json AS guardians
    FROM student s
"""


def _viewing(viewer: Viewer) -> Params:
    return Params(viewer.student_id, viewer.guardian_id)


async def visible_student(scope: TenantScope, viewer: Viewer, student_id: Any) -> uuid.UUID:
    """The student's id when the viewer may see them; a 404 otherwise."""
    key = parse_id(StudentTable, student_id)
    arg = _viewing(viewer)
    if await scope.value(
        f"SELECT s.id FROM student s WHERE {VISIBLE} AND s.id = {arg(key)}", *arg.values
    ):
        return key
    raise NotFoundInTenant(StudentTable, student_id)


async def my_students(
    scope: TenantScope, viewer: Viewer, *, limit: int, cursor: str | None
) -> Page[MyStudent]:
    """The viewer's students, by name."""
    return await keyset_page(
        scope,
        MyStudent,
        select=MY_STUDENT_SELECT,
        where=[VISIBLE],
        params=_viewing(viewer),
        key=keyset(("s.name", as_text), ("s.id", as_uuid)),
        cursor=cursor,
        limit=limit,
    )


async def my_student(scope: TenantScope, viewer: Viewer, student_id: Any) -> MyStudent:
    """One of the viewer's students; a 404 for any other."""
    arg = _viewing(viewer)
    found = await scope.row(
        MyStudent,
        f"{MY_STUDENT_SELECT} WHERE {VISIBLE} AND s.id = {arg(parse_id(StudentTable, student_id))}",
        *arg.values,
    )
    if found is None:
        raise NotFoundInTenant(StudentTable, student_id)
    return found


async def lectures_attended(
    scope: TenantScope, student_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[MyLecture]:
    """The lectures a (visible) student is actively enrolled in, by title."""
    return await keyset_page(
        scope,
        MyLecture,
        select="""
            SELECT l.id, l.title, l.subject, u.name AS teacher_name, l.schedule,
                   l.start_date, l.end_date, l.status, e.enrolled_at
            FROM enrollment e
            JOIN student s ON s.id = e.student
            JOIN lecture l ON l.id = e.lecture
            LEFT JOIN app_user u ON u.id = l.teacher
        """,
        where=["e.tenant = $1", "e.student = $2", ACTIVE],
        params=Params(student_id),
        key=keyset(("l.title", as_text), ("l.id", as_uuid)),
        cursor=cursor,
        limit=limit,
    )


async def sessions_attended(
    scope: TenantScope,
    student_id: uuid.UUID,
    *,
    start: dt.date,
    end: dt.date,
    limit: int,
    cursor: str | None,
) -> Page[MySession]:
    """The sessions from ``start`` to ``end`` (inclusive) of a (visible) student's active
    lectures, with the student's attendance, by date."""
    arg = Params(student_id)
    return await keyset_page(
        scope,
        MySession,
        select="""
            SELECT ls.id, ls.lecture AS lecture_id, l.title AS lecture_title, ls.seq, ls.date,
                   ls.start_time, ls.end_time, ls.topic, a.status AS attendance, a.note
            FROM enrollment e
            JOIN student s ON s.id = e.student
            JOIN lecture l ON l.id = e.lecture
            JOIN lecture_session ls ON ls.lecture = e.lecture
            LEFT JOIN attendance a ON a.session = ls.id AND a.student = e.student
        """,
        where=[
            "e.tenant = $1",
            "e.student = $2",
            ACTIVE,
            f"ls.date BETWEEN {arg(start)} AND {arg(end)}",
        ],
        params=arg,
        key=keyset(("ls.date", as_date), ("ls.id", as_uuid)),
        cursor=cursor,
        limit=limit,
    )


async def scores_of(
    scope: TenantScope, student_id: uuid.UUID, *, limit: int, cursor: str | None
) -> Page[MyScore]:
    """A (visible) student's exam scores with their rank among the exam's takers (live
    students only), newest exam first, undated ones last."""
    return await keyset_page(
        scope,
        MyScore,
        select="""
            SELECT * FROM (
                SELECT x.id AS exam_id, x.title AS exam_title, l.title AS lecture_title, x.date,
                       COALESCE(x.date, DATE '0001-01-01') AS sort_date,
                       sc.score, x.max_score, sc.student,
                       rank() OVER (PARTITION BY sc.exam ORDER BY sc.score DESC)::int AS rank,
                       count(*) OVER (PARTITION BY sc.exam)::int AS takers
                FROM score sc
                JOIN student st ON st.id = sc.student AND st.deleted_at IS NULL
                JOIN exam x ON x.id = sc.exam
                JOIN lecture l ON l.id = x.lecture
                WHERE sc.tenant = $1
                  AND sc.exam IN (SELECT exam FROM score WHERE tenant = $1 AND student = $2)
            ) ranked
        """,
        where=["ranked.student = $2"],
        params=Params(student_id),
        key=keyset(("ranked.sort_date", as_date), ("ranked.exam_id", as_uuid), descending=True),
        cursor=cursor,
        limit=limit,
    )
