"""OMR grading: an exam's OMR settings, scan uploads, batches and pages, and the
teacher's review queue. Templates are ``api.omr_templates``.

An exam points at one template and carries its marking (weights, sections, negative
marking); its answer key is the exam's ``answer_key``. ``POST /exams/{id}/scans`` stores
the files and starts a job that reads every page (see ``actors.omr``); the pages then list
what was read, the score, an annotated image, and what needs a teacher. A teacher's review
corrects answers or picks the student, re-scores, and is audited.

Roles: owner, admin, teacher and staff read; owner, admin and teacher write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from actors.jobs import submit
from actors.omr import SPLIT_BATCH
from api import rules
from api.auth import Principal, require_own_lecture, require_staff
from api.errors import Problem, field_error
from api.omr_templates import TemplateController, require_grader, template_problem
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from api.uploads import cap_body, multipart_form, refuse_read_size
from models import enrollments, omr_pages
from models import omr as omr_models
from models.db import transaction
from models.errors import fail_fields
from models.limits import (
    BASE64,
    KEY_ID,
    TITLE_MAX,
    Base64Text,
    Name,
    Text,
    Title,
    control_character_errors,
)
from models.omr import BatchOut, ExamOmr, ScanInput
from models.omr_pages import PageOut
from models.pages import Page
from models.scope import NotFoundInTenant, TenantScope
from ops import storage
from ops.settings import get_settings
from pipelines.grading import InvalidAnswerKey, normalize_answer_key
from pipelines.omr.grading import correct_answers, grade
from pipelines.omr.scans import PDF_MAGIC, safe_name, tier_for
from pipelines.omr.score import InvalidMarking, import_omrchecker_evaluation, parse_marking
from pipelines.omr.template import TemplateError, parse_template

MAX_FILES = 200
# The body limit of the upload route; OMR_MAX_UPLOAD_BYTES (lower) is checked as it reads.
HARD_CAP = 1024 * 1024 * 1024

# --- schemas ---------------------------------------------------------------------------

# A list's schema component is named after its item's module: these keep the names the
# lists had while their items were declared here (the OpenAPI document does not change).
BatchOutPage = Annotated[Page[BatchOut], page_schema(BatchOut)]
PageOutPage = Annotated[Page[PageOut], page_schema(PageOut)]


class ExamOmrUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """``marking`` (``null`` clears it): ``default`` ``{correct, incorrect, unmarked}``,
    ``sections`` ``[{name, questions, correct, incorrect, unmarked}]``, ``points``
    (question -> 배점) and ``answer_points`` (question -> answer -> points). Values are
    numbers or fractions such as ``"-1/3"``; see ``pipelines.omr.score``. ``key_id``
    (``null`` clears it): the student number, 1..32 digits, that makes a scanned sheet
    the batch's answer key instead of a student's answers (for example ``"99999999"``)."""

    template_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    marking: dict[Name, Any] | msgspec.UnsetType | None = msgspec.UNSET
    key_id: Annotated[str, msgspec.Meta(pattern=KEY_ID)] | msgspec.UnsetType | None = msgspec.UNSET


class EvaluationImport(msgspec.Struct, forbid_unknown_fields=True):
    """OMRChecker's ``evaluation.json``, and its answer key CSV when the evaluation names
    one (``answer_key_csv_path``). The exam's template must be set: its questions give
    the labels (``q1``...) their numbers."""

    evaluation: dict[Name, Any]
    answer_key_csv: Text | None = None


class ScanAccepted(msgspec.Struct):
    job_id: uuid.UUID
    batch_id: uuid.UUID
    files: int
    tier: str
    status_url: str


class RegradeResult(msgspec.Struct):
    batch_id: uuid.UUID
    pages: int  # pages re-scored (read, with a student)
    changed: int  # scores that changed


class ReviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """``answers``: question -> the answer the teacher reads on the sheet (``""`` for
    none); the others stay as read. ``student_id``: the student the sheet belongs to.
    Sending nothing confirms the reading as it is."""

    answers: dict[Name, Name] = {}
    student_id: uuid.UUID | None = None


class Base64File(msgspec.Struct, forbid_unknown_fields=True):
    filename: Title
    content_base64: Base64Text


class Base64Files(msgspec.Struct, forbid_unknown_fields=True):
    files: list[Base64File]


# Standard base64 with its padding, as ``base64.b64decode(validate=True)`` takes it.
# The two bodies ``upload_scans`` reads itself, for the OpenAPI document.
SCAN_FORM = multipart_form(
    {
        "files": Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
            min_items=1,
            max_items=MAX_FILES,
            description="JPEG/PNG images (a sheet each) or PDFs (a sheet a page), repeated",
        )
    },
    required=["files"],
    json=Schema(
        type=OpenAPIType.OBJECT,
        required=["files"],
        properties={
            "files": Schema(
                type=OpenAPIType.ARRAY,
                min_items=1,
                max_items=MAX_FILES,
                items=Schema(
                    type=OpenAPIType.OBJECT,
                    required=["filename", "content_base64"],
                    properties={
                        "filename": Schema(type=OpenAPIType.STRING, max_length=TITLE_MAX),
                        "content_base64": Schema(
                            type=OpenAPIType.STRING, content_encoding="base64", pattern=BASE64
                        ),
                    },
                    additional_properties=False,
                ),
            )
        },
        additional_properties=False,
    ),
)


async def _uploaded_files(request: Request[Any, Any, Any]) -> list[tuple[str, str, bytes]]:
    """``(filename, content type, bytes)`` of every uploaded file, multipart or JSON."""
    out: list[tuple[str, str, bytes]] = []
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = msgspec.json.decode(await request.body())
        except msgspec.DecodeError as exc:
            raise field_error("files", f"not a JSON upload: {exc}") from None
        # Read here, not by ``CheckedRequest.json``: the same text rules apply.
        fail_fields(control_character_errors(raw, "", "body"))
        try:
            body = msgspec.convert(raw, Base64Files)
        except msgspec.ValidationError as exc:
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


def _delete_quietly(bucket: str, keys: list[str]) -> None:
    """One DeleteObjects request (an upload holds at most ``MAX_FILES`` < 1,000 keys); it
    runs while another error is on its way out, so its own failure is not raised."""
    if not keys:
        return
    objects = [{"Key": key} for key in keys]
    with contextlib.suppress(Exception):
        storage.client().delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def _signed(page: PageOut) -> PageOut:
    """The page with its annotated sheet's storage key turned into a link for an hour."""
    # Presigning is local signing, no request: not worth a thread per row.
    key = page.annotated_url
    url = storage.presigned_get(get_settings().r2_ai_bucket, key, 3600) if key else None
    return msgspec.structs.replace(page, annotated_url=url)


def _signed_pages(pages: Page[PageOut]) -> Page[PageOut]:
    return msgspec.structs.replace(pages, items=[_signed(p) for p in pages.items])


def _too_large(limit: int) -> str:
    return f"the upload is larger than {limit // (1024 * 1024)} MiB"


async def _template_errors(
    scope: TenantScope, template_id: uuid.UUID, question_count: int | None
) -> list[dict[str, Any]]:
    """Why the template cannot serve the exam: not found, or fewer questions."""
    try:
        found = await omr_models.get_template(scope, template_id)
    except NotFoundInTenant:
        return [{"field": "template_id", "message": "no such template"}]
    if question_count and found.questions < question_count:
        return [
            {
                "field": "template_id",
                "message": f"the card has {found.questions} questions; the exam has "
                f"{question_count}",
            }
        ]
    return []


# --- an exam's OMR settings, its scans and its review queue ------------------------------


class ExamOmrController(Controller):
    path = "/api/v1/exams/{exam_id:str}"
    tags = ["omr"]
    guards = [require_staff, require_own_lecture]

    @get("/omr", summary="The exam's answer card template, answer key and marking")
    async def get_settings(
        self, exam_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ExamOmr:
        return await omr_models.get_exam_omr(tenant_scope, exam_id)

    @put(
        "/omr",
        opt=rules.EXAM_OMR,
        guards=[require_grader],
        summary="Set the exam's template and marking",
    )
    async def put_settings(
        self,
        exam_id: FromPath[str],
        data: JSONBody[ExamOmrUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> ExamOmr:
        """The answer key itself is the exam's ``answer_key`` (``PATCH /exams/{id}``). A
        template must have at least as many questions as the exam."""
        async with transaction():
            exam = await omr_models.get_exam_omr(tenant_scope, exam_id)
            errors: list[dict[str, Any]] = []
            if isinstance(data.template_id, uuid.UUID):
                errors += await _template_errors(
                    tenant_scope, data.template_id, exam.question_count
                )
            marking: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
            if not isinstance(data.marking, msgspec.UnsetType):
                try:
                    parsed = parse_marking(data.marking, exam.question_count)
                    marking = None if parsed is None else msgspec.to_builtins(parsed)
                except InvalidMarking as exc:
                    errors.extend({"field": p, "message": m} for p, m in exc.issues)
            fail_fields(errors)
            await omr_models.set_exam_omr(
                tenant_scope,
                exam.exam_id,
                template_id=data.template_id,
                marking=marking,
                key_id=data.key_id,
            )
        return await omr_models.get_exam_omr(tenant_scope, exam.exam_id)

    @post(
        "/omr/omrchecker-evaluation",
        opt=rules.EVALUATION_IMPORT,
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
            exam = await omr_models.get_exam_omr(tenant_scope, exam_id)
            template = await omr_models.template_of_exam(tenant_scope, exam)
            questions = parse_template(template.spec).questions
            try:
                imported = import_omrchecker_evaluation(
                    data.evaluation, questions, csv_text=data.answer_key_csv
                )
                marking = parse_marking(msgspec.to_builtins(imported.marking), len(questions))
                key = normalize_answer_key(imported.key, len(questions))
            except TemplateError as exc:
                raise template_problem(exc, "evaluation") from None
            except InvalidMarking as exc:
                errors = [{"field": p, "message": m} for p, m in exc.issues]
                raise Problem(422, str(exc), errors=errors) from None
            except InvalidAnswerKey as exc:
                errors = [{"field": f"answer_key.{p}", "message": m} for p, m in exc.issues]
                raise Problem(422, str(exc), errors=errors) from None
            await omr_models.set_exam_key(
                tenant_scope,
                exam.exam_id,
                question_count=len(questions),
                answer_key=key,
                marking=msgspec.to_builtins(marking),
            )
        return await omr_models.get_exam_omr(tenant_scope, exam.exam_id)

    @post(
        "/scans",
        operation_class=SCAN_FORM,
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
        exam = await omr_models.get_exam_omr(tenant_scope, exam_id)
        limit = settings.omr_max_upload_bytes
        cap_body(request, limit, detail=_too_large(limit))
        template = await omr_models.template_of_exam(tenant_scope, exam)
        files = await _uploaded_files(request)
        batch_id = uuid.uuid4()
        refuse_read_size(sum(len(data) for _, _, data in files), limit, detail=_too_large(limit))
        inputs: list[ScanInput] = []
        estimate = 0
        digest = hashlib.sha256()
        try:
            for i, (name, content_type, data) in enumerate(files, start=1):
                digest.update(data)
                key = storage.page_key(
                    principal.tenant_id, batch_id, f"input/{i}-{safe_name(name)}"
                )
                # Anything is stored: a file that is not a scan becomes a FAILED page with
                # that reason, and the rest of the stack is still graded.
                await asyncio.to_thread(
                    storage.put_bytes, settings.r2_ai_bucket, key, data, content_type
                )
                inputs.append(ScanInput(key=key, filename=name[:200], content_type=content_type))
                estimate += 2 * settings.omr_lite_max_pages if data.startswith(PDF_MAGIC) else 1
            tier = tier_for(estimate)
            async with transaction():
                job = await submit(
                    SPLIT_BATCH[tier],
                    tenant_id=principal.tenant_id,
                    kind="omr.batch",
                    input_key=inputs[0].key,
                    sha256=digest.hexdigest(),
                    batch_id=str(batch_id),
                )
                await omr_models.create_batch(
                    tenant_scope,
                    batch_id=batch_id,
                    exam_id=exam.exam_id,
                    template=template,
                    job_id=job.id,
                    tier=tier,
                    inputs=inputs,
                    created_by=principal.user_id,
                )
        except BaseException:
            # No batch refers to what was stored: it must not stay behind as an orphan.
            keys = [item.key for item in inputs]
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
    ) -> BatchOutPage:
        limit = check_limit(limit)
        exam = await omr_models.get_exam_omr(tenant_scope, exam_id)
        return await omr_models.list_batches(tenant_scope, exam.exam_id, cursor=cursor, limit=limit)

    @get("/omr/review", summary="The review queue: pages of this exam a teacher must look at")
    async def review_queue(
        self,
        exam_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> PageOutPage:
        """Low-confidence, multiply marked or erased questions, and sheets whose student
        was not found (unmatched, ambiguous or a second sheet for the same student);
        oldest first."""
        limit = check_limit(limit)
        exam = await omr_models.get_exam_omr(tenant_scope, exam_id)
        pages = await omr_pages.review_queue(tenant_scope, exam.exam_id, cursor=cursor, limit=limit)
        return _signed_pages(pages)


# --- batches, pages and reviews ---------------------------------------------------------


class BatchController(Controller):
    path = "/api/v1/omr"
    tags = ["omr"]
    guards = [require_staff, require_own_lecture]

    @get("/batches/{batch_id:str}", summary="One scan batch: pages read, failed, to review")
    async def get_batch(
        self, batch_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> BatchOut:
        return await omr_models.get_batch(tenant_scope, batch_id)

    @get("/batches/{batch_id:str}/pages", summary="The batch's pages, in upload order")
    async def list_pages(
        self,
        batch_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> PageOutPage:
        limit = check_limit(limit)
        pages = await omr_pages.list_pages(tenant_scope, batch_id, cursor=cursor, limit=limit)
        return _signed_pages(pages)

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
        async with transaction():
            done = await omr_pages.regrade_batch(tenant_scope, batch_id, principal.user_id)
        return RegradeResult(batch_id=done.batch_id, pages=done.pages, changed=done.changed)

    @get("/pages/{page_id:str}", summary="One page: what was read, with confidences")
    async def get_page(
        self, page_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> PageOut:
        return _signed(await omr_pages.get_page(tenant_scope, page_id))

    @post(
        "/pages/{page_id:str}/review",
        opt=rules.PAGE_REVIEW,
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
            page = await omr_pages.lock_read_page(tenant_scope, page_id)
            exam = await omr_pages.exam_for_batch(tenant_scope, page.batch)
            answers, errors = correct_answers(page.answers or {}, data.answers)
            student = page.student
            if data.student_id is not None:
                if not await enrollments.is_enrolled(tenant_scope, data.student_id, exam.lecture):
                    errors.append(
                        {
                            "field": "student_id",
                            "message": "not a student actively enrolled in the exam's lecture",
                        }
                    )
                student = data.student_id
            fail_fields(errors)
            grading = grade(answers, exam)
            await omr_pages.record_review(
                tenant_scope,
                page,
                exam.id,
                answers=answers,
                student=student,
                score=grading.result.total if grading.result is not None else None,
                results=grading.results_json,
                actor_id=principal.user_id,
            )
        return _signed(await omr_pages.get_page(tenant_scope, page.id))


CONTROLLERS: list[type[Controller]] = [
    TemplateController,
    ExamOmrController,
    BatchController,
]
