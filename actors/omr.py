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
import io
import json
import logging
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from actors.jobs import JobActor, fail_job, finish_job, job, set_progress, start_job
from models.db import connection, on_commit, transaction
from models.grades import lock_exam, write_scores
from models.scope import TenantScope
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.omr.align import SheetError
from pipelines.omr.annotate import annotate
from pipelines.omr.score import ScoreResult, parse_marking, score_sheet
from pipelines.omr.sheet import SheetReading, read_sheet, reading_json
from pipelines.omr.template import Template, parse_template

log = logging.getLogger("actors.omr")

TIERS = ("ai-basic", "ai-lite", "ai-premium")
READ_RETRIES = 3
MAX_PDF_PAGES = 500
RASTER_DPI = 150
PDF_MAGIC = b"%PDF-"


def _suffix(tier: str) -> str:
    return "" if tier == "ai-basic" else "_" + tier.removeprefix("ai-")


def page_key(tenant_id: Any, batch_id: Any, name: str) -> str:
    return storage.object_key("omr", str(tenant_id), str(batch_id), name)


def safe_name(filename: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", filename)[-80:] or "scan"


# --- PDF -------------------------------------------------------------------------------


def rasterise_pdf(data: bytes, dpi: int = RASTER_DPI) -> list[bytes]:
    """Every page of a PDF as a grey PNG at ``dpi``. Raises ``ValueError`` with a reason
    for a PDF that cannot be opened, has no pages or too many."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ValueError(f"the PDF could not be opened ({exc})") from None
    try:
        count = len(pdf)
        if count == 0:
            raise ValueError("the PDF has no pages")
        if count > MAX_PDF_PAGES:
            raise ValueError(f"the PDF has {count} pages; at most {MAX_PDF_PAGES} per upload")
        out = []
        for i in range(count):
            page = pdf[i]
            try:
                image = page.render(scale=dpi / 72, grayscale=True).to_pil()
            except pdfium.PdfiumError as exc:
                raise ValueError(f"page {i + 1} of the PDF could not be rendered ({exc})") from None
            finally:
                page.close()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            out.append(buffer.getvalue())
        return out
    finally:
        pdf.close()


# --- split -----------------------------------------------------------------------------


async def _batch(batch_id: str) -> dict[str, Any] | None:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM omr_batch WHERE id = $1", uuid.UUID(batch_id))
    return dict(row) if row else None


async def _split(job_id: str, batch_id: str) -> None:
    if await start_job(job_id, stage="splitting") is None:
        return
    batch = await _batch(batch_id)
    if batch is None:
        await fail_job(job_id, "the scan batch no longer exists (its exam was deleted)")
        return
    tier = batch["tier"]
    if batch["page_count"] is not None:
        # A redelivery after the split committed: the reads may not have been sent.
        pending = await _pending_pages(batch_id)
        for page_id in pending:
            await READ_PAGE[tier].send_async(page_id=page_id)
        if not pending:
            await _maybe_finish(batch_id)
        return
    settings = get_settings()
    inputs = (
        json.loads(batch["input_keys"])
        if isinstance(batch["input_keys"], str)
        else batch["input_keys"]
    )
    pages: list[tuple[str, str | None, str | None, str | None]] = []
    for item in inputs:
        data = await asyncio.to_thread(storage.get_bytes, settings.r2_ai_bucket, item["key"])
        name = item["filename"]
        if data.startswith(PDF_MAGIC):
            try:
                images = await asyncio.to_thread(rasterise_pdf, data)
            except ValueError as exc:
                pages.append((name, None, "not_an_image", str(exc)))
                continue
            for n, png in enumerate(images, start=1):
                key = page_key(batch["tenant"], batch_id, f"pages/{len(pages) + 1}.png")
                await asyncio.to_thread(
                    storage.put_bytes, settings.r2_ai_bucket, key, png, "image/png"
                )
                pages.append((f"{name} p.{n}", key, None, None))
        else:
            pages.append((name, item["key"], None, None))
    async with transaction():
        async with connection() as conn:
            claimed = await conn.fetchval(
                "UPDATE omr_batch SET page_count = $2 WHERE id = $1 AND page_count IS NULL "
                "RETURNING id",
                uuid.UUID(batch_id),
                len(pages),
            )
            if claimed is None:
                return  # another delivery split it meanwhile
            failed = [i for i, p in enumerate(pages) if p[2]]
            await conn.execute(
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
                batch["tenant"],
                uuid.UUID(batch_id),
                list(range(1, len(pages) + 1)),
                [p[0][:255] for p in pages],
                [p[1] for p in pages],
                [p[2] for p in pages],
                [p[3] for p in pages],
            )
            if failed:
                await conn.execute(
                    "UPDATE omr_batch SET pages_done = pages_done + $2, "
                    "pages_failed = pages_failed + $2 WHERE id = $1",
                    uuid.UUID(batch_id),
                    len(failed),
                )
        pending = await _pending_pages(batch_id)

        async def send_reads() -> None:
            for page_id in pending:
                await READ_PAGE[tier].send_async(page_id=page_id)
            if not pending:
                await _maybe_finish(batch_id)

        await on_commit(send_reads)
    await set_progress(job_id, 5, f"reading {len(pages)} page(s)")
    log_event(log, "OMR_BATCH_SPLIT", batch_id=batch_id, pages=len(pages), tier=tier)


async def _pending_pages(batch_id: str) -> list[str]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT id FROM omr_page WHERE batch = $1 AND status = 'PENDING' ORDER BY page_no",
            uuid.UUID(batch_id),
        )
    return [str(r["id"]) for r in rows]


# --- read one page -----------------------------------------------------------------------


@dataclass
class Grading:
    """What scoring a page's answers gives, ready to store."""

    answers: dict[str, str]
    result: ScoreResult | None
    results_json: list[dict[str, Any]] | None


def grade(answers: dict[str, str], exam: dict[str, Any]) -> Grading:
    """Score ``answers`` with the exam's key and marking (no key: nothing to score)."""
    key = exam["answer_key"]
    if isinstance(key, str):
        key = json.loads(key)
    if not key:
        return Grading(answers, None, None)
    marking_raw = exam["marking"]
    if isinstance(marking_raw, str):
        marking_raw = json.loads(marking_raw)
    marking = parse_marking(marking_raw, exam["question_count"]) if marking_raw else None
    result = score_sheet(answers, key, marking, Decimal(exam["max_score"]))
    results = [
        {
            "question": q.question,
            "marked": q.marked,
            "accepted": list(q.accepted),
            "verdict": q.verdict,
            "points": str(q.points),
        }
        for q in result.questions
    ]
    return Grading(answers, result, results)


async def match_student(
    tenant_id: Any, lecture_id: Any, number: str | None
) -> tuple[uuid.UUID | None, str | None]:
    """The actively enrolled student of the lecture whose mobile number ends with
    ``number`` (the card's 수험번호 is the last digits of the student's phone), or why not:
    ``no_student_number``, ``unmatched`` or ``ambiguous``."""
    if not number or len(number) < 4:
        return None, "no_student_number"
    rows = await TenantScope(tenant_id).fetch(
        """
        SELECT st.id FROM enrollment en
        JOIN student st ON st.id = en.student AND st.tenant = $1 AND st.deleted_at IS NULL
        WHERE en.tenant = $1 AND en.lecture = $2 AND en.status = 'active'
          AND regexp_replace(COALESCE(st.phone, ''), '[^0-9]', '', 'g') LIKE '%' || $3
        LIMIT 2
        """,
        lecture_id,
        number,
    )
    if len(rows) == 1:
        return uuid.UUID(str(rows[0]["id"])), None
    return None, "ambiguous" if rows else "unmatched"


# The number was settled by OCR (printed digits read with confidence, or agreeing with
# unsure bubbles); the enrolment match then decides.
SETTLED_ID = frozenset({"id_from_ocr", "id_confirmed_by_ocr"})


def review_items(reading: SheetReading, student_problem: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if student_problem:
        items.append(
            {"kind": "student", "reason": student_problem, "student_number": reading.student_number}
        )
    elif reading.student_flags and not SETTLED_ID & set(reading.student_flags):
        items.append(
            {
                "kind": "student",
                "reason": ",".join(reading.student_flags),
                "student_number": reading.student_number,
            }
        )
    for q, flags in reading.question_flags().items():
        items.append(
            {
                "kind": "question",
                "question": q,
                "flags": flags,
                "read": reading.answers.get(q, ""),
                "confidence": round(reading.question_confidence(q), 3),
            }
        )
    return items


async def exam_for_batch(batch_id: Any) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT e.id, e.tenant, e.lecture, e.max_score, e.question_count, e.answer_key,
                   e.marking
            FROM omr_batch b JOIN exam e ON e.id = b.exam AND e.tenant = b.tenant
            WHERE b.id = $1
            """,
            batch_id,
        )
    if row is None:
        raise LookupError(f"no exam for batch {batch_id}")
    return dict(row)


async def write_omr_score(
    tenant_id: Any,
    exam: dict[str, Any],
    page_id: Any,
    student: uuid.UUID,
    score: Decimal,
    actor_id: Any,
) -> tuple[bool, str | None]:
    """Record the page's score for the student (in the caller's transaction, after
    locking the exam). Refused -- ``(False, "duplicate_student")`` -- when another page of
    this exam already scored the student: two sheets for one student need a teacher."""
    scope = TenantScope(tenant_id)
    # Under the exam lock: no other page of this exam can score the student meanwhile.
    await lock_exam(scope, exam["id"])
    other = await scope.fetchrow(
        """
        SELECT p.id FROM omr_page p JOIN omr_batch b ON b.id = p.batch AND b.tenant = $1
        WHERE p.tenant = $1 AND b.exam = $2 AND p.student = $3 AND p.id <> $4
          AND p.status = 'DONE' AND p.score IS NOT NULL
        LIMIT 1
        """,
        exam["id"],
        student,
        page_id,
    )
    if other is not None:
        return False, "duplicate_student"
    await write_scores(scope, exam["id"], [(student, score)], actor_id=actor_id, source="omr")
    return True, None


async def _read_page(page_id: str) -> None:
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            UPDATE omr_page SET attempts = attempts + 1, updated_at = now()
            WHERE id = $1 AND status = 'PENDING'
            RETURNING id, tenant, batch, page_no, image_key, attempts
            """,
            uuid.UUID(page_id),
        )
    if row is None:
        return  # already read (a redelivery) or gone with its exam
    page = dict(row)
    last_attempt = page["attempts"] > READ_RETRIES
    try:
        await _read_and_store(page)
    except Exception as exc:
        if not last_attempt:
            raise
        log.exception("page failed on its last attempt", extra={"page_id": page_id})
        await _fail_page(page, "internal", f"the page could not be processed: {exc}")


async def _fail_page(page: dict[str, Any], code: str, reason: str) -> None:
    async with transaction(), connection() as conn:
        updated = await conn.fetchval(
            """
                UPDATE omr_page SET status = 'FAILED', error_code = $2, error = $3,
                       updated_at = now()
                WHERE id = $1 AND status = 'PENDING' RETURNING id
                """,
            page["id"],
            code,
            reason[:2000],
        )
        if updated is None:
            return
        await _count_into_barrier(conn, page["batch"], failed=True)
    log_event(log, "OMR_PAGE_FAILED", page_id=str(page["id"]), code=code, reason=reason)


async def _count_into_barrier(conn: Any, batch_id: Any, *, failed: bool) -> None:
    row = await conn.fetchrow(
        """
        UPDATE omr_batch SET pages_done = pages_done + 1,
               pages_failed = pages_failed + $2::int
        WHERE id = $1 RETURNING pages_done, page_count, job, tier
        """,
        batch_id,
        1 if failed else 0,
    )
    if row is None:
        return
    if row["page_count"] and row["job"]:
        progress = 5 + int(90 * row["pages_done"] / row["page_count"])
        await conn.execute(
            "UPDATE job SET progress = GREATEST(progress, $2), updated_at = now() "
            "WHERE id = $1 AND status = 'RUNNING'",
            row["job"],
            progress,
        )
    if row["pages_done"] == row["page_count"]:
        # The last page of the batch: whoever commits it sends the finish.
        await on_commit(lambda: _send_finish(str(batch_id), str(row["job"]), row["tier"]))


async def _send_finish(batch_id: str, job_id: str, tier: str) -> None:
    await FINISH_BATCH[tier].send_async(job_id=job_id, batch_id=batch_id)


async def _maybe_finish(batch_id: str) -> None:
    batch = await _batch(batch_id)
    if batch and batch["page_count"] is not None and batch["pages_done"] == batch["page_count"]:
        await _send_finish(batch_id, str(batch["job"]), batch["tier"])


async def _read_and_store(page: dict[str, Any]) -> None:
    settings = get_settings()
    batch = await _batch(str(page["batch"]))
    if batch is None:
        return
    spec = batch["template_spec"]
    template: Template = parse_template(
        spec if isinstance(spec, (str, bytes)) else json.dumps(spec)
    )
    data = await asyncio.to_thread(storage.get_bytes, settings.r2_ai_bucket, page["image_key"])
    try:
        reading = await asyncio.to_thread(read_sheet, data, template, "fallback")
    except SheetError as exc:
        await _fail_page(page, exc.code, exc.message)
        return
    except Exception as exc:  # a deterministic failure of the reading itself (odd pixels)
        await _fail_page(page, "unreadable", f"the page could not be read: {exc}")
        return
    exam = await exam_for_batch(page["batch"])
    student, problem = await match_student(page["tenant"], exam["lecture"], reading.student_number)
    grading = grade(reading.answers, exam)
    items = review_items(reading, problem)
    header = _header(grading, reading, student)
    png = await asyncio.to_thread(
        annotate, reading.page, reading.read, _verdicts(template, grading), header
    )
    annotated_key = page_key(page["tenant"], page["batch"], f"annotated/{page['id']}.png")
    await asyncio.to_thread(
        storage.put_bytes, settings.r2_ai_bucket, annotated_key, png, "image/png"
    )
    async with transaction():
        scored = False
        if student is not None and grading.result is not None:
            scored, duplicate = await write_omr_score(
                page["tenant"],
                exam,
                page["id"],
                student,
                grading.result.total,
                batch["created_by"],
            )
            if duplicate:
                items.insert(
                    0,
                    {
                        "kind": "student",
                        "reason": duplicate,
                        "student_number": reading.student_number,
                    },
                )
        async with connection() as conn:
            updated = await conn.fetchval(
                """
                UPDATE omr_page SET status = 'DONE', reading = $2::jsonb, answers = $3::jsonb,
                       results = $4::jsonb, student_number = $5, student = $6,
                       score = $7, needs_review = $8, review_items = $9::jsonb,
                       annotated_key = $10, error_code = NULL, error = NULL,
                       updated_at = now()
                WHERE id = $1 AND status = 'PENDING' RETURNING id
                """,
                page["id"],
                _json(reading_json(reading)),
                _json(grading.answers),
                _json(grading.results_json),
                reading.student_number,
                student,
                grading.result.total if (grading.result and scored) else None,
                bool(items),
                _json(items),
                annotated_key,
            )
            if updated is None:
                raise _AlreadyRead()
            await _count_into_barrier(conn, page["batch"], failed=False)
    log_event(
        log,
        "OMR_PAGE_READ",
        page_id=str(page["id"]),
        student_matched=student is not None,
        review_items=len(items),
        score=str(grading.result.total) if grading.result else None,
    )


class _AlreadyRead(Exception):
    """Another delivery stored this page first; this one's transaction is rolled back."""


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _header(grading: Grading, reading: SheetReading, student: uuid.UUID | None) -> str:
    number = reading.student_number or "?"
    who = "matched" if student else "NOT MATCHED"
    if grading.result is None:
        return f"No. {number} ({who}) - no answer key"
    r = grading.result
    return f"No. {number} ({who})  score {r.total}  correct {r.correct}/{len(r.questions)}"


def _verdicts(template: Template, grading: Grading) -> dict[str, tuple[str, tuple[str, ...]]]:
    if grading.result is None:
        return {}
    fields = {str(i + 1): q for i, q in enumerate(template.questions)}
    return {
        fields[q.question]: (q.verdict, q.accepted)
        for q in grading.result.questions
        if q.question in fields
    }


async def _read_page_safe(page_id: str) -> None:
    try:
        await _read_page(page_id)
    except _AlreadyRead:
        return


# --- finish ----------------------------------------------------------------------------


async def batch_summary(batch_id: Any) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT b.id, b.exam, b.page_count, b.pages_done, b.pages_failed,
                   count(p.id) FILTER (WHERE p.status = 'DONE') AS read,
                   count(p.id) FILTER (WHERE p.needs_review) AS needs_review,
                   count(p.id) FILTER (WHERE p.score IS NOT NULL) AS scored,
                   count(p.id) FILTER (WHERE p.status = 'DONE' AND p.student IS NULL)
                       AS unmatched
            FROM omr_batch b LEFT JOIN omr_page p ON p.batch = b.id
            WHERE b.id = $1 GROUP BY b.id
            """,
            batch_id,
        )
        failures = await conn.fetch(
            "SELECT page_no, source, error_code, error FROM omr_page "
            "WHERE batch = $1 AND status = 'FAILED' ORDER BY page_no LIMIT 100",
            batch_id,
        )
    if row is None:
        return {}
    return {
        "batch_id": str(row["id"]),
        "exam_id": str(row["exam"]),
        "pages": row["page_count"],
        "read": row["read"],
        "failed": row["pages_failed"],
        "scored": row["scored"],
        "needs_review": row["needs_review"],
        "unmatched": row["unmatched"],
        "failures": [
            {
                "page_no": f["page_no"],
                "source": f["source"],
                "code": f["error_code"],
                "reason": f["error"],
            }
            for f in failures
        ],
    }


async def _finish(job_id: str, batch_id: str) -> None:
    async with connection() as conn:
        await conn.execute(
            "UPDATE omr_batch SET finished_at = COALESCE(finished_at, now()) "
            "WHERE id = $1 AND page_count = pages_done",
            uuid.UUID(batch_id),
        )
    summary = await batch_summary(uuid.UUID(batch_id))
    if summary and summary["pages"] and summary["failed"] == summary["pages"]:
        first = summary["failures"][0]["reason"] if summary["failures"] else "unknown"
        await fail_job(job_id, f"every page failed; the first: {first}")
        return
    await finish_job(job_id, summary)
    log_event(
        log,
        "OMR_BATCH_DONE",
        batch_id=batch_id,
        **{k: v for k, v in summary.items() if k in ("pages", "read", "failed", "needs_review")},
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
SPLIT_BATCH: dict[str, JobActor] = {t: a[0] for t, a in _ACTORS.items()}
READ_PAGE: dict[str, JobActor] = {t: a[1] for t, a in _ACTORS.items()}
FINISH_BATCH: dict[str, JobActor] = {t: a[2] for t, a in _ACTORS.items()}


def tier_for(page_estimate: int) -> str:
    """The tier a batch runs on: the setting, or lite for a small rescan, else basic."""
    settings = get_settings()
    if settings.omr_tier:
        settings.queue_for(settings.omr_tier)  # an unknown tier fails loudly
        return settings.omr_tier
    return "ai-lite" if page_estimate <= settings.omr_lite_max_pages else "ai-basic"
