"""Lectures (강의), their sessions (회차) and enrollments.

* ``/api/v1/lectures``: CRUD, with filters, cursor pages and ``enrolled_count`` per row.
* ``/api/v1/lectures/{id}/sessions[/generate]`` and ``/api/v1/sessions/{id}``: sessions,
  generated from the weekly schedule (idempotently) or added and edited one by one.
* ``/api/v1/lectures/{id}/enrollments``, ``.../roster`` and ``/api/v1/students/{id}/lectures``.

Roles: every staff role reads. Owner, admin and staff (the office) write lectures, sessions
and enrollments; teachers may also edit a session (topic, times, video) of any lecture.
Student and parent tokens get 403 everywhere here.

"Active enrollment" means ``status = 'active'`` of a student who is not soft-deleted
(``models.enrollments.ACTIVE``), in every count here (``enrolled_count``, the capacity
check, the delete guard) and in the roster, so the numbers a client sees always agree with
the roster it shows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api import rules
from api.auth import require_own_lecture, require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import enrollments, lectures, sessions
from models.db import transaction
from models.enrollments import Enrollment, RosterEntry, StudentLecture, enrol_many, lock_lecture
from models.errors import fail_fields
from models.lectures import Lecture, Slot
from models.limits import Code, Day, Name, RequiredTitle, TimeOfDayOrEmpty, Title
from models.pages import Page
from models.scope import TenantScope, parse_id
from models.sessions import Session, Term
from models.tables import EnrollmentSource, EnrollmentStatus, LectureStatus, Role
from models.tables import Student as StudentRow
from pipelines.korean import clean_text
from pipelines.schedule import (
    Plan,
    count_occurrences,
    format_hhmm,
    occurrences,
    parse_hhmm,
    parse_schedule,
    plan_generation,
)

require_office = require_roles(Role.owner, Role.admin, Role.staff)

MAX_CAPACITY = 10_000
Capacity = Annotated[int, msgspec.Meta(ge=1, le=MAX_CAPACITY)]
MAX_SLOTS = 50  # a week of classes, generously; also bounds the pairwise overlap check
# One generation creates at most this many sessions: a year of a daily class fits, a
# mistyped end date (2062 for 2026) is refused before it writes thousands of rows.
MAX_GENERATED_SESSIONS = 500


# --- schemas ---------------------------------------------------------------------------


Schedule = Annotated[list[Slot], msgspec.Meta(max_length=MAX_SLOTS)]


class LectureCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: RequiredTitle
    subject: Name = ""
    code: Code | None = None  # unique in the academy when given
    teacher_id: uuid.UUID | None = None  # a teacher, owner or admin of this academy
    capacity: Capacity | None = None  # None: no limit
    schedule: Schedule = []
    start_date: Day | None = None
    end_date: Day | None = None
    status: LectureStatus = LectureStatus.planned


class LectureUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change. ``schedule``, when present, replaces the list."""

    title: RequiredTitle | msgspec.UnsetType = msgspec.UNSET
    subject: Name | msgspec.UnsetType = msgspec.UNSET
    code: Code | msgspec.UnsetType | None = msgspec.UNSET
    teacher_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    capacity: Capacity | msgspec.UnsetType | None = msgspec.UNSET
    schedule: Schedule | msgspec.UnsetType = msgspec.UNSET
    start_date: Day | msgspec.UnsetType | None = msgspec.UNSET
    end_date: Day | msgspec.UnsetType | None = msgspec.UNSET
    status: LectureStatus | msgspec.UnsetType = msgspec.UNSET


class SessionCreate(msgspec.Struct, forbid_unknown_fields=True):
    date: Day
    start_time: TimeOfDayOrEmpty | None = None
    end_time: TimeOfDayOrEmpty | None = None
    topic: Title = ""
    video_id: uuid.UUID | None = None


class SessionUpdate(msgspec.Struct, forbid_unknown_fields=True):
    date: Day | msgspec.UnsetType = msgspec.UNSET
    start_time: TimeOfDayOrEmpty | msgspec.UnsetType | None = msgspec.UNSET
    end_time: TimeOfDayOrEmpty | msgspec.UnsetType | None = msgspec.UNSET
    topic: Title | msgspec.UnsetType = msgspec.UNSET
    video_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET


class GenerateResult(msgspec.Struct):
    created: int
    existing: int


class EnrollmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    student_id: uuid.UUID
    source: EnrollmentSource = EnrollmentSource.manual


# The published names of the pages' schemas (see ``component``).
LecturePage = Annotated[Page[Lecture], page_schema(Lecture)]
SessionPage = Annotated[Page[Session], page_schema(Session)]
RosterPage = Annotated[Page[RosterEntry], page_schema(RosterEntry)]
StudentLecturePage = Annotated[Page[StudentLecture], page_schema(StudentLecture)]
LectureSort = Literal["title", "-title", "created_at", "-created_at"]


# --- input -----------------------------------------------------------------------------


def _clean_bounded(
    value: str, field: str, limit: int, errors: list[dict[str, Any]], *, required: bool = False
) -> str:
    text = clean_text(value, limit)
    if required and not text:
        errors.append({"field": field, "message": "must not be empty"})
    return text


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
        # One message for "no such user", "another academy's user" and "not a teacher".
        if data.teacher_id is not None and not await lectures.can_teach(scope, data.teacher_id):
            errors.append({"field": "teacher_id", "message": "not a teacher of this academy"})
        values["teacher"] = data.teacher_id
    if data.capacity is not msgspec.UNSET:
        values["capacity"] = data.capacity
    if data.schedule is not msgspec.UNSET:
        slots, problems = parse_schedule((s.weekday, s.start, s.end) for s in data.schedule)
        errors += [{"field": f"schedule{p.path}", "message": p.message} for p in problems]
        values["schedule"] = [
            {"weekday": s.weekday, "start": format_hhmm(s.start), "end": format_hhmm(s.end)}
            for s in sorted(slots)
        ]
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
    fail_fields(errors)
    return values


async def _validate_session(
    scope: TenantScope, data: SessionCreate | SessionUpdate, current: Session | None
) -> dict[str, Any]:
    """Check every field given; times are "HH:MM" (null or "" clears one). The end must
    come after the start, the stored value standing in for one a PATCH leaves out. A video
    must be one of this academy's."""
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
        if data.video_id is not None and not await sessions.has_video(scope, data.video_id):
            errors.append({"field": "video_id", "message": "no such video in this academy"})
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
    fail_fields(errors)
    return values


def _parse_optional(text: str | None) -> dt.time | None:
    return None if text is None else parse_hhmm(text)


def _generation_plan(term: Term) -> Plan:
    """What generating the sessions of ``term`` creates: a 409 ``/problems/cannot-generate``
    without both dates, or when the range gives over ``MAX_GENERATED_SESSIONS``."""
    start, end = term.start_date, term.end_date
    missing = [
        {"field": name, "message": "required to generate sessions"}
        for name, value in (("start_date", start), ("end_date", end))
        if value is None
    ]
    if start is None or end is None:
        raise Problem(
            409,
            "set the lecture's start_date and end_date first",
            type_="/problems/cannot-generate",
            errors=missing,
        )
    slots, _ = parse_schedule((s.weekday, s.start, s.end) for s in term.schedule)
    total = count_occurrences(slots, start, end)
    if total > MAX_GENERATED_SESSIONS:
        raise Problem(
            409,
            f"the schedule gives {total} sessions from {start} to {end}; "
            f"at most {MAX_GENERATED_SESSIONS} are generated at once",
            type_="/problems/cannot-generate",
            errors=[{"field": "end_date", "message": "range too long"}],
        )
    return plan_generation(occurrences(slots, start, end), term.have, term.next_seq)


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
    ) -> LecturePage:
        """``q`` matches title, subject or code (substring, case-insensitive)."""
        return await lectures.list_lectures(
            tenant_scope,
            text=clean_text(q) if q else None,
            status=status.value if status else None,
            teacher_id=teacher_id,
            sort=sort,
            limit=check_limit(limit),
            cursor=cursor,
        )

    @post(
        "/",
        opt=rules.LECTURE_WRITE,
        status_code=HTTP_201_CREATED,
        guards=[require_office],
        summary="Create a lecture",
    )
    async def create(
        self, data: JSONBody[LectureCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> Lecture:
        """A taken ``code`` is a 409 ``/problems/lecture-code-taken``."""
        values = await _validate_lecture(tenant_scope, data, None)
        return await lectures.create_lecture(tenant_scope, values)

    @get("/{lecture_id:str}", summary="One lecture")
    async def get_one(
        self, lecture_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Lecture:
        return await lectures.get_lecture(tenant_scope, lecture_id)

    @patch(
        "/{lecture_id:str}",
        opt=rules.LECTURE_WRITE,
        guards=[require_office],
        summary="Change some fields",
    )
    async def update(
        self,
        lecture_id: FromPath[str],
        data: JSONBody[LectureUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Lecture:
        """Lowering ``capacity`` below the active enrollments is a 409
        ``/problems/capacity-below-enrolled``: drop students first. Changing the schedule
        or dates does not touch existing sessions; generate again to add the new ones."""
        current = await lectures.get_lecture(tenant_scope, lecture_id)
        values = await _validate_lecture(tenant_scope, data, current)
        return await lectures.update_lecture(tenant_scope, current.id, values)

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
        await lectures.delete_lecture(tenant_scope, lecture_id)


# --- routes: sessions ------------------------------------------------------------------


class SessionController(Controller):
    path = "/api/v1"
    tags = ["lectures"]
    guards = [require_staff, require_own_lecture]

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
            lecture = await lock_lecture(tenant_scope, lecture_id)
            plan = _generation_plan(await sessions.term_of(tenant_scope, lecture))
            await sessions.add_sessions(
                tenant_scope, lecture, [(seq, o.date, o.start, o.end) for seq, o in plan.create]
            )
        return GenerateResult(created=len(plan.create), existing=plan.existing)

    @get("/lectures/{lecture_id:str}/sessions", summary="A lecture's sessions, by number")
    async def list_sessions(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> SessionPage:
        return await sessions.list_sessions(
            tenant_scope, lecture_id, limit=check_limit(limit), cursor=cursor
        )

    @post("/lectures/{lecture_id:str}/sessions", opt=rules.SESSION_WRITE, status_code=HTTP_201_CREATED,
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
            lecture = await lock_lecture(tenant_scope, lecture_id)
            values = await _validate_session(tenant_scope, data, None)
            return await sessions.add_session(tenant_scope, lecture, values)

    @get("/sessions/{session_id:str}", summary="One session")
    async def get_session(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Session:
        return await sessions.get_session(tenant_scope, session_id)

    @patch("/sessions/{session_id:str}", opt=rules.SESSION_WRITE,
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
            current = await sessions.get_session(tenant_scope, session_id, lock=True)
            values = await _validate_session(tenant_scope, data, current)
            await sessions.update_session(tenant_scope, current.id, values)
        return await sessions.get_session(tenant_scope, current.id)

    @delete("/sessions/{session_id:str}", status_code=HTTP_204_NO_CONTENT,
            guards=[require_office], summary="Delete a session without attendance")  # fmt: skip
    async def delete_session(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        """The other sessions keep their numbers (a gap is left). A session with attendance
        is a 409 ``/problems/session-has-attendance``: deleting it would cascade to the
        attendance records."""
        await sessions.delete_session(tenant_scope, session_id)


# --- routes: enrollments ---------------------------------------------------------------


class EnrollmentController(Controller):
    path = "/api/v1"
    tags = ["lectures"]
    guards = [require_staff]

    @post("/lectures/{lecture_id:str}/enrollments", opt=rules.ENROL, guards=[require_office],
          status_code=HTTP_201_CREATED,
          responses={HTTP_200_OK: ResponseSpec(Enrollment, description="Already enrolled: "
                                               "the enrollment as it was, nothing changed")},
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
        lecture_key = await lectures.lecture_exists(tenant_scope, lecture_id)
        student_key = parse_id(StudentRow, student_id)
        if not await enrollments.drop(tenant_scope, lecture_key, student_key):
            raise Problem(404, f"student {student_id} is not enrolled in this lecture")

    @get("/lectures/{lecture_id:str}/roster",
         summary="A lecture's active students, by name")  # fmt: skip
    async def roster(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> RosterPage:
        """One statement per page. Soft-deleted students are left out."""
        return await enrollments.roster(
            tenant_scope, lecture_id, limit=check_limit(limit), cursor=cursor
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
    ) -> StudentLecturePage:
        """Active and dropped enrollments (``status`` filters), by lecture title. One
        statement per page; a soft-deleted student is a 404, as in ``/students/{id}``."""
        return await enrollments.lectures_of_student(
            tenant_scope,
            student_id,
            status=status.value if status else None,
            limit=check_limit(limit),
            cursor=cursor,
        )


CONTROLLERS: list[type[Controller]] = [LectureController, SessionController, EnrollmentController]
