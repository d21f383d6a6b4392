"""The student and parent app: ``/api/v1/me/...``.

A student account sees itself; a parent account sees the students linked to its guardian
record. Any other student id answers 404, exactly like an id that does not exist. Staff
accounts use the academy endpoints instead (403 here).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter

from api.auth import Principal, require_roles
from api.pagination import DEFAULT_LIMIT, check_limit
from api.students import Guardian, decode_guardians
from models.pages import Page, as_date, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Role
from models.tables import Student as StudentRow
from pipelines.korean import today_kst

require_family = require_roles(Role.student, Role.parent)

# The students this principal may see: $2 = the student account's student, $3 = the
# parent account's guardian. Used by every route below.
VISIBLE = """
    s.tenant = $1 AND s.deleted_at IS NULL AND (
        s.id = $2::uuid
        OR EXISTS (SELECT 1 FROM student_guardian sg
                   WHERE sg.student = s.id AND sg.guardian = $3::uuid))
"""


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


def _who(principal: Principal) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    return (
        principal.student_id if principal.role == Role.student else None,
        principal.guardian_id if principal.role == Role.parent else None,
    )


async def _check_visible(scope: TenantScope, principal: Principal, student_id: str) -> uuid.UUID:
    key = parse_id(StudentRow, student_id)
    row = await scope.fetchrow(
        f"SELECT s.id FROM student s WHERE {VISIBLE} AND s.id = $4", *_who(principal), key
    )
    if row is None:
        raise NotFoundInTenant(StudentRow, student_id)
    return key


# Same names as the attendance reports: ?from=&to= (inclusive).
DateFrom = Annotated[
    dt.date | None,
    QueryParameter(name="from", description="first date, inclusive (default: 31 days ago)"),
]
DateTo = Annotated[
    dt.date | None,
    QueryParameter(name="to", description="last date, inclusive (default: in 31 days)"),
]


def _range(date_from: dt.date | None, date_to: dt.date | None) -> tuple[dt.date, dt.date]:
    today = today_kst()
    return date_from or today - dt.timedelta(days=31), date_to or today + dt.timedelta(days=31)


async def _my_students(
    scope: TenantScope,
    principal: Principal,
    only: uuid.UUID | None = None,
    *,
    after: tuple[str, uuid.UUID] | None = None,
    limit: int | None = None,
) -> list[MyStudent]:
    after_name, after_id = after or (None, None)
    rows = await scope.fetch(
        f"""
        SELECT s.id, s.name, s.school, s.grade, s.status, s.guardians_json::text AS guardians
        FROM student s WHERE {VISIBLE} AND ($4::uuid IS NULL OR s.id = $4)
          AND ($5::text IS NULL OR (s.name, s.id) > ($5::text, $6::uuid))
        ORDER BY s.name, s.id
        LIMIT $7
        """,
        *_who(principal),
        only,
        after_name,
        after_id,
        limit,
    )
    return [MyStudent(**{**dict(r), "guardians": decode_guardians(r["guardians"])}) for r in rows]


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["me"]
    guards = [require_family]

    @get("/students", summary="The students this account may see")
    async def students(
        self,
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[MyStudent]:
        limit = check_limit(limit)
        after = decode_cursor_as(cursor, as_text, as_uuid)
        rows = await _my_students(tenant_scope, principal, after=after, limit=limit + 1)
        return page_of(rows, limit, lambda s: [s.name, str(s.id)])

    @get("/students/{student_id:str}", summary="One of my students")
    async def student(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> MyStudent:
        key = await _check_visible(tenant_scope, principal, student_id)
        found = await _my_students(tenant_scope, principal, only=key)
        if not found:
            raise NotFoundInTenant(StudentRow, student_id)  # raced a delete
        return found[0]

    @get("/students/{student_id:str}/lectures", summary="Lectures the student attends")
    async def lectures(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[MyLecture]:
        key = await _check_visible(tenant_scope, principal, student_id)
        limit = check_limit(limit)
        after_title, after_id = decode_cursor_as(cursor, as_text, as_uuid) or (None, None)
        rows = await tenant_scope.fetch(
            """
            SELECT l.id, l.title, l.subject, u.name AS teacher_name, l.schedule::text AS schedule,
                   l.start_date, l.end_date, l.status, e.enrolled_at
            FROM enrollment e
            JOIN lecture l ON l.id = e.lecture
            LEFT JOIN app_user u ON u.id = l.teacher
            WHERE e.tenant = $1 AND e.student = $2 AND e.status = 'active'
              AND ($3::text IS NULL OR (l.title, l.id) > ($3::text, $4::uuid))
            ORDER BY l.title, l.id
            LIMIT $5
            """,
            key,
            after_title,
            after_id,
            limit + 1,
        )
        return page_of(
            rows,
            limit,
            lambda r: [r["title"], str(r["id"])],
            lambda r: MyLecture(
                **{**dict(r), "schedule": msgspec.json.decode(r["schedule"] or "[]")}
            ),
        )

    @get("/students/{student_id:str}/sessions", summary="Sessions in a date range, with attendance")
    async def sessions(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[MySession]:
        key = await _check_visible(tenant_scope, principal, student_id)
        start, end = _range(date_from, date_to)
        limit = check_limit(limit)
        after_date, after_id = decode_cursor_as(cursor, as_date, as_uuid) or (None, None)
        rows = await tenant_scope.fetch(
            """
            SELECT ls.id, ls.lecture AS lecture_id, l.title AS lecture_title, ls.seq, ls.date,
                   ls.start_time, ls.end_time, ls.topic, a.status AS attendance, a.note
            FROM enrollment e
            JOIN lecture l ON l.id = e.lecture
            JOIN lecture_session ls ON ls.lecture = e.lecture
            LEFT JOIN attendance a ON a.session = ls.id AND a.student = e.student
            WHERE e.tenant = $1 AND e.student = $2 AND e.status = 'active'
              AND ls.date BETWEEN $3 AND $4
              AND ($5::date IS NULL OR (ls.date, ls.id) > ($5::date, $6::uuid))
            ORDER BY ls.date, ls.id
            LIMIT $7
            """,
            key,
            start,
            end,
            after_date,
            after_id,
            limit + 1,
        )
        return page_of(
            rows, limit, lambda r: [str(r["date"]), str(r["id"])], lambda r: MySession(**dict(r))
        )

    @get("/students/{student_id:str}/scores", summary="Exam scores, newest first (undated last)")
    async def scores(
        self,
        student_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[MyScore]:
        key = await _check_visible(tenant_scope, principal, student_id)
        limit = check_limit(limit)
        after_date, after_id = decode_cursor_as(cursor, as_date, as_uuid) or (None, None)
        rows = await tenant_scope.fetch(
            """
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
            WHERE ranked.student = $2
              AND ($3::date IS NULL OR (ranked.sort_date, ranked.exam_id) < ($3::date, $4::uuid))
            ORDER BY ranked.sort_date DESC, ranked.exam_id DESC
            LIMIT $5
            """,
            key,
            after_date,
            after_id,
            limit + 1,
        )
        return page_of(
            rows,
            limit,
            lambda r: [str(r["sort_date"]), str(r["exam_id"])],
            lambda r: MyScore(**{f: r[f] for f in MyScore.__struct_fields__}),
        )


CONTROLLERS: list[type[Controller]] = [MeController]
