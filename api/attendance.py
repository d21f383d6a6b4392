"""Attendance (출결): checking students in a session, one at a time or a whole sheet at once,
the session's sheet, and attendance reports.

Rules every write follows:

* Only students **actively enrolled** (``enrollment.status = 'active'``, not soft-deleted) in
  the session's lecture can be checked. The session's row is locked (``FOR NO KEY UPDATE``)
  for the transaction: concurrent checks of one session serialise, so the "before" each
  audit row records is the state the change really replaced; checks of other sessions do
  not wait (``models.attendance``: the lock rule).
* A check that changes nothing (same status, same note, no new ``checked_at``) is a no-op:
  no write, no audit row, no event. An omitted ``note`` keeps the current note.
* Every real change appends an ``audit_log`` row (entity ``attendance``, before/after, the
  caller as actor) in the same transaction.
* A change *to* absent or late records an outbox event (``attendance.absent`` /
  ``attendance.late``) in the same transaction, so it cannot be lost while messaging is down.
  Its ``dedupe_key`` (``attendance.<status>:<session>:<student>``) makes it one event per
  student, session and status however often the request is retried. Consequences, by design:
  changing absent -> present later does **not** delete or cancel the event (messaging decides
  whether a notice is still due: it should re-read the current status before sending), and
  absent -> present -> absent again records no second event.
* ``checked_by`` is whoever changed the row last; ``checked_at`` is the given time, else now
  when the status changes; a note-only edit keeps it (a late arrival's time stays put).

Both the single and the bulk check go through ``_check``: one set-based statement writes
the checks, their audit rows and their events (``models.attendance.write_checks``), so the
bulk check's statement count does not grow with the class size. What a check changes, keeps and announces is decided by
``pipelines.attendance``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api import rules
from api.auth import Principal, require_own_lecture, require_staff
from api.errors import field_error
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models.attendance import (
    Attendance,
    Counts,
    LectureHead,
    SessionRef,
    SessionTally,
    Sheet,
    StoredCheck,
    StudentTally,
    as_written,
    enrolled_checks,
    lecture_tallies,
    load_sheet,
    lock_session,
    sheet_checks,
    student_tallies,
    with_checks,
    write_checks,
)
from models.db import transaction
from models.errors import fail_fields
from models.grades import student_exists
from models.limits import Day
from models.pages import Page
from models.scope import TenantScope, parse_id
from models.tables import AttendanceStatus, Student
from pipelines.attendance import Wanted, changes_of, event_of, plan_writes, rate

MAX_NOTE = 500
Note = Annotated[str, msgspec.Meta(max_length=MAX_NOTE)]
MAX_BULK = 500
# Clock skew allowed for a client-supplied ``checked_at``.
FUTURE_SLACK = dt.timedelta(minutes=5)
NOT_ENROLLED = "not actively enrolled in this session's lecture"


# --- schemas ---------------------------------------------------------------------------


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    """One student's check. ``note`` omitted: keep the current note (empty for a new check).
    ``checked_at`` omitted: now (or unchanged, when only the note changes)."""

    status: AttendanceStatus
    note: Note | msgspec.UnsetType = msgspec.UNSET
    checked_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class BulkItem(msgspec.Struct, forbid_unknown_fields=True):
    """A row of a bulk check (a 422 names every bad row: ``api.hygiene.struct_body_errors``)."""

    student_id: uuid.UUID
    status: AttendanceStatus
    note: Note | msgspec.UnsetType = msgspec.UNSET


class BulkCheckIn(msgspec.Struct, forbid_unknown_fields=True):
    """Checks for some or all students of a session. Students not listed are left as they
    are (a batch upsert, not a replacement of the sheet)."""

    items: Annotated[list[BulkItem], msgspec.Meta(max_length=MAX_BULK)]


class StudentReportRow(StudentTally):
    """One student over the sessions in range of every lecture they are actively enrolled
    in (or of ``lecture_id``). ``rate`` = (present + late) / checked; None if none checked."""

    rate: float | None


class SessionReportRow(SessionTally):
    rate: float | None


class LectureReport(msgspec.Struct):
    """A lecture over the sessions in range, counting its actively enrolled students."""

    lecture_id: uuid.UUID
    title: str
    date_from: dt.date | None = msgspec.field(name="from")
    date_to: dt.date | None = msgspec.field(name="to")
    enrolled: int
    session_count: int
    present: int
    late: int
    absent: int
    excused: int
    unchecked: int
    rate: float | None
    sessions: list[SessionReportRow]


# --- checks ----------------------------------------------------------------------------


def _clean_note(note: str) -> str:
    return note.strip()  # its length is the schema's (``Note``)


def _parse_bulk(data: BulkCheckIn) -> tuple[list[tuple[int, Wanted]], list[dict[str, Any]]]:
    """Every row checked on its own; returns the good rows (with their index) and the
    errors of the bad ones, as ``items[i].<field>``."""
    errors: list[dict[str, Any]] = []
    good: list[tuple[int, Wanted]] = []
    # Ids, statuses and the number of rows are the schema's (``BulkItem``, ``BulkCheckIn``).
    seen: set[uuid.UUID] = set()
    for i, item in enumerate(data.items):
        bad = len(errors)
        if item.student_id in seen:
            errors.append({"field": f"items[{i}].student_id", "message": "listed twice"})
        seen.add(item.student_id)
        note = None
        if item.note is not msgspec.UNSET:
            note = _clean_note(item.note)
        if len(errors) == bad:
            good.append(
                (i, Wanted(item.student_id, AttendanceStatus(item.status).value, note, None))
            )
    return good, errors


def _row_of(error: dict[str, Any]) -> int:
    """The row an ``items[i].<field>`` error is about (-1: the whole body), to sort errors
    by row while keeping each row's own errors in the order they were found."""
    field = str(error["field"])
    return int(field[6 : field.index("]")]) if field.startswith("items[") else -1


async def _check(
    scope: TenantScope,
    actor_id: uuid.UUID,
    session: SessionRef,
    wanted: Sequence[Wanted],
    current: dict[uuid.UUID, StoredCheck],
) -> dict[uuid.UUID, StoredCheck]:
    """Write what ``wanted`` changes, with an audit row per change and the outbox events
    the changes call for; returns every wanted student's check as it now is.

    ``current`` are the stored checks of ``wanted``, read under the session lock
    (``enrolled_checks``), so they cannot change before the upsert. One statement, whatever
    the number of checks; none when nothing changes.
    """
    writes = plan_writes(wanted, current)
    written = as_written(session, actor_id, writes, current)
    changes = changes_of(session.id, writes, current, written)
    events = [e for e in (event_of(session, c) for c in changes) if e is not None]
    await write_checks(
        scope,
        session.id,
        actor_id,
        list(written.values()),
        [(c.attendance_id, c.action, c.before, c.after) for c in changes],
        events,
    )
    return {**current, **written}


# --- reports ---------------------------------------------------------------------------


def _check_range(date_from: dt.date | None, date_to: dt.date | None) -> None:
    if date_from and date_to and date_to < date_from:
        raise field_error("to", "must not be before `from`")


def _lecture_report(
    head: LectureHead,
    tallies: Sequence[SessionTally],
    date_from: dt.date | None,
    date_to: dt.date | None,
) -> LectureReport:
    """The sessions' counts with their rates, and their sum: the totals equal the
    per-student report filtered by the lecture."""
    sessions = [
        SessionReportRow(
            **msgspec.structs.asdict(t),
            rate=rate(t.present, t.late, t.present + t.late + t.absent + t.excused),
        )
        for t in tallies
    ]
    total = Counts(**{f: sum(getattr(s, f) for s in sessions) for f in Counts.__struct_fields__})
    return LectureReport(
        lecture_id=head.lecture_id,
        title=head.title,
        date_from=date_from,
        date_to=date_to,
        enrolled=head.enrolled,
        session_count=len(sessions),
        present=total.present,
        late=total.late,
        absent=total.absent,
        excused=total.excused,
        unchecked=total.unchecked,
        rate=rate(
            total.present, total.late, total.present + total.late + total.absent + total.excused
        ),
        sessions=sessions,
    )


# --- routes ----------------------------------------------------------------------------

DateFrom = Annotated[
    Day | None, QueryParameter(name="from", description="first session date, inclusive")
]
DateTo = Annotated[
    Day | None, QueryParameter(name="to", description="last session date, inclusive")
]


StudentReportRowPage = Annotated[Page[StudentReportRow], page_schema(StudentReportRow)]


class SessionAttendanceController(Controller):
    """A session's sheet and its checks. Any staff role (owner, admin, teacher, staff)."""

    path = "/api/v1/sessions/{session_id:str}/attendance"
    tags = ["attendance"]
    guards = [require_staff, require_own_lecture]

    @get("/", summary="The session's sheet: every actively enrolled student and their check")
    async def sheet(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Sheet:
        return await load_sheet(tenant_scope, session_id)

    @put(
        "/",
        opt=rules.CHECK_MANY,
        summary="Check many students of the session at once (all or nothing)",
    )
    async def check_many(
        self,
        session_id: FromPath[str],
        data: JSONBody[BulkCheckIn],
        tenant_scope: NamedDependency[TenantScope],
        principal: NamedDependency[Principal],
    ) -> Sheet:
        """Validated as a whole: every bad row is listed (``items[i].field``) and nothing is
        written if any row is bad. A student not actively enrolled in the lecture -- whether
        unknown, of another academy, dropped or deleted -- gets the same error, so the
        endpoint cannot be used to probe ids. Written in one transaction with a fixed
        number of statements, whatever the number of rows."""
        good, errors = _parse_bulk(data)
        async with transaction():
            session = await lock_session(tenant_scope, session_id)
            sheet, current = await sheet_checks(tenant_scope, session)
            enrolled = {i.student_id for i in sheet.items}
            errors += [
                {"field": f"items[{i}].student_id", "message": NOT_ENROLLED}
                for i, w in good
                if w.student_id not in enrolled
            ]
            errors.sort(key=_row_of)
            fail_fields(errors)
            checks = await _check(
                tenant_scope, principal.user_id, session, [w for _, w in good], current
            )
        return with_checks(sheet, checks)

    @put(
        "/{student_id:str}",
        opt=rules.CHECK_ONE,
        summary="Check one student (an upsert; a re-submit is a no-op)",
    )
    async def check_one(
        self,
        session_id: FromPath[str],
        student_id: FromPath[str],
        data: JSONBody[CheckIn],
        tenant_scope: NamedDependency[TenantScope],
        principal: NamedDependency[Principal],
    ) -> Attendance:
        """404 if the session or the student is not in the caller's academy (the session is
        looked at first); 422 ``student_id`` if the student is not actively enrolled."""
        errors: list[dict[str, Any]] = []
        note = None if data.note is msgspec.UNSET else _clean_note(data.note)
        if data.checked_at is not None and data.checked_at > dt.datetime.now(dt.UTC) + FUTURE_SLACK:
            errors.append({"field": "checked_at", "message": "is in the future"})
        async with transaction():
            session = await lock_session(tenant_scope, session_id)
            student_key = parse_id(Student, student_id)
            enrolled, current = await enrolled_checks(tenant_scope, session, [student_key])
            if not enrolled:
                await student_exists(tenant_scope, student_id)
                errors.append({"field": "student_id", "message": NOT_ENROLLED})
            fail_fields(errors)
            wanted = Wanted(student_key, data.status.value, note, data.checked_at)
            checks = await _check(tenant_scope, principal.user_id, session, [wanted], current)
        # The stored check without its row id.
        return msgspec.convert(checks[student_key], Attendance, from_attributes=True)


class AttendanceReportController(Controller):
    """Attendance reports. Any staff role."""

    path = "/api/v1"
    tags = ["attendance"]
    guards = [require_staff, require_own_lecture]

    @get(
        "/attendance/report",
        opt=rules.REPORT,
        summary="Per-student attendance over a date range, cursor pages",
    )
    async def students(
        self,
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        lecture_id: FromQuery[uuid.UUID | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> StudentReportRowPage:
        _check_range(date_from, date_to)
        page = await student_tallies(
            tenant_scope,
            date_from=date_from,
            date_to=date_to,
            lecture_id=lecture_id,
            limit=check_limit(limit),
            cursor=cursor,
        )
        items = [
            StudentReportRow(
                **msgspec.structs.asdict(t),
                rate=rate(t.present, t.late, t.sessions - t.unchecked),
            )
            for t in page.items
        ]
        return Page(items=items, limit=page.limit, next_cursor=page.next_cursor)

    @get("/lectures/{lecture_id:str}/attendance/report", opt=rules.REPORT,
         summary="A lecture's attendance: summary and per-session counts")  # fmt: skip
    async def lecture(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
    ) -> LectureReport:
        _check_range(date_from, date_to)
        head, tallies = await lecture_tallies(
            tenant_scope, lecture_id, date_from=date_from, date_to=date_to
        )
        return _lecture_report(head, tallies, date_from, date_to)


CONTROLLERS: list[type[Controller]] = [SessionAttendanceController, AttendanceReportController]
