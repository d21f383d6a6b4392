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
import datetime as dt
import hashlib
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from actors import excel as excel_actors
from actors.jobs import submit
from api.auth import Principal, require_roles, require_staff
from api.errors import Problem, field_error
from models.db import transaction
from models.scope import NotFoundInTenant, TenantScope
from models.tables import Exam as ExamRow
from models.tables import ExcelImport, Role
from models.tables import Job as JobRow
from models.tables import Lecture as LectureRow
from ops import storage
from ops.settings import get_settings
from pipelines.excel.common import ImportFailure
from pipelines.excel.detect import detect_type
from pipelines.excel.workbook import safe_filename
from pipelines.korean import today_kst

require_office = require_roles(Role.owner, Role.admin, Role.staff)

IMPORT_KIND = "excel_import"
EXPORT_KIND = "excel_export"
# Multipart framing and the small form fields around the file.
FORM_OVERHEAD = 64 * 1024
# The hard cap the server reads (Litestar answers 413 past it, while streaming); the
# configured limit is checked against Content-Length before anything is read.
HARD_CAP = 512 * 1024 * 1024
MAX_EXPORT_DAYS = 366


class JobAccepted(msgspec.Struct):
    job_id: uuid.UUID
    status: str
    status_url: str


class ExcelJobStatus(msgspec.Struct):
    """The seed's shape: poll until ``status == "DONE"``; ``result`` then holds
    ``created``, ``updated``, ``unchanged``, ``enrolled`` and ``errors``."""

    job_id: uuid.UUID
    kind: str
    status: str
    progress: int
    stage: str
    result: Any
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class AttendanceExport(msgspec.Struct, forbid_unknown_fields=True):
    date_from: dt.date
    date_to: dt.date
    lecture_id: uuid.UUID | None = None


def _status_url(job_id: Any) -> str:
    return f"/api/v1/enrollments/excel_job_status/{job_id}/"


def _accepted(job_id: Any) -> JobAccepted:
    return JobAccepted(job_id=job_id, status="PENDING", status_url=_status_url(job_id))


def _text_field(form: Any, name: str) -> str | None:
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


async def _checked_lectures(scope: TenantScope, raw: list[str]) -> list[uuid.UUID]:
    """The target lectures: each must exist in this academy and be open for enrolment."""
    ids: list[uuid.UUID] = []
    errors = []
    for part in (p.strip() for value in raw for p in value.split(",")):
        if not part:
            continue
        try:
            ids.append(uuid.UUID(part))
        except ValueError:
            errors.append({"field": "lecture_ids", "message": f"{part!r} is not a lecture id"})
    ids = list(dict.fromkeys(ids))
    if ids:
        rows = await scope.fetch(
            "SELECT id, title, status FROM lecture WHERE tenant = $1 AND id = ANY($2::uuid[])",
            ids,
        )
        found = {r["id"]: r for r in rows}
        for lecture_id in ids:
            row = found.get(lecture_id)
            if row is None:
                errors.append({"field": "lecture_ids", "message": f"no lecture {lecture_id}"})
            elif row["status"] == "closed":
                errors.append(
                    {"field": "lecture_ids", "message": f"lecture {row['title']} is closed"}
                )
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
    return ids


def _too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the file is larger than the {limit // (1024 * 1024)} MiB limit: split it into "
        "several files",
        max_bytes=limit,
    )


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


class ExcelImportController(Controller):
    path = "/api/v1/enrollments"
    tags = ["enrollments"]
    guards = [require_staff]

    @post(
        "/excel",
        status_code=HTTP_202_ACCEPTED,
        guards=[require_office],
        request_max_body_size=HARD_CAP,
        summary="Import students and enrolments from an Excel/CSV file (a job)",
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        """Multipart form:

        * ``file``: ``.xlsx``, ``.xls`` or ``.csv`` (UTF-8 or CP949), at most
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
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
            raise _too_large(limit)
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise field_error("file", "attach the workbook as the multipart field 'file'")
        mode = (_text_field(form, "mode") or "upsert").strip().lower()
        if mode not in ("insert", "upsert"):
            raise field_error("mode", "must be 'insert' or 'upsert'")
        dry_run = _parse_bool("dry_run", _text_field(form, "dry_run"))
        lecture_ids = await _checked_lectures(
            tenant_scope,
            [v if isinstance(v, str) else "" for v in form.getall("lecture_ids", [])],
        )

        sha256, size, head = await asyncio.to_thread(_spool, upload, limit)
        if size > limit:
            raise _too_large(limit)
        try:
            file_type = detect_type(head, refuse_encrypted=False)
        except ImportFailure as exc:
            raise Problem(
                415 if size else 422,
                str(exc),
                type_="/problems/unsupported-file",
                title="Unsupported file",
                errors=[{"field": "file", "message": str(exc)}],
            ) from None

        upload_id = uuid.uuid4()
        key = excel_actors.upload_key(principal.tenant_id, upload_id, file_type)
        await asyncio.to_thread(
            storage.client().upload_fileobj,
            upload.file,
            get_settings().r2_excel_bucket,
            key,
        )
        filename = safe_filename(upload.filename or f"upload.{file_type}")
        async with transaction():
            job = await submit(
                excel_actors.parse_upload,
                tenant_id=principal.tenant_id,
                kind=IMPORT_KIND,
                request_id=request.scope.get("state", {}).get("request_id", ""),
                input_key=key,
                sha256=sha256,
            )
            await ExcelImport(
                id=job.id,
                tenant=principal.tenant_id,
                job=job.id,
                sha256=sha256,
                filename=filename,
                file_type=file_type,
                input_key=key,
                mode=mode,
                dry_run=dry_run,
                lecture_ids=[str(i) for i in lecture_ids],
            ).save()
        return _accepted(job.id)

    @get(
        "/excel_job_status/{job_id:str}/",
        summary="Poll an Excel import or export (the seed's route): DONE when finished",
    )
    async def job_status(
        self, job_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ExcelJobStatus:
        row = await tenant_scope.get(JobRow, job_id)
        if row["kind"] not in (IMPORT_KIND, EXPORT_KIND):
            raise NotFoundInTenant(JobRow, job_id)
        return ExcelJobStatus(
            job_id=row["id"],
            kind=row["kind"],
            status=row["status"],
            progress=row["progress"],
            stage=row["stage"],
            result=row["result"],
            error=row["error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )


async def _start_export(
    request: Request[Any, Any, Any],
    principal: Principal,
    kind: str,
    filename: str,
    params: dict[str, Any],
) -> JobAccepted:
    job = await submit(
        excel_actors.export,
        tenant_id=principal.tenant_id,
        kind=EXPORT_KIND,
        request_id=request.scope.get("state", {}).get("request_id", ""),
        sheet=kind,
        filename=safe_filename(filename),
        params=params,
    )
    return _accepted(job.id)


def _stamp() -> str:
    return today_kst().strftime("%Y%m%d")


class ExportController(Controller):
    path = "/api/v1/exports"
    tags = ["exports"]
    guards = [require_staff]

    @post("/students", status_code=HTTP_202_ACCEPTED, summary="Export the students (xlsx job)")
    async def students(
        self, request: Request[Any, Any, Any], principal: NamedDependency[Principal]
    ) -> JobAccepted:
        return await _start_export(request, principal, "students", f"학생명단_{_stamp()}.xlsx", {})

    @post(
        "/lectures/{lecture_id:str}/roster",
        status_code=HTTP_202_ACCEPTED,
        summary="Export a lecture's roster (xlsx job)",
    )
    async def roster(
        self,
        lecture_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        lecture = await tenant_scope.get(LectureRow, lecture_id)
        return await _start_export(
            request,
            principal,
            "roster",
            f"{lecture['title']}_수강생_{_stamp()}.xlsx",
            {"lecture_id": str(lecture["id"])},
        )

    @post(
        "/attendance",
        status_code=HTTP_202_ACCEPTED,
        summary="Export attendance over a date range (xlsx job)",
    )
    async def attendance(
        self,
        data: JSONBody[AttendanceExport],
        request: Request[Any, Any, Any],
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
                await tenant_scope.get(LectureRow, data.lecture_id)
            except NotFoundInTenant:
                raise field_error("lecture_id", "no such lecture") from None
        return await _start_export(
            request,
            principal,
            "attendance",
            f"출결_{data.date_from:%Y%m%d}-{data.date_to:%Y%m%d}.xlsx",
            {
                "date_from": data.date_from.isoformat(),
                "date_to": data.date_to.isoformat(),
                "lecture_id": str(data.lecture_id) if data.lecture_id else None,
            },
        )

    @post(
        "/exams/{exam_id:str}/scores",
        status_code=HTTP_202_ACCEPTED,
        summary="Export an exam's scores (xlsx job)",
    )
    async def scores(
        self,
        exam_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> JobAccepted:
        exam = await tenant_scope.get(ExamRow, exam_id)
        return await _start_export(
            request,
            principal,
            "scores",
            f"{exam['title']}_성적_{_stamp()}.xlsx",
            {"exam_id": str(exam["id"])},
        )


CONTROLLERS = [ExcelImportController, ExportController]
