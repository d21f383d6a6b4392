"""Attendance: the query layer (a session's sheet, the checks of a session, the enrollment
locks a check takes, and the counts the reports are made of).

**The lock rule**: a check first locks the enrollment rows of the students it checks
(``lock_enrolled``: ``FOR NO KEY UPDATE``, in ``enrollment.id`` order) for the rest of the
transaction, so concurrent checks of one student serialise, the current check read after
the lock (``current_checks``) is the state the upsert really replaces, and a check cannot
race the student being dropped. Reading the current checks is a separate statement on
purpose: a row read in the statement that waits for a lock would be the pre-wait version.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from models.enrollments import ACTIVE, active_count
from models.pages import Keyset, Page, Params, as_text, as_uuid, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture, LectureSession


class SessionRef(msgspec.Struct, frozen=True):
    """What a check needs to know of its session."""

    id: uuid.UUID
    lecture_id: uuid.UUID
    date: dt.date


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
    status: str | None
    note: str | None
    checked_at: dt.datetime | None
    checked_by: uuid.UUID | None

    @property
    def check(self) -> Check | None:
        return None if self.status is None else msgspec.convert(self, Check, from_attributes=True)


# --- a check ---------------------------------------------------------------------------


async def load_session(scope: TenantScope, session_id: Any) -> SessionRef:
    """The session, or a 404 when it is not one of this academy's."""
    return await scope.one(
        SessionRef,
        LectureSession,
        "SELECT ls.id, ls.lecture AS lecture_id, ls.date FROM lecture_session ls "
        "WHERE ls.tenant = $1 AND ls.id = $2",
        session_id,
    )


async def lock_enrolled(
    scope: TenantScope, lecture_id: uuid.UUID, student_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``student_ids`` are actively enrolled in the lecture; their enrollment rows
    stay locked until the transaction ends (one statement)."""
    if not student_ids:
        return set()
    locked = await scope.values(
        f"""
        SELECT e.student FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1
        WHERE e.tenant = $1 AND e.lecture = $2 AND {ACTIVE}
          AND e.student = ANY($3::uuid[])
        ORDER BY e.id
        FOR NO KEY UPDATE OF e
        """,
        lecture_id,
        list(student_ids),
    )
    return set(locked)


async def current_checks(
    scope: TenantScope, session_id: uuid.UUID, student_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, StoredCheck]:
    """The stored checks of these students in the session, by student. Read under their
    enrollment locks (``lock_enrolled``), they cannot change before the caller's upsert."""
    if not student_ids:
        return {}
    rows = await scope.rows(
        StoredCheck,
        f"SELECT {CHECK_COLUMNS} FROM attendance a "
        "WHERE a.tenant = $1 AND a.session = $2 AND a.student = ANY($3::uuid[])",
        session_id,
        list(student_ids),
    )
    return {r.student_id: r for r in rows}


async def upsert_checks(
    scope: TenantScope,
    session_id: uuid.UUID,
    actor_id: uuid.UUID,
    writes: Sequence[tuple[uuid.UUID, str, str, dt.datetime | None]],
) -> dict[uuid.UUID, StoredCheck]:
    """Write ``(student, status, note, checked_at)`` checks (``checked_at`` None: now),
    ``actor_id`` as who checked; the rows as written, by student. One statement."""
    if not writes:
        return {}
    rows = await scope.rows(
        StoredCheck,
        f"""
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
        RETURNING {CHECK_COLUMNS}
        """,
        session_id,
        actor_id,
        [w[0] for w in writes],
        [w[1] for w in writes],
        [w[2] for w in writes],
        [w[3] for w in writes],
    )
    return {r.student_id: r for r in rows}


# --- the sheet -------------------------------------------------------------------------

SHEET_SQL = f"""
    SELECT ls.id AS session_id, ls.lecture AS lecture_id, l.title AS lecture_title, ls.seq,
           ls.date, ls.topic, en.student AS student_id, en.name,
           a.status, a.note, a.checked_at, a.checked_by
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


async def load_sheet(scope: TenantScope, session_id: Any) -> Sheet:
    """The session's sheet in one query: every actively enrolled student, by name, with
    their check or None. A session with nobody enrolled is an empty sheet, not a 404."""
    lines = await scope.rows(_SheetLine, SHEET_SQL, parse_id(LectureSession, session_id))
    if not lines:
        raise NotFoundInTenant(LectureSession, session_id)
    items = [
        msgspec.convert(line, SheetRow, from_attributes=True)
        for line in lines
        if line.student_id is not None  # the LEFT JOIN's row for a session without enrollees
    ]
    tally = collections.Counter(i.check.status if i.check else "unchecked" for i in items)
    head = lines[0]
    return Sheet(
        **{field: getattr(head, field) for field in SheetHead.__struct_fields__},
        counts=Counts(**{f: tally[f] for f in Counts.__struct_fields__}),
        items=items,
    )


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
