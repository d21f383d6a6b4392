"""OMR grading, the query layer: answer card templates, an exam's OMR settings, and scan
batches (their upload, their split into pages, the page barrier and the summary a
finished batch reports). Pages themselves are ``models.omr_pages``.

**The barrier**: every page of a batch, read or failed, is counted into
``omr_batch.pages_done`` in the transaction that settles it (``count_into_barrier``); the
page that brings it up to ``page_count`` is the last, and its actor sends the finish.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from models import db
from models.db import transaction
from models.errors import Problem
from models.pages import Page, Params, as_datetime, as_uuid, keyset, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Exam as ExamTable
from models.tables import OmrBatch, OmrTemplate

# --- templates -----------------------------------------------------------------------------


class TemplateOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    source: str
    questions: int
    printable: bool  # a card with our markers: GET .../card.png|card.pdf
    spec: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


# ``printable``: the spec has corner markers (absent and JSON null alike are none).
TEMPLATE_COLUMNS = """
    id, name, source, COALESCE(jsonb_array_length(spec->'questions'), 0) AS questions,
    COALESCE(jsonb_typeof(spec->'markers'), 'null') <> 'null' AS printable,
    spec, created_at, updated_at
"""

NEWEST_TEMPLATES = keyset(("created_at", as_datetime), ("id", as_uuid), descending=True)


def _name_taken(name: str, **problem: Any) -> Problem:
    return Problem(
        409,
        f"a template named {name!r} exists already",
        errors=[{"field": "name", "message": "already used"}],
        **problem,
    )


async def list_templates(
    scope: TenantScope, *, cursor: str | None, limit: int
) -> Page[TemplateOut]:
    """The academy's templates, newest first."""
    return await keyset_page(
        scope,
        TemplateOut,
        select=f"SELECT {TEMPLATE_COLUMNS} FROM omr_template",
        where=["tenant = $1"],
        params=Params(),
        key=NEWEST_TEMPLATES,
        cursor=cursor,
        limit=limit,
    )


async def get_template(scope: TenantScope, template_id: Any) -> TemplateOut:
    return await scope.one(
        TemplateOut,
        OmrTemplate,
        f"SELECT {TEMPLATE_COLUMNS} FROM omr_template WHERE tenant = $1 AND id = $2",
        template_id,
    )


async def insert_template(
    scope: TenantScope, *, name: str, source: str, spec: dict[str, Any]
) -> TemplateOut:
    """Store a template under ``name``; a name taken is a 409."""
    created = await scope.row(
        TemplateOut,
        f"""
        INSERT INTO omr_template (id, tenant, name, source, spec)
        VALUES (gen_random_uuid(), $1, $2, $3, $4::jsonb)
        ON CONFLICT (tenant, name) DO NOTHING RETURNING {TEMPLATE_COLUMNS}
        """,
        name,
        source,
        spec,
    )
    if created is None:
        raise _name_taken(name, type_="/problems/conflict")
    return created


async def update_template(
    scope: TenantScope, template_id: uuid.UUID, *, name: str, spec: dict[str, Any]
) -> TemplateOut:
    """Rename the template and replace its spec; a name another template has is a 409."""
    clash = await scope.value(
        "SELECT 1 FROM omr_template WHERE tenant = $1 AND name = $2 AND id <> $3",
        name,
        template_id,
    )
    if clash:
        raise _name_taken(name)
    return await scope.one(
        TemplateOut,
        OmrTemplate,
        "UPDATE omr_template SET name = $3, spec = $4::jsonb, updated_at = now() "
        f"WHERE tenant = $1 AND id = $2 RETURNING {TEMPLATE_COLUMNS}",
        template_id,
        name,
        spec,
    )


async def delete_template(scope: TenantScope, template_id: Any) -> None:
    """Exams using the template are left without one (the foreign key sets it null)."""
    deleted = await scope.value(
        "DELETE FROM omr_template WHERE tenant = $1 AND id = $2 RETURNING id",
        parse_id(OmrTemplate, template_id),
    )
    if deleted is None:
        raise NotFoundInTenant(OmrTemplate, template_id)


# --- an exam's OMR settings ------------------------------------------------------------------


class ExamOmr(msgspec.Struct):
    exam_id: uuid.UUID
    template_id: uuid.UUID | None
    question_count: int | None
    answer_key: dict[str, list[str]] | None
    marking: dict[str, Any] | None
    key_id: str | None = None


async def get_exam_omr(scope: TenantScope, exam_id: Any) -> ExamOmr:
    return await scope.one(
        ExamOmr,
        ExamTable,
        "SELECT id AS exam_id, omr_template AS template_id, question_count, answer_key, "
        "marking, omr_key_id AS key_id FROM exam WHERE tenant = $1 AND id = $2",
        exam_id,
    )


async def template_of_exam(scope: TenantScope, exam: ExamOmr) -> TemplateOut:
    """The exam's answer card template; none set is a 409."""
    if exam.template_id is None:
        raise Problem(
            409,
            "the exam has no answer card template: PUT /exams/{id}/omr first",
            type_="/problems/no-omr-template",
        )
    return await get_template(scope, exam.template_id)


async def set_exam_omr(
    scope: TenantScope,
    exam_id: uuid.UUID,
    *,
    template_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET,
    marking: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET,
    key_id: str | msgspec.UnsetType | None = msgspec.UNSET,
) -> None:
    """Set the exam's template, marking and/or key ID (checked by the caller); what is
    unset stays."""
    params = Params(exam_id)
    sets = [
        f"{column} = {params(value)}{cast}"
        for column, value, cast in (
            ("omr_template", template_id, ""),
            ("marking", marking, "::jsonb"),
            ("omr_key_id", key_id, ""),
        )
        if not isinstance(value, msgspec.UnsetType)
    ]
    if sets:
        await scope.execute(
            f"UPDATE exam SET {', '.join(sets)}, updated_at = now() WHERE tenant = $1 AND id = $2",
            *params.values,
        )


async def set_exam_key(
    scope: TenantScope,
    exam_id: uuid.UUID,
    *,
    question_count: int,
    answer_key: dict[str, list[str]],
    marking: dict[str, Any],
) -> None:
    """The exam's question count, answer key and marking at once (an imported evaluation)."""
    await scope.execute(
        "UPDATE exam SET question_count = $3, answer_key = $4::jsonb, "
        "marking = $5::jsonb, updated_at = now() WHERE tenant = $1 AND id = $2",
        exam_id,
        question_count,
        answer_key,
        marking,
    )


async def set_answer_key(
    scope: TenantScope, exam_id: uuid.UUID, answer_key: dict[str, list[str]]
) -> None:
    """The exam's answer key, read from a key sheet; the question count is kept, or set to
    the key's when the exam had none."""
    await scope.execute(
        "UPDATE exam SET answer_key = $3::jsonb, "
        "question_count = COALESCE(question_count, $4), updated_at = now() "
        "WHERE tenant = $1 AND id = $2",
        exam_id,
        answer_key,
        max((int(q) for q in answer_key), default=0) or None,
    )


# --- scan batches: the API's side --------------------------------------------------------------


class ScanInput(msgspec.Struct):
    """One uploaded file of a batch (``omr_batch.input_keys``)."""

    key: str
    filename: str
    content_type: str


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


BATCH_SELECT = """
    SELECT b.id, b.exam AS exam_id, b.job AS job_id, j.status, j.error, b.tier,
           COALESCE(jsonb_array_length(b.input_keys), 0) AS files, b.page_count,
           b.pages_done, b.pages_failed,
           count(p.id) FILTER (WHERE p.needs_review) AS needs_review,
           b.created_at, b.finished_at
    FROM omr_batch b
    LEFT JOIN job j ON j.id = b.job AND j.tenant = $1
    LEFT JOIN omr_page p ON p.batch = b.id AND p.tenant = $1
"""
BATCH_GROUP = "GROUP BY b.id, j.status, j.error"

NEWEST_BATCHES = keyset(("b.created_at", as_datetime), ("b.id", as_uuid), descending=True)


async def create_batch(
    scope: TenantScope,
    *,
    batch_id: uuid.UUID,
    exam_id: uuid.UUID,
    template: Any,
    job_id: uuid.UUID,
    tier: str,
    inputs: Sequence[ScanInput],
    created_by: uuid.UUID,
) -> None:
    """A batch of the uploaded ``inputs``, read with ``template`` (a ``TemplateOut``) as
    it is now: editing the template later does not change how this batch is read."""
    await scope.execute(
        """
        INSERT INTO omr_batch (id, tenant, exam, template, template_spec, job, tier,
                               input_keys, created_by)
        VALUES ($2, $1, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9)
        """,
        batch_id,
        exam_id,
        template.id,
        template.spec,
        job_id,
        tier,
        list(inputs),
        created_by,
    )


async def get_batch(scope: TenantScope, batch_id: Any) -> BatchOut:
    return await scope.one(
        BatchOut,
        OmrBatch,
        f"{BATCH_SELECT} WHERE b.tenant = $1 AND b.id = $2 {BATCH_GROUP}",
        batch_id,
    )


async def list_batches(
    scope: TenantScope, exam_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[BatchOut]:
    """The exam's scan batches, newest first."""
    params = Params()
    return await keyset_page(
        scope,
        BatchOut,
        select=BATCH_SELECT,
        where=["b.tenant = $1", f"b.exam = {params(exam_id)}"],
        params=params,
        key=NEWEST_BATCHES,
        cursor=cursor,
        limit=limit,
        group_by=BATCH_GROUP,
    )


# --- scan batches: the workers' side --------------------------------------------------------


class BatchRecord(msgspec.Struct):
    """A batch as its actors see it."""

    id: uuid.UUID
    tenant: uuid.UUID
    job: uuid.UUID | None
    tier: str
    template_spec: dict[str, Any]
    input_keys: list[ScanInput]
    page_count: int | None
    pages_done: int
    created_by: uuid.UUID | None


class NewPage(msgspec.Struct):
    """A page found by the split: its image, or why it has none (``error_code``, a page
    FAILED from the start)."""

    source: str
    image_key: str | None
    error_code: str | None = None
    error: str | None = None


class Barrier(msgspec.Struct):
    """A batch's barrier after a page was counted into it."""

    pages_done: int
    page_count: int | None
    job: uuid.UUID | None
    tier: str


async def load_batch(batch_id: Any) -> BatchRecord | None:
    return await db.row(
        BatchRecord, "SELECT * FROM omr_batch WHERE id = $1", uuid.UUID(str(batch_id))
    )


async def pending_pages(batch_id: Any) -> list[uuid.UUID]:
    """The batch's pages not read yet, in page order."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT id FROM omr_page WHERE batch = $1 AND status = 'PENDING' ORDER BY page_no",
            uuid.UUID(str(batch_id)),
        )
    return [r["id"] for r in rows]


async def split_into_pages(batch: BatchRecord, pages: Sequence[NewPage]) -> list[uuid.UUID] | None:
    """Record the batch's pages, numbered from 1, and count those FAILED from the start
    into the barrier; the pages to read. None when another delivery split the batch
    first (the batch's ``page_count`` is set once)."""
    async with transaction():
        claimed = await db.value(
            "UPDATE omr_batch SET page_count = $2 WHERE id = $1 AND page_count IS NULL "
            "RETURNING id",
            batch.id,
            len(pages),
        )
        if claimed is None:
            return None
        await db.execute(
            """
            INSERT INTO omr_page (id, tenant, batch, page_no, source, image_key, status,
                                  error_code, error)
            SELECT gen_random_uuid(), $1, $2, t.n, t.source, t.key,
                   CASE WHEN t.code IS NULL THEN 'PENDING' ELSE 'FAILED' END,
                   t.code, t.error
            FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::text[])
                 AS t(n, source, key, code, error)
            ON CONFLICT (batch, page_no) DO NOTHING
            """,
            batch.tenant,
            batch.id,
            list(range(1, len(pages) + 1)),
            [p.source[:255] for p in pages],
            [p.image_key for p in pages],
            [p.error_code for p in pages],
            [p.error for p in pages],
        )
        failed = sum(1 for p in pages if p.error_code)
        if failed:
            await db.execute(
                "UPDATE omr_batch SET pages_done = pages_done + $2, "
                "pages_failed = pages_failed + $2 WHERE id = $1",
                batch.id,
                failed,
            )
        return await pending_pages(batch.id)


async def count_into_barrier(batch_id: Any, *, failed: bool) -> Barrier | None:
    """Count one settled page into the batch (in the caller's transaction, the one that
    settled the page). None when the batch is gone."""
    return await db.row(
        Barrier,
        """
        UPDATE omr_batch SET pages_done = pages_done + 1,
               pages_failed = pages_failed + $2::int
        WHERE id = $1 RETURNING pages_done, page_count, job, tier
        """,
        batch_id,
        1 if failed else 0,
    )


# --- the finished batch -------------------------------------------------------------------


class PageFailure(msgspec.Struct):
    page_no: int
    source: str
    code: str | None
    reason: str | None


class BatchSummary(msgspec.Struct):
    """What a finished batch's job reports (its ``result``)."""

    batch_id: uuid.UUID
    exam_id: uuid.UUID
    pages: int | None
    read: int
    failed: int
    scored: int
    needs_review: int
    unmatched: int
    failures: list[PageFailure] = []


async def finish_batch(batch_id: Any) -> BatchSummary | None:
    """Mark the batch finished once every page is counted, and sum it up (the first 100
    failed pages listed). None when the batch is gone."""
    key = uuid.UUID(str(batch_id))
    await db.execute(
        "UPDATE omr_batch SET finished_at = COALESCE(finished_at, now()) "
        "WHERE id = $1 AND page_count = pages_done",
        key,
    )
    summary = await db.row(
        BatchSummary,
        """
        SELECT b.id AS batch_id, b.exam AS exam_id, b.page_count AS pages,
               count(p.id) FILTER (WHERE p.status = 'DONE') AS read,
               b.pages_failed AS failed,
               count(p.id) FILTER (WHERE p.score IS NOT NULL) AS scored,
               count(p.id) FILTER (WHERE p.needs_review) AS needs_review,
               count(p.id) FILTER (WHERE p.status = 'DONE' AND p.student IS NULL)
                   AS unmatched
        FROM omr_batch b LEFT JOIN omr_page p ON p.batch = b.id
        WHERE b.id = $1 GROUP BY b.id
        """,
        key,
    )
    if summary is None:
        return None
    summary.failures = await db.rows(
        PageFailure,
        "SELECT page_no, source, error_code AS code, error AS reason FROM omr_page "
        "WHERE batch = $1 AND status = 'FAILED' ORDER BY page_no LIMIT 100",
        key,
    )
    return summary
