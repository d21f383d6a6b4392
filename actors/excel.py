"""Excel enrollment import, on the ``ai-lite`` tier (exports: ``actors.excel_export``).

Import: a strict chain of small steps (``actors.jobs.Chain``), each retryable and
idempotent, recorded in the ``excel_import`` row (``step``) with work files in R2
(``imports/{tenant}/{job}/``):

``excel.parse_upload``  read the upload (fastexcel / CSV), find the header  -> raw.parquet
``excel.validate_rows`` clean, normalise, per-cell errors, in-file duplicates -> rows.parquet
``excel.match_rows``    take the tenant's import lock, match existing students -> plan.parquet
``excel.apply_rows``    write the plan in chunks, one transaction each, three at once (skipped
                        on a dry run)
``excel.finish_import`` error workbook, result, lock released, upload and work files deleted

A step that finds its work already done (a redelivery) only sends the next step again; the
next step does the same, so a duplicate message costs a few reads and changes nothing.
Apply commits each chunk's rows together with ``applied_chunks``, so a redelivered apply
resumes after the last committed chunk; chunks commit in file order (the next one writes its
students while the one before it takes seats), so ``applied_chunks`` is always a prefix. A bad file (``ImportFailure``) fails the job at once
with its reason, before anything was applied.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import polars as pl

from actors.jobs import (
    Chain,
    Claim,
    StepFailed,
    fail_job,
    finish_job,
    job,
    run_step,
    set_progress,
)
from models import imports
from models.db import ANALYZE_AFTER_ROWS, on_commit, transaction
from models.enrollments import ENROLLED, Outcome, plan_enrolments, write_enrolments
from models.imports import ImportRecord
from models.jobs import JobRecord
from models.scope import TenantScope
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.excel.apply import ChunkRows, chunk_bounds, enrol_error, row_error
from pipelines.excel.common import LABELS, ImportFailure
from pipelines.excel.detect import detect_type
from pipelines.excel.plan import (
    ACTIVE_SCHEMA,
    EXISTING_SCHEMA,
    LECTURE_SCHEMA,
    PLAN_SCHEMA,
    build_plan,
    frame_of,
)
from pipelines.excel.read import RawSheet, read_sheet
from pipelines.excel.validate import ROW_SCHEMA, combined_errors, validate
from pipelines.excel.workbook import XLSX_CONTENT_TYPE, error_workbook

log = logging.getLogger("actors.excel")

TIER = "ai-lite"
# The tables are analysed after the first chunk and at the end: with statistics from
# before the import the planner misjudged the first chunk's statements (seconds, not tens
# of ms), and the queries after it (the student list) would pick seq scans. In between,
# the chunk statements probe by key and no longer depend on the tables' sizes (analysing
# after chunks 1, 2, 4, 8... cost 0.9 s of a 100,000-row import for nothing). Smaller
# imports are left to autovacuum (``ANALYZE_AFTER_ROWS``, as after a COPY).
# The lock is asked for again this often while another import of the tenant applies...
LOCK_RETRY_MS = 2_000
# Chunk transactions open at once: while one takes seats, the next ones write their
# guardians and students (the database's work is most of an apply; three kept both cores
# busier than two).
APPLY_IN_FLIGHT = 3
# ...for at most this long; then the job fails and says which import held the lock.
LOCK_WAIT_LIMIT = dt.timedelta(minutes=30)
EXPORT_TTL_SECONDS = 24 * 3600
# Result payloads stay small: the full error list is in the error workbook.
MAX_ERRORS_IN_RESULT = 1_000
STEPS = ("uploaded", "parsed", "validated", "matched", "applied", "finished")
# A dry run goes from matching straight to finishing.
IMPORT = Chain(STEPS, strict=True)
DRY_RUN = Chain(tuple(s for s in STEPS if s != "applied"), strict=True)

Record = Callable[[], Awaitable[None]]
StepBody = Callable[[ImportRecord], Awaitable[Record | None]]


# --- work files ----------------------------------------------------------------------------


def _bucket() -> str:
    return get_settings().r2_excel_bucket


async def put_frame(imp: ImportRecord, name: str, frame: pl.DataFrame) -> None:
    def put() -> None:
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd")
        key = storage.excel_work_key(imp.input_key, name)
        storage.put_bytes(_bucket(), key, buf.getvalue(), "application/vnd.apache.parquet")

    await asyncio.to_thread(put)


async def get_frame(imp: ImportRecord, name: str) -> pl.DataFrame:
    key = storage.excel_work_key(imp.input_key, name)
    data = await asyncio.to_thread(storage.get_bytes, _bucket(), key)
    return pl.read_parquet(io.BytesIO(data))


async def _delete_work_files(imp: ImportRecord) -> None:
    """The upload and every work file of the import (a missing one is no error)."""
    await asyncio.to_thread(
        storage.delete_under, _bucket(), storage.excel_work_prefix(imp.input_key)
    )


def download_url(key: str, filename: str) -> str:
    return storage.presigned_download(
        _bucket(), key, filename, content_type=XLSX_CONTENT_TYPE, expires=EXPORT_TTL_SECONDS
    )


def expiry() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=EXPORT_TTL_SECONDS)).isoformat()


# --- the chain -----------------------------------------------------------------------------


async def _run(step: str, job_id: str, stage: str, progress: int, body: StepBody) -> None:
    """Run ``body`` as the import's ``step`` (``actors.jobs.run_step``): the import row is
    the claim, and an ``ImportFailure`` fails the import at once with its message."""
    imp = await imports.load_import(job_id)
    chain = DRY_RUN if imp is not None and imp.dry_run else IMPORT
    if step not in chain.steps:
        # An apply message for a dry run, which never writes: taken as a late copy of
        # matching, it only sends the finish once matching is done.
        step, body = "matched", _writes_nothing

    async def claim(_: JobRecord) -> Claim | None:
        if imp is None:
            await fail_job(job_id, "the import record is missing")
            return None
        await set_progress(job_id, progress, stage)
        return Claim(imp, imp.step)

    async def guarded(row: ImportRecord) -> Record | None:
        try:
            return await body(row)
        except ImportFailure as exc:
            raise StepFailed(str(exc), exc.code) from exc

    await run_step(
        chain,
        step,
        job_id=job_id,
        stage=stage,
        claim=claim,
        body=guarded,
        on_failure=_fail_import,
        next_kwargs={"job_id": job_id},
    )


async def _writes_nothing(imp: ImportRecord) -> None:
    return None


async def _fail_import(imp: ImportRecord, failure: StepFailed) -> None:
    """The import FAILED with the failure's reason and stable code; a bad file's details
    (the missing column of ``missing_required_column``) go in the job's ``result`` too."""
    job_id, reason, code = str(imp.id), str(failure), failure.code
    log_event(log, "EXCEL_IMPORT_FAILED", logging.WARNING, job_id=job_id, reason=reason, code=code)
    details: dict[str, Any] | None = None
    cause = failure.__cause__
    if isinstance(cause, ImportFailure):
        details = {"code": cause.code, "message": reason}
        if cause.column:
            details["column"] = cause.column
    await fail_job(job_id, reason, code, details)
    await imports.release_import_lock(TenantScope(imp.tenant), job_id)
    await _delete_work_files(imp)


async def _wait_for_lock(imp: ImportRecord, step: str, holder: uuid.UUID) -> None:
    """Ask again in ``LOCK_RETRY_MS`` (a delayed copy of the step), up to the wait limit."""
    now = dt.datetime.now(dt.UTC)
    since = imp.waiting_since or now
    if now - since > LOCK_WAIT_LIMIT:
        raise StepFailed(
            f"another import of this academy (job {holder}) has been running for over "
            f"{int(LOCK_WAIT_LIMIT.total_seconds() // 60)} minutes; try again when it is done"
        )
    await imports.mark_waiting(imp.id)
    await set_progress(imp.id, 40, "waiting for another import")
    log_event(log, "EXCEL_IMPORT_WAITING", job_id=str(imp.id), holder=str(holder))
    await IMPORT.send(step, delay_ms=LOCK_RETRY_MS, job_id=str(imp.id))


# --- step 1: parse -------------------------------------------------------------------------


@job("excel.parse_upload", tier=TIER, max_retries=3)
async def parse_upload(job_id: str) -> None:
    await _run("parsed", job_id, "parsing", 5, _parse)


async def _parse(imp: ImportRecord) -> Record:
    started = time.perf_counter()
    data = await asyncio.to_thread(storage.get_bytes, _bucket(), imp.input_key)
    file_type = detect_type(data)
    raw = await asyncio.to_thread(
        read_sheet, data, file_type, max_rows=get_settings().excel_max_rows
    )
    await put_frame(imp, "raw.parquet", raw.frame)

    async def record() -> None:
        await imports.record_step(
            imp.id,
            "parsed",
            time.perf_counter() - started,
            header_row=raw.header_row,
            headers=raw.record(),
            total_rows=raw.frame.height,
        )

    return record


# --- step 2: validate ----------------------------------------------------------------------


@job("excel.validate_rows", tier=TIER, max_retries=3)
async def validate_rows(job_id: str) -> None:
    await _run("validated", job_id, "validating", 25, _validate)


async def _validate(imp: ImportRecord) -> Record:
    started = time.perf_counter()
    raw = RawSheet.from_record(await get_frame(imp, "raw.parquet"), imp.headers, imp.header_row)
    checked = await asyncio.to_thread(validate, raw)
    await put_frame(imp, "rows.parquet", checked.rows)
    await put_frame(imp, "errors.parquet", checked.errors)
    await put_frame(imp, "warnings.parquet", checked.warnings)
    await put_frame(imp, "duplicates.parquet", checked.duplicates)

    async def record() -> None:
        seconds = time.perf_counter() - started
        await imports.record_step(imp.id, "validated", seconds, merged=checked.merged)

    return record


# --- step 3: match -------------------------------------------------------------------------


@job("excel.match_rows", tier=TIER, max_retries=3)
async def match_rows(job_id: str) -> None:
    await _run("matched", job_id, "matching", 40, _match)


async def _match(imp: ImportRecord) -> Record | None:
    scope = TenantScope(imp.tenant)
    if not imp.dry_run:
        holder = await imports.take_import_lock(scope, imp.id)
        if holder is not None:
            await _wait_for_lock(imp, "matched", holder)
            return None
    started = time.perf_counter()
    rows = (await get_frame(imp, "rows.parquet")).cast(ROW_SCHEMA)
    sheet = RawSheet.from_record(pl.DataFrame(), imp.headers, None)
    existing, active, lectures = await _match_inputs(scope, rows)
    plan = await asyncio.to_thread(
        build_plan,
        rows,
        existing,
        active,
        lectures,
        mode=imp.mode,
        target_lecture_ids=imp.lecture_ids,
        name_header=sheet.header_of("name"),
        lecture_header=sheet.header_of("lecture")
        if "lecture" in sheet.fields
        else LABELS["lecture"],
    )
    await put_frame(imp, "plan.parquet", plan.rows)
    await put_frame(imp, "match_errors.parquet", plan.errors)
    counts: dict[str, Any] = {
        "chunks": len(chunk_bounds(plan.rows.height)),
        "same_file_as": await imports.same_file_as(scope, imp.sha256, imp.id),
        "waiting_since": None,
    }
    if imp.dry_run:
        # What applying would do, from the same plan.
        counts |= {
            "created": plan.count("create"),
            "updated": plan.count("update"),
            "unchanged": plan.count("unchanged"),
            "enrolled": plan.enrolments,
        }

    async def record() -> None:
        await imports.record_step(imp.id, "matched", time.perf_counter() - started, **counts)

    return record


async def _match_inputs(
    scope: TenantScope, rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """What ``build_plan`` matches the rows against: the students with the file's names and
    guardian phones, their active enrollments, and the academy's lectures."""
    known = await imports.known_students(
        scope,
        rows.get_column("name").unique().to_list(),
        rows.get_column("guardian_phone").unique().to_list(),
    )
    live = list(dict.fromkeys(s.student_id for s in known if not s.deleted))
    return (
        frame_of(known, EXISTING_SCHEMA),
        frame_of(await imports.active_enrolments(scope, live), ACTIVE_SCHEMA),
        frame_of(await imports.lecture_seats(scope), LECTURE_SCHEMA),
    )


# --- step 4: apply -------------------------------------------------------------------------


@job("excel.apply_rows", tier=TIER, max_retries=5)
async def apply_rows(job_id: str) -> None:
    await _run("applied", job_id, "applying", 50, _apply)


async def _apply(imp: ImportRecord) -> Record | None:
    holder = await imports.take_import_lock(TenantScope(imp.tenant), imp.id)
    if holder is not None:
        # Our lock was taken over (we looked dead for a while): wait for it again.
        await _wait_for_lock(imp, "applied", holder)
        return None
    started = time.perf_counter()
    plan = (await get_frame(imp, "plan.parquet")).cast(PLAN_SCHEMA)
    await imports.mark_apply_started(imp.id)
    bounds = chunk_bounds(plan.height)
    gate = asyncio.Semaphore(APPLY_IN_FLIGHT)
    turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    turn.set_result(None)
    async with asyncio.TaskGroup() as group:
        for index in range(imp.applied_chunks, len(bounds)):
            await gate.acquire()
            committed = asyncio.get_running_loop().create_future()
            group.create_task(_apply_in_turn(imp, plan, bounds, index, turn, committed, gate))
            turn = committed
    if plan.height >= ANALYZE_AFTER_ROWS and len(bounds) > 1:
        await imports.analyze()

    async def record() -> None:
        await imports.record_step(imp.id, "applied", time.perf_counter() - started)
        await imports.mark_apply_finished(imp.id)

    return record


async def _apply_in_turn(
    imp: ImportRecord,
    plan: pl.DataFrame,
    bounds: list[tuple[int, int]],
    index: int,
    turn: asyncio.Future[None],
    committed: asyncio.Future[None],
    gate: asyncio.Semaphore,
) -> None:
    """Chunk ``index``, with its ``turn`` (the previous chunk committed) awaited before it
    takes seats; ``committed`` is set once it has, or cancelled if it failed."""
    start, end = bounds[index]
    try:
        wrote = await apply_chunk(imp, index, plan.slice(start, end - start), turn=turn)
    except BaseException:
        committed.cancel()
        raise
    finally:
        gate.release()
    committed.set_result(None)
    if wrote and index == 0 and end >= ANALYZE_AFTER_ROWS:
        await imports.analyze()
    await set_progress(imp.id, 50 + int(45 * (index + 1) / len(bounds)), "applying")


async def apply_chunk(
    imp: ImportRecord, index: int, chunk: pl.DataFrame, *, turn: Awaitable[None] | None = None
) -> bool:
    """Write one chunk of the plan in one transaction, unless it was already written.

    The chunk is COPYed to a temporary table, and guardians, students with their links,
    and updates are one statement each (their search keys merged into the index in one
    pass); each new student is written once, with the count of the enrolments its row asks
    for. Then, once ``turn`` is done (the previous chunk
    committed: seats go in file order, and the next chunk's students are written
    meanwhile), enrolments are decided with the lectures locked (``models.enrollments``'
    rule) and written; the counts the trigger would recount are recounted here only where
    they changed: a new student whose seats were refused, a known one newly enrolled.
    Returns False when the chunk had been applied before (a redelivery, or an apply that
    took over): ``record_chunk`` advances ``applied_chunks`` only from ``index``, under
    the import's row lock, or refuses and the transaction is rolled back.
    """
    scope = TenantScope(imp.tenant)
    part = ChunkRows.of(chunk)
    try:
        async with transaction():
            if not await imports.chunk_pending(scope, imp.id, index):
                return False
            asked = part.asked()
            await imports.stage_chunk(part.records(asked))
            await imports.upsert_guardians(scope)
            created = await imports.insert_students(scope)
            changed = await imports.update_students(scope) if part.updates else 0
            await imports.merge_search_keys()
            if turn is not None:
                await turn
            # A new student who was not inserted (added by hand meanwhile) is not enrolled.
            pairs = [(row, s, lecture) for row, s, lecture in part.pairs
                     if s not in part.new or s in created]  # fmt: skip
            outcomes = await plan_enrolments(
                scope, [(s, lecture) for _, s, lecture in pairs], new_students=created
            )
            await write_enrolments(
                scope, outcomes, source="import", keep_rows=False, counts_kept=True
            )
            # Recounted here, not by the trigger: new students refused a seat they were
            # written with, and students known before who were enrolled.
            got = Counter(o.student_id for o in outcomes if o.result in ENROLLED)
            await imports.refresh_enrolment_counts(
                [s for s in created if got[s] != asked[s]] + [s for s in got if s not in created]
            )
            kept = [(row, o) for (row, *_), o in zip(pairs, outcomes, strict=True)]
            await imports.record_chunk(
                scope,
                imp.id,
                index,
                created=len(created),
                updated=changed,
                unchanged=part.size - len(created) - changed,
                enrolled=sum(1 for _, o in kept if o.result in ENROLLED),
                errors=part.skipped(created) + _enrol_errors(kept),
            )
    except imports.ChunkTaken:
        return False
    return True


def _enrol_errors(outcomes: list[tuple[int, Outcome]]) -> list[dict[str, Any]]:
    """The row errors of the enrolments that did not happen."""
    errors: list[dict[str, Any]] = []
    for row, o in outcomes:
        seats = o.lecture
        title = seats.title if seats else str(o.lecture_id)
        failed = enrol_error(o.result, title, seats.capacity if seats else None)
        if failed:
            errors.append(row_error(row, "lecture", *failed))
    return errors


# --- step 5: finish ------------------------------------------------------------------------


@job("excel.finish_import", tier=TIER, max_retries=5)
async def finish_import(job_id: str) -> None:
    await _run("finished", job_id, "finishing", 97, _finish)


async def _finish(imp: ImportRecord) -> Record:
    started = time.perf_counter()
    errors = combined_errors(
        [await get_frame(imp, "errors.parquet"), await get_frame(imp, "match_errors.parquet")],
        imp.apply_errors,
    )
    result = _result(imp, errors)
    warnings = await get_frame(imp, "warnings.parquet")
    duplicates = await get_frame(imp, "duplicates.parquet")
    result |= {
        "warning_count": warnings.height,
        "warnings": warnings.head(MAX_ERRORS_IN_RESULT).to_dicts(),
        "duplicate_count": duplicates.height,
        "duplicates": duplicates.head(MAX_ERRORS_IN_RESULT).to_dicts(),
    }
    if errors.height:
        result |= await _error_workbook(imp, errors)
    timings = dict(imp.timings) | {"finished": round(time.perf_counter() - started, 3)}
    result["stage_seconds"] = timings

    async def record() -> None:
        await imports.record_finished(imp.id, timings)
        await finish_job(imp.id, result)
        await imports.release_import_lock(TenantScope(imp.tenant), imp.id)
        await on_commit(functools.partial(_finished, imp, result))

    return record


def _result(imp: ImportRecord, errors: pl.DataFrame) -> dict[str, Any]:
    """The job's result: the counts, the first errors, and what the file looked like."""
    result: dict[str, Any] = {
        "dry_run": imp.dry_run,
        "mode": imp.mode,
        "total_rows": imp.total_rows,
        "created": imp.created,
        "updated": imp.updated,
        "unchanged": imp.unchanged,
        "merged": imp.merged,
        "enrolled": imp.enrolled,
        "error_count": errors.height,
        "errors": errors.head(MAX_ERRORS_IN_RESULT).to_dicts(),
        "errors_truncated": errors.height > MAX_ERRORS_IN_RESULT,
        "same_file_as": str(imp.same_file_as) if imp.same_file_as else None,
        "header_row": imp.header_row,
        "ignored_columns": RawSheet.from_record(pl.DataFrame(), imp.headers, None).ignored_columns,
        "error_workbook_url": None,
        "error_workbook_expires_at": None,
    }
    if imp.same_file_as and not imp.dry_run:
        result["note"] = (
            f"this file was imported before (job {imp.same_file_as}); "
            "rows already there were left unchanged"
        )
    return result


async def _error_workbook(imp: ImportRecord, errors: pl.DataFrame) -> dict[str, Any]:
    """The rows with errors as the file had them, stored next to the exports."""
    raw = await get_frame(imp, "raw.parquet")
    sheet = RawSheet.from_record(raw, imp.headers, imp.header_row)
    book = await asyncio.to_thread(error_workbook, raw, sheet.headers, errors)
    stem = (imp.filename.rsplit(".", 1)[0] or "import")[:80]
    filename = f"{stem}_오류.xlsx"
    key = storage.excel_export_key(imp.tenant, imp.id, filename)
    await asyncio.to_thread(storage.put_bytes, _bucket(), key, book, XLSX_CONTENT_TYPE)
    return {
        "error_workbook_url": download_url(key, filename),
        "error_workbook_expires_at": expiry(),
    }


async def _finished(imp: ImportRecord, result: dict[str, Any]) -> None:
    await _delete_work_files(imp)
    log_event(
        log,
        "EXCEL_IMPORT_DONE",
        job_id=str(imp.id),
        **{f"rows_{k}": result[k] for k in ("created", "updated", "unchanged", "enrolled")},
        error_count=result["error_count"],
    )


IMPORT.bind(
    parsed=parse_upload,
    validated=validate_rows,
    matched=match_rows,
    applied=apply_rows,
    finished=finish_import,
)
DRY_RUN.bind(
    parsed=parse_upload, validated=validate_rows, matched=match_rows, finished=finish_import
)
