"""Excel enrollment imports: one row per import job, and the per-tenant import lock."""

from __future__ import annotations

import uuid

from piccolo.columns import JSONB, UUID, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Job, Tenant


class ExcelImport(Table, tablename="excel_import", db=DB):
    """What an import job was asked to do and how far it got.

    ``id`` is the job's id. ``step`` is the last step that completed (``uploaded`` ..
    ``finished``); a redelivered step that finds itself already done only re-sends the next
    one. Apply commits ``applied_chunks`` and the counts in the same transaction as the
    chunk's rows, so a redelivered apply resumes after the last committed chunk.
    """

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    job = ForeignKey(Job, null=False, unique=True, on_delete=OnDelete.cascade)
    sha256 = Varchar(length=64)
    filename = Varchar(length=255, default="")
    file_type = Varchar(length=8)  # xlsx | xls | csv
    input_key = Text()
    mode = Varchar(length=8, default="upsert")  # insert | upsert
    dry_run = Boolean(default=False)
    lecture_ids = JSONB(default="[]")
    step = Varchar(length=16, default="uploaded")
    header_row = Integer(null=True, default=None)  # 1-based, as Excel shows it
    headers = JSONB(default="[]")  # [[column letter, header text], ...] of the source
    total_rows = Integer(default=0)
    chunks = Integer(default=0)
    applied_chunks = Integer(default=0)
    created = Integer(default=0)
    updated = Integer(default=0)
    unchanged = Integer(default=0)
    merged = Integer(default=0)
    enrolled = Integer(default=0)
    # Row errors found while applying (a lecture that filled up meanwhile).
    apply_errors = JSONB(default="[]")
    timings = JSONB(default="{}")
    same_file_as = UUID(null=True, default=None)
    waiting_since = Timestamptz(null=True, default=None)
    apply_started_at = Timestamptz(null=True, default=None)
    apply_finished_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class ImportLock(Table, tablename="import_lock", db=DB):
    """At most one import per tenant matches and applies at a time (``tenant`` is unique).

    The lock outlives transactions (apply commits chunk by chunk). A holder whose job is no
    longer PENDING/RUNNING has died or finished, and the next import takes the lock over.
    """

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, unique=True)
    job = UUID()
    acquired_at = Timestamptz(default=TimestamptzNow())
