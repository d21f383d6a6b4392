"""Enrollments: the active-enrollment rule, and enrolment under the lecture lock.

**Active enrollment** means ``status = 'active'`` of a student who is not soft-deleted.
Every count (``enrolled_count``, capacity, the delete guard), roster, recipient list and
report uses ``ACTIVE`` / ``active_count()``, so the numbers a client sees agree with the
roster it shows.

**The lock rule**: every write that depends on a lecture's enrollments locks the lecture
row first (``FOR UPDATE``), several lectures in id order. ``enrol_many`` is the one
enrolment of the system (one student by hand, thousands from an Excel import): capacity
holds under any concurrency, and every pair gets an outcome instead of a partial write.

The reads of enrollments (a lecture's roster, a student's lectures) are here too.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any, Literal

import msgspec

from models import db
from models.pages import Keyset, Page, Params, as_text, as_uuid, page_from
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Lecture as LectureTable
from models.tables import Student as StudentTable

# Over ``enrollment e JOIN student s ON s.id = e.student``.
ACTIVE = "e.status = 'active' AND s.deleted_at IS NULL"


def enrolled(student: str, lecture: str) -> str:
    """An EXISTS: the student is actively enrolled in the lecture (``student``,
    ``lecture``: their SQL; the tenant is ``$1``)."""
    return f"""EXISTS (
    SELECT 1 FROM enrollment e JOIN student s ON s.id = e.student
    WHERE e.tenant = $1 AND e.lecture = {lecture} AND e.student = {student} AND {ACTIVE})"""


async def is_enrolled(scope: TenantScope, student_id: Any, lecture_id: Any) -> bool:
    """Whether the student's enrollment in the lecture is active."""
    return bool(await scope.value(f"SELECT {enrolled('$2', '$3')}", student_id, lecture_id))


def active_count(lecture_id: str = "l.id") -> str:
    """A subquery: the active enrollments of the lecture whose id is ``lecture_id``."""
    return f"""(
    SELECT count(*) FROM enrollment e JOIN student s ON s.id = e.student
    WHERE e.lecture = {lecture_id} AND {ACTIVE})"""


class Enrollment(msgspec.Struct):
    id: uuid.UUID
    lecture_id: uuid.UUID
    student_id: uuid.UUID
    status: str
    source: str
    enrolled_at: dt.datetime
    dropped_at: dt.datetime | None


ENROLLMENT_COLUMNS = (
    "id, lecture AS lecture_id, student AS student_id, status, source, enrolled_at, dropped_at"
)


class _Standing(msgspec.Struct):
    """A live student, with one of their enrollments in the lectures asked about."""

    student_id: uuid.UUID
    enrollment: Enrollment | None


class Seats(msgspec.Struct):
    """A locked lecture: what enrolment needs to know about it. ``active`` is None only
    when it was not counted (``lock_lectures(seats_only=True)``, no capacity)."""

    id: uuid.UUID
    title: str
    status: str
    capacity: int | None
    active: int | None

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.capacity <= (self.active or 0)

    @property
    def free(self) -> int | None:
        return None if self.capacity is None else max(0, self.capacity - (self.active or 0))


Result = Literal["created", "reactivated", "already", "no_lecture", "no_student", "closed", "full"]
ENROLLED: frozenset[str] = frozenset({"created", "reactivated"})


class Outcome(msgspec.Struct):
    """What became of one (student, lecture) pair. ``enrollment`` is set for
    ``created``, ``reactivated`` and ``already``; ``lecture`` for all but ``no_lecture``."""

    student_id: uuid.UUID
    lecture_id: uuid.UUID
    result: Result
    enrollment: Enrollment | None = None
    lecture: Seats | None = None


async def lock_lectures(
    scope: TenantScope, lecture_ids: Sequence[uuid.UUID], *, seats_only: bool = False
) -> dict[uuid.UUID, Seats]:
    """Lock the lectures (in id order, so two writers cannot deadlock) for the rest of the
    caller's transaction, and count their active enrollments under the lock. ``seats_only``:
    the caller asks only whether seats are left, so a lecture without a capacity is not
    counted (an import into it re-counted every enrolment it had written so far, once a
    chunk)."""
    ids = sorted(set(lecture_ids))
    await scope.fetch(
        "SELECT id FROM lecture WHERE tenant = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE",
        ids,
    )
    seats = await scope.rows(
        Seats,
        f"SELECT l.id, l.title, l.status, l.capacity, CASE WHEN l.capacity IS NOT NULL "
        f"OR NOT $3::boolean THEN {active_count()} END AS active "
        "FROM lecture l WHERE l.tenant = $1 AND l.id = ANY($2::uuid[])",
        ids,
        seats_only,
    )
    return {s.id: s for s in seats}


async def lock_lecture(scope: TenantScope, lecture_id: Any) -> Seats:
    """One lecture, locked (``lock_lectures``); a lecture of no one here is a 404."""
    key = parse_id(LectureTable, lecture_id)
    found = (await lock_lectures(scope, [key])).get(key)
    if found is None:
        raise NotFoundInTenant(LectureTable, lecture_id)
    return found


async def enrol_many(
    scope: TenantScope, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]], *, source: str
) -> list[Outcome]:
    """Enrol each (student, lecture) pair, in the caller's transaction; one outcome per
    pair, in order. Lectures are locked first (``lock_lectures``); a pair whose student is
    already active changes nothing; a closed lecture takes nobody; a lecture's free seats
    go to pairs in the order given. A dropped enrollment is reactivated (same row, new
    ``enrolled_at``). A fixed number of statements, whatever the number of pairs."""
    return await write_enrolments(scope, await plan_enrolments(scope, pairs), source=source)


async def plan_enrolments(
    scope: TenantScope,
    pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
    *,
    new_students: Collection[uuid.UUID] = (),
) -> list[Outcome]:
    """``enrol_many`` up to the decision: the lectures locked, the rule applied, nothing
    written yet (``write_enrolments`` does). ``new_students`` are students the caller
    inserts in this transaction before writing: live, and enrolled nowhere yet (a bulk
    import decides first, so each new student is written once with its count)."""
    if not pairs:
        return []
    lectures = await lock_lectures(scope, [lecture for _, lecture in pairs], seats_only=True)
    fresh = set(new_students)
    students = sorted({student for student, _ in pairs} - fresh)
    # One statement: which students are live, and their enrollments in these lectures.
    standing = await scope.rows(
        _Standing,
        """
        SELECT s.id AS student_id,
               CASE WHEN e.id IS NOT NULL THEN jsonb_build_object(
                   'id', e.id, 'lecture_id', e.lecture, 'student_id', e.student,
                   'status', e.status, 'source', e.source, 'enrolled_at', e.enrolled_at,
                   'dropped_at', e.dropped_at) END AS enrollment
        FROM student s
        LEFT JOIN enrollment e ON e.student = s.id AND e.lecture = ANY($3::uuid[])
        WHERE s.tenant = $1 AND s.id = ANY($2::uuid[]) AND s.deleted_at IS NULL
        """,
        students,
        sorted(lectures),
    ) if students else []  # fmt: skip
    live = {s.student_id for s in standing} | fresh
    existing = [s.enrollment for s in standing if s.enrollment is not None]
    return decide(pairs, lectures, live, {(e.student_id, e.lecture_id): e for e in existing})


async def write_enrolments(
    scope: TenantScope,
    outcomes: list[Outcome],
    *,
    source: str,
    keep_rows: bool = True,
    counts_kept: bool = False,
) -> list[Outcome]:
    """Write the ``created`` outcomes of ``plan_enrolments`` (one statement), in the same
    transaction; a dropped enrollment among them comes back ``reactivated``. With
    ``keep_rows`` False the outcomes do not get the rows written (a bulk import counts
    outcomes and never shows the rows: decoding them cost a tenth of its apply). With
    ``counts_kept`` the caller keeps the students' ``enrollment_count`` right itself
    (``student_refresh_enrollments`` for those whose count it did not write), and the
    enrollment triggers do not recount them (migration 11:40)."""
    todo = {(o.student_id, o.lecture_id): o for o in outcomes if o.result == "created"}
    if not todo:
        return outcomes
    if not counts_kept:
        return await _insert_enrolments(scope, outcomes, todo, source, keep_rows)
    # The transaction's setting, cleared again as soon as the one statement is done.
    await db.execute("SELECT set_config('academy.enrollment_count_written', 'on', true)")
    written = await _insert_enrolments(scope, outcomes, todo, source, keep_rows)
    await db.execute("SELECT set_config('academy.enrollment_count_written', '', true)")
    return written


async def _insert_enrolments(
    scope: TenantScope,
    outcomes: list[Outcome],
    todo: dict[tuple[uuid.UUID, uuid.UUID], Outcome],
    source: str,
    keep_rows: bool,
) -> list[Outcome]:
    sql = f"""
        INSERT INTO enrollment AS e (id, tenant, student, lecture, status, source, enrolled_at)
        SELECT gen_random_uuid(), $1, t.s, t.l, 'active', $4, now()
        FROM unnest($2::uuid[], $3::uuid[]) AS t(s, l)
        ON CONFLICT (student, lecture) DO UPDATE
            SET status = 'active', source = EXCLUDED.source, enrolled_at = now(),
                dropped_at = NULL
            WHERE e.status <> 'active'
        {f"RETURNING {ENROLLMENT_COLUMNS}" if keep_rows else ""}
    """
    args = ([student for student, _ in todo], [lecture for _, lecture in todo], source)
    if not keep_rows:
        # The lectures are locked since the outcomes were decided: each one is written.
        await scope.execute(sql, *args)
        for o in todo.values():
            if o.enrollment is not None:
                o.result = "reactivated"
        return outcomes
    written = {(e.student_id, e.lecture_id): e for e in await scope.rows(Enrollment, sql, *args)}
    for o in outcomes:
        pair = (o.student_id, o.lecture_id)
        if pair in written:
            if o.result == "created" and o.enrollment is not None:
                o.result = "reactivated"
            o.enrollment = written[pair]
    return outcomes


def decide(
    pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
    lectures: dict[uuid.UUID, Seats],
    live: set[uuid.UUID],
    existing: dict[tuple[uuid.UUID, uuid.UUID], Enrollment],
) -> list[Outcome]:
    """The rule, without the statements: ``created`` marks the pairs to write (a dropped
    one among them is reactivated). A pair listed twice is enrolled once."""
    free = {lid: seats.free for lid, seats in lectures.items()}
    claimed: set[tuple[uuid.UUID, uuid.UUID]] = set()
    outcomes: list[Outcome] = []
    for student, lecture_id in pairs:
        seats = lectures.get(lecture_id)
        current = existing.get((student, lecture_id))
        outcome = Outcome(student, lecture_id, "created", current, seats)
        seats_left = free.get(lecture_id)
        if seats is None:
            outcome.result = "no_lecture"
        elif student not in live:
            outcome.result = "no_student"
        elif (current is not None and current.status == "active") or (
            (student, lecture_id) in claimed
        ):
            outcome.result = "already"
        elif seats.status == "closed":
            outcome.result = "closed"
        elif seats_left == 0:
            outcome.result = "full"
        else:
            if seats_left is not None:
                free[lecture_id] = seats_left - 1
            claimed.add((student, lecture_id))
        outcomes.append(outcome)
    return outcomes


async def drop(scope: TenantScope, lecture_id: uuid.UUID, student_id: uuid.UUID) -> bool:
    """Mark the enrollment dropped (the row stays, as history and for a later
    re-enrolment). False when the student was never enrolled in the lecture; dropping a
    dropped one changes nothing."""
    rows = await scope.fetch(
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
        lecture_id,
        student_id,
    )
    return bool(rows)


# --- reads ------------------------------------------------------------------------------


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


ROSTER_ORDER = Keyset(("s.name", "s.id"), ("name", "student_id"), (as_text, as_uuid))
STUDENT_LECTURES_ORDER = Keyset(("l.title", "l.id"), ("title", "lecture_id"), (as_text, as_uuid))


async def roster(
    scope: TenantScope, lecture_id: Any, *, limit: int, cursor: str | None
) -> Page[RosterEntry]:
    """A lecture's actively enrolled students (``ACTIVE``: soft-deleted ones are left
    out), by name. One statement per page; a lecture of no one here is a 404."""
    arg = Params()
    after = ROSTER_ORDER.after(cursor, arg)
    lecture = arg(parse_id(LectureTable, lecture_id))
    rows = await scope.fetch(
        f"""
        SELECT r.* FROM lecture l
        LEFT JOIN LATERAL (
            SELECT s.id AS student_id, s.name, s.phone, s.school, s.grade,
                   s.status AS student_status, e.id AS enrollment_id, e.source,
                   e.enrolled_at
            FROM enrollment e JOIN student s ON s.id = e.student
            WHERE e.lecture = l.id AND {ACTIVE} {f"AND {after}" if after else ""}
            ORDER BY {ROSTER_ORDER.order_by} LIMIT {arg(limit + 1)}
        ) r ON true
        WHERE l.tenant = $1 AND l.id = {lecture}
        """,
        *arg.values,
    )
    if not rows:
        raise NotFoundInTenant(LectureTable, lecture_id)
    kept = [r for r in rows if r["student_id"] is not None]
    return page_from(kept, limit, ROSTER_ORDER, RosterEntry)


async def lectures_of_student(
    scope: TenantScope, student_id: Any, *, status: str | None, limit: int, cursor: str | None
) -> Page[StudentLecture]:
    """A live student's lectures with the enrollment's status (active and dropped, unless
    ``status`` picks one), by lecture title. One statement per page; a soft-deleted student
    is a 404."""
    arg = Params()
    after = STUDENT_LECTURES_ORDER.after(cursor, arg)
    student = arg(parse_id(StudentTable, student_id))
    extra = f"AND e.status = {arg(status)}" if status is not None else ""
    if after is not None:
        extra += f" AND {after}"
    rows = await scope.fetch(
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
            ORDER BY {STUDENT_LECTURES_ORDER.order_by} LIMIT {arg(limit + 1)}
        ) r ON true
        WHERE s.tenant = $1 AND s.id = {student} AND s.deleted_at IS NULL
        """,
        *arg.values,
    )
    if not rows:
        raise NotFoundInTenant(StudentTable, student_id)
    kept = [r for r in rows if r["lecture_id"] is not None]
    return page_from(kept, limit, STUDENT_LECTURES_ORDER, StudentLecture)
