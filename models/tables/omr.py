"""OMR grading: sheet templates, scan batches and their pages.

A batch is one upload of scans for one exam; each page of it is read on its own (a
retryable step) and counted into ``omr_batch.pages_done`` -- the Postgres barrier whose
last increment finishes the batch. A page keeps what was read (``reading``), the answers
it is scored with (``answers``: the reading, then the teacher's corrections), the scoring
(``results``), and whether it waits for a teacher (``needs_review`` with ``review_items``).
"""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Job, Tenant, User
from models.tables.exams import Exam
from models.tables.students import Student


class OmrTemplate(Table, tablename="omr_template", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    name = Varchar(length=200)
    source = Varchar(length=16, default="custom")  # custom | builtin | omrchecker
    spec = JSONB()  # pipelines.omr.template.Template as JSON
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class PageStatus(str, Enum):
    pending = "PENDING"
    done = "DONE"
    failed = "FAILED"


class OmrBatch(Table, tablename="omr_batch", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    exam = ForeignKey(Exam, null=False, index=True, on_delete=OnDelete.cascade)
    template = ForeignKey(OmrTemplate, null=True, default=None, on_delete=OnDelete.set_null)
    # The template as it was when the batch was read: editing the template later does not
    # change how this batch's pages were (or are re-)read.
    template_spec = JSONB()
    job = ForeignKey(Job, null=True, default=None, on_delete=OnDelete.set_null)
    tier = Varchar(length=16, default="ai-basic")
    input_keys = JSONB(default="[]")  # [{"key", "filename", "content_type"}]
    page_count = Integer(null=True, default=None)  # known once split
    pages_done = Integer(default=0)
    pages_failed = Integer(default=0)
    created_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    created_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class OmrPage(Table, tablename="omr_page", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    batch = ForeignKey(OmrBatch, null=False, index=False, on_delete=OnDelete.cascade)
    page_no = Integer()  # 1-based, in upload order
    source = Varchar(length=255, default="")  # file name (and PDF page)
    image_key = Text(null=True, default=None)
    status = Varchar(length=16, choices=PageStatus, default=PageStatus.pending.value)
    error_code = Varchar(length=32, null=True, default=None)
    error = Text(null=True, default=None)
    reading = JSONB(null=True, default=None)
    answers = JSONB(null=True, default=None)
    results = JSONB(null=True, default=None)
    student_number = Varchar(length=32, null=True, default=None)
    student = ForeignKey(Student, null=True, default=None, on_delete=OnDelete.set_null)
    score = Numeric(digits=(7, 2), null=True, default=None)
    needs_review = Boolean(default=False)
    review_items = JSONB(default="[]")
    reviewed_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    reviewed_at = Timestamptz(null=True, default=None)
    annotated_key = Text(null=True, default=None)
    attempts = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
