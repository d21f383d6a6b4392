"""Lectures (강의), their sessions (회차) and enrollments."""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    Date,
    ForeignKey,
    Integer,
    Time,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Tenant, User
from models.tables.students import Student


class LectureStatus(str, Enum):
    planned = "planned"
    open = "open"
    closed = "closed"


class Lecture(Table, tablename="lecture", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    code = Varchar(length=32, null=True, default=None)  # optional, unique per tenant
    title = Varchar(length=200)
    subject = Varchar(length=100, default="")
    # A deleted account leaves its lectures without a teacher, never deletes them.
    teacher = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
    capacity = Integer(null=True, default=None)  # None: unlimited
    # [{"weekday": 0..6 (Mon..Sun), "start": "HH:MM", "end": "HH:MM"}]
    schedule = JSONB(default="[]")
    start_date = Date(null=True, default=None)
    end_date = Date(null=True, default=None)
    status = Varchar(length=16, choices=LectureStatus, default=LectureStatus.planned.value)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class LectureSession(Table, tablename="lecture_session", db=DB):
    """One 회차. Generated from the lecture's schedule, then editable one by one."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    lecture = ForeignKey(Lecture, null=False, index=False)
    seq = Integer()
    date = Date()
    start_time = Time(null=True, default=None)
    end_time = Time(null=True, default=None)
    topic = Varchar(length=200, default="")
    # References video(id) ON DELETE SET NULL (a raw migration: the two tables refer to
    # each other, which Piccolo's table classes cannot declare).
    video_id = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class EnrollmentStatus(str, Enum):
    active = "active"
    dropped = "dropped"


class EnrollmentSource(str, Enum):
    manual = "manual"
    excel_import = "import"


class Enrollment(Table, tablename="enrollment", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    student = ForeignKey(Student, null=False, index=False)
    lecture = ForeignKey(Lecture, null=False, index=True)
    status = Varchar(length=16, choices=EnrollmentStatus, default=EnrollmentStatus.active.value)
    source = Varchar(length=16, choices=EnrollmentSource, default=EnrollmentSource.manual.value)
    enrolled_at = Timestamptz(default=TimestamptzNow())
    dropped_at = Timestamptz(null=True, default=None)
