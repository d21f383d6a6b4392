"""Lectures (강의), their sessions (회차) and enrollments.

* ``/api/v1/lectures``: CRUD, with filters, cursor pages and ``enrolled_count`` per row.
* ``/api/v1/lectures/{id}/sessions[/generate]`` and ``/api/v1/sessions/{id}``: sessions,
  generated from the weekly schedule (idempotently) or added and edited one by one.
* ``/api/v1/lectures/{id}/enrollments``, ``.../roster`` and ``/api/v1/students/{id}/lectures``.

Roles: every staff role reads. Owner, admin and staff (the office) write lectures, sessions
and enrollments; teachers may also edit a session (topic, times, video) of any lecture.
Student and parent tokens get 403 everywhere here.

"Active enrollment" means ``status = 'active'`` of a student who is not soft-deleted, in
every count here (``enrolled_count``, the capacity check, the delete guard) and in the
roster, so the numbers a client sees always agree with the roster it shows.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import transaction
from models.enrollments import Enrollment, enrol_many, lock_lecture
from models.lectures import lecture_exists
from models.pages import Page, as_datetime, as_int, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import EnrollmentSource, EnrollmentStatus, LectureStatus, Role
from models.tables import Lecture as LectureRow
from models.tables import LectureSession as SessionRow
from models.tables import Student as StudentRow
from pipelines.korean import clean_text
from pipelines.schedule import (
    count_occurrences,
    format_hhmm,
    occurrences,
    parse_hhmm,
    parse_schedule,
    plan_generation,
)

require_office = require_roles(Role.owner, Role.admin, Role.staff)

# Who may be a lecture's teacher.
TEACHER_ROLES = frozenset({Role.teacher.value, Role.owner.value, Role.admin.value})
MAX_CAPACITY = 10_000
MAX_SLOTS = 50  # a week of classes, generously; also bounds the pairwise overlap check
# One generation creates at most this many sessions: a year of a daily class fits, a
# mistyped end date (2062 for 2026) is refused before it writes thousands of rows.
MAX_GENERATED_SESSIONS = 500

# Active enrollments of live students, for the lecture aliased ``l``.
ACTIVE_COUNT = """(
    SELECT count(*) FROM enrollment e JOIN student s ON s.id = e.student
    WHERE e.lecture = l.id AND e.status = 'active' AND s.deleted_at IS NULL)"""


# --- schemas ---------------------------------------------------------------------------


class Slot(msgspec.Struct, forbid_unknown_fields=True):
    """A weekly slot: ``weekday`` 0 (Mon) .. 6 (Sun), ``start``/``end`` as ``"HH:MM"``."""

    weekday: int
    start: str
    end: str


class LectureCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    subject: str = ""
    code: str | None = None  # unique in the academy when given
    teacher_id: uuid.UUID | None = None  # a teacher, owner or admin of this academy
    capacity: int | None = None  # None: no limit
    schedule: list[Slot] = []
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    status: LectureStatus = LectureStatus.planned


class LectureUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``schedule``, when present, replaces the list."""

    title: str | msgspec.UnsetType = msgspec.UNSET
    subject: str | msgspec.UnsetType = msgspec.UNSET
    code: str | msgspec.UnsetType | None = msgspec.UNSET
    teacher_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    capacity: int | msgspec.UnsetType | None = msgspec.UNSET
    schedule: list[Slot] | msgspec.UnsetType = msgspec.UNSET
    start_date: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    end_date: dt.date | msgspec.UnsetType | None = msgspec.UNSET
    status: LectureStatus | msgspec.UnsetType = msgspec.UNSET


class Lecture(msgspec.Struct):
    id: uuid.UUID
    code: str | None
    title: str
    subject: str
    teacher_id: uuid.UUID | None
    teacher_name: str | None
    capacity: int | None
    schedule: list[Slot]
    start_date: dt.date | None
    end_date: dt.date | None
    status: str
    enrolled_count: int
    session_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    date: dt.date
    start_time: str | None = None  # "HH:MM"
    end_time: str | None = None
    topic: str = ""
    video_id: uuid.UUID | None = None


class SessionUpdate(msgspec.Struct, forbid_unknown_fields=True):
    date: dt.date | msgspec.UnsetType = msgspec.UNSET
    start_time: str | msgspec.UnsetType | None = msgspec.UNSET
    end_time: str | msgspec.UnsetType | None = msgspec.UNSET
    topic: str | msgspec.UnsetType = msgspec.UNSET
    video_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET


class Session(msgspec.Struct):
    id: uuid.UUID
    lecture_id: uuid.UUID
    seq: int
    date: dt.date
    start_time: str | None
    end_time: str | None
    topic: str
    video_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class GenerateResult(msgspec.Struct):
    created: int
    existing: int


class EnrollmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    student_id: uuid.UUID
    source: EnrollmentSource = EnrollmentSource.manual


class RosterEntry(msgspec.Struct):
    student_id: uuid.UUID
    name: str
    phone: str | None
    school: str
    grade: str
    student_status: str
    enrollment_id: uuid.UUID
    source: str
    enrolled_at: dt.datetime


class StudentLecture(msgspec.Struct):
    lecture_id: uuid.UUID
    title: str
    subject: str
    code: str | None
    teacher_name: str | None
    lecture_status: str
    status: str  # the enrollment's: active | dropped
    source: str
    enrolled_at: dt.datetime
    dropped_at: dt.datetime | None


# --- shared helpers --------------------------------------------------------------------


def _hhmm(value: dt.time | None) -> str | None:
    return None if value is None else format_hhmm(value)


def _after(cursor: str | None, kind: Literal["text", "time", "int"]) -> tuple[Any, ...] | None:
    """Decode a keyset cursor: (sort value, id), or (seq,) for ``kind="int"``."""
    if kind == "int":
        return decode_cursor_as(cursor, as_int)
    return decode_cursor_as(cursor, as_datetime if kind == "time" else as_text, as_uuid)


def _clean_bounded(
    value: str, field: str, limit: int, errors: list[dict[str, Any]], *, required: bool = False
) -> str:
    text = clean_text(value)
    if required and not text:
        errors.append({"field": field, "message": "must not be empty"})
    elif len(text) > limit:
        errors.append({"field": field, "message": f"at most {limit} characters"})
    return text


def _fail(errors: list[dict[str, Any]]) -> None:
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)


async def _lock_lecture(scope: TenantScope, lecture_id: Any) -> asyncpg.Record:
    """Lock the lecture row for the rest of the caller's transaction (``transaction()``
    must be open). Every write that depends on the lecture's enrollments or session numbers
    takes this lock first, so those writes run one after another per lecture."""
    key = parse_id(LectureRow, lecture_id)
    row = await scope.fetchrow(
        "SELECT id, capacity, status, schedule, start_date, end_date FROM lecture "
        "WHERE tenant = $1 AND id = $2 FOR UPDATE",
        key,
    )
    if row is None:
        raise NotFoundInTenant(LectureRow, lecture_id)
    return row


async def _active_count(scope: TenantScope, lecture_id: uuid.UUID) -> int:
    row = await scope.fetchrow(
        f"SELECT {ACTIVE_COUNT} AS n FROM lecture l WHERE l.tenant = $1 AND l.id = $2",
        lecture_id,
    )
    return int(row["n"]) if row else 0


# --- lectures: queries -----------------------------------------------------------------

LECTURE_COLUMNS = f"""
    l.id, l.code, l.title, l.subject, l.teacher AS teacher_id, u.name AS teacher_name,
    l.capacity, l.schedule, l.start_date, l.end_date, l.status, l.created_at, l.updated_at,
    {ACTIVE_COUNT} AS enrolled_count,
    (SELECT count(*) FROM lecture_session ls WHERE ls.lecture = l.id) AS session_count
"""
LECTURE_FROM = "lecture l LEFT JOIN app_user u ON u.id = l.teacher AND u.tenant = l.tenant"

LECTURE_SORTS: dict[str, tuple[str, str, Literal["text", "time"]]] = {
    # name: (column, direction, cursor kind)
    "title": ("title", "ASC", "text"),
    "-title": ("title", "DESC", "text"),
    "created_at": ("created_at", "ASC", "time"),
    "-created_at": ("created_at", "DESC", "time"),
}
LectureSort = Literal["title", "-title", "created_at", "-created_at"]


def _to_lecture(row: Any) -> Lecture:
    return Lecture(
        id=row["id"],
        code=row["code"],
        title=row["title"],
        subject=row["subject"],
        teacher_id=row["teacher_id"],
        teacher_name=row["teacher_name"],
        capacity=row["capacity"],
        schedule=msgspec.convert(row["schedule"] or [], list[Slot]),
        start_date=row["start_date"],
        end_date=row["end_date"],
        status=row["status"],
        enrolled_count=row["enrolled_count"],
        session_count=row["session_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def load_lecture(scope: TenantScope, lecture_id: Any) -> Lecture:
    row = await scope.fetchrow(
        f"SELECT {LECTURE_COLUMNS} FROM {LECTURE_FROM} WHERE l.tenant = $1 AND l.id = $2",
        parse_id(LectureRow, lecture_id),
    )
    if row is None:
        raise NotFoundInTenant(LectureRow, lecture_id)
    return _to_lecture(row)


async def list_lectures(
    scope: TenantScope,
    *,
    q: str | None,
    status: str | None,
    teacher_id: uuid.UUID | None,
    sort: str,
    limit: int,
    cursor: str | None,
) -> Page[Lecture]:
    """One query per page: counts and the teacher's name come from the same statement."""
    column, direction, kind = LECTURE_SORTS[sort]
    args: list[Any] = []
    where = ["l.tenant = $1"]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args) + 1}"

    if q and (text := clean_text(q)):
        like = arg("%" + text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%")
        where.append(f"(l.title ILIKE {like} OR l.subject ILIKE {like} OR l.code ILIKE {like})")
    if status:
        where.append(f"l.status = {arg(status)}")
    if teacher_id:
        where.append(f"l.teacher = {arg(teacher_id)}")
    after = _after(cursor, kind)
    if after is not None:
        op = ">" if direction == "ASC" else "<"
        where.append(f"(l.{column}, l.id) {op} ({arg(after[0])}, {arg(after[1])})")
    rows = await scope.fetch(
        f"SELECT {LECTURE_COLUMNS} FROM {LECTURE_FROM} WHERE {' AND '.join(where)} "
        f"ORDER BY l.{column} {direction}, l.id {direction} LIMIT {arg(limit + 1)}",
        *args,
    )
    return page_of(rows, limit, lambda r: [r[column], str(r["id"])], _to_lecture)


# --- lectures: writes ------------------------------------------------------------------


async def _validate_lecture(
    scope: TenantScope, data: LectureCreate | LectureUpdate, current: Lecture | None
) -> dict[str, Any]:
    """Clean and check every field given (``current``: the lecture a PATCH changes); one
    422 lists all the problems. Returns column values for the ``lecture`` table."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.title is not msgspec.UNSET:
        values["title"] = _clean_bounded(data.title, "title", 200, errors, required=True)
    if data.subject is not msgspec.UNSET:
        values["subject"] = _clean_bounded(data.subject, "subject", 100, errors)
    if data.code is not msgspec.UNSET:
        # An empty code is no code: the unique index only covers codes that are set.
        values["code"] = _clean_bounded(data.code or "", "code", 32, errors) or None
    if data.teacher_id is not msgspec.UNSET:
        if data.teacher_id is not None:
            user = await scope.fetchrow(
                "SELECT role, is_active FROM app_user WHERE tenant = $1 AND id = $2",
                data.teacher_id,
            )
            # One message for "no such user", "another academy's user" and "not a teacher".
            if user is None or user["role"] not in TEACHER_ROLES or not user["is_active"]:
                errors.append({"field": "teacher_id", "message": "not a teacher of this academy"})
        values["teacher"] = data.teacher_id
    if data.capacity is not msgspec.UNSET:
        if data.capacity is not None and not 1 <= data.capacity <= MAX_CAPACITY:
            errors.append(
                {
                    "field": "capacity",
                    "message": f"must be between 1 and {MAX_CAPACITY} (or null: no limit)",
                }
            )
        values["capacity"] = data.capacity
    if data.schedule is not msgspec.UNSET and len(data.schedule) > MAX_SLOTS:
        errors.append({"field": "schedule", "message": f"at most {MAX_SLOTS} weekly slots"})
    elif data.schedule is not msgspec.UNSET:
        slots, problems = parse_schedule((s.weekday, s.start, s.end) for s in data.schedule)
        errors += [{"field": f"schedule{p.path}", "message": p.message} for p in problems]
        values["schedule"] = json.dumps(
            [
                {"weekday": s.weekday, "start": format_hhmm(s.start), "end": format_hhmm(s.end)}
                for s in sorted(slots)
            ]
        )
    if data.start_date is not msgspec.UNSET:
        values["start_date"] = data.start_date
    if data.end_date is not msgspec.UNSET:
        values["end_date"] = data.end_date
    start = values.get("start_date", current.start_date if current else None)
    end = values.get("end_date", current.end_date if current else None)
    if start is not None and end is not None and end < start:
        field = "end_date" if "end_date" in values else "start_date"
        other = "start_date" if field == "end_date" else "end_date"
        relation = "on or after" if field == "end_date" else "on or before"
        errors.append({"field": field, "message": f"must be {relation} {other}"})
    if data.status is not msgspec.UNSET:
        values["status"] = LectureStatus(data.status).value
    _fail(errors)
    return values


def _code_taken() -> Problem:
    return Problem(
        409,
        "another lecture of this academy already uses this code",
        type_="/problems/lecture-code-taken",
        errors=[{"field": "code", "message": "already used by another lecture"}],
    )


def _is_code_conflict(exc: asyncpg.UniqueViolationError) -> bool:
    return getattr(exc, "constraint_name", None) == "lecture_tenant_code_uniq"


# --- sessions --------------------------------------------------------------------------

SESSION_COLUMNS = """
    ls.id, ls.lecture AS lecture_id, ls.seq, ls.date, ls.start_time, ls.end_time, ls.topic,
    ls.video_id, ls.created_at, ls.updated_at
"""


def _to_session(row: Any) -> Session:
    return Session(
        id=row["id"],
        lecture_id=row["lecture_id"],
        seq=row["seq"],
        date=row["date"],
        start_time=_hhmm(row["start_time"]),
        end_time=_hhmm(row["end_time"]),
        topic=row["topic"],
        video_id=row["video_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def load_session(scope: TenantScope, session_id: Any, *, lock: bool = False) -> Session:
    row = await scope.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM lecture_session ls WHERE ls.tenant = $1 AND ls.id = $2"
        + (" FOR UPDATE" if lock else ""),
        parse_id(SessionRow, session_id),
    )
    if row is None:
        raise NotFoundInTenant(SessionRow, session_id)
    return _to_session(row)


def _validate_session(
    data: SessionCreate | SessionUpdate, current: Session | None
) -> dict[str, Any]:
    """Check every field given; times are "HH:MM" (null or "" clears one). The end must
    come after the start, the stored value standing in for one a PATCH leaves out."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.date is not msgspec.UNSET:
        values["date"] = data.date
    for field in ("start_time", "end_time"):
        raw = getattr(data, field)
        if raw is msgspec.UNSET:
            continue
        try:
            values[field] = None if raw in (None, "") else parse_hhmm(raw)
        except ValueError as exc:
            errors.append({"field": field, "message": str(exc)})
    if data.topic is not msgspec.UNSET:
        values["topic"] = _clean_bounded(data.topic, "topic", 200, errors)
    if data.video_id is not msgspec.UNSET:
        values["video_id"] = data.video_id
    if not any(e["field"] in ("start_time", "end_time") for e in errors):
        start = values.get("start_time", _parse_optional(current.start_time if current else None))
        end = values.get("end_time", _parse_optional(current.end_time if current else None))
        if start is not None and end is not None and end <= start:
            field = "end_time" if "end_time" in values else "start_time"
            message = (
                "must be after start_time" if field == "end_time" else "must be before end_time"
            )
            errors.append({"field": field, "message": message})
    _fail(errors)
    return values


def _parse_optional(text: str | None) -> dt.time | None:
    return None if text is None else parse_hhmm(text)


# --- enrollments -----------------------------------------------------------------------

ENROLLMENT_COLUMNS = (
    "id, lecture AS lecture_id, student AS student_id, status, source, enrolled_at, dropped_at"
)


def _to_enrollment(row: Any) -> Enrollment:
    return Enrollment(
        id=row["id"],
        lecture_id=row["lecture_id"],
        student_id=row["student_id"],
        status=row["status"],
        source=row["source"],
        enrolled_at=row["enrolled_at"],
        dropped_at=row["dropped_at"],
    )


# --- routes: lectures ------------------------------------------------------------------


class LectureController(Controller):
    path = "/api/v1/lectures"
    tags = ["lectures"]
    guards = [require_staff]

    @get("/", summary="Lectures: filter, search, sort, cursor pages")
    async def list(
        self,
        tenant_scope: NamedDependency[TenantScope],
        q: FromQuery[str | None] = None,
        status: FromQuery[LectureStatus | None] = None,
        teacher_id: FromQuery[uuid.UUID | None] = None,
        sort: FromQuery[LectureSort] = "title",
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Lecture]:
        """``q`` matches title, subject or code (substring, case-insensitive)."""
        return await list_lectures(
            tenant_scope,
            q=q,
            status=status.value if status else None,
            teacher_id=teacher_id,
            sort=sort,
            limit=check_limit(limit),
            cursor=cursor,
        )

    @post("/", status_code=HTTP_201_CREATED, guards=[require_office], summary="Create a lecture")
    async def create(
        self, data: JSONBody[LectureCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Lecture:
        """A taken ``code`` is a 409 ``/problems/lecture-code-taken``."""
        values = await _validate_lecture(tenant_scope, data, None)
        row = tenant_scope.new(LectureRow, **values)
        try:
            await row.save()
        except asyncpg.UniqueViolationError as exc:
            if _is_code_conflict(exc):
                raise _code_taken() from None
            raise
        return await load_lecture(tenant_scope, row.id)

    @get("/{lecture_id:str}", summary="One lecture")
    async def get_one(
        self, lecture_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Lecture:
        return await load_lecture(tenant_scope, lecture_id)

    @patch("/{lecture_id:str}", guards=[require_office], summary="Change some fields")
    async def update(
        self,
        lecture_id: FromPath[str],
        data: JSONBody[LectureUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Lecture:
        """Lowering ``capacity`` below the active enrollments is a 409
        ``/problems/capacity-below-enrolled``: drop students first. Changing the schedule
        or dates does not touch existing sessions; generate again to add the new ones."""
        current = await load_lecture(tenant_scope, lecture_id)
        values = await _validate_lecture(tenant_scope, data, current)
        try:
            async with transaction():
                await _lock_lecture(tenant_scope, current.id)
                capacity = values.get("capacity")
                if capacity is not None:
                    # Under the lecture lock: no enrolment can slip in between.
                    active = await _active_count(tenant_scope, current.id)
                    if active > capacity:
                        raise Problem(
                            409,
                            f"{active} students are enrolled; capacity cannot be {capacity}",
                            type_="/problems/capacity-below-enrolled",
                            errors=[
                                {"field": "capacity", "message": f"below the {active} enrolled"}
                            ],
                        )
                if values:
                    cols = {getattr(LectureRow, k): v for k, v in values.items()}
                    cols[LectureRow.updated_at] = dt.datetime.now(dt.UTC)
                    await tenant_scope.update(LectureRow, cols).where(LectureRow.id == current.id)
        except asyncpg.UniqueViolationError as exc:
            if _is_code_conflict(exc):
                raise _code_taken() from None
            raise
        return await load_lecture(tenant_scope, current.id)

    @delete("/{lecture_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_office],
            summary="Delete a lecture that has no students and no records")  # fmt: skip
    async def remove(
        self, lecture_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        """A hard delete: the lecture, its sessions and its dropped enrollments go.

        Refused with a 409 while the lecture has active enrollments
        (``/problems/lecture-has-students``: drop them first), and also once attendance or
        exams were recorded for it (``/problems/lecture-has-records``): the foreign keys
        cascade, so deleting would silently erase that history. Close such a lecture
        instead (``PATCH {"status": "closed"}``).
        """
        async with transaction():
            # The lock keeps an enrolment from landing between the check and the delete.
            locked = await _lock_lecture(tenant_scope, lecture_id)
            row = await tenant_scope.fetchrow(
                f"""
                SELECT {ACTIVE_COUNT} AS active,
                       EXISTS (SELECT 1 FROM attendance a
                                 JOIN lecture_session ls ON ls.id = a.session
                                WHERE a.tenant = $1 AND ls.lecture = l.id) AS attendance,
                       EXISTS (SELECT 1 FROM exam x
                                WHERE x.tenant = $1 AND x.lecture = l.id) AS exams
                FROM lecture l WHERE l.tenant = $1 AND l.id = $2
                """,
                locked["id"],
            )
            assert row is not None  # locked above
            if row["active"]:
                raise Problem(
                    409,
                    f"the lecture has {row['active']} active enrollment(s); drop them first",
                    type_="/problems/lecture-has-students",
                )
            if row["attendance"] or row["exams"]:
                raise Problem(
                    409,
                    "the lecture has attendance or exam records; close it instead",
                    type_="/problems/lecture-has-records",
                )
            await tenant_scope.delete(LectureRow).where(LectureRow.id == locked["id"])


# --- routes: sessions ------------------------------------------------------------------


class SessionController(Controller):
    path = "/api/v1"
    tags = ["lectures"]
    guards = [require_staff]

    @post("/lectures/{lecture_id:str}/sessions/generate", status_code=HTTP_200_OK,
          guards=[require_office],
          summary="Create the sessions the weekly schedule gives (idempotent)")  # fmt: skip
    async def generate(
        self, lecture_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> GenerateResult:
        """One session per schedule slot per week from ``start_date`` to ``end_date``
        (inclusive). Running it again creates only what is missing, matching existing
        sessions by (date, start time); it never renumbers, changes or deletes a session,
        so sessions added by a later run are numbered after the highest number in use.

        A lecture without ``start_date``/``end_date`` (or whose range gives more than
        ``MAX_GENERATED_SESSIONS`` sessions) is a 409 ``/problems/cannot-generate``.
        """
        async with transaction():
            # Locked so two generations (or a hand-added session) cannot take one number.
            lecture = await _lock_lecture(tenant_scope, lecture_id)
            start, end = lecture["start_date"], lecture["end_date"]
            missing = [
                {"field": name, "message": "required to generate sessions"}
                for name, value in (("start_date", start), ("end_date", end))
                if value is None
            ]
            if missing:
                raise Problem(
                    409,
                    "set the lecture's start_date and end_date first",
                    type_="/problems/cannot-generate",
                    errors=missing,
                )
            stored = msgspec.convert(lecture["schedule"] or [], list[Slot])
            slots, _ = parse_schedule((s.weekday, s.start, s.end) for s in stored)
            total = count_occurrences(slots, start, end)
            if total > MAX_GENERATED_SESSIONS:
                raise Problem(
                    409,
                    f"the schedule gives {total} sessions from {start} to {end}; "
                    f"at most {MAX_GENERATED_SESSIONS} are generated at once",
                    type_="/problems/cannot-generate",
                    errors=[{"field": "end_date", "message": "range too long"}],
                )
            have = await tenant_scope.fetch(
                "SELECT date, start_time, seq FROM lecture_session "
                "WHERE tenant = $1 AND lecture = $2",
                lecture["id"],
            )
            plan = plan_generation(
                occurrences(slots, start, end),
                {(r["date"], r["start_time"]) for r in have},
                max((r["seq"] for r in have), default=0) + 1,
            )
            if plan.create:
                await tenant_scope.fetch(
                    """
                    INSERT INTO lecture_session
                        (id, tenant, lecture, seq, date, start_time, end_time, topic,
                         created_at, updated_at)
                    SELECT gen_random_uuid(), $1, $2, n.seq, n.date, n.start_time, n.end_time,
                           '', now(), now()
                    FROM unnest($3::int[], $4::date[], $5::time[], $6::time[])
                         AS n(seq, date, start_time, end_time)
                    """,
                    lecture["id"],
                    [seq for seq, _ in plan.create],
                    [o.date for _, o in plan.create],
                    [o.start for _, o in plan.create],
                    [o.end for _, o in plan.create],
                )
        return GenerateResult(created=len(plan.create), existing=plan.existing)

    @get("/lectures/{lecture_id:str}/sessions", summary="A lecture's sessions, by number")
    async def list_sessions(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Session]:
        limit = check_limit(limit)
        after = _after(cursor, "int")
        # One statement: the lecture row tells "no such lecture" (404) from "no sessions".
        rows = await tenant_scope.fetch(
            f"""
            SELECT r.* FROM lecture l
            LEFT JOIN LATERAL (
                SELECT {SESSION_COLUMNS} FROM lecture_session ls
                WHERE ls.lecture = l.id AND ls.seq > $3
                ORDER BY ls.seq LIMIT $4
            ) r ON true
            WHERE l.tenant = $1 AND l.id = $2
            """,
            parse_id(LectureRow, lecture_id),
            after[0] if after else 0,
            limit + 1,
        )
        if not rows:
            raise NotFoundInTenant(LectureRow, lecture_id)
        rows = [r for r in rows if r["id"] is not None]
        return page_of(rows, limit, lambda r: [r["seq"]], _to_session)

    @post("/lectures/{lecture_id:str}/sessions", status_code=HTTP_201_CREATED,
          guards=[require_office], summary="Add one session by hand (the next number)")  # fmt: skip
    async def add_session(
        self,
        lecture_id: FromPath[str],
        data: JSONBody[SessionCreate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Session:
        """The date need not follow the schedule or the lecture's dates (보강, make-up
        classes, often fall outside both)."""
        async with transaction():
            # Locked so two additions (or a generation) cannot take the same number; and
            # the 404 comes before any 422, so another academy's ids cannot be probed.
            key = (await _lock_lecture(tenant_scope, lecture_id))["id"]
            values = _validate_session(data, None)
            row = await tenant_scope.fetchrow(
                """
                INSERT INTO lecture_session
                    (id, tenant, lecture, seq, date, start_time, end_time, topic, video_id,
                     created_at, updated_at)
                SELECT gen_random_uuid(), $1, $2, COALESCE(max(seq), 0) + 1, $3, $4, $5, $6, $7,
                       now(), now()
                FROM lecture_session WHERE tenant = $1 AND lecture = $2
                RETURNING id
                """,
                key,
                values["date"],
                values.get("start_time"),
                values.get("end_time"),
                values.get("topic", ""),
                values.get("video_id"),
            )
        assert row is not None
        return await load_session(tenant_scope, row["id"])

    @get("/sessions/{session_id:str}", summary="One session")
    async def get_session(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Session:
        return await load_session(tenant_scope, session_id)

    @patch("/sessions/{session_id:str}",
           summary="Edit a session (date, times, topic, video); teachers too")  # fmt: skip
    async def update_session(
        self,
        session_id: FromPath[str],
        data: JSONBody[SessionUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Session:
        """The number (``seq``) never changes. Moving a session to another date or time
        means a later generation no longer recognises it (see ``generate``)."""
        async with transaction():
            # Locked so the start/end check sees the times it is about to combine with.
            current = await load_session(tenant_scope, session_id, lock=True)
            values = _validate_session(data, current)
            if values:
                cols = {getattr(SessionRow, k): v for k, v in values.items()}
                cols[SessionRow.updated_at] = dt.datetime.now(dt.UTC)
                await tenant_scope.update(SessionRow, cols).where(SessionRow.id == current.id)
        return await load_session(tenant_scope, current.id)

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT,
            guards=[require_office], summary="Delete a session without attendance")  # fmt: skip
    async def delete_session(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        """The other sessions keep their numbers (a gap is left). A session with attendance
        is a 409 ``/problems/session-has-attendance``: deleting it would cascade to the
        attendance records."""
        async with transaction():
            current = await load_session(tenant_scope, session_id, lock=True)
            has_attendance = await tenant_scope.fetchrow(
                "SELECT 1 FROM attendance WHERE tenant = $1 AND session = $2 LIMIT 1", current.id
            )
            if has_attendance is not None:
                raise Problem(
                    409,
                    "attendance was recorded for this session",
                    type_="/problems/session-has-attendance",
                )
            await tenant_scope.delete(SessionRow).where(SessionRow.id == current.id)


# --- routes: enrollments ---------------------------------------------------------------


class EnrollmentController(Controller):
    path = "/api/v1"
    tags = ["lectures"]
    guards = [require_staff]

    @post("/lectures/{lecture_id:str}/enrollments", guards=[require_office],
          summary="Enrol a student (capacity-checked; re-enrolling reactivates)")  # fmt: skip
    async def enrol(
        self,
        lecture_id: FromPath[str],
        data: JSONBody[EnrollmentCreate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Response[Enrollment]:
        """201 with the enrollment when it was created or a dropped one reactivated (same
        row, new ``enrolled_at``); 200 when the student was already active (nothing
        changes). A full lecture is a 409 ``/problems/lecture-full``, a closed one a 409
        ``/problems/lecture-closed``. A student that does not exist here (deleted, or of
        another academy) is a 422 on ``student_id``.

        Capacity holds under concurrency: the lecture row is locked (``FOR UPDATE``) before
        counting, so concurrent enrolments in one lecture run one at a time.
        """
        async with transaction():
            lecture = await lock_lecture(tenant_scope, lecture_id)
            (outcome,) = await enrol_many(
                tenant_scope, [(data.student_id, lecture.id)], source=data.source.value
            )
        if outcome.result == "no_student":
            raise field_error("student_id", "no such student")
        if outcome.result == "closed":
            raise Problem(409, "the lecture is closed", type_="/problems/lecture-closed")
        if outcome.result == "full":
            raise Problem(
                409,
                f"the lecture is full ({lecture.active} of {lecture.capacity})",
                type_="/problems/lecture-full",
                title="Lecture full",
                capacity=lecture.capacity,
                enrolled=lecture.active,
            )
        assert outcome.enrollment is not None
        status = HTTP_200_OK if outcome.result == "already" else HTTP_201_CREATED
        return Response(outcome.enrollment, status_code=status)

    @delete("/lectures/{lecture_id:str}/enrollments/{student_id:str}",
            status_code=HTTP_204_NO_CONTENT, guards=[require_office],
            summary="Drop a student from a lecture")  # fmt: skip
    async def drop(
        self,
        lecture_id: FromPath[str],
        student_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
    ) -> None:
        """Marks the enrollment dropped (``dropped_at`` set); the row stays, as history and
        for a later re-enrolment. Dropping an already dropped student changes nothing; a
        student never enrolled in the lecture is a 404."""
        lecture_key = await lecture_exists(tenant_scope, lecture_id)
        student_key = parse_id(StudentRow, student_id)
        rows = await tenant_scope.fetch(
            """
            WITH target AS (
                SELECT id, status FROM enrollment
                WHERE tenant = $1 AND lecture = $2 AND student = $3
            ), dropped AS (
                UPDATE enrollment e SET status = 'dropped', dropped_at = now()
                FROM target WHERE e.id = target.id AND target.status = 'active'
                RETURNING e.id
            )
            SELECT id FROM target
            """,
            lecture_key,
            student_key,
        )
        if not rows:
            raise Problem(404, f"student {student_id} is not enrolled in this lecture")

    @get("/lectures/{lecture_id:str}/roster",
         summary="A lecture's active students, by name")  # fmt: skip
    async def roster(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[RosterEntry]:
        """One statement per page. Soft-deleted students are left out."""
        limit = check_limit(limit)
        after = _after(cursor, "text")
        args: list[Any] = [parse_id(LectureRow, lecture_id)]
        keyset = ""
        if after is not None:
            args += [after[0], after[1]]
            keyset = "AND (s.name, s.id) > ($3, $4)"
        args.append(limit + 1)
        rows = await tenant_scope.fetch(
            f"""
            SELECT r.* FROM lecture l
            LEFT JOIN LATERAL (
                SELECT s.id AS student_id, s.name, s.phone, s.school, s.grade,
                       s.status AS student_status, e.id AS enrollment_id, e.source,
                       e.enrolled_at
                FROM enrollment e JOIN student s ON s.id = e.student
                WHERE e.lecture = l.id AND e.status = 'active' AND s.deleted_at IS NULL
                      {keyset}
                ORDER BY s.name, s.id LIMIT ${len(args) + 1}
            ) r ON true
            WHERE l.tenant = $1 AND l.id = $2
            """,
            *args,
        )
        if not rows:
            raise NotFoundInTenant(LectureRow, lecture_id)
        rows = [r for r in rows if r["student_id"] is not None]
        return page_of(
            rows,
            limit,
            lambda r: [r["name"], str(r["student_id"])],
            lambda r: RosterEntry(
                student_id=r["student_id"],
                name=r["name"],
                phone=r["phone"],
                school=r["school"],
                grade=r["grade"],
                student_status=r["student_status"],
                enrollment_id=r["enrollment_id"],
                source=r["source"],
                enrolled_at=r["enrolled_at"],
            ),
        )

    @get("/students/{student_id:str}/lectures",
         summary="A student's lectures with the enrollment's status")  # fmt: skip
    async def student_lectures(
        self,
        student_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        status: FromQuery[EnrollmentStatus | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[StudentLecture]:
        """Active and dropped enrollments (``status`` filters), by lecture title. One
        statement per page; a soft-deleted student is a 404, as in ``/students/{id}``."""
        limit = check_limit(limit)
        after = _after(cursor, "text")
        args: list[Any] = [parse_id(StudentRow, student_id)]
        extra = ""
        if status is not None:
            args.append(status.value)
            extra += f" AND e.status = ${len(args) + 1}"
        if after is not None:
            args += [after[0], after[1]]
            extra += f" AND (l.title, l.id) > (${len(args)}, ${len(args) + 1})"
        args.append(limit + 1)
        rows = await tenant_scope.fetch(
            f"""
            SELECT r.* FROM student s
            LEFT JOIN LATERAL (
                SELECT l.id AS lecture_id, l.title, l.subject, l.code, u.name AS teacher_name,
                       l.status AS lecture_status, e.status, e.source, e.enrolled_at,
                       e.dropped_at
                FROM enrollment e
                JOIN lecture l ON l.id = e.lecture
                LEFT JOIN app_user u ON u.id = l.teacher AND u.tenant = l.tenant
                WHERE e.student = s.id {extra}
                ORDER BY l.title, l.id LIMIT ${len(args) + 1}
            ) r ON true
            WHERE s.tenant = $1 AND s.id = $2 AND s.deleted_at IS NULL
            """,
            *args,
        )
        if not rows:
            raise NotFoundInTenant(StudentRow, student_id)
        rows = [r for r in rows if r["lecture_id"] is not None]
        return page_of(
            rows,
            limit,
            lambda r: [r["title"], str(r["lecture_id"])],
            lambda r: StudentLecture(
                lecture_id=r["lecture_id"],
                title=r["title"],
                subject=r["subject"],
                code=r["code"],
                teacher_name=r["teacher_name"],
                lecture_status=r["lecture_status"],
                status=r["status"],
                source=r["source"],
                enrolled_at=r["enrolled_at"],
                dropped_at=r["dropped_at"],
            ),
        )


CONTROLLERS: list[type[Controller]] = [LectureController, SessionController, EnrollmentController]
