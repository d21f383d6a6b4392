"""The Piccolo tables, one module per domain. Import them from here.

The query layer (``models/<domain>.py``) is the only code that reads or writes them; it
returns msgspec Structs, never bare records.
"""

from models.tables.attendance import Attendance, AttendanceStatus
from models.tables.core import Job, JobStatus, LoginAttempt, RefreshToken, Role, Tenant, User
from models.tables.events import AuditLog, OutboxEvent
from models.tables.exams import Exam, Score
from models.tables.imports import ExcelImport, ImportLock
from models.tables.lectures import (
    Enrollment,
    EnrollmentSource,
    EnrollmentStatus,
    Lecture,
    LectureSession,
    LectureStatus,
)
from models.tables.messaging import (
    Message,
    MessageRateBucket,
    MessageStatus,
    MessageTemplate,
    MessagingConfig,
    SenderNumber,
)
from models.tables.omr import OmrBatch, OmrPage, OmrTemplate, PageStatus
from models.tables.students import (
    Guardian,
    GuardianRelation,
    Student,
    StudentGuardian,
    StudentStatus,
)
from models.tables.videos import Video, VideoStatus, VideoWatch

ALL_TABLES = [
    Tenant,
    User,
    RefreshToken,
    LoginAttempt,
    Job,
    Student,
    Guardian,
    StudentGuardian,
    Lecture,
    LectureSession,
    Enrollment,
    Attendance,
    Exam,
    Score,
    OutboxEvent,
    AuditLog,
    OmrTemplate,
    OmrBatch,
    OmrPage,
    MessagingConfig,
    SenderNumber,
    MessageTemplate,
    Message,
    MessageRateBucket,
    ExcelImport,
    ImportLock,
    Video,
    VideoWatch,
]

__all__ = [
    "ALL_TABLES",
    "Attendance",
    "AttendanceStatus",
    "AuditLog",
    "Enrollment",
    "EnrollmentSource",
    "EnrollmentStatus",
    "Exam",
    "ExcelImport",
    "Guardian",
    "GuardianRelation",
    "ImportLock",
    "Job",
    "JobStatus",
    "Lecture",
    "LectureSession",
    "LectureStatus",
    "LoginAttempt",
    "Message",
    "MessageRateBucket",
    "MessageStatus",
    "MessageTemplate",
    "MessagingConfig",
    "OmrBatch",
    "OmrPage",
    "OmrTemplate",
    "OutboxEvent",
    "PageStatus",
    "RefreshToken",
    "Role",
    "Score",
    "SenderNumber",
    "Student",
    "StudentGuardian",
    "StudentStatus",
    "Tenant",
    "User",
    "Video",
    "VideoStatus",
    "VideoWatch",
]
