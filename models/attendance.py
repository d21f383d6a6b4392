"""Attendance: the query layer (a session's sheet, the checks of a session, the lock a check
takes, and the counts the reports are made of).

**The lock rule**: a check first locks its session's row (``lock_session``: ``FOR NO KEY
UPDATE``) for the rest of the transaction, so checks of one session serialise and the
current checks read after the lock (``enrolled_checks``) are the state the upsert really
replaces. One row lock per check, whatever the class size, and on a row no other
session's check needs: teachers checking their own sessions never wait on each other. The
lock does not block what only references the session (``FOR KEY SHARE``, foreign keys),
and a session cannot be deleted under a check. Reading the checks is a separate statement
on purpose: a row read in the statement that waits for a lock would be the pre-wait
version.

Enrollment rows are read, not locked: a check of a student whose drop commits meanwhile is
the same outcome as the check made just before the drop (a drop does not read attendance,
and the sheet and reports count active enrollees only), so locking them bought nothing and
cost a row lock, a dirtied page and a WAL record per student per check.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from models.enrollments import ACTIVE, active_count
from models.events import AuditEntry, Event, insert_audits, insert_events
from models.pages import Keyset, Page, Params, as_text, as_uuid, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture, LectureSession


class SessionRef(msgspec.Struct, frozen=True):
    """What a check needs to know of its session, and the transaction's time (``now()``:
    what an upsert writes as ``checked_at`` when none is given)."""

    id: uuid.UUID
    lecture_id: uuid.UUID
    date: dt.date
    now: dt.datetime


# A student's check in a session, as the API shows it (no docstring: it would become the
# OpenAPI description).
class Attendance(msgspec.Struct):
    session_id: uuid.UUID
    student_id: uuid.UUID
    status: str
    note: str
    checked_at: dt.datetime
    checked_by: uuid.UUID | None


class StoredCheck(Attendance):
    """An ``attendance`` row."""

    id: uuid.UUID


CHECK_COLUMNS = (
    "a.id, a.session AS session_id, a.student AS student_id, a.status, a.note, "
    "a.checked_at, a.checked_by"
)


class Check(msgspec.Struct):
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


class SheetHead(msgspec.Struct):
    """The session a sheet is of, with its lecture."""

    session_id: uuid.UUID
    lecture_id: uuid.UUID
    lecture_title: str
    seq: int
    date: dt.date
    topic: str


class Sheet(SheetHead):
    counts: Counts
    items: list[SheetRow]


class _SheetLine(SheetHead):
    """A row of ``SHEET_SQL``: the session, and one enrollee with their check (all None on
    the one row of a session without enrollees; the check's fields None if unchecked)."""

    student_id: uuid.UUID | None
    name: str | None
    check_id: uuid.UUID | None
    status: str | None
    note: str | None
    checked_at: dt.datetime | None
    checked_by: uuid.UUID | None

    @property
    def check(self) -> Check | None:
        if self.status is None or self.checked_at is None:
            return None
        return Check(self.status, self.note or "", self.checked_at, self.checked_by)


# --- a check ---------------------------------------------------------------------------


async def lock_session(scope: TenantScope, session_id: Any) -> SessionRef:
    """The session, locked for the rest of the transaction (the lock rule), or a 404 when
    it is not one of this academy's."""
    return await scope.one(
        SessionRef,
        LectureSession,
        "SELECT ls.id, ls.lecture AS lecture_id, ls.date, now() AS now FROM lecture_session ls "
        "WHERE ls.tenant = $1 AND ls.id = $2 FOR NO KEY UPDATE",
        session_id,
    )


class _Enrolled(msgspec.Struct):
    """A row of ``enrolled_checks``: an actively enrolled student, and their check (the
    check's fields None when unchecked)."""

    student: uuid.UUID
    id: uuid.UUID | None
    status: str | None
    note: str | None
    checked_at: dt.datetime | None
    checked_by: uuid.UUID | None


async def enrolled_checks(
    scope: TenantScope, session: SessionRef, student_ids: Sequence[uuid.UUID]
) -> tuple[set[uuid.UUID], dict[uuid.UUID, StoredCheck]]:
    """Which of ``student_ids`` are actively enrolled in the session's lecture (``ACTIVE``,
    the one rule of who may be checked), and the stored checks of those, by student. Read
    under the session lock (``lock_session``), the checks cannot change before the caller's
    upsert. One statement."""
    if not student_ids:
        return set(), {}
    rows = await scope.rows(
        _Enrolled,
        f"""
        SELECT e.student, a.id, a.status, a.note, a.checked_at, a.checked_by
        FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1
        LEFT JOIN attendance a ON a.tenant = $1 AND a.session = $3 AND a.student = e.student
        WHERE e.tenant = $1 AND e.lecture = $2 AND {ACTIVE}
          AND e.student = ANY($4::uuid[])
        """,
        session.lecture_id,
        session.id,
        list(student_ids),
    )
    checks = {
        r.student: StoredCheck(
            session_id=session.id,
            student_id=r.student,
            status=r.status,
            note=r.note or "",
            checked_at=r.checked_at,
            checked_by=r.checked_by,
            id=r.id,
        )
        for r in rows
        if r.id is not None and r.status is not None and r.checked_at is not None
    }
    return {r.student for r in rows}, checks


def as_written(
    session: SessionRef,
    actor_id: uuid.UUID,
    writes: Sequence[tuple[uuid.UUID, str, str, dt.datetime | None]],
    current: Mapping[uuid.UUID, StoredCheck],
) -> dict[uuid.UUID, StoredCheck]:
    """The rows ``write_checks`` will leave for ``(student, status, note, checked_at)``
    writes (``checked_at`` None: the transaction's time), by student: a stored check keeps
    its id, a new one gets a fresh id. Known before the statement runs, so the audit rows
    and events go out in that same statement."""
    return {
        student: StoredCheck(
            session_id=session.id,
            student_id=student,
            status=status,
            note=note,
            checked_at=(checked_at or session.now).astimezone(dt.UTC),
            checked_by=actor_id,
            id=current[student].id if student in current else uuid.uuid4(),
        )
        for student, status, note, checked_at in writes
    }


# The checks, their audit rows and their outbox events in one statement (the latter two as
# ``models.events`` writes them everywhere). Everything is decided
# before: the session lock keeps other writers of these checks out, so the upsert writes
# exactly the rows ``as_written`` predicted, and the count returned says so.
WRITE_CHECKS = f"""
    WITH checks AS (
        INSERT INTO attendance AS a
            (id, tenant, session, student, status, note, checked_at, checked_by)
        SELECT u.id, $1, $2, u.student, u.status, u.note, u.checked_at, $3
        FROM unnest($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])
             AS u(id, student, status, note, checked_at)
        ON CONFLICT (session, student) DO UPDATE
        SET status = EXCLUDED.status, note = EXCLUDED.note,
            checked_at = EXCLUDED.checked_at, checked_by = EXCLUDED.checked_by
        WHERE a.tenant = $1 AND a.id = EXCLUDED.id
        RETURNING 1
    ), audit AS ({insert_audits("$1", "$3", "'attendance'", first=9)}
    ), events AS ({insert_events("$1", first=13)}
    )
    SELECT count(*) FROM checks
"""


async def write_checks(
    scope: TenantScope,
    session_id: uuid.UUID,
    actor_id: uuid.UUID,
    written: Sequence[StoredCheck],
    audits: Sequence[AuditEntry],
    events: Sequence[Event],
) -> None:
    """Upsert the checks ``as_written`` gave, append their ``audits`` (in order, the actor
    as who) and record the outbox ``events`` (one per ``dedupe_key`` ever), in the caller's
    transaction, which holds the session lock. One statement; none when nothing changes."""
    if not written:
        return
    count = await scope.value(
        WRITE_CHECKS,
        session_id,
        actor_id,
        [w.id for w in written],
        [w.student_id for w in written],
        [w.status for w in written],
        [w.note for w in written],
        [w.checked_at for w in written],
        [a[0] for a in audits],
        [a[1] for a in audits],
        [a[2] for a in audits],
        [a[3] for a in audits],
        [e[0] for e in events],
        [e[1] for e in events],
        [e[2] for e in events],
    )
    if count != len(written):
        # Another writer got past the session lock: refuse rather than audit a guess.
        raise RuntimeError(f"attendance: {count} of {len(written)} checks written")


# --- the sheet -------------------------------------------------------------------------

SHEET_SQL = f"""
    SELECT ls.id AS session_id, ls.lecture AS lecture_id, l.title AS lecture_title, ls.seq,
           ls.date, ls.topic, en.student AS student_id, en.name,
           a.id AS check_id, a.status, a.note, a.checked_at, a.checked_by
    FROM lecture_session ls
    JOIN lecture l ON l.id = ls.lecture AND l.tenant = $1
    LEFT JOIN (
        SELECT e.lecture, s.id AS student, s.name
        FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1
        WHERE e.tenant = $1 AND {ACTIVE}
    ) en ON en.lecture = ls.lecture
    LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = en.student
    WHERE ls.tenant = $1 AND ls.id = $2
    ORDER BY en.name, en.student
"""


def _sheet(head: SheetHead, items: list[SheetRow]) -> Sheet:
    tally = collections.Counter(i.check.status if i.check else "unchecked" for i in items)
    return Sheet(
        **{field: getattr(head, field) for field in SheetHead.__struct_fields__},
        counts=Counts(**{f: tally[f] for f in Counts.__struct_fields__}),
        items=items,
    )


async def _read_sheet(
    scope: TenantScope, session_id: uuid.UUID
) -> tuple[Sheet, dict[uuid.UUID, StoredCheck]]:
    lines = await scope.rows(_SheetLine, SHEET_SQL, session_id)
    if not lines:
        raise NotFoundInTenant(LectureSession, session_id)
    items: list[SheetRow] = []
    stored: dict[uuid.UUID, StoredCheck] = {}
    for line in lines:
        if line.student_id is None:
            continue  # the LEFT JOIN's one row of a session without enrollees
        check = line.check
        items.append(SheetRow(line.student_id, line.name or "", check))
        if check is not None and line.check_id is not None:
            stored[line.student_id] = StoredCheck(
                session_id=session_id,
                student_id=line.student_id,
                id=line.check_id,
                **msgspec.structs.asdict(check),
            )
    return _sheet(lines[0], items), stored


async def load_sheet(scope: TenantScope, session_id: Any) -> Sheet:
    """The session's sheet in one query: every actively enrolled student, by name, with
    their check or None. A session with nobody enrolled is an empty sheet, not a 404."""
    sheet, _ = await _read_sheet(scope, parse_id(LectureSession, session_id))
    return sheet


async def sheet_checks(
    scope: TenantScope, session: SessionRef
) -> tuple[Sheet, dict[uuid.UUID, StoredCheck]]:
    """The sheet of a locked session (``lock_session``) and its stored checks by student,
    in one statement: its students are the ones who may be checked (``ACTIVE``), and read
    under the lock the checks are what the caller's upsert replaces."""
    return await _read_sheet(scope, session.id)


def _check_of(stored: StoredCheck) -> Check:
    return Check(stored.status, stored.note, stored.checked_at, stored.checked_by)


def with_checks(sheet: Sheet, checks: Mapping[uuid.UUID, StoredCheck]) -> Sheet:
    """The sheet with ``checks`` (by student) in place of its students' own, recounted."""
    items = [
        SheetRow(i.student_id, i.name, _check_of(checks[i.student_id]))
        if i.student_id in checks
        else i
        for i in sheet.items
    ]
    return _sheet(sheet, items)


# --- reports ---------------------------------------------------------------------------


class StudentTally(msgspec.Struct):
    """A student's counts over the sessions in range (``student_tallies``)."""

    student_id: uuid.UUID
    name: str
    sessions: int
    present: int
    late: int
    absent: int
    excused: int
    unchecked: int


class SessionTally(msgspec.Struct):
    """A session's counts over the lecture's actively enrolled students."""

    session_id: uuid.UUID
    seq: int
    date: dt.date
    topic: str
    present: int
    late: int
    absent: int
    excused: int
    unchecked: int


class LectureHead(msgspec.Struct):
    lecture_id: uuid.UUID
    title: str
    enrolled: int


STATUS_COUNTS = """
    count(a.id) FILTER (WHERE a.status = 'present') AS present,
    count(a.id) FILTER (WHERE a.status = 'late') AS late,
    count(a.id) FILTER (WHERE a.status = 'absent') AS absent,
    count(a.id) FILTER (WHERE a.status = 'excused') AS excused"""

BY_NAME = Keyset(
    columns=("s.name", "s.id"), fields=("name", "student_id"), kinds=(as_text, as_uuid)
)


async def student_tallies(
    scope: TenantScope,
    *,
    date_from: dt.date | None,
    date_to: dt.date | None,
    lecture_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> Page[StudentTally]:
    """Per-student counts in one GROUP BY query, a page at a time (by name, then id).

    Students with an active enrollment but no session in range are listed with zeros.
    """
    params = Params(lecture_id, date_from, date_to)
    return await keyset_page(
        scope,
        StudentTally,
        select=f"""
        SELECT s.id AS student_id, s.name,
               count(ls.id) AS sessions, {STATUS_COUNTS},
               count(ls.id) FILTER (WHERE a.id IS NULL) AS unchecked
        FROM student s
        JOIN enrollment e ON e.student = s.id AND e.tenant = $1
             AND ($2::uuid IS NULL OR e.lecture = $2)
             AND {scope.own_lectures("e.lecture", params)}
        LEFT JOIN lecture_session ls ON ls.lecture = e.lecture AND ls.tenant = $1
             AND ($3::date IS NULL OR ls.date >= $3) AND ($4::date IS NULL OR ls.date <= $4)
        LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = s.id
        """,
        where=["s.tenant = $1", ACTIVE],
        params=params,
        key=BY_NAME,
        cursor=cursor,
        limit=limit,
        group_by="GROUP BY s.id",
    )


async def lecture_tallies(
    scope: TenantScope, lecture_id: Any, *, date_from: dt.date | None, date_to: dt.date | None
) -> tuple[LectureHead, list[SessionTally]]:
    """The lecture with its number of active enrollments, and the per-session counts over
    those students (one GROUP BY query), by date. A 404 when the lecture is not here."""
    head = await scope.one(
        LectureHead,
        Lecture,
        f"SELECT l.id AS lecture_id, l.title, {active_count()} AS enrolled "
        "FROM lecture l WHERE l.tenant = $1 AND l.id = $2",
        lecture_id,
    )
    sessions = await scope.rows(
        SessionTally,
        f"""
        SELECT ls.id AS session_id, ls.seq, ls.date, ls.topic, {STATUS_COUNTS},
               count(en.student) FILTER (WHERE a.id IS NULL) AS unchecked
        FROM lecture_session ls
        LEFT JOIN (
            SELECT e.student FROM enrollment e
            JOIN student s ON s.id = e.student AND s.tenant = $1
            WHERE e.tenant = $1 AND e.lecture = $2 AND {ACTIVE}
        ) en ON true
        LEFT JOIN attendance a ON a.tenant = $1 AND a.session = ls.id AND a.student = en.student
        WHERE ls.tenant = $1 AND ls.lecture = $2
          AND ($3::date IS NULL OR ls.date >= $3) AND ($4::date IS NULL OR ls.date <= $4)
        GROUP BY ls.id
        ORDER BY ls.date, ls.seq, ls.id
        """,
        head.lecture_id,
        date_from,
        date_to,
    )
    return head, sessions
