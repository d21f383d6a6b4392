"""Exams (per lecture) and scores."""

from __future__ import annotations

import uuid
from decimal import Decimal

from piccolo.columns import JSONB, UUID, Date, ForeignKey, Integer, Numeric, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.lectures import Lecture
from models.students import Student
from models.tables import Tenant, User


class Exam(Table, tablename="exam", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    lecture = ForeignKey(Lecture, null=False, index=True)
    title = Varchar(length=200)
    date = Date(null=True, default=None)
    max_score = Numeric(digits=(7, 2), default=Decimal(100))
    question_count = Integer(null=True, default=None)
    # {"1": ["3"], "2": ["1", "4"], ...}: question -> accepted answers (OMR uses it)
    answer_key = JSONB(null=True, default=None)
    # OMR grading: the answer card template (omr_template.id; a plain UUID here because
    # models.omr imports this module) and the marking (pipelines.omr.score.Marking).
    omr_template = UUID(null=True, default=None)
    marking = JSONB(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Score(Table, tablename="score", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    exam = ForeignKey(Exam, null=False, index=True)
    student = ForeignKey(Student, null=False, index=True)
    score = Numeric(digits=(7, 2))
    source = Varchar(length=16, default="manual")  # manual | bulk | omr
    updated_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


# One statement for any number of scores: upsert the changed ones, then an audit row and an
# outbox event for each row that changed (a score equal to the stored one changes nothing).
# ``before`` reads the snapshot taken when the statement starts; the exam row lock taken
# earlier in the transaction (``api.grades._lock_exam``, ``actors.omr``) keeps other
# writers of this exam out, so that
# snapshot is the latest state. The outbox and audit rows have the shape that
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
