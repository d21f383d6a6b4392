"""Messaging: per-tenant provider settings (credentials encrypted), registered sender
numbers, templates, and one row per message sent (or to be sent) to one phone.

``message.idempotency_key`` is the exactly-once anchor: one row per (source, recipient,
channel), inserted before any provider call; the provider's id is recorded on it.
"""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    Boolean,
    DoublePrecision,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Job, Tenant
from models.tables.students import Guardian, Student


class MessageStatus(str, Enum):
    queued = "queued"  # row stored, not yet handed to a provider
    sending = "sending"  # claimed; a provider call may be in flight (reconcile if stale)
    sent = "sent"  # accepted by the provider
    delivered = "delivered"  # the provider reported delivery
    failed = "failed"
    fallback_sent = "fallback_sent"  # Alimtalk failed; its SMS/LMS fallback was sent


class MessagingConfig(Table, tablename="messaging_config", db=DB):
    """One per tenant. ``provider`` empty = the process default (MESSAGING_PROVIDER)."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, unique=True)
    provider = Varchar(length=32, default="")
    credentials = Text(null=True, default=None)  # Fernet token, never plain text
    pf_id = Varchar(length=64, default="")  # Kakao sender profile (pfId / senderKey)
    opt_out_number = Varchar(length=20, default="")  # 080 number for advertising
    auto_absence = Boolean(default=True)
    auto_late = Boolean(default=True)
    auto_score = Boolean(default=True)
    auto_video_reminder = Boolean(default=True)
    updated_at = Timestamptz(default=TimestamptzNow())


class SenderNumber(Table, tablename="sender_number", db=DB):
    """A 발신번호 the academy registered with its provider (unique per tenant)."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    phone = Varchar(length=20)
    label = Varchar(length=100, default="")
    is_default = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class MessageTemplate(Table, tablename="message_template", db=DB):
    """``code`` is unique per tenant; automatic notices use the codes
    ``attendance.absent``, ``attendance.late``, ``score.recorded``, ``video.unwatched``."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    code = Varchar(length=64)
    name = Varchar(length=100, default="")
    channel = Varchar(length=16, default="sms")  # sms (SMS/LMS by length) | alimtalk
    subject = Varchar(length=120, default="")
    body = Text()
    kakao_template_id = Varchar(length=64, default="")
    advertising = Boolean(default=False)
    strip_unencodable = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Message(Table, tablename="message", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    job = ForeignKey(Job, null=True, default=None, on_delete=OnDelete.set_null)
    event_id = UUID(null=True, default=None)  # the outbox event of an automatic notice
    idempotency_key = Varchar(length=300, unique=True)
    parent = UUID(null=True, default=None)  # the Alimtalk row a fallback replaces
    student = ForeignKey(Student, null=True, default=None, on_delete=OnDelete.set_null)
    guardian = ForeignKey(Guardian, null=True, default=None, on_delete=OnDelete.set_null)
    to_phone = Varchar(length=20)
    from_phone = Varchar(length=20)
    channel = Varchar(length=16)  # sms | lms | alimtalk
    subject = Varchar(length=120, default="")
    body = Text()
    template_code = Varchar(length=64, default="")
    kakao_template_id = Varchar(length=64, default="")
    pf_id = Varchar(length=64, default="")
    variables = JSONB(default="{}")
    strip_unencodable = Boolean(default=False)
    advertising = Boolean(default=False)
    status = Varchar(length=16, choices=MessageStatus, default=MessageStatus.queued.value)
    provider = Varchar(length=32, default="")
    provider_message_id = Varchar(length=100, null=True, default=None)
    provider_code = Varchar(length=32, default="")
    error = Text(null=True, default=None)
    attempts = Integer(default=0)
    claimed_at = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    polls = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class MessageRateBucket(Table, tablename="message_rate_bucket", db=DB):
    """A token bucket per provider account, shared by every worker process."""

    key = Varchar(length=200, primary_key=True)
    tokens = DoublePrecision(default=0.0)
    updated_at = Timestamptz(default=TimestamptzNow())
