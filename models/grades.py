"""Exams and scores: the query layer.

**The exam lock**: every write of an exam's scores, and every edit of the exam, first locks
the exam row (``FOR NO KEY UPDATE``: it serialises score writers and exam edits of one
exam, but not the foreign-key checks of other tables). ``write_scores`` takes the lock
itself, so no writer can forget it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Exam as ExamTable


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
    found = await scope.row(
        LockedExam,
        """
        SELECT e.id, e.lecture, e.max_score, e.question_count, e.answer_key, e.marking,
               (SELECT max(s.score) FROM score s WHERE s.tenant = $1 AND s.exam = e.id)
                   AS top_score,
               (SELECT count(*) FROM score s WHERE s.tenant = $1 AND s.exam = e.id)
                   AS score_total
        FROM exam e WHERE e.tenant = $1 AND e.id = $2
        FOR NO KEY UPDATE OF e
        """,
        parse_id(ExamTable, exam_id),
    )
    if found is None:
        raise NotFoundInTenant(ExamTable, exam_id)
    return found


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


# Upsert the changed scores, then an audit row and an outbox event for each row that
# changed. ``before`` reads the snapshot taken when the statement starts; the exam lock,
# taken by an earlier statement of the transaction, keeps other writers of this exam out,
# so that snapshot is the latest state. The outbox and audit rows have the shape that
# ``models.events.emit_event`` / ``record_audit`` write, set-based instead of one per row.
WRITE_SCORES = """
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
    audit AS (
        INSERT INTO audit_log (tenant, actor, entity, entity_id, action, before, after, at)
        SELECT $1, $5::uuid, 'score', w.id,
               CASE WHEN b.id IS NULL THEN 'create' ELSE 'update' END,
               CASE WHEN b.id IS NULL THEN NULL ELSE jsonb_build_object(
                   'exam_id', $2::uuid, 'student_id', w.student, 'score', b.score) END,
               jsonb_build_object('exam_id', $2::uuid, 'student_id', w.student, 'score', w.score),
               now()
        FROM written w LEFT JOIN before b ON b.student = w.student
    ),
    events AS (
        INSERT INTO outbox_event (id, tenant, kind, dedupe_key, payload, created_at, attempts)
        SELECT gen_random_uuid(), $1, 'score.recorded',
               'score.recorded:' || $2::uuid::text || ':' || w.student::text || ':'
                   || w.score::text,
               jsonb_build_object('exam_id', $2::uuid, 'student_id', w.student,
                                  'lecture_id', $7::uuid, 'score', w.score,
                                  'max_score', $8::numeric),
               now(), 0
        FROM written w
        ON CONFLICT (dedupe_key) DO NOTHING
    )
    SELECT i.student, (w.id IS NOT NULL) AS changed
    FROM input i LEFT JOIN written w ON w.student = i.student
"""
