"""OMR grading: answer card templates, an exam's OMR settings, scan uploads, batches and
pages, and the teacher's review queue.

Templates (``/omr/templates``) are per academy: made from the built-in Korean card, written
as our JSON, or imported from an OMRChecker ``template.json``. An exam points at one
template and carries its marking (weights, sections, negative marking); its answer key is
the exam's ``answer_key``. ``POST /exams/{id}/scans`` stores the files and starts a job
that reads every page (see ``actors.omr``); the pages then list what was read, the score,
an annotated image, and what needs a teacher. A teacher's review corrects answers or picks
the student, re-scores, and is audited.

Roles: owner, admin, teacher and staff read; owner, admin and teacher write.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import uuid
from decimal import Decimal
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from actors import omr as omr_actors
from actors.jobs import submit
from api.auth import Principal, require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import connection, transaction
from models.events import record_audit
from models.pages import Page, as_datetime, as_int, as_uuid, decode_cursor_as, page_of
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Exam as ExamRow
from models.tables import OmrBatch, OmrPage, OmrTemplate, Role
from ops import storage
from ops.settings import get_settings
from pipelines.grading import InvalidAnswerKey, normalize_answer, normalize_answer_key
from pipelines.omr.card import card_pdf, card_png, korean_card
from pipelines.omr.score import InvalidMarking, import_omrchecker_evaluation, parse_marking
from pipelines.omr.template import (
    Template,
    TemplateError,
    import_omrchecker,
    parse_template,
    template_json,
)

require_grader = require_roles(Role.owner, Role.admin, Role.teacher)

MAX_FILES = 200
# The body limit of the upload route; OMR_MAX_UPLOAD_BYTES (lower) is checked as it reads.
HARD_CAP = 1024 * 1024 * 1024
FORM_OVERHEAD = 64 * 1024
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff")

# --- schemas ---------------------------------------------------------------------------


class TemplateCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``spec``: the template JSON (``pipelines.omr.template.Template``)."""

    spec: dict[str, Any]


class BuiltinCreate(msgspec.Struct, forbid_unknown_fields=True):
    """The built-in Korean answer card: 1..60 questions of 4 or 5 choices, a 4..8-digit
    student number (the last digits of the student's mobile number)."""

    name: str | None = None
    questions: int = 20
    choices: int = 5
    id_digits: int = 8


class OmrCheckerImport(msgspec.Struct, forbid_unknown_fields=True):
    """OMRChecker's ``template.json`` (and optionally its ``config.json``); marker images
    for ``CropOnMarkers`` by their ``relativePath``, base64-encoded."""

    name: str
    template: dict[str, Any]
    config: dict[str, Any] | None = None
    marker_images: dict[str, str] = {}


class TemplateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    spec: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class TemplateOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    source: str
    questions: int
    printable: bool  # a card with our markers: GET .../card.png|card.pdf
    spec: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class ExamOmr(msgspec.Struct):
    exam_id: uuid.UUID
    template_id: uuid.UUID | None
    question_count: int | None
    answer_key: dict[str, list[str]] | None
    marking: dict[str, Any] | None


class ExamOmrUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``marking`` (``null`` clears it): ``default`` ``{correct, incorrect, unmarked}``,
    ``sections`` ``[{name, questions, correct, incorrect, unmarked}]``, ``points``
    (question -> 배점) and ``answer_points`` (question -> answer -> points). Values are
    numbers or fractions such as ``"-1/3"``; see ``pipelines.omr.score``."""

    template_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    marking: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class EvaluationImport(msgspec.Struct, forbid_unknown_fields=True):
    """OMRChecker's ``evaluation.json``, and its answer key CSV when the evaluation names
    one (``answer_key_csv_path``). The exam's template must be set: its questions give
    the labels (``q1``...) their numbers."""

    evaluation: dict[str, Any]
    answer_key_csv: str | None = None


class ScanAccepted(msgspec.Struct):
    job_id: uuid.UUID
    batch_id: uuid.UUID
    files: int
    tier: str
    status_url: str


class BatchOut(msgspec.Struct):
    id: uuid.UUID
    exam_id: uuid.UUID
    job_id: uuid.UUID | None
    status: str | None  # the job's: PENDING | RUNNING | DONE | FAILED
    error: str | None
    tier: str
    files: int
    page_count: int | None
    pages_done: int
    pages_failed: int
    needs_review: int
    created_at: dt.datetime
    finished_at: dt.datetime | None


class PageOut(msgspec.Struct):
    id: uuid.UUID
    batch_id: uuid.UUID
    exam_id: uuid.UUID
    page_no: int
    source: str
    status: str
    error_code: str | None
    error: str | None
    student_number: str | None
    student_id: uuid.UUID | None
    student_name: str | None
    score: float | None
    needs_review: bool
    review_items: list[dict[str, Any]]
    answers: dict[str, str] | None
    results: list[dict[str, Any]] | None
    reading: dict[str, Any] | None
    annotated_url: str | None
    reviewed_at: dt.datetime | None
    updated_at: dt.datetime


class RegradeResult(msgspec.Struct):
    batch_id: uuid.UUID
    pages: int  # pages re-scored (read, with a student)
    changed: int  # scores that changed


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """``answers``: question -> the answer the teacher reads on the sheet (``""`` for
    none); the others stay as read. ``student_id``: the student the sheet belongs to.
    Sending nothing confirms the reading as it is."""

    answers: dict[str, str] = {}
    student_id: uuid.UUID | None = None


# --- templates -------------------------------------------------------------------------

TEMPLATE_SELECT = "SELECT * FROM omr_template WHERE tenant = $1"


def _to_template(row: Any) -> TemplateOut:
    spec = _loads(row["spec"])
    return TemplateOut(
        id=row["id"],
        name=row["name"],
        source=row["source"],
        questions=len(spec.get("questions", [])),
        printable=spec.get("markers") is not None,
        spec=spec,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _template_problem(exc: TemplateError, prefix: str = "spec") -> Problem:
    errors = [{"field": f"{prefix}.{p}" if p else prefix, "message": m} for p, m in exc.issues]
    return Problem(422, f"{len(errors)} field error(s)", errors=errors)


def _newest_cursor(row: Any) -> list[Any]:
    """The cursor of a list ordered by ``(created_at, id)``."""
    return [row["created_at"].isoformat(), str(row["id"])]


async def load_template(scope: TenantScope, template_id: Any) -> Any:
    row = await scope.fetchrow(f"{TEMPLATE_SELECT} AND id = $2", parse_id(OmrTemplate, template_id))
    if row is None:
        raise NotFoundInTenant(OmrTemplate, template_id)
    return row


def _template_name(name: str) -> str:
    """The name with its whitespace collapsed; 1..200 characters or a field error."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise field_error("name", "must be 1..200 characters")
    return name


async def _insert_template(scope: TenantScope, source: str, template: Template) -> TemplateOut:
    """Store a parsed template under its (whitespace-collapsed) name; a name taken is 409."""
    name = _template_name(template.name)
    spec = {**template_json(template), "name": name}
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO omr_template (id, tenant, name, source, spec)
            VALUES (gen_random_uuid(), $1, $2, $3, $4::jsonb)
            ON CONFLICT (tenant, name) DO NOTHING RETURNING *
            """,
            scope.tenant_id,
            name,
            source,
            json.dumps(spec),
        )
    if row is None:
        raise Problem(
            409,
            f"a template named {name!r} exists already",
            type_="/problems/conflict",
            errors=[{"field": "name", "message": "already used"}],
        )
    return _to_template(row)


class TemplateController(Controller):
    path = "/api/v1/omr/templates"
    tags = ["omr"]
    guards = [require_staff]

    @get("/", summary="The academy's answer card templates, newest first")
    async def list_templates(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[TemplateOut]:
        limit = check_limit(limit)
        after = decode_cursor_as(cursor, as_datetime, as_uuid)
        args: list[Any] = []
        where = ""
        if after is not None:
            args = list(after)
            where = "AND (created_at, id) < ($2, $3)"
        rows = await tenant_scope.fetch(
            f"{TEMPLATE_SELECT} {where} ORDER BY created_at DESC, id DESC LIMIT {limit + 1}",
            *args,
        )
        return page_of(rows, limit, _newest_cursor, _to_template)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Create a template from its JSON",
    )
    async def create(
        self, data: JSONBody[TemplateCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        try:
            template = parse_template(data.spec)
        except TemplateError as exc:
            raise _template_problem(exc) from None
        return await _insert_template(tenant_scope, "custom", template)

    @post(
        "/builtin",
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Create the built-in Korean answer card (OMR 답안지)",
    )
    async def create_builtin(
        self, data: JSONBody[BuiltinCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        try:
            template = korean_card(data.questions, data.choices, data.id_digits, name=data.name)
        except ValueError as exc:
            raise field_error("body", str(exc)) from None
        return await _insert_template(tenant_scope, "builtin", template)

    @post(
        "/omrchecker",
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Import an OMRChecker template.json",
    )
    async def import_omrchecker(
        self, data: JSONBody[OmrCheckerImport], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        """Field blocks, custom labels and the preprocessors ``CropPage``,
        ``CropOnMarkers`` (send the marker image), ``GaussianBlur`` and ``Levels`` are
        imported; any other preprocessor is refused rather than skipped."""
        import base64
        import binascii

        markers: dict[str, bytes] = {}
        for path, b64 in data.marker_images.items():
            try:
                markers[path] = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise field_error(f"marker_images.{path}", "not base64") from None
        try:
            template = import_omrchecker(
                data.template, name=data.name, marker_images=markers, config_json=data.config
            )
        except TemplateError as exc:
            raise _template_problem(exc, "template") from None
        return await _insert_template(tenant_scope, "omrchecker", template)

    @get("/{template_id:str}", summary="One template")
    async def get_one(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        return _to_template(await load_template(tenant_scope, template_id))

    @patch("/{template_id:str}", guards=[require_grader], summary="Rename or change a template")
    async def update(
        self,
        template_id: FromPath[str],
        data: JSONBody[TemplateUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> TemplateOut:
        """Batches already read keep the template they were read with."""
        row = await load_template(tenant_scope, template_id)
        spec = _loads(row["spec"])
        if not isinstance(data.spec, msgspec.UnsetType):
            spec = data.spec
        name = _template_name(
            row["name"] if isinstance(data.name, msgspec.UnsetType) else data.name
        )
        try:
            template = parse_template({**spec, "name": name})
        except TemplateError as exc:
            raise _template_problem(exc) from None
        clash = await tenant_scope.fetchrow(
            "SELECT 1 FROM omr_template WHERE tenant = $1 AND name = $2 AND id <> $3",
            name,
            row["id"],
        )
        if clash:
            raise Problem(
                409,
                f"a template named {name!r} exists already",
                errors=[{"field": "name", "message": "already used"}],
            )
        updated = await tenant_scope.fetchrow(
            "UPDATE omr_template SET name = $3, spec = $4::jsonb, updated_at = now() "
            "WHERE tenant = $1 AND id = $2 RETURNING *",
            row["id"],
            name,
            json.dumps(template_json(template)),
        )
        return _to_template(updated)

    @delete(
        "/{template_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        guards=[require_grader],
        summary="Delete a template (exams using it are left without one)",
    )
    async def delete_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        row = await load_template(tenant_scope, template_id)
        await tenant_scope.fetch(
            "DELETE FROM omr_template WHERE tenant = $1 AND id = $2", row["id"]
        )

    @get(
        "/{template_id:str}/card.png",
        summary="The printable card as a PNG (150 dpi)",
        media_type="image/png",
    )
    async def card_png(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Response[bytes]:
        template = _printable(await load_template(tenant_scope, template_id))
        data = await asyncio.to_thread(card_png, template)
        return Response(data, media_type="image/png")

    @get(
        "/{template_id:str}/card.pdf",
        summary="The printable card as a PDF (A4, 150 dpi)",
        media_type="application/pdf",
    )
    async def card_pdf(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Response[bytes]:
        template = _printable(await load_template(tenant_scope, template_id))
        data = await asyncio.to_thread(card_pdf, template)
        return Response(data, media_type="application/pdf")


class Base64File(msgspec.Struct, forbid_unknown_fields=True):
    filename: str
    content_base64: str


class Base64Files(msgspec.Struct, forbid_unknown_fields=True):
    files: list[Base64File]


async def _uploaded_files(request: Request[Any, Any, Any]) -> list[tuple[str, str, bytes]]:
    """``(filename, content type, bytes)`` of every uploaded file, multipart or JSON."""
    import base64
    import binascii

    out: list[tuple[str, str, bytes]] = []
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = msgspec.json.decode(await request.body(), type=Base64Files)
        except msgspec.DecodeError as exc:
            raise field_error("files", f"not a JSON upload: {exc}") from None
        for i, f in enumerate(body.files):
            try:
                data = base64.b64decode(f.content_base64, validate=True)
            except (binascii.Error, ValueError):
                raise field_error(f"files[{i}].content_base64", "not base64") from None
            out.append((f.filename or f"scan-{i + 1}", "application/octet-stream", data))
    else:
        form = await request.form()
        for i, upload in enumerate(form.getall("files", []), start=1):
            if isinstance(upload, UploadFile):
                out.append(
                    (
                        upload.filename or f"scan-{i}",
                        upload.content_type or "application/octet-stream",
                        await upload.read(),
                    )
                )
    if not out:
        raise field_error("files", "attach the scans as the multipart field 'files'")
    if len(out) > MAX_FILES:
        raise field_error("files", f"at most {MAX_FILES} files per upload")
    return out


def _printable(row: Any) -> Any:
    template = parse_template(row["spec"])
    if template.markers is None:
        raise Problem(
            409,
            "only cards with our corner markers can be printed; this template describes "
            "another printed form",
            type_="/problems/not-printable",
        )
    return template


def _delete_quietly(bucket: str, keys: list[str]) -> None:
    """One DeleteObjects request (an upload holds at most ``MAX_FILES`` < 1,000 keys); it
    runs while another error is on its way out, so its own failure is not raised."""
    if not keys:
        return
    objects = [{"Key": key} for key in keys]
    with contextlib.suppress(Exception):
        storage.client().delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


# --- an exam's OMR settings ------------------------------------------------------------


async def _exam_omr(scope: TenantScope, exam_id: Any) -> Any:
    row = await scope.fetchrow(
        "SELECT id, lecture, question_count, answer_key, marking, omr_template, max_score "
        "FROM exam WHERE tenant = $1 AND id = $2",
        parse_id(ExamRow, exam_id),
    )
    if row is None:
        raise NotFoundInTenant(ExamRow, exam_id)
    return row


async def _exam_template(scope: TenantScope, exam: Any) -> Any:
    """The template row of an exam (from ``_exam_omr``); none set is a 409."""
    if exam["omr_template"] is None:
        raise Problem(
            409,
            "the exam has no answer card template: PUT /exams/{id}/omr first",
            type_="/problems/no-omr-template",
        )
    return await load_template(scope, exam["omr_template"])


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _to_exam_omr(row: Any) -> ExamOmr:
    return ExamOmr(
        exam_id=row["id"],
        template_id=row["omr_template"],
        question_count=row["question_count"],
        answer_key=_loads(row["answer_key"]),
        marking=_loads(row["marking"]),
    )


class ExamOmrController(Controller):
    path = "/api/v1/exams/{exam_id:str}"
    tags = ["omr"]
    guards = [require_staff]

    @get("/omr", summary="The exam's answer card template, answer key and marking")
    async def get_settings(
        self, exam_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ExamOmr:
        return _to_exam_omr(await _exam_omr(tenant_scope, exam_id))

    @put("/omr", guards=[require_grader], summary="Set the exam's template and marking")
    async def put_settings(
        self,
        exam_id: FromPath[str],
        data: JSONBody[ExamOmrUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> ExamOmr:
        """The answer key itself is the exam's ``answer_key`` (``PATCH /exams/{id}``). A
        template must have at least as many questions as the exam."""
        async with transaction():
            row = await _exam_omr(tenant_scope, exam_id)
            errors: list[dict[str, Any]] = []
            values: dict[str, Any] = {}
            if not isinstance(data.template_id, msgspec.UnsetType):
                if data.template_id is None:
                    values["omr_template"] = None
                else:
                    t = await tenant_scope.fetchrow(
                        f"{TEMPLATE_SELECT} AND id = $2", data.template_id
                    )
                    if t is None:
                        errors.append({"field": "template_id", "message": "no such template"})
                    else:
                        questions = len(_loads(t["spec"]).get("questions", []))
                        if row["question_count"] and questions < row["question_count"]:
                            errors.append(
                                {
                                    "field": "template_id",
                                    "message": f"the card has {questions} questions; the exam has "
                                    f"{row['question_count']}",
                                }
                            )
                        values["omr_template"] = data.template_id
            if not isinstance(data.marking, msgspec.UnsetType):
                try:
                    parsed = parse_marking(data.marking, row["question_count"])
                    values["marking"] = (
                        None if parsed is None else json.dumps(msgspec.to_builtins(parsed))
                    )
                except InvalidMarking as exc:
                    errors.extend({"field": p, "message": m} for p, m in exc.issues)
            if errors:
                raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
            if values:
                sets = ", ".join(
                    f"{k} = ${i + 3}{'::jsonb' if k == 'marking' else ''}"
                    for i, k in enumerate(values)
                )
                await tenant_scope.fetch(
                    f"UPDATE exam SET {sets}, updated_at = now() WHERE tenant = $1 AND id = $2",
                    row["id"],
                    *values.values(),
                )
        return _to_exam_omr(await _exam_omr(tenant_scope, row["id"]))

    @post(
        "/omr/omrchecker-evaluation",
        status_code=HTTP_200_OK,
        guards=[require_grader],
        summary="Set the answer key and marking from an OMRChecker evaluation.json",
    )
    async def import_evaluation(
        self,
        exam_id: FromPath[str],
        data: JSONBody[EvaluationImport],
        tenant_scope: NamedDependency[TenantScope],
    ) -> ExamOmr:
        """Answers in order, several correct answers, per-answer weights and the
        ``marking_schemes`` (sections, negative marking) become the exam's ``answer_key``
        and ``marking``; ``question_count`` becomes the template's number of questions.
        A key read from a filled answer sheet (``answer_key_image_path``) is not taken
        here: upload that sheet as a scan and copy its answers. Scores already recorded
        stay as they are until the sheets are graded again."""
        async with transaction():
            row = await _exam_omr(tenant_scope, exam_id)
            spec = (await _exam_template(tenant_scope, row))["spec"]
            questions = parse_template(spec).questions
            try:
                imported = import_omrchecker_evaluation(
                    data.evaluation, questions, csv_text=data.answer_key_csv
                )
                marking = parse_marking(msgspec.to_builtins(imported.marking), len(questions))
                key = normalize_answer_key(imported.key, len(questions))
            except TemplateError as exc:
                raise _template_problem(exc, "evaluation") from None
            except InvalidMarking as exc:
                errors = [{"field": p, "message": m} for p, m in exc.issues]
                raise Problem(422, str(exc), errors=errors) from None
            except InvalidAnswerKey as exc:
                errors = [{"field": f"answer_key.{p}", "message": m} for p, m in exc.issues]
                raise Problem(422, str(exc), errors=errors) from None
            await tenant_scope.fetch(
                "UPDATE exam SET question_count = $3, answer_key = $4::jsonb, "
                "marking = $5::jsonb, updated_at = now() WHERE tenant = $1 AND id = $2",
                row["id"],
                len(questions),
                json.dumps(key),
                json.dumps(msgspec.to_builtins(marking)),
            )
        return _to_exam_omr(await _exam_omr(tenant_scope, row["id"]))

    @post(
        "/scans",
        status_code=HTTP_202_ACCEPTED,
        guards=[require_grader],
        request_max_body_size=HARD_CAP,
        summary="Upload scanned answer sheets (a job)",
    )
    async def upload_scans(
        self,
        exam_id: FromPath[str],
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> ScanAccepted:
        """Multipart form, field ``files`` (repeatable): JPEG/PNG images (one sheet each)
        or PDFs (one sheet per page). A phone app may instead send JSON,
        ``{"files": [{"filename", "content_base64"}]}``. At most ``OMR_MAX_UPLOAD_BYTES`` in all. The exam
        needs a template (``PUT /exams/{id}/omr``). Every page is read on its own: a page
        that cannot be read ends FAILED with a reason while the others are graded. Poll
        ``status_url``; the pages are at ``/omr/batches/{batch_id}/pages``."""
        settings = get_settings()
        row = await _exam_omr(tenant_scope, exam_id)
        limit = settings.omr_max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
            raise Problem(413, f"the upload is larger than {limit // (1024 * 1024)} MiB")
        template_row = await _exam_template(tenant_scope, row)
        files = await _uploaded_files(request)
        batch_id = uuid.uuid4()
        if sum(len(data) for _, _, data in files) > limit:
            raise Problem(413, f"the upload is larger than {limit // (1024 * 1024)} MiB")
        inputs: list[dict[str, Any]] = []
        estimate = 0
        digest = hashlib.sha256()
        try:
            for i, (name, content_type, data) in enumerate(files, start=1):
                digest.update(data)
                key = omr_actors.page_key(
                    principal.tenant_id, batch_id, f"input/{i}-{omr_actors.safe_name(name)}"
                )
                # Anything is stored: a file that is not a scan becomes a FAILED page with
                # that reason, and the rest of the stack is still graded.
                await asyncio.to_thread(
                    storage.put_bytes, settings.r2_ai_bucket, key, data, content_type
                )
                inputs.append({"key": key, "filename": name[:200], "content_type": content_type})
                estimate += 2 * settings.omr_lite_max_pages if data.startswith(b"%PDF-") else 1
            tier = omr_actors.tier_for(estimate)
            async with transaction():
                job = await submit(
                    omr_actors.SPLIT_BATCH[tier],
                    tenant_id=principal.tenant_id,
                    kind="omr.batch",
                    request_id=request.scope.get("state", {}).get("request_id", ""),
                    input_key=inputs[0]["key"],
                    sha256=digest.hexdigest(),
                    batch_id=str(batch_id),
                )
                await tenant_scope.new(
                    OmrBatch,
                    id=batch_id,
                    exam=row["id"],
                    template=template_row["id"],
                    template_spec=template_row["spec"],
                    job=job.id,
                    tier=tier,
                    input_keys=json.dumps(inputs),
                    created_by=principal.user_id,
                ).save()
        except BaseException:
            # No batch refers to what was stored: it must not stay behind as an orphan.
            keys = [item["key"] for item in inputs]
            await asyncio.shield(asyncio.to_thread(_delete_quietly, settings.r2_ai_bucket, keys))
            raise
        return ScanAccepted(
            job_id=job.id,
            batch_id=batch_id,
            files=len(inputs),
            tier=tier,
            status_url=f"/api/v1/jobs/{job.id}",
        )

    @get("/scans", summary="The exam's scan batches, newest first")
    async def list_batches(
        self,
        exam_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[BatchOut]:
        limit = check_limit(limit)
        row = await _exam_omr(tenant_scope, exam_id)
        args: list[Any] = [row["id"]]
        where = ""
        after = decode_cursor_as(cursor, as_datetime, as_uuid)
        if after is not None:
            args += list(after)
            where = "AND (b.created_at, b.id) < ($3, $4)"
        rows = await tenant_scope.fetch(
            f"{BATCH_SELECT} AND b.exam = $2 {where} {BATCH_GROUP} "
            f"ORDER BY b.created_at DESC, b.id DESC LIMIT {limit + 1}",
            *args,
        )
        return page_of(rows, limit, _newest_cursor, _to_batch)

    @get("/omr/review", summary="The review queue: pages of this exam a teacher must look at")
    async def review_queue(
        self,
        exam_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[PageOut]:
        """Low-confidence, multiply marked or erased questions, and sheets whose student
        was not found (unmatched, ambiguous or a second sheet for the same student);
        oldest first."""
        limit = check_limit(limit)
        row = await _exam_omr(tenant_scope, exam_id)
        args: list[Any] = [row["id"]]
        where = ""
        after = decode_cursor_as(cursor, as_datetime, as_uuid)
        if after is not None:
            args += list(after)
            where = "AND (p.created_at, p.id) > ($3, $4)"
        rows = await tenant_scope.fetch(
            f"{PAGE_SELECT} WHERE p.tenant = $1 AND b.exam = $2 AND p.needs_review {where} "
            f"ORDER BY p.created_at, p.id LIMIT {limit + 1}",
            *args,
        )
        return page_of(rows, limit, _newest_cursor, _to_page)


# --- batches and pages -------------------------------------------------------------------

BATCH_SELECT = """
    SELECT b.*, j.status AS job_status, j.error AS job_error,
           count(p.id) FILTER (WHERE p.needs_review) AS review_count
    FROM omr_batch b
    LEFT JOIN job j ON j.id = b.job AND j.tenant = $1
    LEFT JOIN omr_page p ON p.batch = b.id AND p.tenant = $1
    WHERE b.tenant = $1
"""
BATCH_GROUP = "GROUP BY b.id, j.status, j.error"

PAGE_SELECT = """
    SELECT p.*, b.exam, st.name AS student_name
    FROM omr_page p
    JOIN omr_batch b ON b.id = p.batch AND b.tenant = $1
    LEFT JOIN student st ON st.id = p.student AND st.tenant = $1
"""


def _to_batch(r: Any) -> BatchOut:
    return BatchOut(
        id=r["id"],
        exam_id=r["exam"],
        job_id=r["job"],
        status=r["job_status"],
        error=r["job_error"],
        tier=r["tier"],
        files=len(_loads(r["input_keys"]) or []),
        page_count=r["page_count"],
        pages_done=r["pages_done"],
        pages_failed=r["pages_failed"],
        needs_review=r["review_count"],
        created_at=r["created_at"],
        finished_at=r["finished_at"],
    )


def _to_page(r: Any, *, with_reading: bool = False) -> PageOut:
    # Presigning is local signing, no request: not worth a thread per row.
    url = None
    if r["annotated_key"]:
        url = storage.presigned_get(get_settings().r2_ai_bucket, r["annotated_key"], 3600)
    return PageOut(
        id=r["id"],
        batch_id=r["batch"],
        exam_id=r["exam"],
        page_no=r["page_no"],
        source=r["source"],
        status=r["status"],
        error_code=r["error_code"],
        error=r["error"],
        student_number=r["student_number"],
        student_id=r["student"],
        student_name=r["student_name"],
        score=None if r["score"] is None else float(r["score"]),
        needs_review=r["needs_review"],
        review_items=_loads(r["review_items"]) or [],
        answers=_loads(r["answers"]),
        results=_loads(r["results"]),
        reading=_loads(r["reading"]) if with_reading else None,
        annotated_url=url,
        reviewed_at=r["reviewed_at"],
        updated_at=r["updated_at"],
    )


async def _load_page(scope: TenantScope, page_id: Any) -> Any:
    row = await scope.fetchrow(
        f"{PAGE_SELECT} WHERE p.tenant = $1 AND p.id = $2", parse_id(OmrPage, page_id)
    )
    if row is None:
        raise NotFoundInTenant(OmrPage, page_id)
    return row


class BatchController(Controller):
    path = "/api/v1/omr"
    tags = ["omr"]
    guards = [require_staff]

    @get("/batches/{batch_id:str}", summary="One scan batch: pages read, failed, to review")
    async def get_batch(
        self, batch_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> BatchOut:
        row = await tenant_scope.fetchrow(
            f"{BATCH_SELECT} AND b.id = $2 {BATCH_GROUP}", parse_id(OmrBatch, batch_id)
        )
        if row is None:
            raise NotFoundInTenant(OmrBatch, batch_id)
        return _to_batch(row)

    @get("/batches/{batch_id:str}/pages", summary="The batch's pages, in upload order")
    async def list_pages(
        self,
        batch_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[PageOut]:
        limit = check_limit(limit)
        key = parse_id(OmrBatch, batch_id)
        exists = await tenant_scope.fetchrow(
            "SELECT 1 FROM omr_batch WHERE tenant = $1 AND id = $2", key
        )
        if exists is None:
            raise NotFoundInTenant(OmrBatch, batch_id)
        after = decode_cursor_as(cursor, as_int)
        rows = await tenant_scope.fetch(
            f"{PAGE_SELECT} WHERE p.tenant = $1 AND p.batch = $2 AND p.page_no > $3 "
            f"ORDER BY p.page_no LIMIT {limit + 1}",
            key,
            after[0] if after is not None else 0,
        )
        return page_of(rows, limit, lambda r: [r["page_no"]], _to_page)

    @post(
        "/batches/{batch_id:str}/regrade",
        status_code=HTTP_200_OK,
        guards=[require_grader],
        summary="Score the batch's pages again with the exam's current key and marking",
    )
    async def regrade(
        self,
        batch_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> RegradeResult:
        """For a key fixed after the scans were read: the stored answers (as read and as
        corrected) are scored again; nothing is re-read. A score that comes out the same
        changes nothing, so running it twice is harmless."""
        key = parse_id(OmrBatch, batch_id)
        async with transaction():
            batch = await tenant_scope.fetchrow(
                "SELECT id FROM omr_batch WHERE tenant = $1 AND id = $2", key
            )
            if batch is None:
                raise NotFoundInTenant(OmrBatch, batch_id)
            exam = await omr_actors.exam_for_batch(key)
            pages = await tenant_scope.fetch(
                "SELECT id, answers, student, score FROM omr_page WHERE tenant = $1 "
                "AND batch = $2 AND status = 'DONE' AND student IS NOT NULL ORDER BY page_no "
                "FOR UPDATE",
                key,
            )
            changed = 0
            for page in pages:
                grading = omr_actors.grade(dict(_loads(page["answers"]) or {}), exam)
                if grading.result is None:
                    continue
                written, _ = await omr_actors.write_omr_score(
                    principal.tenant_id,
                    exam,
                    page["id"],
                    page["student"],
                    grading.result.total,
                    principal.user_id,
                )
                if not written:
                    continue
                changed += page["score"] != grading.result.total
                await tenant_scope.fetch(
                    "UPDATE omr_page SET results = $3::jsonb, score = $4, updated_at = now() "
                    "WHERE tenant = $1 AND id = $2",
                    page["id"],
                    json.dumps(grading.results_json),
                    grading.result.total,
                )
        return RegradeResult(batch_id=key, pages=len(pages), changed=changed)

    @get("/pages/{page_id:str}", summary="One page: what was read, with confidences")
    async def get_page(
        self, page_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> PageOut:
        return _to_page(await _load_page(tenant_scope, page_id), with_reading=True)

    @post(
        "/pages/{page_id:str}/review",
        status_code=HTTP_200_OK,
        guards=[require_grader],
        summary="Confirm or correct a page; re-scores the student",
    )
    async def review(
        self,
        page_id: FromPath[str],
        data: JSONBody[ReviewIn],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> PageOut:
        """Corrections replace the read answers (``"⑤"`` is ``"5"``); ``student_id``
        assigns the sheet to an actively enrolled student of the exam's lecture. The page
        leaves the review queue, the score is written (source ``omr``), and the change is
        audited (``omr_page`` ``review``: before and after)."""
        async with transaction():
            row = await _load_page(tenant_scope, page_id)
            await tenant_scope.fetch(
                "SELECT id FROM omr_page WHERE tenant = $1 AND id = $2 FOR UPDATE", row["id"]
            )
            if row["status"] != "DONE":
                raise Problem(
                    409,
                    "only a page that was read can be reviewed"
                    + (f" (this one failed: {row['error']})" if row["error"] else ""),
                    type_="/problems/page-not-read",
                )
            exam = await omr_actors.exam_for_batch(row["batch"])
            answers: dict[str, str] = dict(_loads(row["answers"]) or {})
            errors: list[dict[str, Any]] = []
            for q, a in data.answers.items():
                number = normalize_answer(q)
                if not number.isdigit() or str(int(number)) not in answers:
                    errors.append(
                        {"field": f"answers.{q}", "message": "not a question of this sheet"}
                    )
                    continue
                answers[str(int(number))] = normalize_answer(a)
            student = row["student"]
            if data.student_id is not None:
                ok = await tenant_scope.fetchrow(
                    """
                    SELECT 1 FROM enrollment en
                    JOIN student st ON st.id = en.student AND st.tenant = $1
                         AND st.deleted_at IS NULL
                    WHERE en.tenant = $1 AND en.student = $2 AND en.lecture = $3
                      AND en.status = 'active'
                    """,
                    data.student_id,
                    exam["lecture"],
                )
                if ok is None:
                    errors.append(
                        {
                            "field": "student_id",
                            "message": "not a student actively enrolled in the exam's lecture",
                        }
                    )
                student = data.student_id
            if errors:
                raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
            grading = omr_actors.grade(answers, exam)
            score: Decimal | None = None
            if student is not None and grading.result is not None:
                # The sheet's previous student loses the score this sheet gave them.
                if (
                    row["student"] is not None
                    and row["student"] != student
                    and row["score"] is not None
                ):
                    await tenant_scope.fetch(
                        """
                        WITH gone AS (
                            DELETE FROM score WHERE tenant = $1 AND exam = $2 AND student = $3
                                AND source = 'omr'
                            RETURNING id, exam, student, score
                        )
                        INSERT INTO audit_log (tenant, actor, entity, entity_id, action, before, at)
                        SELECT $1, $4::uuid, 'score', g.id, 'delete',
                               jsonb_build_object('exam_id', g.exam, 'student_id', g.student,
                                                  'score', g.score), now()
                        FROM gone g
                        """,
                        exam["id"],
                        row["student"],
                        principal.user_id,
                    )
                written, problem = await omr_actors.write_omr_score(
                    principal.tenant_id,
                    exam,
                    row["id"],
                    uuid.UUID(str(student)),
                    grading.result.total,
                    principal.user_id,
                )
                if not written:
                    raise Problem(
                        409,
                        "another sheet of this exam is already scored for this student",
                        type_="/problems/duplicate-student",
                        errors=[{"field": "student_id", "message": problem or "duplicate"}],
                    )
                score = grading.result.total
            before = {
                "answers": _loads(row["answers"]),
                "student_id": _str(row["student"]),
                "score": _str(row["score"]),
            }
            after = {"answers": answers, "student_id": _str(student), "score": _str(score)}
            await tenant_scope.fetch(
                """
                UPDATE omr_page SET answers = $3::jsonb, results = $4::jsonb, student = $5,
                       score = $6, needs_review = false, review_items = '[]'::jsonb,
                       reviewed_by = $7, reviewed_at = now(), updated_at = now()
                WHERE tenant = $1 AND id = $2
                """,
                row["id"],
                json.dumps(answers),
                json.dumps(grading.results_json),
                student,
                score,
                principal.user_id,
            )
            await record_audit(
                tenant_id=principal.tenant_id,
                actor_id=principal.user_id,
                entity="omr_page",
                entity_id=row["id"],
                action="review",
                before=before,
                after=after,
            )
        return _to_page(await _load_page(tenant_scope, row["id"]), with_reading=True)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


CONTROLLERS: list[type[Controller]] = [
    TemplateController,
    ExamOmrController,
    BatchController,
]
