"""Students and guardians (보호자). A guardian may have several students (siblings)."""

from __future__ import annotations

import uuid
from enum import Enum

from piccolo.columns import (
    JSONB,
    UUID,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from models.db import DB
from models.tables.core import Tenant


class StudentStatus(str, Enum):
    active = "active"
    paused = "paused"  # 휴원
    withdrawn = "withdrawn"  # 퇴원


class Student(Table, tablename="student", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    name = Varchar(length=100)
    # 초성 of the name, kept in step by the API, for ``ㄱㅁㅅ`` searches.
    name_initials = Varchar(length=100, default="")
    phone = Varchar(length=20, null=True, default=None)  # canonical 010-1234-5678
    school = Varchar(length=100, default="")
    grade = Varchar(length=16, default="")  # 학년: 초1..고3, or free text
    # The 학년 cell an import read, as written (``예비고1``), beside what ``grade`` made of it.
    grade_raw = Varchar(length=100, default="")
    birth_date = Date(null=True, default=None)
    memo = Text(default="")
    status = Varchar(length=16, choices=StudentStatus, default=StudentStatus.active.value)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    # Indexed for the purge, soft-deleted rows only (migration 2026-12-03T10:50).
    deleted_at = Timestamptz(null=True, default=None, index=False)
    # Read models for the student list, kept by database triggers (see the migration
    # "student read model"): whatever writes guardians or enrollments -- the API, an Excel
    # import's COPY, a psql session -- keeps them right.
    guardians_json = JSONB(default="[]")
    enrollment_count = Integer(default=0)


class GuardianRelation(str, Enum):
    mother = "mother"
    father = "father"
    guardian = "guardian"
    grandparent = "grandparent"
    other = "other"


class Guardian(Table, tablename="guardian", db=DB):
    """One person, identified by phone within the academy (unique per tenant)."""

    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False, index=False)
    name = Varchar(length=100, default="")
    phone = Varchar(length=20)
    created_at = Timestamptz(default=TimestamptzNow())


class StudentGuardian(Table, tablename="student_guardian", db=DB):
    id = UUID(primary_key=True, default=uuid.uuid4)
    tenant = ForeignKey(Tenant, null=False)
    student = ForeignKey(Student, null=False, index=False)
    guardian = ForeignKey(Guardian, null=False, index=True)
    relation = Varchar(length=16, choices=GuardianRelation, default=GuardianRelation.guardian.value)
    is_primary = Boolean(default=False)
