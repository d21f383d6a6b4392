"""Attendance (출결): checking students in a session, one at a time or a whole sheet at once,
the session's sheet, and attendance reports.

Rules every write follows:

* Only students **actively enrolled** (``enrollment.status = 'active'``, not soft-deleted) in
  the session's lecture can be checked. The enrollment rows are locked (``FOR NO KEY
  UPDATE``, in ``enrollment.id`` order) for the transaction: concurrent checks of the same
  student serialise, so the "before" each audit row records is the state the change really
  replaced, and a check cannot race the student being dropped.
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

The single check uses ``record_audit``/``emit_event``; the bulk check their set-based
forms (``record_audits``/``emit_events``), so its statement count does not grow with the
class size.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import Principal, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import transaction
from models.events import emit_event, emit_events, record_audit, record_audits
from models.pages import Page, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import AttendanceStatus, Lecture, LectureSession, Student

MAX_NOTE = 500
MAX_BULK = 500
# Clock skew allowed for a client-supplied ``checked_at``.
FUTURE_SLACK = dt.timedelta(minutes=5)
EVENT_STATUSES = frozenset({AttendanceStatus.absent.value, AttendanceStatus.late.value})
STATUS_VALUES = tuple(s.value for s in AttendanceStatus)


# --- schemas ---------------------------------------------------------------------------


class CheckIn(msgspec.Struct, forbid_unknown_fields=True):
    """One student's check. ``note`` omitted: keep the current note (empty for a new check).
    ``checked_at`` omitted: now (or unchanged, when only the note changes)."""

    status: AttendanceStatus
    note: str | msgspec.UnsetType = msgspec.UNSET
    checked_at: Annotated[dt.datetime, msgspec.Meta(tz=True)] | None = None


class BulkItem(msgspec.Struct, forbid_unknown_fields=True):
    """A row of a bulk check. Typed as plain strings on purpose: the API validates every row
    itself, so one 422 lists every bad row (msgspec stops at the first bad value)."""

    student_id: Annotated[str, msgspec.Meta(description="a student id (UUID)")]
    status: Annotated[str, msgspec.Meta(description="present | late | absent | excused")]
    note: str | msgspec.UnsetType = msgspec.UNSET


class BulkCheckIn(msgspec.Struct, forbid_unknown_fields=True):
    """Checks for some or all students of a session. Students not listed are left as they
    are (a batch upsert, not a replacement of the sheet)."""

    items: list[BulkItem]


class Check(msgspec.Struct):
    status: str
    note: str
    checked_at: dt.datetime
    checked_by: uuid.UUID | None


class Attendance(msgspec.Struct):
    session_id: uuid.UUID
    student_id: uuid.UUID
    status: str
    note: str
    checked_at: dt.datetime
    checked_by: uuid.UUID | None


class Counts(msgspec.Struct):
    present: int = 0
    late: int = 0
    absent: int = 0
    excused: int = 0
    unchecked: int = 0


class SheetRow(msgspec.Struct):
    student_id: uuid.UUID
    name: str
    check: Check | None  # None: not checked yet


class Sheet(msgspec.Struct):
    session_id: uuid.UUID
    lecture_id: uuid.UUID
    lecture_title: str
    seq: int
    date: dt.date
    topic: str
    counts: Counts
    items: list[SheetRow]


class StudentReportRow(msgspec.Struct):
    """One student over the sessions in range of every lecture they are actively enrolled
    in (or of ``lecture_id``). ``rate`` = (present + late) / checked; None if none checked."""

    student_id: uuid.UUID
    name: str
    sessions: int
    present: int
    late: int
    absent: int
    excused: int
    unchecked: int
    rate: float | None


class SessionReportRow(msgspec.Struct):
    session_id: uuid.UUID
    seq: int
    date: dt.date
    topic: str
    present: int
    late: int
    absent: int
    excused: int
    unchecked: int
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


# --- reads -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Session:
    id: uuid.UUID
    lecture_id: uuid.UUID
    date: dt.date


async def _load_session(scope: TenantScope, session_id: str) -> _Session:
    key = parse_id(LectureSession, session_id)
    row = await scope.fetchrow(
        "SELECT ls.id, ls.lecture, ls.date FROM lecture_session ls "
        "WHERE ls.tenant = $1 AND ls.id = $2",
        key,
    )
    if row is None:
        raise NotFoundInTenant(LectureSession, session_id)
    return _Session(row["id"], row["lecture"], row["date"])


SHEET_SQL = """
    SELECT ls.id AS session_id, ls.lecture AS lecture_id, l.title AS lecture_title, ls.seq,
           ls.date, ls.topic, en.student, en.name,
           a.status, a.note, a.checked_at, a.checked_by
    FROM lecture_session ls
    JOIN lecture l ON l.id = ls.lecture AND l.tenant = $1
    LEFT JOIN (
        SELECT e.lecture, s.id AS student, s.name
        FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1 AND s.deleted_at IS NULL
        WHERE e.tenant = $1 AND e.status = 'active'
    ) en ON en.lecture = ls.lecture
    LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = en.student
    WHERE ls.tenant = $1 AND ls.id = $2
    ORDER BY en.name, en.student
"""


async def load_sheet(scope: TenantScope, session_id: str | uuid.UUID) -> Sheet:
    """The session's sheet in one query: every actively enrolled student, by name, with
    their check or None. A session with nobody enrolled is an empty sheet, not a 404."""
    key = parse_id(LectureSession, str(session_id))
    rows = await scope.fetch(SHEET_SQL, key)
    if not rows:
        raise NotFoundInTenant(LectureSession, session_id)
    counts = Counts()
    items: list[SheetRow] = []
    for r in rows:
        if r["student"] is None:  # the LEFT JOIN's row for a session without enrollees
            continue
        check = None
        if r["status"] is not None:
            check = Check(r["status"], r["note"], r["checked_at"], r["checked_by"])
            setattr(counts, r["status"], getattr(counts, r["status"]) + 1)
        else:
            counts.unchecked += 1
        items.append(SheetRow(student_id=r["student"], name=r["name"], check=check))
    first = rows[0]
    return Sheet(
        session_id=first["session_id"],
        lecture_id=first["lecture_id"],
        lecture_title=first["lecture_title"],
        seq=first["seq"],
        date=first["date"],
        topic=first["topic"],
        counts=counts,
        items=items,
    )


# --- writes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    """A validated check: ``note`` None keeps the current note, ``checked_at`` None means
    "now if the status changes"."""

    student_id: uuid.UUID
    status: str
    note: str | None
    checked_at: dt.datetime | None


@dataclass(frozen=True)
class _Change:
    attendance_id: uuid.UUID
    student_id: uuid.UUID
    status: str
    note: str
    before: dict[str, Any] | None
    after: dict[str, Any]

    @property
    def action(self) -> str:
        return "create" if self.before is None else "update"


def _clean_note(note: str, field: str, errors: list[dict[str, Any]]) -> str:
    cleaned = note.strip()
    if len(cleaned) > MAX_NOTE:
        errors.append({"field": field, "message": f"at most {MAX_NOTE} characters"})
    return cleaned


async def _lock_enrollments(
    scope: TenantScope, session: _Session, student_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``student_ids`` are actively enrolled in the session's lecture; their
    enrollment rows stay locked until the transaction ends (one statement)."""
    if not student_ids:
        return set()
    rows = await scope.fetch(
        """
        SELECT e.student FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1 AND s.deleted_at IS NULL
        WHERE e.tenant = $1 AND e.lecture = $2 AND e.status = 'active'
          AND e.student = ANY($3::uuid[])
        ORDER BY e.id
        FOR NO KEY UPDATE OF e
        """,
        session.lecture_id,
        list(student_ids),
    )
    return {r["student"] for r in rows}


def _snapshot(session_id: uuid.UUID, row: asyncpg.Record) -> dict[str, Any]:
    """What the audit log keeps of a check (JSON-ready, the same for single and bulk)."""
    return {
        "session_id": str(session_id),
        "student_id": str(row["student"]),
        "status": row["status"],
        "note": row["note"],
        "checked_at": row["checked_at"].isoformat(),
        "checked_by": str(row["checked_by"]) if row["checked_by"] else None,
    }


async def _write_checks(
    scope: TenantScope, actor_id: uuid.UUID, session: _Session, wanted: Sequence[_Wanted]
) -> tuple[list[_Change], dict[uuid.UUID, asyncpg.Record]]:
    """Upsert what actually changes (two statements at most). Returns the changes, and
    every wanted student's row as it now is.

    The caller holds the enrollment locks of ``wanted`` (``_lock_enrollments``), so the
    current rows read here cannot change before the upsert.
    """
    ids = [w.student_id for w in wanted]
    current = {
        r["student"]: r
        for r in await scope.fetch(
            "SELECT a.id, a.student, a.status, a.note, a.checked_at, a.checked_by "
            "FROM attendance a WHERE a.tenant = $1 AND a.session = $2 "
            "AND a.student = ANY($3::uuid[])",
            session.id,
            ids,
        )
    }
    students: list[uuid.UUID] = []
    statuses: list[str] = []
    notes: list[str] = []
    times: list[dt.datetime | None] = []
    for w in wanted:
        cur = current.get(w.student_id)
        note = w.note if w.note is not None else (cur["note"] if cur is not None else "")
        if (
            cur is not None
            and cur["status"] == w.status
            and cur["note"] == note
            and (w.checked_at is None or w.checked_at == cur["checked_at"])
        ):
            continue  # a re-submit: nothing to write, audit or announce
        checked_at = w.checked_at
        if checked_at is None and cur is not None and cur["status"] == w.status:
            checked_at = cur["checked_at"]  # a note-only edit keeps the check's time
        students.append(w.student_id)
        statuses.append(w.status)
        notes.append(note)
        times.append(checked_at)
    if not students:
        return [], current
    written = await scope.fetch(
        """
        INSERT INTO attendance AS a
            (id, tenant, session, student, status, note, checked_at, checked_by)
        SELECT gen_random_uuid(), $1, $2, u.student, u.status, u.note,
               COALESCE(u.checked_at, now()), $3
        FROM unnest($4::uuid[], $5::text[], $6::text[], $7::timestamptz[])
             AS u(student, status, note, checked_at)
        ON CONFLICT (session, student) DO UPDATE
        SET status = EXCLUDED.status, note = EXCLUDED.note,
            checked_at = EXCLUDED.checked_at, checked_by = EXCLUDED.checked_by
        WHERE a.tenant = $1
        RETURNING a.id, a.student, a.status, a.note, a.checked_at, a.checked_by
        """,
        session.id,
        actor_id,
        students,
        statuses,
        notes,
        times,
    )
    by_student = {r["student"]: r for r in written}
    changes = []
    for student_id in students:
        row = by_student[student_id]
        cur = current.get(student_id)
        changes.append(
            _Change(
                attendance_id=row["id"],
                student_id=student_id,
                status=row["status"],
                note=row["note"],
                before=_snapshot(session.id, cur) if cur is not None else None,
                after=_snapshot(session.id, row),
            )
        )
    return changes, {**current, **by_student}


def _event(session: _Session, change: _Change) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, dedupe_key, payload) of the outbox event a change calls for, if any."""
    if change.status not in EVENT_STATUSES:
        return None
    if change.before is not None and change.before["status"] == change.status:
        return None  # a note edit: the event (if any) was recorded with the status change
    return (
        f"attendance.{change.status}",
        f"attendance.{change.status}:{session.id}:{change.student_id}",
        {
            "session_id": str(session.id),
            "student_id": str(change.student_id),
            "lecture_id": str(session.lecture_id),
            "date": session.date.isoformat(),
            "status": change.status,
            "note": change.note,
        },
    )


async def _record_one(
    scope: TenantScope, actor_id: uuid.UUID, session: _Session, change: _Change
) -> None:
    """Audit row and outbox event of one change, through the shared helpers."""
    await record_audit(
        tenant_id=scope.tenant_id,
        actor_id=actor_id,
        entity="attendance",
        entity_id=change.attendance_id,
        action=change.action,
        before=change.before,
        after=change.after,
    )
    event = _event(session, change)
    if event is not None:
        kind, dedupe_key, payload = event
        await emit_event(
            tenant_id=scope.tenant_id, kind=kind, dedupe_key=dedupe_key, payload=payload
        )


async def _record_many(
    scope: TenantScope, actor_id: uuid.UUID, session: _Session, changes: Sequence[_Change]
) -> None:
    """The audit rows and outbox events of many changes, in two statements whatever the
    number of changes."""
    await record_audits(
        tenant_id=scope.tenant_id,
        actor_id=actor_id,
        entity="attendance",
        entries=[(c.attendance_id, c.action, c.before, c.after) for c in changes],
    )
    events = [e for e in (_event(session, c) for c in changes) if e is not None]
    await emit_events(tenant_id=scope.tenant_id, events=events)


def _parse_bulk(data: BulkCheckIn) -> tuple[list[tuple[int, _Wanted]], list[dict[str, Any]]]:
    """Every row checked on its own; returns the good rows (with their index) and the
    errors of the bad ones, as ``items[i].<field>``."""
    errors: list[dict[str, Any]] = []
    good: list[tuple[int, _Wanted]] = []
    if len(data.items) > MAX_BULK:
        errors.append({"field": "items", "message": f"at most {MAX_BULK} rows"})
        return good, errors
    seen: set[uuid.UUID] = set()
    for i, item in enumerate(data.items):
        bad = len(errors)
        student_id: uuid.UUID | None = None
        try:
            student_id = uuid.UUID(item.student_id)
        except ValueError:
            errors.append({"field": f"items[{i}].student_id", "message": "not a valid id"})
        if student_id is not None and student_id in seen:
            errors.append({"field": f"items[{i}].student_id", "message": "listed twice"})
        if student_id is not None:
            seen.add(student_id)
        if item.status not in STATUS_VALUES:
            errors.append(
                {"field": f"items[{i}].status", "message": f"one of: {', '.join(STATUS_VALUES)}"}
            )
        note = None
        if item.note is not msgspec.UNSET:
            note = _clean_note(item.note, f"items[{i}].note", errors)
        if len(errors) == bad and student_id is not None:
            good.append((i, _Wanted(student_id, item.status, note, None)))
    return good, errors


def _row_of(error: dict[str, Any]) -> int:
    """The row an ``items[i].<field>`` error is about (-1: the whole body), to sort errors
    by row while keeping each row's own errors in the order they were found."""
    field = str(error["field"])
    return int(field[6 : field.index("]")]) if field.startswith("items[") else -1


# --- reports ---------------------------------------------------------------------------


def _check_range(date_from: dt.date | None, date_to: dt.date | None) -> None:
    if date_from and date_to and date_to < date_from:
        raise field_error("to", "must not be before `from`")


def _rate(present: int, late: int, checked: int) -> float | None:
    return round((present + late) / checked, 4) if checked else None


async def student_report(
    scope: TenantScope,
    *,
    date_from: dt.date | None,
    date_to: dt.date | None,
    lecture_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[StudentReportRow]:
    """Per-student counts in one GROUP BY query, a page at a time (by name, then id).

    Students with an active enrollment but no session in range are listed with zeros.
    """
    after = decode_cursor_as(cursor, as_text, as_uuid)
    after_name, after_id = after if after else (None, None)
    rows = await scope.fetch(
        """
        SELECT s.id, s.name,
               count(ls.id) AS sessions,
               count(a.id) FILTER (WHERE a.status = 'present') AS present,
               count(a.id) FILTER (WHERE a.status = 'late') AS late,
               count(a.id) FILTER (WHERE a.status = 'absent') AS absent,
               count(a.id) FILTER (WHERE a.status = 'excused') AS excused,
               count(ls.id) FILTER (WHERE a.id IS NULL) AS unchecked
        FROM student s
        JOIN enrollment e ON e.student = s.id AND e.tenant = $1 AND e.status = 'active'
             AND ($2::uuid IS NULL OR e.lecture = $2)
        LEFT JOIN lecture_session ls ON ls.lecture = e.lecture AND ls.tenant = $1
             AND ($3::date IS NULL OR ls.date >= $3) AND ($4::date IS NULL OR ls.date <= $4)
        LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = s.id
        WHERE s.tenant = $1 AND s.deleted_at IS NULL
          AND ($5::text IS NULL OR (s.name, s.id) > ($5::text, $6::uuid))
        GROUP BY s.id
        ORDER BY s.name, s.id
        LIMIT $7
        """,
        lecture_id,
        date_from,
        date_to,
        after_name,
        after_id,
        limit + 1,
    )
    return page_of(
        rows,
        limit,
        lambda r: [r["name"], str(r["id"])],
        lambda r: StudentReportRow(
            student_id=r["id"],
            name=r["name"],
            sessions=r["sessions"],
            present=r["present"],
            late=r["late"],
            absent=r["absent"],
            excused=r["excused"],
            unchecked=r["unchecked"],
            rate=_rate(r["present"], r["late"], r["sessions"] - r["unchecked"]),
        ),
    )


async def lecture_report(
    scope: TenantScope, lecture_id: str, *, date_from: dt.date | None, date_to: dt.date | None
) -> LectureReport:
    """Per-session counts (one GROUP BY query) and their sum, over the lecture's actively
    enrolled students: the totals equal the per-student report filtered by the lecture."""
    key = parse_id(Lecture, lecture_id)
    lecture = await scope.fetchrow(
        """
        SELECT l.id, l.title,
               (SELECT count(*) FROM enrollment e
                JOIN student s ON s.id = e.student AND s.tenant = $1 AND s.deleted_at IS NULL
                WHERE e.tenant = $1 AND e.lecture = l.id AND e.status = 'active') AS enrolled
        FROM lecture l WHERE l.tenant = $1 AND l.id = $2
        """,
        key,
    )
    if lecture is None:
        raise NotFoundInTenant(Lecture, lecture_id)
    rows = await scope.fetch(
        """
        SELECT ls.id, ls.seq, ls.date, ls.topic,
               count(a.id) FILTER (WHERE a.status = 'present') AS present,
               count(a.id) FILTER (WHERE a.status = 'late') AS late,
               count(a.id) FILTER (WHERE a.status = 'absent') AS absent,
               count(a.id) FILTER (WHERE a.status = 'excused') AS excused,
               count(en.student) FILTER (WHERE a.id IS NULL) AS unchecked
        FROM lecture_session ls
        LEFT JOIN (
            SELECT e.student FROM enrollment e
            JOIN student s ON s.id = e.student AND s.tenant = $1 AND s.deleted_at IS NULL
            WHERE e.tenant = $1 AND e.lecture = $2 AND e.status = 'active'
        ) en ON true
        LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = en.student
        WHERE ls.tenant = $1 AND ls.lecture = $2
          AND ($3::date IS NULL OR ls.date >= $3) AND ($4::date IS NULL OR ls.date <= $4)
        GROUP BY ls.id
        ORDER BY ls.date, ls.seq, ls.id
        """,
        key,
        date_from,
        date_to,
    )
    sessions = [
        SessionReportRow(
            session_id=r["id"],
            seq=r["seq"],
            date=r["date"],
            topic=r["topic"],
            present=r["present"],
            late=r["late"],
            absent=r["absent"],
            excused=r["excused"],
            unchecked=r["unchecked"],
            rate=_rate(
                r["present"], r["late"], r["present"] + r["late"] + r["absent"] + r["excused"]
            ),
        )
        for r in rows
    ]
    total = Counts(**{f: sum(getattr(s, f) for s in sessions) for f in Counts.__struct_fields__})
    return LectureReport(
        lecture_id=lecture["id"],
        title=lecture["title"],
        date_from=date_from,
        date_to=date_to,
        enrolled=lecture["enrolled"],
        session_count=len(sessions),
        present=total.present,
        late=total.late,
        absent=total.absent,
        excused=total.excused,
        unchecked=total.unchecked,
        rate=_rate(
            total.present, total.late, total.present + total.late + total.absent + total.excused
        ),
        sessions=sessions,
    )


# --- routes ----------------------------------------------------------------------------

DateFrom = Annotated[
    dt.date | None, QueryParameter(name="from", description="first session date, inclusive")
]
DateTo = Annotated[
    dt.date | None, QueryParameter(name="to", description="last session date, inclusive")
]


class SessionAttendanceController(Controller):
    """A session's sheet and its checks. Any staff role (owner, admin, teacher, staff)."""

    path = "/api/v1/sessions/{session_id:str}/attendance"
    tags = ["attendance"]
    guards = [require_staff]

    @get("/", summary="The session's sheet: every actively enrolled student and their check")
    async def sheet(
        self, session_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Sheet:
        return await load_sheet(tenant_scope, session_id)

    @put("/", summary="Check many students of the session at once (all or nothing)")
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
            session = await _load_session(tenant_scope, session_id)
            enrolled = await _lock_enrollments(
                tenant_scope, session, [w.student_id for _, w in good]
            )
            for i, w in good:
                if w.student_id not in enrolled:
                    errors.append(
                        {
                            "field": f"items[{i}].student_id",
                            "message": "not actively enrolled in this session's lecture",
                        }
                    )
            if errors:
                errors.sort(key=_row_of)
                raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
            changes, _ = await _write_checks(
                tenant_scope, principal.user_id, session, [w for _, w in good]
            )
            await _record_many(tenant_scope, principal.user_id, session, changes)
        return await load_sheet(tenant_scope, session.id)

    @put("/{student_id:str}", summary="Check one student (an upsert; a re-submit is a no-op)")
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
        note = None if data.note is msgspec.UNSET else _clean_note(data.note, "note", errors)
        if data.checked_at is not None and data.checked_at > dt.datetime.now(dt.UTC) + FUTURE_SLACK:
            errors.append({"field": "checked_at", "message": "is in the future"})
        async with transaction():
            session = await _load_session(tenant_scope, session_id)
            student_key = parse_id(Student, student_id)
            if not await _lock_enrollments(tenant_scope, session, [student_key]):
                found = await tenant_scope.fetchrow(
                    "SELECT 1 FROM student s "
                    "WHERE s.tenant = $1 AND s.id = $2 AND s.deleted_at IS NULL",
                    student_key,
                )
                if found is None:
                    raise NotFoundInTenant(Student, student_id)
                errors.append(
                    {
                        "field": "student_id",
                        "message": "not actively enrolled in this session's lecture",
                    }
                )
            if errors:
                raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
            wanted = _Wanted(student_key, data.status.value, note, data.checked_at)
            changes, rows = await _write_checks(tenant_scope, principal.user_id, session, [wanted])
            for change in changes:
                await _record_one(tenant_scope, principal.user_id, session, change)
        row = rows[student_key]
        return Attendance(
            session_id=session.id,
            student_id=student_key,
            status=row["status"],
            note=row["note"],
            checked_at=row["checked_at"],
            checked_by=row["checked_by"],
        )


class AttendanceReportController(Controller):
    """Attendance reports. Any staff role."""

    path = "/api/v1"
    tags = ["attendance"]
    guards = [require_staff]

    @get("/attendance/report", summary="Per-student attendance over a date range, cursor pages")
    async def students(
        self,
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
        lecture_id: FromQuery[uuid.UUID | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[StudentReportRow]:
        _check_range(date_from, date_to)
        return await student_report(
            tenant_scope,
            date_from=date_from,
            date_to=date_to,
            lecture_id=lecture_id,
            limit=check_limit(limit),
            cursor=cursor,
        )

    @get("/lectures/{lecture_id:str}/attendance/report",
         summary="A lecture's attendance: summary and per-session counts")  # fmt: skip
    async def lecture(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        date_from: DateFrom = None,
        date_to: DateTo = None,
    ) -> LectureReport:
        _check_range(date_from, date_to)
        return await lecture_report(tenant_scope, lecture_id, date_from=date_from, date_to=date_to)


CONTROLLERS: list[type[Controller]] = [SessionAttendanceController, AttendanceReportController]
