"""Exams (per lecture) and scores."""

from __future__ import annotations

import uuid
from decimal import Decimal

from piccolo.columns import JSONB, UUID, Date, ForeignKey, Integer, Numeric, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Tenant, User
from models.tables.lectures import Lecture
from models.tables.students import Student


class Exam(Table, tablename="exam", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
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
    # The student number that makes a scanned sheet the batch's answer key (e.g. 99999999).
    omr_key_id = Varchar(length=32, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Score(Table, tablename="score", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    exam = ForeignKey(Exam, null=False, index=False)
    student = ForeignKey(Student, null=False, index=True)
    score = Numeric(digits=(7, 2))
    source = Varchar(length=16, default="manual")  # manual | bulk | omr
    updated_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
