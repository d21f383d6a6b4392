"""Attendance checks: one per session per student."""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import UUID, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Tenant, User
from models.tables.lectures import LectureSession
from models.tables.students import Student


class AttendanceStatus(str, Enum):
    present = "present"
    late = "late"
    absent = "absent"
    excused = "excused"


class Attendance(Table, tablename="attendance", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=True)
    session = ForeignKey(LectureSession, null=False, index=False)
    student = ForeignKey(Student, null=False, index=True)
    status = Varchar(length=16, choices=AttendanceStatus)
    note = Text(default="")
    checked_at = Timestamptz(default=TimestamptzNow())
    checked_by = ForeignKey(User, null=True, default=None, on_delete=OnDelete.set_null)
