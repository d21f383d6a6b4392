"""The domain outbox (events other pipelines consume) and the append-only audit log."""

from __future__ import annotations

import uuid

from piccolo.columns import JSONB, UUID, BigSerial, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Tenant, User


class OutboxEvent(Table, tablename="outbox_event", db=DB):
    """Written in the same transaction as the change it reports, so it cannot be lost.

    ``dedupe_key`` makes an event idempotent: the same fact recorded twice is one row
    (``attendance.absent:<session>:<student>``). Consumers set ``processed_at``.
    """

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    kind = Varchar(length=64, index=True)  # attendance.absent | attendance.late | score.recorded
    dedupe_key = Varchar(length=200, unique=True)
    payload = JSONB(default="{}")
    created_at = Timestamptz(default=TimestamptzNow())
    processed_at = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)
    last_error = Text(null=True, default=None)


class AuditLog(Table, tablename="audit_log", db=DB):
    """Who changed what, when (attendance and scores). Rows are never updated or deleted:
    a trigger in the migration refuses it."""

    id = BigSerial(primary_key=True)
    tenant = ForeignKey(Tenant, null=False, index=True)
    # RESTRICT: an account with history is deactivated, never deleted (a cascade would
    # erase the history, and SET NULL would rewrite it).
    actor = ForeignKey(User, null=True, default=None, on_delete=OnDelete.restrict)
    entity = Varchar(length=32)
    entity_id = UUID(index=True)
    action = Varchar(length=16)  # create | update | delete
    before = JSONB(null=True, default=None)
    after = JSONB(null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())
