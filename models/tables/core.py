"""Tables of the spine: tenants, users and their sessions, and jobs."""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB


class Tenant(Table, tablename="tenant", db=DB):
    """One academy (학원). Every other row belongs to exactly one tenant."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    slug = Varchar(length=64, unique=True)
    name = Varchar(length=200)
    created_at = Timestamptz(default=TimestamptzNow())


class Role(str, Enum):
    owner = "owner"
    admin = "admin"
    teacher = "teacher"
    staff = "staff"
    student = "student"
    parent = "parent"


class User(Table, tablename="app_user", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    email = Varchar(length=254)
    name = Varchar(length=100, default="")
    role = Varchar(length=16, choices=Role)
    password_hash = Text()
    # Set for the student and parent roles: which student the account sees. The
    # FK is added by the academy-domain migration (students are defined after users).
    student_id = UUID(null=True, default=None)
    # Set for the parent role: the guardian record whose students the account sees.
    guardian_id = UUID(null=True, default=None)
    is_active = Boolean(default=True)
    # Bumped by a trigger when the role, the active flag or the password changes: access
    # tokens issued at an older version are refused (migration 2026-12-03T10:30).
    token_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    last_login_at = Timestamptz(null=True, default=None)


class RefreshToken(Table, tablename="refresh_token", db=DB):
    """One issued refresh token. Tokens of one login share a family; reuse revokes it."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False)
    user = ForeignKey(User, null=False, index=True)
    family = UUID(index=True)
    token_hash = Varchar(length=64, unique=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())


class LoginAttempt(Table, tablename="login_attempt", db=DB):
    """Recent login attempts, for rate limiting across every API process."""

    email = Varchar(length=254, index=True)
    client = Varchar(length=64, index=True)
    succeeded = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow(), index=True)


class JobStatus(str, Enum):
    pending = "PENDING"
    running = "RUNNING"
    done = "DONE"
    failed = "FAILED"


class Job(Table, tablename="job", db=DB):
    """A unit of background work as the client sees it (poll it by id)."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    kind = Varchar(length=64)
    tier = Varchar(length=32)
    status = Varchar(length=16, choices=JobStatus, default=JobStatus.pending.value, index=True)
    progress = Integer(default=0)
    stage = Varchar(length=64, default="queued")
    result = JSONB(null=True, default=None)
    error = Text(null=True, default=None)
    error_code = Varchar(length=32, null=True, default=None)  # stable, beside the reason
    attempts = Integer(default=0)
    request_id = Varchar(length=64, default="")
    input_key = Text(null=True, default=None)
    input_keys = JSONB(default="[]")
    sha256 = Varchar(length=64, null=True, default=None)
    # The first actor and its arguments, so a job committed but never sent can be sent.
    actor_name = Varchar(length=128, default="")
    message = JSONB(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)
    # The lifeline (``actors.jobs.lifeline``): when a step last showed life, the step to
    # re-send if its message is lost (empty: the first one above), and how often it was.
    heartbeat_at = Timestamptz(null=True, default=None)
    step_actor = Varchar(length=128, default="")
    step_message = JSONB(null=True, default=None)
    lifeline_resends = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)
