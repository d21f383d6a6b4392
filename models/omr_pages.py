"""OMR grading, the query layer: the pages of scan batches -- claimed, failed or stored by
the reading actor, listed and reviewed by teachers -- and the scores they give.

**One sheet, one score**: a page's score is written under the exam lock, and refused when
another page of the exam already scored the same student (``write_omr_score``): two
sheets for one student need a teacher.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import msgspec

from models import db
from models.db import transaction
from models.enrollments import ACTIVE
from models.errors import Problem
from models.events import audits_from, record_audit
from models.grades import SCORE_SNAPSHOT, lock_exam, write_scores
from models.pages import Page, Params, as_datetime, as_int, as_uuid, keyset, keyset_page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import OmrBatch, OmrPage
from pipelines.omr.grading import grade

# --- the reading actor's side ---------------------------------------------------------------


class ClaimedPage(msgspec.Struct):
    """A PENDING page, claimed by one delivery of its read (``attempts`` counts them)."""

    id: uuid.UUID
    tenant: uuid.UUID
    batch: uuid.UUID
    page_no: int
    image_key: str  # a page without an image is FAILED from the split on, never PENDING
    attempts: int


class StoredReading(msgspec.Struct):
    """What reading a page gave, as stored on it."""

    reading: dict[str, Any]
    answers: dict[str, str]
    results: list[dict[str, Any]] | None
    student_number: str | None
    student: uuid.UUID | None
    score: Decimal | None
    review_items: list[dict[str, Any]]
    annotated_key: str


async def claim_page(page_id: Any) -> ClaimedPage | None:
    """Count an attempt at a PENDING page; None when it was read already (a redelivery)
    or is gone with its exam."""
    return await db.row(
        ClaimedPage,
        """
        UPDATE omr_page SET attempts = attempts + 1, updated_at = now()
        WHERE id = $1 AND status = 'PENDING'
        RETURNING id, tenant, batch, page_no, image_key, attempts
        """,
        uuid.UUID(str(page_id)),
    )


async def fail_page(page_id: uuid.UUID, code: str, reason: str) -> bool:
    """FAILED with ``code`` and ``reason``, if it is still PENDING (in the caller's
    transaction, which counts it into the barrier); False when it is not."""
    updated = await db.value(
        """
        UPDATE omr_page SET status = 'FAILED', error_code = $2, error = $3, updated_at = now()
        WHERE id = $1 AND status = 'PENDING' RETURNING id
        """,
        page_id,
        code,
        reason[:2000],
    )
    return updated is not None


async def store_reading(page_id: uuid.UUID, stored: StoredReading) -> bool:
    """DONE with what was read, if it is still PENDING (in the caller's transaction, with
    the score and the barrier count); False when another delivery stored it first."""
    updated = await db.value(
        """
        UPDATE omr_page SET status = 'DONE', reading = $2::jsonb, answers = $3::jsonb,
               results = $4::jsonb, student_number = $5, student = $6,
               score = $7, needs_review = $8, review_items = $9::jsonb,
               annotated_key = $10, error_code = NULL, error = NULL,
               updated_at = now()
        WHERE id = $1 AND status = 'PENDING' RETURNING id
        """,
        page_id,
        stored.reading,
        stored.answers,
        stored.results,
        stored.student_number,
        stored.student,
        stored.score,
        bool(stored.review_items),
        stored.review_items,
        stored.annotated_key,
    )
    return updated is not None


# --- exams and scores -----------------------------------------------------------------------


class BatchExam(msgspec.Struct):
    """The exam a batch is graded for: what scoring needs."""

    batch_id: uuid.UUID
    id: uuid.UUID
    lecture: uuid.UUID
    max_score: Decimal
    question_count: int | None
    answer_key: dict[str, list[str]] | None
    marking: Any
    key_id: str | None = None


async def exam_for_batch(scope: TenantScope, batch_id: Any) -> BatchExam:
    """The batch's exam; a batch of no one here is a 404."""
    return await scope.one(
        BatchExam,
        OmrBatch,
        """
        SELECT b.id AS batch_id, e.id, e.lecture, e.max_score, e.question_count,
               e.answer_key, e.marking, e.omr_key_id AS key_id
        FROM omr_batch b JOIN exam e ON e.id = b.exam AND e.tenant = b.tenant
        WHERE b.tenant = $1 AND b.id = $2
        """,
        batch_id,
    )


async def match_student(
    scope: TenantScope, lecture_id: Any, number: str | None
) -> tuple[uuid.UUID | None, str | None]:
    """The actively enrolled student of the lecture whose mobile number ends with
    ``number`` (the card's 수험번호 is the last digits of the student's phone; a number
    shorter than its field arrives with the blank columns trimmed), or why not:
    ``no_student_number`` (none, or fewer than 4 digits), ``unmatched`` or ``ambiguous``."""
    if not number or len(number) < 4:
        return None, "no_student_number"
    found = await scope.values(
        f"""
        SELECT s.id FROM enrollment e
        JOIN student s ON s.id = e.student AND s.tenant = $1
        WHERE e.tenant = $1 AND e.lecture = $2 AND {ACTIVE}
          AND regexp_replace(COALESCE(s.phone, ''), '[^0-9]', '', 'g') LIKE '%' || $3
        LIMIT 2
        """,
        lecture_id,
        number,
    )
    if len(found) == 1:
        return uuid.UUID(str(found[0])), None
    return None, "ambiguous" if found else "unmatched"


async def write_omr_score(
    scope: TenantScope,
    exam_id: uuid.UUID,
    page_id: Any,
    student: uuid.UUID,
    score: Decimal,
    actor_id: Any,
) -> tuple[bool, str | None]:
    """Record the page's score for the student (in the caller's transaction, after
    locking the exam). Refused -- ``(False, "duplicate_student")`` -- when another page of
    this exam already scored the student: two sheets for one student need a teacher."""
    # Under the exam lock: no other page of this exam can score the student meanwhile.
    await lock_exam(scope, exam_id)
    other = await scope.value(
        """
        SELECT p.id FROM omr_page p JOIN omr_batch b ON b.id = p.batch AND b.tenant = $1
        WHERE p.tenant = $1 AND b.exam = $2 AND p.student = $3 AND p.id <> $4
          AND p.status = 'DONE' AND p.score IS NOT NULL
        LIMIT 1
        """,
        exam_id,
        student,
        page_id,
    )
    if other is not None:
        return False, "duplicate_student"
    await write_scores(scope, exam_id, [(student, score)], actor_id=actor_id, source="omr")
    return True, None


# --- pages as teachers see them -------------------------------------------------------------


# As the query layer returns a page, ``annotated_url`` holds the annotated sheet's storage
# key; the API signs it into a URL before the page leaves. (No docstring: it would become
# the schema's description in the OpenAPI document.)
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


def _page_select(*, with_reading: bool) -> str:
    """Pages with their exam and student; the reading (large) only for a single page."""
    return f"""
    SELECT p.id, p.batch AS batch_id, b.exam AS exam_id, p.page_no, p.source, p.status,
           p.error_code, p.error, p.student_number, p.student AS student_id,
           st.name AS student_name, p.score, p.needs_review,
           COALESCE(p.review_items, '[]'::jsonb) AS review_items, p.answers, p.results,
           {"p.reading" if with_reading else "NULL::jsonb"} AS reading,
           p.annotated_key AS annotated_url, p.reviewed_at, p.updated_at, p.created_at
    FROM omr_page p
    JOIN omr_batch b ON b.id = p.batch AND b.tenant = $1
    LEFT JOIN student st ON st.id = p.student AND st.tenant = $1
    """


IN_PAGE_ORDER = keyset(("p.page_no", as_int))
OLDEST_FIRST = keyset(("p.created_at", as_datetime), ("p.id", as_uuid))


async def get_page(scope: TenantScope, page_id: Any) -> PageOut:
    """One page, with what was read."""
    return await scope.one(
        PageOut,
        OmrPage,
        f"{_page_select(with_reading=True)} WHERE p.tenant = $1 AND p.id = $2",
        page_id,
    )


async def list_pages(
    scope: TenantScope, batch_id: Any, *, cursor: str | None, limit: int
) -> Page[PageOut]:
    """The batch's pages, in upload order; a batch of no one here is a 404."""
    key = parse_id(OmrBatch, batch_id)
    if await scope.value("SELECT 1 FROM omr_batch WHERE tenant = $1 AND id = $2", key) is None:
        raise NotFoundInTenant(OmrBatch, batch_id)
    params = Params()
    return await keyset_page(
        scope,
        PageOut,
        select=_page_select(with_reading=False),
        where=["p.tenant = $1", f"p.batch = {params(key)}"],
        params=params,
        key=IN_PAGE_ORDER,
        cursor=cursor,
        limit=limit,
    )


async def review_queue(
    scope: TenantScope, exam_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Page[PageOut]:
    """The exam's pages waiting for a teacher, oldest first."""
    params = Params()
    return await keyset_page(
        scope,
        PageOut,
        select=_page_select(with_reading=False),
        where=["p.tenant = $1", f"b.exam = {params(exam_id)}", "p.needs_review"],
        params=params,
        key=OLDEST_FIRST,
        cursor=cursor,
        limit=limit,
    )


# --- a teacher's review, and regrading --------------------------------------------------------


class LockedPage(msgspec.Struct):
    """A read page under its row lock: what a review or a regrade changes."""

    id: uuid.UUID
    batch: uuid.UUID
    status: str
    error: str | None
    answers: dict[str, str] | None
    student: uuid.UUID | None
    score: Decimal | None


LOCKED_PAGE = "SELECT id, batch, status, error, answers, student, score FROM omr_page"


async def lock_read_page(scope: TenantScope, page_id: Any) -> LockedPage:
    """Lock the page for the rest of the caller's transaction; a 404 when it is not here,
    a 409 when it was not read (only a read page can be reviewed)."""
    found = await scope.one(
        LockedPage, OmrPage, f"{LOCKED_PAGE} WHERE tenant = $1 AND id = $2 FOR UPDATE", page_id
    )
    if found.status != "DONE":
        raise Problem(
            409,
            "only a page that was read can be reviewed"
            + (f" (this one failed: {found.error})" if found.error else ""),
            type_="/problems/page-not-read",
        )
    return found


async def lock_scored_pages(scope: TenantScope, batch_id: uuid.UUID) -> list[LockedPage]:
    """The batch's read pages that have a student, in page order, locked for the rest of
    the caller's transaction."""
    return await scope.rows(
        LockedPage,
        f"{LOCKED_PAGE} WHERE tenant = $1 AND batch = $2 AND status = 'DONE' "
        "AND student IS NOT NULL ORDER BY page_no FOR UPDATE",
        batch_id,
    )


class Regraded(msgspec.Struct):
    batch_id: uuid.UUID
    pages: int
    changed: int


async def regrade_batch(scope: TenantScope, batch_id: Any, actor_id: Any) -> Regraded:
    """Score the batch's pages that have a student again with the exam's current key and
    marking, from their stored answers (as read and as corrected), in the caller's
    transaction. A score that comes out the same changes nothing."""
    exam = await exam_for_batch(scope, batch_id)
    pages = await lock_scored_pages(scope, exam.batch_id)
    changed = 0
    for page in pages:
        grading = grade(dict(page.answers or {}), exam)
        if grading.result is None:
            continue
        total = grading.result.total
        if await rescore_page(
            scope, exam.id, page, score=total, results=grading.results_json, actor_id=actor_id
        ):
            changed += page.score != total
    return Regraded(exam.batch_id, len(pages), changed)


async def batch_has_key_sheet(batch_id: Any) -> bool:
    found = await db.value(
        "SELECT 1 FROM omr_page WHERE batch = $1 AND status = 'DONE' "
        "AND (reading ->> 'key_sheet')::boolean LIMIT 1",
        batch_id,
    )
    return found is not None


async def rescore_page(
    scope: TenantScope,
    exam_id: uuid.UUID,
    page: LockedPage,
    *,
    score: Decimal,
    results: list[dict[str, Any]] | None,
    actor_id: Any,
) -> bool:
    """Write the page's new score for its student and keep its scoring; False (nothing
    written) when another sheet of the exam holds the student's score."""
    if page.student is None:
        return False
    written, _ = await write_omr_score(scope, exam_id, page.id, page.student, score, actor_id)
    if written:
        await scope.execute(
            "UPDATE omr_page SET results = $3::jsonb, score = $4, updated_at = now() "
            "WHERE tenant = $1 AND id = $2",
            page.id,
            results,
            score,
        )
    return written


async def record_review(
    scope: TenantScope,
    page: LockedPage,
    exam_id: uuid.UUID,
    *,
    answers: dict[str, str],
    student: uuid.UUID | None,
    score: Decimal | None,
    results: list[dict[str, Any]] | None,
    actor_id: Any,
) -> None:
    """A teacher's review of a locked page: the sheet's score goes to ``student`` (taken
    from the sheet's previous student, audited); the page leaves the review queue with the
    corrected answers; the review is audited (``omr_page`` ``review``: before and after).
    A student whose score another sheet holds is a 409."""
    async with transaction():
        written: Decimal | None = None
        if student is not None and score is not None:
            if page.student is not None and page.student != student and page.score is not None:
                await _drop_omr_score(scope, exam_id, page.student, actor_id)
            ok, problem = await write_omr_score(scope, exam_id, page.id, student, score, actor_id)
            if not ok:
                raise Problem(
                    409,
                    "another sheet of this exam is already scored for this student",
                    type_="/problems/duplicate-student",
                    errors=[{"field": "student_id", "message": problem or "duplicate"}],
                )
            written = score
        await scope.execute(
            """
            UPDATE omr_page SET answers = $3::jsonb, results = $4::jsonb, student = $5,
                   score = $6, needs_review = false, review_items = '[]'::jsonb,
                   reviewed_by = $7, reviewed_at = now(), updated_at = now()
            WHERE tenant = $1 AND id = $2
            """,
            page.id,
            answers,
            results,
            student,
            written,
            actor_id,
        )
        await record_audit(
            tenant_id=scope.tenant_id,
            actor_id=actor_id,
            entity="omr_page",
            entity_id=page.id,
            action="review",
            before={
                "answers": page.answers,
                "student_id": _text(page.student),
                "score": _text(page.score),
            },
            after={"answers": answers, "student_id": _text(student), "score": _text(written)},
        )


async def _drop_omr_score(
    scope: TenantScope, exam_id: uuid.UUID, student: uuid.UUID, actor_id: Any
) -> None:
    """The student loses the score a sheet gave them (the sheet was theirs by mistake)."""
    await scope.execute(
        """
        WITH gone AS (
            DELETE FROM score WHERE tenant = $1 AND exam = $2 AND student = $3
                AND source = 'omr'
            RETURNING id, exam, student, score
        )"""
        + audits_from(
            "FROM gone g",
            tenant="$1",
            actor="$4::uuid",
            entity="'score'",
            entity_id="g.id",
            action="'delete'",
            before=SCORE_SNAPSHOT.format(row="g"),
        ),
        exam_id,
        student,
        actor_id,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
