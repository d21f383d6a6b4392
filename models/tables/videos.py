"""Lecture videos (direct upload -> HLS ladder) and students' watch progress."""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    Date,
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
from models.tables.lectures import Lecture, LectureSession
from models.tables.students import Student


class VideoStatus(str, Enum):
    uploading = "UPLOADING"  # created; the client is uploading the source
    processing = "PROCESSING"  # upload confirmed; the pipeline runs (see its job)
    ready = "READY"
    failed = "FAILED"


class Video(Table, tablename="video", db=DB):
    """One lecture video. It belongs to a lecture, and optionally to one of its sessions."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    lecture = ForeignKey(Lecture, null=False, index=True)
    session = ForeignKey(LectureSession, null=True, default=None, on_delete=OnDelete.set_null)
    title = Varchar(length=200)
    # PROCTORED_CLASS: seeking ahead does not count, heartbeats must be in order and real-time.
    proctored = Boolean(default=False)
    # Enrolled students who have not completed the video by then get one reminder each.
    due_date = Date(null=True, default=None)
    status = Varchar(length=16, choices=VideoStatus, default=VideoStatus.uploading.value)
    error = Text(null=True, default=None)
    # Why it FAILED, as a stable code (pipelines.video.probe lists the source's codes).
    error_code = Varchar(length=32, null=True, default=None)
    filename = Varchar(length=255, default="")
    content_type = Varchar(length=100, default="")
    size_bytes = BigInt(default=0)  # as declared at creation; checked at completion
    raw_key = Text()
    upload_id = Text(null=True, default=None)  # multipart uploads only
    job = ForeignKey(Job, null=True, default=None, on_delete=OnDelete.set_null)
    # The pipeline's last completed step, and the step being tried with its attempt count
    # (a redelivered step that already completed does nothing; the final failed attempt
    # ends the video FAILED).
    step_done = Varchar(length=16, default="")
    step_trying = Varchar(length=16, default="")
    step_attempts = Integer(default=0)
    duration_seconds = DoublePrecision(null=True, default=None)
    width = Integer(null=True, default=None)  # display size (after rotation)
    height = Integer(null=True, default=None)
    probe = JSONB(null=True, default=None)
    rungs = JSONB(default="[]")
    hls_prefix = Text(null=True, default=None)  # key prefix of master.m3u8 & co.
    poster_key = Text(null=True, default=None)
    created_by = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    ready_at = Timestamptz(null=True, default=None)
    raw_deleted_at = Timestamptz(null=True, default=None)


class VideoWatch(Table, tablename="video_watch", db=DB):
    """A student's progress on one video: the union of the intervals played."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    video = ForeignKey(Video, null=False, index=False)
    student = ForeignKey(Student, null=False, index=True)
    intervals = JSONB(default="[]")  # [[start, end], ...] sorted, disjoint, seconds
    watched_seconds = DoublePrecision(default=0.0)
    coverage = DoublePrecision(default=0.0)  # 0..1
    position = DoublePrecision(default=0.0)
    frontier = DoublePrecision(default=0.0)
    completed = Boolean(default=False)
    completed_at = Timestamptz(null=True, default=None)
    last_seq = Integer(null=True, default=None)
    last_heartbeat_at = Timestamptz(null=True, default=None)
    heartbeats = Integer(default=0)
    rejected_heartbeats = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
