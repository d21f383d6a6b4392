"""Excel enrollment import and Excel exports. Both are jobs: the API never parses or
writes a workbook itself.

* ``POST /api/v1/enrollments/excel`` (multipart ``file``, ``lecture_ids``, ``mode``,
  ``dry_run``): checks the size and the type by content, stores the file in R2
  (``R2_EXCEL_BUCKET``), creates the job and answers ``202 {job_id}``.
* ``GET /api/v1/enrollments/excel_job_status/{job_id}/``: the seed's polling route; the
  import is over when ``status`` is ``"DONE"`` (or ``"FAILED"``, with ``error``).
* ``POST /api/v1/exports/students``, ``/exports/lectures/{id}/roster``,
  ``/exports/attendance`` (a date range, optionally one lecture) and
  ``/exports/exams/{id}/scores``: ``202 {job_id}``; the job's result carries a presigned
  link to the xlsx, valid 24 hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import FormMultiDict, UploadFile
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from actors.excel import parse_upload
from actors.excel_export import export
from actors.jobs import submit
from api import rules
from api.auth import Principal, require_own_lecture, require_roles, require_staff
from api.errors import Problem, field_error
from api.uploads import cap_body, multipart_form, refuse_read_size
from models import exports, imports
from models.db import transaction
from models.errors import fail_fields
from models.imports import EXPORT_KIND, IMPORT_KIND, ExcelJobStatus
from models.lectures import lecture_exists
from models.limits import Day, encode_day
from models.scope import NotFoundInTenant, TenantScope
from models.tables import Exam, Lecture, Role
from ops import storage
from ops.settings import get_settings
from pipelines.excel.common import ImportFailure
from pipelines.excel.detect import FileType, detect_type
from pipelines.excel.exports import AttendanceParams, RosterParams, ScoresParams
from pipelines.excel.workbook import safe_filename
from pipelines.korean import today_kst

require_office = require_roles(Role.owner, Role.admin, Role.staff)

# The hard cap the server reads (Litestar answers 413 past it, while streaming); the
# configured limit is checked against Content-Length before anything is read.
HARD_CAP = 512 * 1024 * 1024
TOO_LARGE_ADVICE = "split it into several files"
MAX_EXPORT_DAYS = 366


class JobAccepted(msgspec.Struct):
    job_id: uuid.UUID
    status: str
    status_url: str


class AttendanceExport(msgspec.Struct, forbid_unknown_fields=True):
    date_from: Day
    date_to: Day
    lecture_id: uuid.UUID | None = None


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# One ``lecture_ids`` value: lecture ids separated by commas, or nothing (an empty form field).
LECTURE_ID_LIST = rf"^ *({_UUID} *(, *{_UUID} *)*)?$"

# The form ``ExcelImportController.upload`` reads, for the OpenAPI document.
IMPORT_FORM = multipart_form(
    {
        "file": Schema(
            type=OpenAPIType.STRING,
            format=OpenAPIFormat.BINARY,
            description="the workbook: .xlsx, .xls or .csv",
        ),
        "lecture_ids": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, pattern=LECTURE_ID_LIST),
            description="enrol every row in these lectures (repeated, or comma-separated)",
        ),
        "mode": Schema(type=OpenAPIType.STRING, enum=["upsert", "insert"], default="upsert"),
        "dry_run": Schema(type=OpenAPIType.BOOLEAN, default=False),
    },
    required=["file"],
    typed_by_content=True,
)


def _status_url(job_id: Any) -> str:
    return f"/api/v1/enrollments/excel_job_status/{job_id}/"


def _accepted(job_id: Any) -> JobAccepted:
    return JobAccepted(job_id=job_id, status="PENDING", status_url=_status_url(job_id))


def _text_field(form: FormMultiDict, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise field_error(name, "must be a text field, not a file")
    return value


def _parse_bool(name: str, raw: str | None, default: bool = False) -> bool:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise field_error(name, "must be true or false")


def _options(form: FormMultiDict) -> tuple[str, bool]:
    """``mode`` and ``dry_run`` of the form."""
    mode = _text_field(form, "mode")
    mode = "upsert" if mode is None else mode
    if mode not in ("insert", "upsert"):
        raise field_error("mode", "must be 'insert' or 'upsert'")
    return mode, _parse_bool("dry_run", _text_field(form, "dry_run"))


async def _checked_lectures(scope: TenantScope, form: FormMultiDict) -> list[uuid.UUID]:
    """The target lectures: each must exist in this academy and be open for enrolment."""
    raw = [v if isinstance(v, str) else "" for v in form.getall("lecture_ids", [])]
    ids: list[uuid.UUID] = []
    errors = []
    # Exactly ``LECTURE_ID_LIST``, each wrong part named.
    for part in (p.strip(" ") for value in raw if value.strip(" ") for p in value.split(",")):
        if re.fullmatch(_UUID, part):
            ids.append(uuid.UUID(part))
        else:
            errors.append({"field": "lecture_ids", "message": f"{part!r} is not a lecture id"})
    ids = list(dict.fromkeys(ids))
    errors += await imports.target_lecture_errors(scope, ids)
    fail_fields(errors)
    return ids


def _spool(upload: UploadFile, limit: int) -> tuple[str, int, bytes]:
    """sha256, size and the first bytes of the upload (rewound for the storage copy)."""
    digest = hashlib.sha256()
    size = 0
    handle = upload.file
    handle.seek(0)
    head = handle.read(64 * 1024)
    digest.update(head)
    size += len(head)
    while chunk := handle.read(1024 * 1024):
        digest.update(chunk)
        size += len(chunk)
        if size > limit:
            break
    handle.seek(0)
    return digest.hexdigest(), size, head


async def _checked_file(upload: UploadFile, limit: int) -> tuple[str, FileType]:
    """The upload's sha256 and type (by content), once its real size is known to fit."""
    sha256, size, head = await asyncio.to_thread(_spool, upload, limit)
    refuse_read_size(size, limit, TOO_LARGE_ADVICE)
    try:
        return sha256, detect_type(head, refuse_encrypted=False)
    except ImportFailure as exc:
        raise Problem(
            422 if exc.code == "empty_file" else 415,
            str(exc),
            type_="/problems/unsupported-file",
            title="Unsupported file",
            errors=[{"field": "file", "message": str(exc)}],
            code=exc.code,
        ) from None


class ExcelImportController(Controller):
    path = "/api/v1/enrollments"
    tags = ["enrollments"]
    guards = [require_staff]

    @post(
        "/excel",
        opt=rules.ROSTER_UPLOAD,
        status_code=HTTP_202_ACCEPTED,
        guards=[require_office],
        request_max_body_size=HARD_CAP,
        operation_class=IMPORT_FORM,
        summary="Import students and enrolments from an Excel/CSV file (a job)",
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        """Multipart form:

        * ``file``: ``.xlsx``, ``.xls`` or ``.csv`` (UTF-8, CP949, or UTF-16 tab-separated text), at most
          ``EXCEL_MAX_UPLOAD_BYTES`` (413 above it, before anything is stored). The type is
          read from the content; the name does not matter.
        * ``lecture_ids`` (optional, comma-separated or repeated): enrol every row in these
          lectures. Without it, a 반/강의 column naming lectures by code or title is used.
        * ``mode``: ``upsert`` (default: matched students get the file's phone, school and
          grade) or ``insert`` (matched students are left as they are).
        * ``dry_run``: ``true`` to get the verdicts and counts without changing anything.

        The header row may sit below title rows. Students are matched by name + guardian
        phone. Poll ``status_url`` until ``status`` is ``DONE``.
        """
        limit = get_settings().excel_max_upload_bytes
        cap_body(request, limit, TOO_LARGE_ADVICE)
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise field_error("file", "attach the workbook as the multipart field 'file'")
        mode, dry_run = _options(form)
        lecture_ids = await _checked_lectures(tenant_scope, form)
        sha256, file_type = await _checked_file(upload, limit)

        key = storage.excel_upload_key(principal.tenant_id, uuid.uuid4(), file_type)
        await asyncio.to_thread(
            storage.client().upload_fileobj,
            upload.file,
            get_settings().r2_excel_bucket,
            key,
        )
        async with transaction():
            job = await submit(
                parse_upload,
                tenant_id=principal.tenant_id,
                kind=IMPORT_KIND,
                input_key=key,
                sha256=sha256,
            )
            await imports.create_import(
                tenant_scope,
                job.id,
                sha256=sha256,
                filename=safe_filename(upload.filename or f"upload.{file_type}"),
                file_type=file_type,
                input_key=key,
                mode=mode,
                dry_run=dry_run,
                lecture_ids=lecture_ids,
            )
        return _accepted(job.id)

    @get(
        "/excel_job_status/{job_id:str}/",
        summary="Poll an Excel import or export (the seed's route): DONE when finished",
    )
    async def job_status(
        self, job_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ExcelJobStatus:
        return await imports.excel_job_status(tenant_scope, job_id)


async def _start_export(
    principal: Principal, kind: str, filename: str, params: msgspec.Struct | None = None
) -> JobAccepted:
    job = await submit(
        export,
        tenant_id=principal.tenant_id,
        kind=EXPORT_KIND,
        sheet=kind,
        filename=safe_filename(filename),
        params=msgspec.to_builtins(params, enc_hook=encode_day) if params is not None else {},
    )
    return _accepted(job.id)


def _stamp() -> str:
    return today_kst().strftime("%Y%m%d")


class ExportController(Controller):
    path = "/api/v1/exports"
    tags = ["exports"]
    guards = [require_staff, require_own_lecture]

    @post("/students", status_code=HTTP_202_ACCEPTED, summary="Export the students (xlsx job)")
    async def students(self, principal: NamedDependency[Principal]) -> JobAccepted:
        return await _start_export(principal, "students", f"학생명단_{_stamp()}.xlsx")

    @post(
        "/lectures/{lecture_id:str}/roster",
        status_code=HTTP_202_ACCEPTED,
        summary="Export a lecture's roster (xlsx job)",
    )
    async def roster(
        self,
        lecture_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        lecture = await exports.titled(tenant_scope, Lecture, lecture_id)
        return await _start_export(
            principal,
            "roster",
            f"{lecture.title}_수강생_{_stamp()}.xlsx",
            RosterParams(lecture_id=lecture.id),
        )

    @post(
        "/attendance",
        opt=rules.ATTENDANCE_EXPORT,
        status_code=HTTP_202_ACCEPTED,
        summary="Export attendance over a date range (xlsx job)",
    )
    async def attendance(
        self,
        data: JSONBody[AttendanceExport],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        """At most a year per export; ``lecture_id`` narrows it to one lecture."""
        if data.date_to < data.date_from:
            raise field_error("date_to", "is before date_from")
        if (data.date_to - data.date_from).days >= MAX_EXPORT_DAYS:
            raise field_error("date_to", f"at most {MAX_EXPORT_DAYS} days per export")
        if data.lecture_id is not None:
            try:
                await tenant_scope.check_own("lecture_id", data.lecture_id)
                await lecture_exists(tenant_scope, data.lecture_id)
            except NotFoundInTenant:
                raise field_error("lecture_id", "no such lecture") from None
        return await _start_export(
            principal,
            "attendance",
            f"출결_{data.date_from:%Y%m%d}-{data.date_to:%Y%m%d}.xlsx",
            AttendanceParams(data.date_from, data.date_to, data.lecture_id),
        )

    @post(
        "/exams/{exam_id:str}/scores",
        status_code=HTTP_202_ACCEPTED,
        summary="Export an exam's scores (xlsx job)",
    )
    async def scores(
        self,
        exam_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        exam = await exports.titled(tenant_scope, Exam, exam_id)
        return await _start_export(
            principal,
            "scores",
            f"{exam.title}_성적_{_stamp()}.xlsx",
            ScoresParams(exam_id=exam.id),
        )


CONTROLLERS = [ExcelImportController, ExportController]
