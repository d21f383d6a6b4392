"""Excel enrollment import and Excel exports, on the ``ai-lite`` tier.

Import: a chain of small steps, each retryable and idempotent, linked through the
``excel_import`` row (``step``) and work files in R2 (``imports/{tenant}/{job}/``):

``excel.parse_upload``  read the upload (fastexcel / CSV), find the header  -> raw.parquet
``excel.validate_rows`` clean, normalise, per-cell errors, in-file duplicates -> rows.parquet
``excel.match_rows``    take the tenant's import lock, match existing students -> plan.parquet
``excel.apply_rows``    write the plan in chunks, one transaction each (skipped on a dry run)
``excel.finish_import`` error workbook, result, lock released, upload and work files deleted

A step that finds its work already done (a redelivery) only sends the next step again; the
next step does the same, so a duplicate message costs a few reads and changes nothing.
Apply commits each chunk's rows together with ``applied_chunks``, so a redelivered apply
resumes after the last committed chunk. A bad file (``ImportFailure``) fails the job at once
with its reason, before anything was applied.

Export: ``excel.export`` writes one sheet to ``exports/{tenant}/{job}_{filename}`` in the
Excel bucket and returns a presigned link; exports expire after 24 h (bucket lifecycle rule,
or ``just storage-cleanup``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import polars as pl

from actors.jobs import JobActor, fail_job, finish_job, job, set_progress, start_job
from models.db import connection, on_commit, transaction
from models.enrollments import ENROLLED, Outcome, enrol_many
from models.jobs import JobRecord
from models.scope import TenantScope
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.excel.common import LABELS, ImportFailure
from pipelines.excel.detect import detect_type
from pipelines.excel.plan import PLAN_SCHEMA, build_plan
from pipelines.excel.read import RawSheet, read_sheet
from pipelines.excel.validate import ERROR_SCHEMA, ROW_SCHEMA, empty_errors, validate
from pipelines.excel.workbook import XLSX_CONTENT_TYPE, Column, error_workbook, write_sheet
from pipelines.korean import initials

log = logging.getLogger("actors.excel")

TIER = "ai-lite"
CHUNK_ROWS = 5_000
# The tables are analysed after chunks 1, 2, 4, 8... and at the end: with statistics from
# before the import the planner misjudges every statement of the next chunk (seen: the
# enrollment insert going from 0.2 s to 6 s a chunk by the 10th), and the queries after it
# (the student list) would pick seq scans. As ``models.db.copy_records`` does for COPY.
ANALYZE_AFTER_ROWS = 1_000
ANALYZED_TABLES = ("student", "guardian", "student_guardian", "enrollment")
# The lock is asked for again this often while another import of the tenant applies...
LOCK_RETRY_MS = 2_000
# ...for at most this long; then the job fails and says which import held the lock.
LOCK_WAIT_LIMIT = dt.timedelta(minutes=30)
# A holder that has not reported progress for this long is dead (a killed worker whose
# message went to the DLQ never marks its job FAILED); its lock is taken over.
LOCK_STALE_AFTER = dt.timedelta(minutes=15)
EXPORT_TTL_SECONDS = 24 * 3600
# Result payloads stay small: the full error list is in the error workbook.
MAX_ERRORS_IN_RESULT = 1_000
STEPS = ("uploaded", "parsed", "validated", "matched", "applied", "finished")

# "Active enrollment", as in api/lectures.py: active, of a student who is not deleted.
ACTIVE_COUNT = """(
    SELECT count(*) FROM enrollment e JOIN student s ON s.id = e.student
    WHERE e.lecture = l.id AND e.status = 'active' AND s.deleted_at IS NULL)"""

RELATIONS = {
    "어머니": "mother", "엄마": "mother", "모": "mother", "mother": "mother",
    "아버지": "father", "아빠": "father", "부": "father", "father": "father",
    "할머니": "grandparent", "할아버지": "grandparent",
}  # fmt: skip


# --- storage of work files ---------------------------------------------------------------


def upload_key(tenant_id: Any, upload_id: Any, file_type: str) -> str:
    """Where the API stores an upload; the import's work files go next to it."""
    return storage.object_key("imports", str(tenant_id), str(upload_id), f"upload.{file_type}")


def work_prefix(imp: dict[str, Any]) -> str:
    return str(imp["input_key"]).rsplit("/", 1)[0]


def export_key(tenant_id: Any, job_id: Any, filename: str) -> str:
    return storage.object_key("exports", str(tenant_id), f"{job_id}_{filename}")


def _bucket() -> str:
    return get_settings().r2_excel_bucket


async def _put_frame(key: str, frame: pl.DataFrame) -> None:
    def put() -> None:
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd")
        storage.put_bytes(_bucket(), key, buf.getvalue(), "application/vnd.apache.parquet")

    await asyncio.to_thread(put)


async def _get_frame(key: str) -> pl.DataFrame:
    data = await asyncio.to_thread(storage.get_bytes, _bucket(), key)
    return pl.read_parquet(io.BytesIO(data))


async def _delete_work_files(imp: dict[str, Any]) -> None:
    """The upload and every work file of the import (a missing one is no error)."""
    await asyncio.to_thread(storage.delete_under, _bucket(), work_prefix(imp) + "/")


def presigned_download(key: str, filename: str, expires: int = EXPORT_TTL_SECONDS) -> str:
    """A GET link that saves under ``filename`` (RFC 6266/5987: Hangul names survive)."""
    quoted = urllib.parse.quote(filename)
    return storage.presigned_get(
        _bucket(),
        key,
        expires=expires,
        ResponseContentDisposition=f"attachment; filename*=UTF-8''{quoted}",
        ResponseContentType=XLSX_CONTENT_TYPE,
    )


# --- the import row ----------------------------------------------------------------------


async def load_import(job_id: str) -> dict[str, Any] | None:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM excel_import WHERE id = $1", uuid.UUID(job_id))
    if row is None:
        return None
    out = dict(row)
    for key in ("lecture_ids", "headers", "apply_errors", "timings"):
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


async def _record_step(job_id: str, step: str, seconds: float, **values: Any) -> None:
    sets = ["step = $2", "timings = timings || jsonb_build_object($3::text, $4::float8)",
            "updated_at = now()"]  # fmt: skip
    args: list[Any] = [uuid.UUID(job_id), step, step, round(seconds, 3)]
    for name, value in values.items():
        args.append(
            json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
        )
        cast = "::jsonb" if isinstance(value, dict | list) else ""
        sets.append(f"{name} = ${len(args)}{cast}")
    async with connection() as conn:
        await conn.execute(f"UPDATE excel_import SET {', '.join(sets)} WHERE id = $1", *args)


def chunk_bounds(rows: int) -> list[tuple[int, int]]:
    """(start, end) of each apply chunk."""
    return [(start, min(rows, start + CHUNK_ROWS)) for start in range(0, rows, CHUNK_ROWS)]


async def _analyze() -> None:
    async with connection() as conn:
        await conn.execute("ANALYZE " + ", ".join(ANALYZED_TABLES))


def _past(imp: dict[str, Any], step: str) -> bool:
    """True when ``step`` (or a later one) has already completed."""
    return STEPS.index(imp["step"]) >= STEPS.index(step)


async def _send_next(actor: JobActor, job_id: str, request_id: str) -> None:
    await on_commit(lambda: _send(actor, job_id, request_id))


async def _send(actor: JobActor, job_id: str, request_id: str, delay_ms: int | None = None) -> None:
    def send() -> None:
        actor.actor.send_with_options(
            kwargs={"job_id": job_id, "request_id": request_id}, delay=delay_ms
        )

    await asyncio.to_thread(send)


StepBody = Callable[[JobRecord, dict[str, Any]], Awaitable[None]]


async def _run_step(job_id: str, stage: str, progress: int, body: StepBody) -> None:
    """Start (or resume) the job at ``stage``, run ``body(job_row, import_row)``, and turn
    an ``ImportFailure`` into a FAILED job whose error is the failure's message."""
    job_row = await start_job(job_id, stage=stage)
    if job_row is None:
        return  # finished already: a redelivery
    imp = await load_import(job_id)
    if imp is None:
        await fail_job(job_id, "the import record is missing")
        return
    await set_progress(job_id, progress, stage)
    try:
        await body(job_row, imp)
    except ImportFailure as exc:
        await _fail_import(imp, str(exc))


async def _fail_import(imp: dict[str, Any], reason: str) -> None:
    job_id = str(imp["id"])
    log_event(log, "EXCEL_IMPORT_FAILED", logging.WARNING, job_id=job_id, reason=reason)
    await fail_job(job_id, reason)
    await release_lock(imp["tenant"], job_id)
    await _delete_work_files(imp)


# --- the tenant's import lock --------------------------------------------------------------


async def acquire_lock(tenant_id: Any, job_id: str) -> uuid.UUID | None:
    """Take (or keep) the tenant's import lock for ``job_id``. Returns None on success,
    else the id of the job holding it."""
    scope = TenantScope(tenant_id)
    got = await scope.fetchrow(
        """
        INSERT INTO import_lock (id, tenant, job, acquired_at)
        VALUES (gen_random_uuid(), $1, $2, now())
        ON CONFLICT (tenant) DO UPDATE SET job = EXCLUDED.job, acquired_at = now()
        WHERE import_lock.job = EXCLUDED.job OR NOT EXISTS (
            SELECT 1 FROM job j WHERE j.id = import_lock.job
              AND j.status IN ('PENDING', 'RUNNING') AND j.updated_at > now() - $3::interval)
        RETURNING job
        """,
        uuid.UUID(job_id),
        LOCK_STALE_AFTER,
    )
    if got is not None:
        return None
    holder = await scope.fetchrow("SELECT job FROM import_lock WHERE tenant = $1")
    # Released between the two statements: try once more next time round.
    return holder["job"] if holder is not None else uuid.UUID(int=0)


async def release_lock(tenant_id: Any, job_id: str) -> None:
    await TenantScope(tenant_id).fetch(
        "DELETE FROM import_lock WHERE tenant = $1 AND job = $2", uuid.UUID(job_id)
    )


# --- step 1: parse -------------------------------------------------------------------------


@job("excel.parse_upload", tier=TIER, max_retries=3)
async def parse_upload(job_id: str) -> None:
    async def body(job_row: JobRecord, imp: dict[str, Any]) -> None:
        if _past(imp, "parsed"):
            await _send(validate_rows, job_id, job_row.request_id)
            return
        started = time.perf_counter()
        data = await asyncio.to_thread(storage.get_bytes, _bucket(), imp["input_key"])
        file_type = detect_type(data)
        raw = await asyncio.to_thread(
            read_sheet, data, file_type, max_rows=get_settings().excel_max_rows
        )
        await _put_frame(f"{work_prefix(imp)}/raw.parquet", raw.frame)
        async with transaction():
            await _record_step(
                job_id,
                "parsed",
                time.perf_counter() - started,
                header_row=raw.header_row,
                headers={
                    "columns": raw.headers,
                    "fields": raw.fields,
                    "sheet": raw.sheet_name,
                    "ignored": raw.ignored_columns,
                },
                total_rows=raw.frame.height,
            )
            await _send_next(validate_rows, job_id, job_row.request_id)

    await _run_step(job_id, "parsing", 5, body)


def _raw_sheet(imp: dict[str, Any], frame: pl.DataFrame) -> RawSheet:
    headers = imp["headers"]
    return RawSheet(
        frame,
        [tuple(h) for h in headers["columns"]],
        dict(headers["fields"]),
        int(imp["header_row"] or 1),
        headers.get("sheet", ""),
        list(headers.get("ignored", [])),
    )


# --- step 2: validate ----------------------------------------------------------------------


@job("excel.validate_rows", tier=TIER, max_retries=3)
async def validate_rows(job_id: str) -> None:
    async def body(job_row: JobRecord, imp: dict[str, Any]) -> None:
        if _past(imp, "validated"):
            await _send(match_rows, job_id, job_row.request_id)
            return
        if not _past(imp, "parsed"):
            return  # out of order: the chain sends this step again when parsing is done
        started = time.perf_counter()
        prefix = work_prefix(imp)
        raw = _raw_sheet(imp, await _get_frame(f"{prefix}/raw.parquet"))
        checked = await asyncio.to_thread(validate, raw)
        await _put_frame(f"{prefix}/rows.parquet", checked.rows)
        await _put_frame(f"{prefix}/errors.parquet", checked.errors)
        async with transaction():
            await _record_step(
                job_id, "validated", time.perf_counter() - started, merged=checked.merged
            )
            await _send_next(match_rows, job_id, job_row.request_id)

    await _run_step(job_id, "validating", 25, body)


# --- step 3: match -------------------------------------------------------------------------


@job("excel.match_rows", tier=TIER, max_retries=3)
async def match_rows(job_id: str) -> None:
    async def body(job_row: JobRecord, imp: dict[str, Any]) -> None:
        request_id = job_row.request_id
        if _past(imp, "matched"):
            await _send(finish_import if imp["dry_run"] else apply_rows, job_id, request_id)
            return
        if not _past(imp, "validated"):
            return
        tenant = imp["tenant"]
        if not imp["dry_run"]:
            holder = await acquire_lock(tenant, job_id)
            if holder is not None:
                await _wait_for_lock(imp, job_id, request_id, holder, match_rows)
                return
        started = time.perf_counter()
        prefix = work_prefix(imp)
        rows = (await _get_frame(f"{prefix}/rows.parquet")).cast(ROW_SCHEMA)
        headers = imp["headers"]
        raw = RawSheet(pl.DataFrame(), [tuple(h) for h in headers["columns"]],
                       dict(headers["fields"]), 1)  # fmt: skip
        existing, active, lectures = await _match_inputs(tenant, rows)
        plan = await asyncio.to_thread(
            build_plan,
            rows,
            existing,
            active,
            lectures,
            mode=imp["mode"],
            target_lecture_ids=[str(i) for i in imp["lecture_ids"]],
            name_header=raw.header_of("name"),
            lecture_header=raw.header_of("lecture")
            if "lecture" in raw.fields
            else LABELS["lecture"],
        )
        await _put_frame(f"{prefix}/plan.parquet", plan.rows)
        await _put_frame(f"{prefix}/match_errors.parquet", plan.errors)
        same = await TenantScope(tenant).fetchrow(
            """
            SELECT i.id FROM excel_import i JOIN job j ON j.id = i.job
            WHERE i.tenant = $1 AND i.sha256 = $2 AND i.id <> $3 AND NOT i.dry_run
              AND j.status = 'DONE'
            ORDER BY i.created_at DESC LIMIT 1
            """,
            imp["sha256"],
            imp["id"],
        )
        counts: dict[str, Any] = {
            "chunks": len(chunk_bounds(plan.rows.height)),
            "same_file_as": same["id"] if same else None,
            "waiting_since": None,
        }
        if imp["dry_run"]:
            # What applying would do, from the same plan.
            counts |= {
                "created": plan.count("create"),
                "updated": plan.count("update"),
                "unchanged": plan.count("unchanged"),
                "enrolled": plan.enrolments,
            }
        async with transaction():
            await _record_step(job_id, "matched", time.perf_counter() - started, **counts)
            await _send_next(finish_import if imp["dry_run"] else apply_rows, job_id, request_id)

    await _run_step(job_id, "matching", 40, body)


async def _wait_for_lock(
    imp: dict[str, Any], job_id: str, request_id: str, holder: uuid.UUID, retry: JobActor
) -> None:
    """Ask again in ``LOCK_RETRY_MS`` (a delayed copy of the step), up to the wait limit."""
    now = dt.datetime.now(dt.UTC)
    since = imp["waiting_since"] or now
    if now - since > LOCK_WAIT_LIMIT:
        raise ImportFailure(
            f"another import of this academy (job {holder}) has been running for over "
            f"{int(LOCK_WAIT_LIMIT.total_seconds() // 60)} minutes; try again when it is done"
        )
    async with connection() as conn:
        await conn.execute(
            "UPDATE excel_import SET waiting_since = COALESCE(waiting_since, now()) WHERE id = $1",
            imp["id"],
        )
    await set_progress(job_id, 40, "waiting for another import")
    log_event(log, "EXCEL_IMPORT_WAITING", job_id=job_id, holder=str(holder))
    await _send(retry, job_id, request_id, delay_ms=LOCK_RETRY_MS)


async def _match_inputs(
    tenant: Any, rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    scope = TenantScope(tenant)
    names = rows["name"].unique().to_list()
    phones = rows["guardian_phone"].unique().to_list()
    found = await scope.fetch(
        """
        SELECT s.id::text AS student_id, s.name, g.phone AS guardian_phone, s.phone, s.school,
               s.grade, s.deleted_at IS NOT NULL AS deleted
        FROM student s
        JOIN student_guardian sg ON sg.student = s.id
        JOIN guardian g ON g.id = sg.guardian
        WHERE s.tenant = $1 AND s.name = ANY($2::text[]) AND g.phone = ANY($3::text[])
        """,
        names,
        phones,
    )
    existing = pl.DataFrame(
        [dict(r) for r in found],
        schema={
            "student_id": pl.String,
            "name": pl.String,
            "guardian_phone": pl.String,
            "phone": pl.String,
            "school": pl.String,
            "grade": pl.String,
            "deleted": pl.Boolean,
        },
    )
    live_ids = existing.filter(~pl.col("deleted"))["student_id"].unique().to_list()
    enrolled = await scope.fetch(
        "SELECT student::text AS student_id, lecture::text AS lecture_id FROM enrollment "
        "WHERE tenant = $1 AND status = 'active' AND student = ANY($2::uuid[])",
        live_ids,
    )
    active = pl.DataFrame(
        [dict(r) for r in enrolled], schema={"student_id": pl.String, "lecture_id": pl.String}
    )
    lecture_rows = await scope.fetch(
        f"""
        SELECT l.id::text AS lecture_id, l.code, l.title, l.status, l.capacity,
               {ACTIVE_COUNT} AS active
        FROM lecture l WHERE l.tenant = $1
        """
    )
    lectures = pl.DataFrame(
        [dict(r) for r in lecture_rows],
        schema={
            "lecture_id": pl.String,
            "code": pl.String,
            "title": pl.String,
            "status": pl.String,
            "capacity": pl.Int64,
            "active": pl.Int64,
        },
    )
    return existing, active, lectures


# --- step 4: apply -------------------------------------------------------------------------


@job("excel.apply_rows", tier=TIER, max_retries=5)
async def apply_rows(job_id: str) -> None:
    async def body(job_row: JobRecord, imp: dict[str, Any]) -> None:
        request_id = job_row.request_id
        if _past(imp, "applied") or imp["dry_run"]:
            # A dry run never writes, whatever message arrives.
            await _send(finish_import, job_id, request_id)
            return
        if not _past(imp, "matched"):
            return
        tenant = imp["tenant"]
        holder = await acquire_lock(tenant, job_id)
        if holder is not None:
            # Our lock was taken over (we looked dead for a while): wait for it again.
            await _wait_for_lock(imp, job_id, request_id, holder, apply_rows)
            return
        started = time.perf_counter()
        plan = (await _get_frame(f"{work_prefix(imp)}/plan.parquet")).cast(PLAN_SCHEMA)
        async with connection() as conn:
            await conn.execute(
                "UPDATE excel_import SET apply_started_at = COALESCE(apply_started_at, now()) "
                "WHERE id = $1",
                imp["id"],
            )
        bounds = chunk_bounds(plan.height)
        for index in range(imp["applied_chunks"], len(bounds)):
            start, end = bounds[index]
            wrote = await apply_chunk(imp, index, plan.slice(start, end - start))
            if wrote and end >= ANALYZE_AFTER_ROWS and (index + 1) & index == 0:
                await _analyze()
            await set_progress(job_id, 50 + int(45 * (index + 1) / len(bounds)), "applying")
        if plan.height >= ANALYZE_AFTER_ROWS and (len(bounds) & (len(bounds) - 1)):
            await _analyze()  # the last chunk was not one of the doubling ones
        async with transaction():
            await _record_step(job_id, "applied", time.perf_counter() - started)
            async with connection() as conn:
                await conn.execute(
                    "UPDATE excel_import SET apply_finished_at = now() WHERE id = $1", imp["id"]
                )
            await _send_next(finish_import, job_id, request_id)

    await _run_step(job_id, "applying", 50, body)


def _guardian_parts(value: str) -> tuple[str, str]:
    """(guardian name, relation): a cell saying 어머니/아버지... is a relation, not a name."""
    relation = RELATIONS.get(value.replace(" ", "").lower())
    return ("", relation) if relation else (value, "guardian")


async def apply_chunk(imp: dict[str, Any], index: int, chunk: pl.DataFrame) -> bool:
    """Write one chunk of the plan in one transaction, unless it was already written.

    Returns False when the chunk had been applied before (a redelivery): ``applied_chunks``
    is read under a row lock in the same transaction that advances it.
    """
    tenant = imp["tenant"]
    scope = TenantScope(tenant)
    rows = chunk.to_dicts()
    async with transaction():
        current = await scope.fetchrow(
            "SELECT applied_chunks FROM excel_import WHERE tenant = $1 AND id = $2 FOR UPDATE",
            imp["id"],
        )
        if current is None or current["applied_chunks"] > index:
            return False
        errors: list[dict[str, Any]] = []

        # Guardians: one per phone in the academy (natural key); a name fills an empty one.
        guardians: dict[str, str] = {}
        for r in rows:
            name, _ = _guardian_parts(r["guardian_name"] or "")
            if r["guardian_phone"] not in guardians or (
                name and not guardians[r["guardian_phone"]]
            ):
                guardians[r["guardian_phone"]] = name
        await scope.fetch(
            """
            INSERT INTO guardian (id, tenant, name, phone, created_at)
            SELECT gen_random_uuid(), $1, t.name, t.phone, now()
            FROM unnest($2::text[], $3::text[]) AS t(name, phone)
            ON CONFLICT (tenant, phone) DO UPDATE SET name = EXCLUDED.name
            WHERE guardian.name = '' AND EXCLUDED.name <> ''
            """,
            list(guardians.values()),
            list(guardians),
        )

        # New students. Someone with this name and guardian phone who appeared since the
        # plan was made (typed in by hand meanwhile) is not duplicated.
        creates = [r for r in rows if r["verdict"] == "create"]
        inserted = await scope.fetch(
            """
            WITH input AS (
                SELECT * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[],
                                     $6::text[], $7::text[], $8::text[])
                    AS t(id, name, initials, phone, school, grade, gphone)
            )
            INSERT INTO student (id, tenant, name, name_initials, phone, school, grade, memo,
                                 status, created_at, updated_at)
            SELECT i.id, $1, i.name, i.initials, i.phone, i.school, i.grade, '', 'active',
                   now(), now()
            FROM input i
            WHERE NOT EXISTS (
                SELECT 1 FROM student s
                JOIN student_guardian sg ON sg.student = s.id
                JOIN guardian g ON g.id = sg.guardian
                WHERE s.tenant = $1 AND s.name = i.name AND g.phone = i.gphone AND s.id <> i.id)
            ON CONFLICT (id) DO NOTHING
            RETURNING id::text
            """,
            [uuid.UUID(r["student_id"]) for r in creates],
            [r["name"] for r in creates],
            [initials(r["name"]) for r in creates],
            [r["phone"] for r in creates],
            [r["school"] for r in creates],
            [r["grade"] for r in creates],
            [r["guardian_phone"] for r in creates],
        )
        created_ids = {r["id"] for r in inserted}
        for r in creates:
            if r["student_id"] not in created_ids:
                errors.append({"row": r["row"], "column": LABELS["name"],
                               "message": "a student with this name and guardian phone was "
                                          "added while importing: left as it is"})  # fmt: skip
        linked = [r for r in creates if r["student_id"] in created_ids]
        await scope.fetch(
            """
            INSERT INTO student_guardian (id, tenant, student, guardian, relation, is_primary)
            SELECT gen_random_uuid(), $1, t.sid, g.id, t.relation, true
            FROM unnest($2::uuid[], $3::text[], $4::text[]) AS t(sid, gphone, relation)
            JOIN guardian g ON g.tenant = $1 AND g.phone = t.gphone
            ON CONFLICT (student, guardian) DO NOTHING
            """,
            [uuid.UUID(r["student_id"]) for r in linked],
            [r["guardian_phone"] for r in linked],
            [_guardian_parts(r["guardian_name"] or "")[1] for r in linked],
        )

        # Changed students: empty cells keep what is stored; only real changes count.
        updates = [r for r in rows if r["verdict"] == "update"]
        changed = await scope.fetch(
            """
            UPDATE student s SET
                phone = COALESCE(t.phone, s.phone),
                school = COALESCE(NULLIF(t.school, ''), s.school),
                grade = COALESCE(NULLIF(t.grade, ''), s.grade),
                updated_at = now()
            FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[])
                AS t(id, phone, school, grade)
            WHERE s.tenant = $1 AND s.id = t.id AND s.deleted_at IS NULL
              AND (s.phone IS DISTINCT FROM COALESCE(t.phone, s.phone)
                   OR s.school <> COALESCE(NULLIF(t.school, ''), s.school)
                   OR s.grade <> COALESCE(NULLIF(t.grade, ''), s.grade))
            RETURNING s.id
            """,
            [uuid.UUID(r["student_id"]) for r in updates],
            [r["phone"] for r in updates],
            [r["school"] for r in updates],
            [r["grade"] for r in updates],
        )

        enrolled, enrol_errors = await _enrol(scope, rows, created_ids)
        errors.extend(enrol_errors)
        await scope.fetch(
            """
            UPDATE excel_import SET applied_chunks = $3,
                created = created + $4, updated = updated + $5, unchanged = unchanged + $6,
                enrolled = enrolled + $7, apply_errors = apply_errors || $8::jsonb,
                updated_at = now()
            WHERE tenant = $1 AND id = $2
            """,
            imp["id"],
            index + 1,
            len(created_ids),
            len(changed),
            len(rows) - len(created_ids) - len(changed),
            enrolled,
            json.dumps(errors, ensure_ascii=False),
        )
    return True


async def _enrol(
    scope: TenantScope, rows: list[dict[str, Any]], created_ids: set[str]
) -> tuple[int, list[dict[str, Any]]]:
    """Enrol the chunk's students under the one capacity and lock rule
    (``models.enrollments.enrol_many``); what did not fit becomes row errors."""
    pairs = [
        (r["row"], r["student_id"], lecture_id)
        for r in rows
        if r["verdict"] != "create" or r["student_id"] in created_ids
        for lecture_id in r["lecture_ids"] or []
    ]
    outcomes = await enrol_many(
        scope,
        [(uuid.UUID(student), uuid.UUID(lecture)) for _, student, lecture in pairs],
        source="import",
    )
    errors: list[dict[str, Any]] = []
    for (row, _, lecture_id), o in zip(pairs, outcomes, strict=True):
        message = _enrol_error(o, lecture_id)
        if message:
            errors.append({"row": row, "column": LABELS["lecture"], "message": message})
    return sum(1 for o in outcomes if o.result in ENROLLED), errors


def _enrol_error(o: Outcome, lecture_id: str) -> str | None:
    title = o.lecture.title if o.lecture else lecture_id
    if o.result in ("no_lecture", "closed"):
        return f"lecture {title} was closed or deleted while importing"
    if o.result == "full":
        capacity = o.lecture.capacity if o.lecture else None
        return f"lecture {title} is full ({capacity} seats): not enrolled"
    if o.result == "no_student":
        return "the student was deleted while importing: not enrolled"
    return None


# --- step 5: finish ------------------------------------------------------------------------


@job("excel.finish_import", tier=TIER, max_retries=5)
async def finish_import(job_id: str) -> None:
    async def body(job_row: JobRecord, imp: dict[str, Any]) -> None:
        if not _past(imp, "matched" if imp["dry_run"] else "applied"):
            return  # out of order: the chain sends this step again when its turn comes
        started = time.perf_counter()
        tenant = imp["tenant"]
        prefix = work_prefix(imp)
        errors = await _all_errors(imp, prefix)
        result: dict[str, Any] = {
            "dry_run": imp["dry_run"],
            "mode": imp["mode"],
            "total_rows": imp["total_rows"],
            "created": imp["created"],
            "updated": imp["updated"],
            "unchanged": imp["unchanged"],
            "merged": imp["merged"],
            "enrolled": imp["enrolled"],
            "error_count": errors.height,
            "errors": errors.head(MAX_ERRORS_IN_RESULT).to_dicts(),
            "errors_truncated": errors.height > MAX_ERRORS_IN_RESULT,
            "same_file_as": str(imp["same_file_as"]) if imp["same_file_as"] else None,
            "header_row": imp["header_row"],
            "ignored_columns": imp["headers"].get("ignored", []),
            "error_workbook_url": None,
            "error_workbook_expires_at": None,
        }
        if imp["same_file_as"] and not imp["dry_run"]:
            result["note"] = (
                f"this file was imported before (job {imp['same_file_as']}); "
                "rows already there were left unchanged"
            )
        if errors.height:
            raw = await _get_frame(f"{prefix}/raw.parquet")
            book = await asyncio.to_thread(
                error_workbook, raw, [tuple(h) for h in imp["headers"]["columns"]], errors
            )
            stem = (imp["filename"].rsplit(".", 1)[0] or "import")[:80]
            filename = f"{stem}_오류.xlsx"
            key = export_key(tenant, job_id, filename)
            await asyncio.to_thread(storage.put_bytes, _bucket(), key, book, XLSX_CONTENT_TYPE)
            result["error_workbook_url"] = presigned_download(key, filename)
            result["error_workbook_expires_at"] = (
                dt.datetime.now(dt.UTC) + dt.timedelta(seconds=EXPORT_TTL_SECONDS)
            ).isoformat()
        timings = dict(imp["timings"]) | {"finished": round(time.perf_counter() - started, 3)}
        result["stage_seconds"] = timings
        async with connection() as conn:
            await conn.execute(
                "UPDATE excel_import SET step = 'finished', timings = $2::jsonb, "
                "updated_at = now() WHERE id = $1",
                imp["id"],
                json.dumps(timings),
            )
        await finish_job(job_id, result)
        await release_lock(tenant, job_id)
        await _delete_work_files(imp)
        log_event(
            log,
            "EXCEL_IMPORT_DONE",
            job_id=job_id,
            **{f"rows_{k}": result[k] for k in ("created", "updated", "unchanged", "enrolled")},
            error_count=result["error_count"],
        )

    await _run_step(job_id, "finishing", 97, body)


async def _all_errors(imp: dict[str, Any], prefix: str) -> pl.DataFrame:
    parts = [await _get_frame(f"{prefix}/errors.parquet")]
    if _past(imp, "matched"):
        parts.append(await _get_frame(f"{prefix}/match_errors.parquet"))
    if imp["apply_errors"]:
        parts.append(pl.DataFrame(imp["apply_errors"], schema=ERROR_SCHEMA))
    frames = [p.cast(ERROR_SCHEMA) for p in parts if p.height]
    if not frames:
        return empty_errors()
    return pl.concat(frames).sort("row", maintain_order=True)


# --- exports -------------------------------------------------------------------------------

STUDENT_STATUS = {"active": "재원", "paused": "휴원", "withdrawn": "퇴원"}
ATTENDANCE_STATUS = {"present": "출석", "late": "지각", "absent": "결석", "excused": "공결"}
ENROLLMENT_SOURCE = {"manual": "직접 등록", "import": "엑셀 일괄 등록"}


async def _export_students(
    scope: TenantScope, params: dict[str, Any]
) -> tuple[str, list[Column], list[tuple[Any, ...]]]:
    rows = await scope.fetch(
        """
        SELECT s.name, s.phone, s.school, s.grade, s.status, s.birth_date,
               s.guardians_json->0->>'name' AS guardian_name,
               s.guardians_json->0->>'phone' AS guardian_phone,
               s.enrollment_count, s.created_at
        FROM student s WHERE s.tenant = $1 AND s.deleted_at IS NULL
        ORDER BY s.name, s.id
        """
    )
    columns = [Column("이름", width=12), Column("연락처", width=15), Column("학교", width=16),
               Column("학년", width=8), Column("상태", width=8), Column("생년월일", "date", 12),
               Column("보호자", width=10), Column("보호자 연락처", width=15),
               Column("수강 강의 수", "number", 12), Column("등록일", "datetime", 18)]  # fmt: skip
    out = [
        (
            r["name"],
            r["phone"],
            r["school"],
            r["grade"],
            STUDENT_STATUS.get(r["status"], r["status"]),
            r["birth_date"],
            r["guardian_name"],
            r["guardian_phone"],
            r["enrollment_count"],
            r["created_at"],
        )
        for r in rows
    ]
    return "학생", columns, out


async def _export_roster(
    scope: TenantScope, params: dict[str, Any]
) -> tuple[str, list[Column], list[tuple[Any, ...]]]:
    rows = await scope.fetch(
        """
        SELECT l.title, s.name, s.phone, s.school, s.grade,
               s.guardians_json->0->>'phone' AS guardian_phone, e.source, e.enrolled_at
        FROM enrollment e
        JOIN student s ON s.id = e.student
        JOIN lecture l ON l.id = e.lecture
        WHERE e.tenant = $1 AND e.lecture = $2 AND e.status = 'active' AND s.deleted_at IS NULL
        ORDER BY s.name, s.id
        """,
        uuid.UUID(params["lecture_id"]),
    )
    columns = [Column("강의", width=20), Column("이름", width=12), Column("연락처", width=15),
               Column("학교", width=16), Column("학년", width=8), Column("보호자 연락처", width=15),
               Column("등록 경로", width=14), Column("등록일", "datetime", 18)]  # fmt: skip
    out = [
        (
            r["title"],
            r["name"],
            r["phone"],
            r["school"],
            r["grade"],
            r["guardian_phone"],
            ENROLLMENT_SOURCE.get(r["source"], r["source"]),
            r["enrolled_at"],
        )
        for r in rows
    ]
    return "수강생 명단", columns, out


async def _export_attendance(
    scope: TenantScope, params: dict[str, Any]
) -> tuple[str, list[Column], list[tuple[Any, ...]]]:
    lecture = uuid.UUID(params["lecture_id"]) if params.get("lecture_id") else None
    rows = await scope.fetch(
        """
        SELECT ls.date, l.title, ls.seq, s.name, a.status, a.note, a.checked_at
        FROM attendance a
        JOIN lecture_session ls ON ls.id = a.session
        JOIN lecture l ON l.id = ls.lecture
        JOIN student s ON s.id = a.student
        WHERE a.tenant = $1 AND ls.date BETWEEN $2 AND $3
          AND ($4::uuid IS NULL OR ls.lecture = $4)
        ORDER BY ls.date, l.title, ls.seq, s.name, s.id
        """,
        dt.date.fromisoformat(params["date_from"]),
        dt.date.fromisoformat(params["date_to"]),
        lecture,
    )
    columns = [Column("날짜", "date", 12), Column("강의", width=20), Column("회차", "number", 6),
               Column("이름", width=12), Column("출결", width=8), Column("메모", width=24),
               Column("확인 시각", "datetime", 18)]  # fmt: skip
    out = [
        (
            r["date"],
            r["title"],
            r["seq"],
            r["name"],
            ATTENDANCE_STATUS.get(r["status"], r["status"]),
            r["note"],
            r["checked_at"],
        )
        for r in rows
    ]
    return "출결", columns, out


async def _export_scores(
    scope: TenantScope, params: dict[str, Any]
) -> tuple[str, list[Column], list[tuple[Any, ...]]]:
    rows = await scope.fetch(
        """
        SELECT x.title, x.date, s.name, s.school, s.grade, sc.score, x.max_score, sc.source,
               sc.updated_at
        FROM score sc
        JOIN exam x ON x.id = sc.exam
        JOIN student s ON s.id = sc.student
        WHERE sc.tenant = $1 AND sc.exam = $2 AND s.deleted_at IS NULL
        ORDER BY s.name, s.id
        """,
        uuid.UUID(params["exam_id"]),
    )
    columns = [Column("시험", width=20), Column("시험일", "date", 12), Column("이름", width=12),
               Column("학교", width=16), Column("학년", width=8), Column("점수", "number", 8),
               Column("만점", "number", 8), Column("입력 경로", width=10),
               Column("수정일", "datetime", 18)]  # fmt: skip
    out = [
        (
            r["title"],
            r["date"],
            r["name"],
            r["school"],
            r["grade"],
            r["score"],
            r["max_score"],
            r["source"],
            r["updated_at"],
        )
        for r in rows
    ]
    return "성적", columns, out


EXPORTS = {
    "students": _export_students,
    "roster": _export_roster,
    "attendance": _export_attendance,
    "scores": _export_scores,
}


@job("excel.export", tier=TIER, max_retries=3)
async def export(job_id: str, sheet: str, filename: str, params: dict[str, Any]) -> None:
    """Write one export sheet and finish the job with its presigned link. A redelivery
    after DONE does nothing; one before DONE writes the same key again."""
    job_row = await start_job(job_id, stage="exporting")
    if job_row is None:
        return
    build = EXPORTS.get(sheet)
    if build is None:
        await fail_job(job_id, f"unknown export {sheet!r}")
        return
    started = time.perf_counter()
    sheet_name, columns, rows = await build(TenantScope(job_row.tenant), params)
    await set_progress(job_id, 50, "writing")
    data = await asyncio.to_thread(write_sheet, sheet_name, columns, rows)
    key = export_key(job_row.tenant, job_id, filename)
    await asyncio.to_thread(storage.put_bytes, _bucket(), key, data, XLSX_CONTENT_TYPE)
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=EXPORT_TTL_SECONDS)
    await finish_job(
        job_id,
        {
            "sheet": sheet,
            "filename": filename,
            "key": key,
            "rows": len(rows),
            "bytes": len(data),
            "url": presigned_download(key, filename),
            "expires_at": expires.isoformat(),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
