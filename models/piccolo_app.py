"""Piccolo app registration for the migrations CLI."""

import os

from piccolo.conf.apps import AppConfig

from models.attendance import Attendance
from models.events import AuditLog, OutboxEvent
from models.exams import Exam, Score
from models.imports import ExcelImport, ImportLock
from models.lectures import Enrollment, Lecture, LectureSession
from models.messaging import (
    Message,
    MessageRateBucket,
    MessageTemplate,
    MessagingConfig,
    SenderNumber,
)
from models.omr import OmrBatch, OmrPage, OmrTemplate
from models.students import Guardian, Student, StudentGuardian
from models.tables import Job, LoginAttempt, RefreshToken, Tenant, User
from models.videos import Video, VideoWatch

CURRENT_DIRECTORY = os.path.dirname(os.path.abspath(__file__))

APP_CONFIG = AppConfig(
    app_name="academy",
    migrations_folder_path=os.path.join(CURRENT_DIRECTORY, "migrations"),
    table_classes=[
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
    ],
    migration_dependencies=[],
    commands=[],
)
