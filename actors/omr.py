"""OMR grading actors: split a scan batch into pages, read each page, finish the batch.

    omr.split_batch[_tier](job_id, batch_id)    rasterise PDFs, one omr_page per page,
                                                enqueue one read per page
    omr.read_page[_tier](page_id)               align, read, identify, score, annotate;
                                                count the page into the batch's barrier
    omr.finish_batch[_tier](job_id, batch_id)   sent by the last page: summary, job DONE

Each step exists once per ai tier (``omr.read_page`` on ai-basic, ``omr.read_page_lite``,
``omr.read_page_premium``); a batch runs on the tier chosen at upload. Only ids cross the
queue. Every step is idempotent: a page is read once (``status`` moves from PENDING
exactly once, in the same transaction as its barrier increment); a redelivered split
re-sends the reads of pages still PENDING; scores are upserts that change nothing when
the value is the same.

A page that cannot be read ends FAILED with a code and a reason and still counts into the
barrier, so the rest of the batch proceeds. An infrastructure error (storage, database)
is retried; on the last attempt the page is failed with that reason rather than left
hanging, since the batch waits for every page.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from actors.jobs import (
    Chain,
    Claim,
    JobActor,
    fail_job,
    finish_job,
    job,
    run_step,
    set_progress,
    when_last,
)
from models import omr as omr_models
from models import omr_pages
from models.db import on_commit, transaction
from models.jobs import JobRecord, raise_progress
from models.omr import BatchRecord, NewPage
from models.omr_pages import ClaimedPage, StoredReading
from models.scope import TenantScope
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.omr.align import SheetError
from pipelines.omr.annotate import annotate
from pipelines.omr.grading import (
    Grading,
    exam_questions,
    grade,
    header,
    key_from_sheet,
    review_items,
    verdicts,
)
from pipelines.omr.scans import PDF_MAGIC, rasterise_pdf
from pipelines.omr.sheet import SheetReading, read_sheet, reading_json
from pipelines.omr.template import parse_template

log = logging.getLogger("actors.omr")

TIERS = ("ai-basic", "ai-lite", "ai-premium")
READ_RETRIES = 3


def _suffix(tier: str) -> str:
    return "" if tier == "ai-basic" else "_" + tier.removeprefix("ai-")


# --- split -----------------------------------------------------------------------------


# Split, then one read per page (a fan-out), then the finish, sent by the last page read.
SPLIT = Chain(("split", "read", "finish"))


async def _split(job_id: str, batch_id: str) -> None:
    """Rasterise the batch's uploads into pages and record them (``page_count`` is the
    record: set once); the reads are sent after that commit."""

    async def claim(_: JobRecord) -> Claim | None:
        batch = await omr_models.load_batch(batch_id)
        if batch is None:
            await fail_job(job_id, "the scan batch no longer exists (its exam was deleted)")
            return None
        return Claim(batch, "split" if batch.page_count is not None else "")

    async def body(batch: BatchRecord) -> Callable[[], Awaitable[None]]:
        pages = await _pages_of(batch)

        async def record() -> None:
            # None: another delivery split it first; the reads of its pages go out anyway,
            # and a read that finds its page read does nothing.
            await omr_models.split_into_pages(batch, pages)

        await set_progress(job_id, 5, f"reading {len(pages)} page(s)")
        log_event(log, "OMR_BATCH_SPLIT", batch_id=batch_id, pages=len(pages), tier=batch.tier)
        return record

    await run_step(
        SPLIT,
        "split",
        job_id=job_id,
        stage="splitting",
        claim=claim,
        body=body,
        next_kwargs={"batch_id": batch_id},
    )


async def _pages_of(batch: BatchRecord) -> list[NewPage]:
    """The batch's pages: an image upload is one, a PDF one per page (stored as PNGs); a
    PDF that cannot be rasterised is one FAILED page with the reason."""
    bucket = get_settings().r2_ai_bucket
    pages: list[NewPage] = []
    for item in batch.input_keys:
        data = await asyncio.to_thread(storage.get_bytes, bucket, item.key)
        if not data.startswith(PDF_MAGIC):
            pages.append(NewPage(item.filename, item.key))
            continue
        try:
            images = await asyncio.to_thread(rasterise_pdf, data)
        except ValueError as exc:
            pages.append(NewPage(item.filename, None, "not_an_image", str(exc)))
            continue
        for n, png in enumerate(images, start=1):
            key = storage.page_key(batch.tenant, batch.id, f"pages/{len(pages) + 1}.png")
            await asyncio.to_thread(storage.put_bytes, bucket, key, png, "image/png")
            pages.append(NewPage(f"{item.filename} p.{n}", key))
    return pages


async def _send_reads(batch_id: str) -> None:
    """The fan-out after the split: a read of every pending page, after the commit; with
    none pending (every page failed at the split) the batch may be done already."""
    batch = await omr_models.load_batch(batch_id)
    if batch is None:
        return
    pending = await omr_models.pending_pages(batch.id)
    read = READ_PAGE[batch.tier]
    for page_id in pending:
        await on_commit(functools.partial(read.send_async, page_id=str(page_id)))
    if not pending:
        await on_commit(functools.partial(_maybe_finish, batch.id))


# --- read one page -----------------------------------------------------------------------


async def _read_page(page_id: str) -> None:
    page = await omr_pages.claim_page(page_id)
    if page is None:
        return  # already read (a redelivery) or gone with its exam
    last_attempt = page.attempts > READ_RETRIES
    try:
        await _read_and_store(page)
    except Exception as exc:
        if not last_attempt:
            raise
        log.exception("page failed on its last attempt", extra={"page_id": page_id})
        await _fail_page(page, "internal", f"the page could not be processed: {exc}")


async def _fail_page(page: ClaimedPage, code: str, reason: str) -> None:
    async with transaction():
        if not await omr_pages.fail_page(page.id, code, reason):
            return
        await _count_into_barrier(page.batch, failed=True)
    log_event(log, "OMR_PAGE_FAILED", page_id=str(page.id), code=code, reason=reason)


async def _count_into_barrier(batch_id: Any, *, failed: bool) -> None:
    """Count the page settled in this transaction; the last page of the batch sends the
    finish once that transaction commits."""
    barrier = await omr_models.count_into_barrier(batch_id, failed=failed)
    if barrier is None:
        return
    if barrier.page_count and barrier.job:
        await raise_progress(barrier.job, 5 + int(90 * barrier.pages_done / barrier.page_count))
    finish = functools.partial(_send_finish, str(batch_id), str(barrier.job), barrier.tier)
    await when_last(barrier.pages_done, barrier.page_count, finish)


async def _send_finish(batch_id: str, job_id: str, tier: str) -> None:
    await FINISH_BATCH[tier].send_async(job_id=job_id, batch_id=batch_id)


async def _maybe_finish(batch_id: Any) -> None:
    batch = await omr_models.load_batch(batch_id)
    if batch and batch.page_count is not None and batch.pages_done == batch.page_count:
        await _send_finish(str(batch_id), str(batch.job), batch.tier)


async def _read_and_store(page: ClaimedPage) -> None:
    settings = get_settings()
    batch = await omr_models.load_batch(page.batch)
    if batch is None:
        return
    template = parse_template(batch.template_spec)
    data = await asyncio.to_thread(storage.get_bytes, settings.r2_ai_bucket, page.image_key)
    try:
        reading = await asyncio.to_thread(read_sheet, data, template, "fallback")
    except SheetError as exc:
        await _fail_page(page, exc.code, exc.message)
        return
    except Exception as exc:  # a deterministic failure of the reading itself (odd pixels)
        await _fail_page(page, "unreadable", f"the page could not be read: {exc}")
        return
    scope = TenantScope(page.tenant)
    exam = await omr_pages.exam_for_batch(scope, page.batch)
    hidden = exam_questions(reading, exam)
    if exam.key_id and reading.student_number == exam.key_id:
        await _store_key_sheet(page, exam.id, reading, hidden)
        return
    student, problem = await omr_pages.match_student(scope, exam.lecture, reading.student_number)
    grading = grade(reading.answers, exam)
    items = review_items(reading, problem)
    annotated_key = await _annotate(
        page, reading, verdicts(template, grading), header(grading, reading, student), hidden
    )
    async with transaction():
        scored = False
        if student is not None and grading.result is not None:
            scored, duplicate = await omr_pages.write_omr_score(
                scope, exam.id, page.id, student, grading.result.total, batch.created_by
            )
            if duplicate:
                items.insert(0, _student_item(duplicate, reading))
        stored = StoredReading(
            reading=reading_json(reading),
            answers=grading.answers,
            results=grading.results_json,
            student_number=reading.student_number,
            student=student,
            score=grading.result.total if (grading.result and scored) else None,
            review_items=items,
            annotated_key=annotated_key,
        )
        await _store(page, stored)
    log_event(
        log,
        "OMR_PAGE_READ",
        page_id=str(page.id),
        student_matched=student is not None,
        review_items=len(items),
        score=str(grading.result.total) if grading.result else None,
    )


async def _annotate(
    page: ClaimedPage,
    reading: SheetReading,
    marks: dict[str, tuple[str, tuple[str, ...]]],
    title: str,
    hidden: set[str],
) -> str:
    """The annotated sheet stored beside the scan; its key."""
    png = await asyncio.to_thread(annotate, reading.page, reading.read, marks, title, hidden)
    key = storage.page_key(page.tenant, page.batch, f"annotated/{page.id}.png")
    await asyncio.to_thread(storage.put_bytes, get_settings().r2_ai_bucket, key, png, "image/png")
    return key


async def _store_key_sheet(
    page: ClaimedPage, exam_id: Any, reading: SheetReading, hidden: set[str]
) -> None:
    """A sheet bearing the exam's key ID: its answers become the exam's answer key (the
    batch is graded against it when it finishes); it is no student's sheet. Its unsure
    marks still go to review."""
    key = key_from_sheet(reading.answers)
    items = [i for i in review_items(reading, None) if i["kind"] == "question"]
    title = header(Grading(reading.answers, None, None), reading, None, key_sheet=True)
    annotated_key = await _annotate(page, reading, {}, title, hidden)
    async with transaction():
        await omr_models.set_answer_key(TenantScope(page.tenant), exam_id, key)
        stored = StoredReading(
            reading={**reading_json(reading), "key_sheet": True},
            answers=reading.answers,
            results=None,
            student_number=reading.student_number,
            student=None,
            score=None,
            review_items=items,
            annotated_key=annotated_key,
        )
        await _store(page, stored)
    log_event(log, "OMR_KEY_SHEET_READ", page_id=str(page.id), questions=len(key))


async def _store(page: ClaimedPage, stored: StoredReading) -> None:
    """Stores the page's reading and counts it into the batch's barrier, in the caller's
    transaction; a page another delivery stored first rolls that transaction back."""
    if not await omr_pages.store_reading(page.id, stored):
        raise _AlreadyRead()
    await _count_into_barrier(page.batch, failed=False)


def _student_item(reason: str, reading: SheetReading) -> dict[str, Any]:
    return {"kind": "student", "reason": reason, "student_number": reading.student_number}


class _AlreadyRead(Exception):
    """Another delivery stored this page first; this one's transaction is rolled back."""


async def _read_page_safe(page_id: str) -> None:
    try:
        await _read_page(page_id)
    except _AlreadyRead:
        return


# --- finish ----------------------------------------------------------------------------


async def _finish(job_id: str, batch_id: str) -> None:
    batch = await omr_models.load_batch(batch_id)
    if batch is not None and await omr_pages.batch_has_key_sheet(batch.id):
        # The key came from a sheet of this batch: pages read before it are scored now.
        async with transaction():
            await omr_pages.regrade_batch(TenantScope(batch.tenant), batch.id, batch.created_by)
    summary = await omr_models.finish_batch(batch_id)
    if summary is not None and summary.pages and summary.failed == summary.pages:
        first = summary.failures[0].reason if summary.failures else "unknown"
        await fail_job(job_id, f"every page failed; the first: {first}")
        return
    result: dict[str, Any] = {} if summary is None else msgspec.to_builtins(summary)
    await finish_job(job_id, result)
    log_event(
        log,
        "OMR_BATCH_DONE",
        batch_id=batch_id,
        **{k: v for k, v in result.items() if k in ("pages", "read", "failed", "needs_review")},
    )


# --- the actors, once per tier ------------------------------------------------------------


def _declare(tier: str) -> tuple[JobActor, JobActor, JobActor]:
    suffix = _suffix(tier)

    async def split_batch(job_id: str, batch_id: str) -> None:
        await _split(job_id, batch_id)

    async def read_page(page_id: str) -> None:
        await _read_page_safe(page_id)

    async def finish_batch(job_id: str, batch_id: str) -> None:
        await _finish(job_id, batch_id)

    for fn in (split_batch, read_page, finish_batch):
        fn.__qualname__ = f"{fn.__name__}{suffix}"
    return (
        job(f"omr.split_batch{suffix}", tier=tier, max_retries=5)(split_batch),
        job(
            f"omr.read_page{suffix}",
            tier=tier,
            max_retries=READ_RETRIES,
            time_limit_ms=5 * 60 * 1000,
        )(read_page),
        job(f"omr.finish_batch{suffix}", tier=tier, max_retries=5)(finish_batch),
    )


_ACTORS = {tier: _declare(tier) for tier in TIERS}
SPLIT.bind(read=_send_reads)
SPLIT_BATCH: dict[str, JobActor] = {t: a[0] for t, a in _ACTORS.items()}
READ_PAGE: dict[str, JobActor] = {t: a[1] for t, a in _ACTORS.items()}
FINISH_BATCH: dict[str, JobActor] = {t: a[2] for t, a in _ACTORS.items()}
