"""Exams and scores: the query layer (exam CRUD, score writes, the score lists with their
standings, the values statistics are made of, a student's grade history).

**The exam lock**: every write of an exam's scores, and every edit of the exam, first locks
the exam row (``FOR NO KEY UPDATE``: it serialises score writers and exam edits of one
exam, but not the foreign-key checks of other tables). ``write_scores`` takes the lock
itself, so no writer can forget it.

Soft-deleted students are left out of every list, rank, count and statistic here (as they
will be once purged); their rows stay and come back on restore. Undated exams (the API
requires a date, but other writers may not) sort last.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from models.db import as_struct, transaction
from models.enrollments import ACTIVE
from models.errors import Problem
from models.events import audits_from, events_from
from models.lectures import lecture_exists
from models.pages import Keyset, Page, Params, as_date, as_uuid, keyset_page, page_from
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Exam as ExamTable
from models.tables import Student as StudentTable


class LockedExam(msgspec.Struct):
    """An exam under its lock, with its highest score and its number of scores (scores of
    soft-deleted students included: they come back on restore)."""

    id: uuid.UUID
    lecture: uuid.UUID
    max_score: Decimal
    question_count: int | None
    answer_key: dict[str, list[str]] | None
    marking: Any
    top_score: Decimal | None
    score_total: int


async def lock_exam(scope: TenantScope, exam_id: Any) -> LockedExam:
    """Lock the exam for the rest of the caller's transaction; a 404 when it is not here."""
    return await scope.one(
        LockedExam,
        ExamTable,
        """
        SELECT e.id, e.lecture, e.max_score, e.question_count, e.answer_key, e.marking,
               (SELECT max(s.score) FROM score s WHERE s.tenant = $1 AND s.exam = e.id)
                   AS top_score,
               (SELECT count(*) FROM score s WHERE s.tenant = $1 AND s.exam = e.id)
                   AS score_total
        FROM exam e WHERE e.tenant = $1 AND e.id = $2
        FOR NO KEY UPDATE OF e
        """,
        exam_id,
    )


async def write_scores(
    scope: TenantScope,
    exam_id: Any,
    scores: Sequence[tuple[uuid.UUID, Decimal]],
    *,
    actor_id: Any,
    source: str,
) -> dict[uuid.UUID, bool]:
    """Upsert validated scores (in the caller's transaction, under the exam lock, which
    this takes); ``student -> changed``. Each change is audited and reported in the outbox
    (``score.recorded``); a score equal to the stored one changes nothing. One statement
    for any number of scores."""
    if not scores:
        return {}
    exam = await lock_exam(scope, exam_id)
    rows = await scope.fetch(
        WRITE_SCORES,
        exam.id,
        [student for student, _ in scores],
        [value for _, value in scores],
        actor_id,
        source,
        exam.lecture,
        exam.max_score,
    )
    return {r["student"]: r["changed"] for r in rows}


# A score as its audit rows keep it (``before`` of a delete), ``row`` naming the score row.
SCORE_SNAPSHOT = (
    "jsonb_build_object('exam_id', {row}.exam, 'student_id', {row}.student, 'score', {row}.score)"
)

# Upsert the changed scores, then an audit row and an outbox event for each row that
# changed. ``before`` reads the snapshot taken when the statement starts; the exam lock,
# taken by an earlier statement of the transaction, keeps other writers of this exam out,
# so that snapshot is the latest state. The audit rows and outbox events are built by
# ``models.events`` (``audits_from``, ``events_from``), as every writer of them is.
_SCORE_AUDITS = audits_from(
    "FROM written w LEFT JOIN before b ON b.student = w.student",
    tenant="$1", actor="$5::uuid", entity="'score'", entity_id="w.id",
    action="CASE WHEN b.id IS NULL THEN 'create' ELSE 'update' END",
    before="""CASE WHEN b.id IS NULL THEN NULL ELSE jsonb_build_object(
               'exam_id', $2::uuid, 'student_id', w.student, 'score', b.score) END""",
    after="jsonb_build_object('exam_id', $2::uuid, 'student_id', w.student, 'score', w.score)",
)  # fmt: skip
_SCORE_EVENTS = events_from(
    "FROM written w",
    tenant="$1", kind="'score.recorded'",
    dedupe_key="'score.recorded:' || $2::uuid::text || ':' || w.student::text || ':' || w.score::text",
    payload="""jsonb_build_object('exam_id', $2::uuid, 'student_id', w.student,
                                  'lecture_id', $7::uuid, 'score', w.score,
                                  'max_score', $8::numeric)""",
)  # fmt: skip
WRITE_SCORES = f"""
    WITH input AS (
        SELECT * FROM unnest($3::uuid[], $4::numeric[]) AS t(student, score)
    ),
    before AS (
        SELECT s.id, s.student, s.score FROM score s
        WHERE s.tenant = $1 AND s.exam = $2::uuid AND s.student = ANY($3::uuid[])
    ),
    written AS (
        INSERT INTO score AS s
            (id, tenant, exam, student, score, source, updated_by, created_at, updated_at)
        SELECT gen_random_uuid(), $1, $2::uuid, i.student, i.score, $6::text, $5::uuid,
               now(), now()
        FROM input i
        ON CONFLICT (exam, student) DO UPDATE
            SET score = EXCLUDED.score, source = EXCLUDED.source,
                updated_by = EXCLUDED.updated_by, updated_at = now()
            WHERE s.score IS DISTINCT FROM EXCLUDED.score
        RETURNING s.id, s.student, s.score
    ),
    audit AS ({_SCORE_AUDITS}
    ),
    events AS ({_SCORE_EVENTS}
    )
    SELECT i.student, (w.id IS NOT NULL) AS changed
    FROM input i LEFT JOIN written w ON w.student = i.student
"""


# --- exams -----------------------------------------------------------------------------


class Exam(msgspec.Struct):
    """An exam with its lecture's title and its number of scores. The functions that
    return exams take the Struct to return (``Exam`` or a subclass): the API declares its
    own subclass, because a page's schema is named after the module of its items."""

    id: uuid.UUID
    lecture_id: uuid.UUID
    lecture_title: str
    title: str
    date: dt.date | None
    max_score: float
    question_count: int | None
    answer_key: dict[str, list[str]] | None
    score_count: int
    created_at: dt.datetime
    updated_at: dt.datetime


# An empty answer key reads as none.
EXAM_COLUMNS = """
    e.id, e.lecture AS lecture_id, l.title AS lecture_title, e.title, e.date,
    e.max_score::float8 AS max_score, e.question_count,
    NULLIF(e.answer_key, '{}'::jsonb) AS answer_key, e.created_at, e.updated_at,
    COALESCE(e.date, DATE '9999-12-31') AS sort_date,
    (SELECT count(*) FROM score s
       JOIN student st ON st.id = s.student AND st.tenant = $1 AND st.deleted_at IS NULL
      WHERE s.tenant = $1 AND s.exam = e.id) AS score_count
"""
EXAM_FROM = "exam e JOIN lecture l ON l.id = e.lecture AND l.tenant = $1"

# Exams by date, undated last, then id (``e`` is the exam).
BY_DATE = ("COALESCE(e.date, DATE '9999-12-31')", "e.id")


def by_date(*, descending: bool = False, id_field: str = "id") -> Keyset:
    """The exams' sort key; the row holds it as ``sort_date`` and ``id_field``."""
    return Keyset(BY_DATE, ("sort_date", id_field), (as_date, as_uuid), descending)


async def load_exam(scope: TenantScope, exam_id: Any) -> Exam:
    """The exam, or a 404 when it is not one of this academy's."""
    return await scope.one(
        Exam,
        ExamTable,
        f"SELECT {EXAM_COLUMNS} FROM {EXAM_FROM} WHERE e.tenant = $1 AND e.id = $2",
        exam_id,
    )


async def list_exams(
    scope: TenantScope,
    lecture_id: Any,
    *,
    descending: bool,
    limit: int,
    cursor: str | None,
) -> Page[Exam]:
    """A page of the lecture's exams by date (a 404 when the lecture is not here)."""
    lecture = await lecture_exists(scope, lecture_id)
    params = Params()
    return await keyset_page(
        scope,
        Exam,
        select=f"SELECT {EXAM_COLUMNS} FROM {EXAM_FROM}",
        where=["e.tenant = $1", f"e.lecture = {params(lecture)}"],
        params=params,
        key=by_date(descending=descending),
        cursor=cursor,
        limit=limit,
    )


async def create_exam(scope: TenantScope, lecture_id: uuid.UUID, values: dict[str, Any]) -> Exam:
    """A new exam of the lecture with validated ``values`` (column -> value)."""
    row = scope.new(ExamTable, lecture=lecture_id, **values)
    await row.save()
    return await load_exam(scope, row.id)


async def update_exam(scope: TenantScope, exam_id: uuid.UUID, values: dict[str, Any]) -> None:
    """Set validated ``values`` (column -> value) and ``updated_at``; nothing when empty.
    The caller holds the exam lock (``lock_exam``) it validated them under."""
    if not values:
        return
    columns = {getattr(ExamTable, k): v for k, v in values.items()}
    columns[ExamTable.updated_at] = dt.datetime.now(dt.UTC)
    await scope.update(ExamTable, columns).where(ExamTable.id == exam_id)


async def delete_exam(scope: TenantScope, exam_id: Any, *, actor_id: Any, force: bool) -> None:
    """Delete the exam (its scores and OMR batches cascade). An exam with scores is a 409
    unless ``force``; then every score's audit trail ends with a ``delete`` row (one
    statement) before the exam and its scores go."""
    async with transaction():
        exam = await lock_exam(scope, exam_id)
        # Pages still being read would vanish under their worker (the batch cascades)
        # and leave its job RUNNING for ever: wait for the batch to finish first.
        reading = await scope.value(
            "SELECT count(*) FROM omr_batch WHERE tenant = $1 AND exam = $2 "
            "AND finished_at IS NULL",
            exam.id,
        )
        if reading:
            raise Problem(
                409,
                f"{reading} OMR batch(es) of this exam are still being read; "
                "delete the exam once they finish",
                type_="/problems/exam-is-being-graded",
            )
        if exam.score_total and not force:
            raise Problem(
                409,
                f"the exam has {exam.score_total} score(s); "
                "delete with force=true to remove them too",
                type_="/problems/exam-has-scores",
            )
        if exam.score_total:
            await scope.execute(
                audits_from(
                    "FROM score s WHERE s.tenant = $1 AND s.exam = $2",
                    tenant="$1", actor="$3::uuid", entity="'score'", entity_id="s.id",
                    action="'delete'", before=SCORE_SNAPSHOT.format(row="s"),
                ),
                exam.id,
                actor_id,
            )  # fmt: skip
        await scope.execute("DELETE FROM exam WHERE tenant = $1 AND id = $2", exam.id)


# --- students --------------------------------------------------------------------------


class Standing(msgspec.Struct):
    """A student as a score (or a check) sees them."""

    student: uuid.UUID
    found: bool  # a live student of this academy
    enrolled: bool  # actively enrolled in the lecture asked about


async def check_students(
    scope: TenantScope, lecture_id: uuid.UUID | None, students: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Standing]:
    """Each student's standing in the lecture (``lecture_id`` None: only whether they are
    live students). One statement."""
    rows = await scope.rows(
        Standing,
        f"""
        SELECT t.student, s.id IS NOT NULL AS found, e.id IS NOT NULL AS enrolled
        FROM unnest($2::uuid[]) AS t(student)
        LEFT JOIN student s ON s.tenant = $1 AND s.id = t.student AND s.deleted_at IS NULL
        LEFT JOIN enrollment e
               ON e.tenant = $1 AND e.student = s.id AND e.lecture = $3::uuid AND {ACTIVE}
        """,
        list(students),
        lecture_id,
    )
    return {r.student: r for r in rows}


async def student_exists(scope: TenantScope, student_id: Any) -> uuid.UUID:
    """The student's id, or a 404 when it is not a live student of this academy."""
    key = parse_id(StudentTable, student_id)
    if not (await check_students(scope, None, [key]))[key].found:
        raise NotFoundInTenant(StudentTable, student_id)
    return key


# --- score reads -----------------------------------------------------------------------


class RankedScore(msgspec.Struct):
    """A score with its standing in the exam: ``rank`` (competition rank, 1 = highest)
    and ``below``, the number of the exam's ``n`` scores strictly below it."""

    student_id: uuid.UUID
    student_name: str
    score: float
    rank: int
    below: int
    n: int
    updated_at: dt.datetime


class ExamHead(msgspec.Struct):
    exam_id: uuid.UUID
    max_score: float


EXAM_SCORES = """
    WITH ex AS (SELECT e.id, e.max_score FROM exam e WHERE e.tenant = $1 AND e.id = $2)
    SELECT ex.id AS exam_id, ex.max_score::float8 AS max_score,
           r.student AS student_id, r.name AS student_name, r.score::float8 AS score,
           r.updated_at, r.rank, r.below, r.n
    FROM ex LEFT JOIN LATERAL (
        SELECT s.student, st.name, s.score, s.updated_at,
               rank() OVER (ORDER BY s.score DESC) AS rank,
               rank() OVER (ORDER BY s.score ASC) - 1 AS below,
               count(*) OVER () AS n
        FROM score s
        JOIN student st ON st.id = s.student AND st.tenant = $1 AND st.deleted_at IS NULL
        WHERE s.tenant = $1 AND s.exam = ex.id
    ) r ON true
    ORDER BY r.rank, r.name, r.student
"""


async def exam_scores(scope: TenantScope, exam_id: Any) -> tuple[ExamHead, list[RankedScore]]:
    """The exam and its scores, best first (ties by name), in one statement; a 404 when
    the exam is not here."""
    rows = await scope.fetch(EXAM_SCORES, parse_id(ExamTable, exam_id))
    if not rows:
        raise NotFoundInTenant(ExamTable, exam_id)
    # An exam without scores is the one row of the LEFT JOIN, its score columns NULL.
    scores = [as_struct(RankedScore, r) for r in rows if r["student_id"] is not None]
    return as_struct(ExamHead, rows[0]), scores


class ScoreValues(msgspec.Struct):
    exam_id: uuid.UUID
    max_score: Decimal
    scores: list[Decimal]  # ascending


async def score_values(scope: TenantScope, exam_id: Any) -> ScoreValues:
    """The exam's scores, for its statistics (one statement); a 404 when it is not here."""
    return await scope.one(
        ScoreValues,
        ExamTable,
        """
        SELECT e.id AS exam_id, e.max_score,
               COALESCE((SELECT array_agg(s.score ORDER BY s.score) FROM score s
                           JOIN student st
                             ON st.id = s.student AND st.tenant = $1 AND st.deleted_at IS NULL
                          WHERE s.tenant = $1 AND s.exam = e.id), '{}') AS scores
        FROM exam e WHERE e.tenant = $1 AND e.id = $2
        """,
        exam_id,
    )


class ExamGrade(msgspec.Struct):
    """A student's score in one exam and their rank there: what a row of the grade
    history and the API's entry for it share."""

    exam_id: uuid.UUID
    exam_title: str
    date: dt.date | None
    lecture_id: uuid.UUID
    lecture_title: str
    score: float
    max_score: float
    rank: int


class GradeRow(ExamGrade):
    """A grade with its standing in the exam (see ``RankedScore``); ``count`` is the
    exam's number of scores."""

    below: int
    count: int


# A page of the student's exams first (keyset on date, id), then the windows over just
# those exams' scores: the ranks come from one statement whatever the page size.
GRADE_HISTORY = """
    WITH page AS (
        SELECT e.id, e.title, e.date, e.max_score, e.lecture, s.score,
               COALESCE(e.date, DATE '9999-12-31') AS sort_date
        FROM score s JOIN exam e ON e.id = s.exam AND e.tenant = $1
        WHERE {where}
        ORDER BY {order_by}
        LIMIT {limit}
    ),
    standing AS (
        SELECT s.exam, s.student,
               rank() OVER (PARTITION BY s.exam ORDER BY s.score DESC) AS rank,
               rank() OVER (PARTITION BY s.exam ORDER BY s.score ASC) - 1 AS below,
               count(*) OVER (PARTITION BY s.exam) AS n
        FROM score s
        JOIN student st ON st.id = s.student AND st.tenant = $1 AND st.deleted_at IS NULL
        WHERE s.tenant = $1 AND s.exam IN (SELECT id FROM page)
    )
    SELECT p.id AS exam_id, p.title AS exam_title, p.date, p.lecture AS lecture_id,
           l.title AS lecture_title, p.score::float8 AS score,
           p.max_score::float8 AS max_score, r.rank, r.below, r.n AS count, p.sort_date
    FROM page p
    JOIN lecture l ON l.id = p.lecture AND l.tenant = $1
    JOIN standing r ON r.exam = p.id AND r.student = $2
    ORDER BY p.sort_date, p.id
"""
HISTORY_ORDER = by_date(id_field="exam_id")


async def grade_history(
    scope: TenantScope, student_id: Any, *, limit: int, cursor: str | None
) -> Page[GradeRow]:
    """Every exam the student has a score in, oldest first (undated exams last), a page at
    a time; a 404 when the student is not a live one here. Two statements per page,
    whatever its size."""
    student = await student_exists(scope, student_id)
    params = Params(student)  # $2, as GRADE_HISTORY's standings refer to it
    where = ["s.tenant = $1", "s.student = $2", scope.own_lectures("e.lecture", params)]
    after = HISTORY_ORDER.after(cursor, params)
    if after is not None:
        where.append(after)
    sql = GRADE_HISTORY.format(
        where=" AND ".join(where), order_by=HISTORY_ORDER.order_by, limit=params(limit + 1)
    )
    rows = await scope.fetch(sql, *params.values)
    return page_from(rows, limit, HISTORY_ORDER, GradeRow)
