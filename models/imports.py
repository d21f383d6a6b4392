"""Excel enrollment imports: the import row, the tenant's import lock, what matching reads,
and the statements of one apply chunk.

The ``excel_import`` row is the import's record: ``step`` is the last step that completed,
and apply commits ``applied_chunks`` with the counts in the same transaction as the chunk's
rows. The apply chunk is a fixed set of set-based statements whatever its size: the chunk
is COPYed into a temporary table, and guardians, students with their guardian links, and
updates are one statement each over it (enrolments: ``models.enrollments``). The import is
benchmarked on them (``just bench excel``), so they change only with care.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from models import db
from models.enrollments import ACTIVE, active_count
from models.scope import TenantScope
from models.tables import ExcelImport
from models.tables import Job as JobTable
from pipelines.excel.apply import CHUNK_COLUMNS

IMPORT_KIND = "excel_import"
EXPORT_KIND = "excel_export"
# A lock holder that has not reported progress for this long is dead (a killed worker whose
# message went to the DLQ never marks its job FAILED); its lock is taken over.
LOCK_STALE_AFTER = dt.timedelta(minutes=15)
ANALYZED_TABLES = ("student", "guardian", "student_guardian", "enrollment")
# Room in the search index's pending list for the keys of the chunks in flight (~40 a
# student, ~4 MB a chunk of 2,500 new students).
PENDING_KEYS_LIMIT = "64MB"


class ImportRecord(msgspec.Struct):
    """An ``excel_import`` row."""

    id: uuid.UUID
    tenant: uuid.UUID
    job: uuid.UUID
    sha256: str
    filename: str
    file_type: str
    input_key: str
    mode: Literal["insert", "upsert"]
    dry_run: bool
    lecture_ids: list[str]
    step: str
    header_row: int | None
    # Once parsed: {"columns": [[letter, header], ...], "fields", "sheet", "ignored"}.
    headers: Any
    total_rows: int
    chunks: int
    applied_chunks: int
    created: int
    updated: int
    unchanged: int
    merged: int
    enrolled: int
    apply_errors: list[dict[str, Any]]
    timings: dict[str, float]
    same_file_as: uuid.UUID | None
    waiting_since: dt.datetime | None
    apply_started_at: dt.datetime | None
    apply_finished_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


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
    # A failed import's stable code (``empty_file``, ``no_header``...; README, "Excel").
    error_code: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class LectureState(msgspec.Struct):
    id: uuid.UUID
    title: str
    status: str


# --- the API side ------------------------------------------------------------------------


async def excel_job_status(scope: TenantScope, job_id: Any) -> ExcelJobStatus:
    """An Excel import or export job of this academy; any other job is not found."""
    return await scope.one(
        ExcelJobStatus,
        JobTable,
        """
        SELECT id AS job_id, kind, status, progress, stage, result, error,
               CASE WHEN status = 'FAILED' THEN result->>'code' END AS error_code,
               created_at, finished_at
        FROM job WHERE tenant = $1 AND id = $2 AND kind = ANY($3::text[])
        """,
        job_id,
        [IMPORT_KIND, EXPORT_KIND],
    )


async def target_lecture_errors(
    scope: TenantScope, lecture_ids: Sequence[uuid.UUID]
) -> list[dict[str, Any]]:
    """The field errors of an import's target lectures (in the order given): each must be
    one of this academy's, and not closed."""
    if not lecture_ids:
        return []
    found = {
        r.id: r
        for r in await scope.rows(
            LectureState,
            "SELECT id, title, status FROM lecture WHERE tenant = $1 AND id = ANY($2::uuid[])",
            list(lecture_ids),
        )
    }
    errors = []
    for lecture_id in lecture_ids:
        row = found.get(lecture_id)
        if row is None:
            errors.append({"field": "lecture_ids", "message": f"no lecture {lecture_id}"})
        elif row.status == "closed":
            errors.append({"field": "lecture_ids", "message": f"lecture {row.title} is closed"})
    return errors


async def create_import(
    scope: TenantScope,
    job_id: uuid.UUID,
    *,
    sha256: str,
    filename: str,
    file_type: str,
    input_key: str,
    mode: str,
    dry_run: bool,
    lecture_ids: Sequence[uuid.UUID],
) -> None:
    """The import row of a submitted job (its id is the job's)."""
    await ExcelImport(
        id=job_id,
        tenant=scope.tenant_id,
        job=job_id,
        sha256=sha256,
        filename=filename,
        file_type=file_type,
        input_key=input_key,
        mode=mode,
        dry_run=dry_run,
        lecture_ids=[str(i) for i in lecture_ids],
    ).save()


# --- the import row, step by step ----------------------------------------------------------


async def load_import(job_id: Any) -> ImportRecord | None:
    return await db.row(
        ImportRecord, "SELECT * FROM excel_import WHERE id = $1", uuid.UUID(str(job_id))
    )


async def record_step(job_id: Any, step: str, seconds: float, **values: Any) -> None:
    """``step`` is done: its time joins ``timings``, ``values`` set their columns."""
    sets = ["step = $2", "timings = timings || jsonb_build_object($3::text, $4::float8)",
            "updated_at = now()"]  # fmt: skip
    args: list[Any] = [uuid.UUID(str(job_id)), step, step, round(seconds, 3)]
    for name, value in values.items():
        args.append(value)
        cast = "::jsonb" if isinstance(value, dict | list) else ""
        sets.append(f"{name} = ${len(args)}{cast}")
    await db.execute(f"UPDATE excel_import SET {', '.join(sets)} WHERE id = $1", *args)


async def mark_waiting(import_id: uuid.UUID) -> None:
    """The import waits for the tenant's lock (since the first time it asked)."""
    await db.execute(
        "UPDATE excel_import SET waiting_since = COALESCE(waiting_since, now()) WHERE id = $1",
        import_id,
    )


async def mark_apply_started(import_id: uuid.UUID) -> None:
    await db.execute(
        "UPDATE excel_import SET apply_started_at = COALESCE(apply_started_at, now()) "
        "WHERE id = $1",
        import_id,
    )


async def mark_apply_finished(import_id: uuid.UUID) -> None:
    await db.execute("UPDATE excel_import SET apply_finished_at = now() WHERE id = $1", import_id)


async def record_finished(import_id: uuid.UUID, timings: dict[str, float]) -> None:
    await db.execute(
        "UPDATE excel_import SET step = 'finished', timings = $2::jsonb, "
        "updated_at = now() WHERE id = $1",
        import_id,
        timings,
    )


# --- the tenant's import lock --------------------------------------------------------------


async def take_import_lock(scope: TenantScope, job_id: Any) -> uuid.UUID | None:
    """Take (or keep) the tenant's import lock for ``job_id``. Returns None on success,
    else the id of the job holding it."""
    got = await scope.value(
        """
        INSERT INTO import_lock (id, tenant, job, acquired_at)
        VALUES (gen_random_uuid(), $1, $2, now())
        ON CONFLICT (tenant) DO UPDATE SET job = EXCLUDED.job, acquired_at = now()
        WHERE import_lock.job = EXCLUDED.job OR NOT EXISTS (
            SELECT 1 FROM job j WHERE j.id = import_lock.job
              AND j.status IN ('PENDING', 'RUNNING') AND j.updated_at > now() - $3::interval)
        RETURNING job
        """,
        uuid.UUID(str(job_id)),
        LOCK_STALE_AFTER,
    )
    if got is not None:
        return None
    holder: uuid.UUID | None = await scope.value("SELECT job FROM import_lock WHERE tenant = $1")
    # Released between the two statements: try once more next time round.
    return holder if holder is not None else uuid.UUID(int=0)


async def release_import_lock(scope: TenantScope, job_id: Any) -> None:
    await scope.execute(
        "DELETE FROM import_lock WHERE tenant = $1 AND job = $2", uuid.UUID(str(job_id))
    )


# --- what matching reads -------------------------------------------------------------------


class KnownStudent(msgspec.Struct):
    """A student (soft-deleted ones too) with one of the file's names and guardian phones."""

    student_id: str
    name: str
    guardian_phone: str
    phone: str | None
    school: str
    grade: str
    grade_raw: str
    deleted: bool


class ActiveEnrolment(msgspec.Struct):
    student_id: str
    lecture_id: str


class LectureSeats(msgspec.Struct):
    """A lecture of the academy, with its active enrollments (``ACTIVE``)."""

    lecture_id: str
    code: str | None
    title: str
    status: str
    capacity: int | None
    active: int


async def known_students(
    scope: TenantScope, names: Sequence[str], guardian_phones: Sequence[str]
) -> list[KnownStudent]:
    return await scope.rows(
        KnownStudent,
        """
        SELECT s.id::text AS student_id, s.name, g.phone AS guardian_phone, s.phone, s.school,
               s.grade, s.grade_raw, s.deleted_at IS NOT NULL AS deleted
        FROM student s
        JOIN student_guardian sg ON sg.student = s.id
        JOIN guardian g ON g.id = sg.guardian
        WHERE s.tenant = $1 AND s.name = ANY($2::text[]) AND g.phone = ANY($3::text[])
        """,
        names,
        guardian_phones,
    )


async def active_enrolments(
    scope: TenantScope, student_ids: Sequence[str]
) -> list[ActiveEnrolment]:
    return await scope.rows(
        ActiveEnrolment,
        "SELECT e.student::text AS student_id, e.lecture::text AS lecture_id "
        "FROM enrollment e JOIN student s ON s.id = e.student "
        f"WHERE e.tenant = $1 AND {ACTIVE} AND e.student = ANY($2::uuid[])",
        student_ids,
    )


async def lecture_seats(scope: TenantScope) -> list[LectureSeats]:
    return await scope.rows(
        LectureSeats,
        f"""
        SELECT l.id::text AS lecture_id, l.code, l.title, l.status, l.capacity,
               {active_count("l.id")} AS active
        FROM lecture l WHERE l.tenant = $1
        """,
    )


async def same_file_as(scope: TenantScope, sha256: str, import_id: uuid.UUID) -> uuid.UUID | None:
    """The latest other import of the same file that was applied (not a dry run)."""
    found: uuid.UUID | None = await scope.value(
        """
        SELECT i.id FROM excel_import i JOIN job j ON j.id = i.job
        WHERE i.tenant = $1 AND i.sha256 = $2 AND i.id <> $3 AND NOT i.dry_run
          AND j.status = 'DONE'
        ORDER BY i.created_at DESC LIMIT 1
        """,
        sha256,
        import_id,
    )
    return found


# --- one apply chunk (all in the caller's transaction) --------------------------------------


class ChunkTaken(Exception):
    """The chunk was applied by someone else meanwhile (an apply that took over): this
    transaction is to be rolled back."""


async def chunk_pending(scope: TenantScope, import_id: uuid.UUID, index: int) -> bool:
    """Whether chunk ``index`` is still to be written (False: applied before, a
    redelivery). Read without a lock so that the next chunk's transaction can start while
    this one runs; ``record_chunk`` checks again under the row lock."""
    applied = await scope.value(
        "SELECT applied_chunks FROM excel_import WHERE tenant = $1 AND id = $2", import_id
    )
    return applied is not None and applied <= index


async def stage_chunk(records: Sequence[Sequence[Any]]) -> None:
    """COPY the chunk (``pipelines.excel.apply.CHUNK_COLUMNS``) into ``import_chunk``, a
    temporary table of the caller's transaction (dropped at its end), which the statements
    below read."""
    async with db.connection() as conn:
        # The statements below cost past the JIT threshold on a big academy, and compiling
        # them took longer than they then saved (tens of ms a chunk).
        await conn.execute("SET LOCAL jit = off")
        # The chunk's search keys wait in the index's pending list (migration 2026-12-04
        # 01:00) until ``merge_search_keys`` merges them in one pass: a lower limit would
        # have the inserts merge a fraction of them at a time, each costing almost as much.
        await conn.execute(f"SET LOCAL gin_pending_list_limit = '{PENDING_KEYS_LIMIT}'")
        await conn.execute(
            """
            CREATE TEMPORARY TABLE import_chunk (
                row int, verdict text, student_id uuid, name text, initials text, phone text,
                school text, grade text, grade_raw text, guardian_name text, relation text,
                guardian_phone text, enrolments int
            ) ON COMMIT DROP
            """
        )
        await conn.copy_records_to_table("import_chunk", records=records, columns=CHUNK_COLUMNS)
        # A temporary table has no statistics until analysed: without them the first
        # chunk's statements were planned for a handful of rows (seconds, not tens of ms).
        await conn.execute("ANALYZE import_chunk")


async def upsert_guardians(scope: TenantScope) -> None:
    """One guardian per phone in the academy (natural key); a row that names them fills
    an empty name (the first such row of the chunk)."""
    await scope.execute(
        """
        INSERT INTO guardian (id, tenant, name, phone, created_at)
        SELECT gen_random_uuid(), $1, c.name, c.phone, now()
        FROM (SELECT DISTINCT ON (guardian_phone) guardian_phone AS phone, guardian_name AS name
              FROM import_chunk ORDER BY guardian_phone, guardian_name = '', row) AS c
        ON CONFLICT (tenant, phone) DO UPDATE SET name = EXCLUDED.name
        WHERE guardian.name = '' AND EXCLUDED.name <> ''
        """
    )


async def insert_students(scope: TenantScope) -> set[uuid.UUID]:
    """Insert the chunk's new students, each linked to their guardian (by phone) as the
    primary one; returns the ids inserted. Someone with this name and guardian phone who
    appeared since the plan was made (typed in by hand meanwhile) is not duplicated.

    Each student is written once, with the read model (``guardians_json``,
    ``enrollment_count``) the triggers would compute, so the triggers find nothing to
    change (they skip unchanged rows) instead of rewriting every new student twice."""
    # The links' trigger would recompute that JSON for nothing (migration 10:51); the
    # setting is the transaction's and is cleared as soon as the statement is done.
    await db.execute("SELECT set_config('academy.guardians_json_written', 'on', true)")
    created = await scope.values(
        """
        WITH new AS (
            INSERT INTO student (id, tenant, name, name_initials, phone, school, grade,
                                 grade_raw, memo, status, guardians_json, enrollment_count,
                                 created_at, updated_at)
            SELECT c.student_id, $1, c.name, c.initials, c.phone, c.school, c.grade,
                   c.grade_raw, '', 'active',
                   jsonb_build_array(jsonb_build_object(
                       'id', g.id, 'name', g.name, 'phone', g.phone, 'relation', c.relation,
                       'is_primary', true)),
                   c.enrolments, now(), now()
            FROM import_chunk c
            -- The guardian by its (tenant, phone) key, row by row: as a join the planner
            -- hashed the guardian table (every academy's rows) once a chunk.
            CROSS JOIN LATERAL (
                SELECT g.id, g.name, g.phone FROM guardian g
                WHERE g.tenant = $1 AND g.phone = c.guardian_phone
                LIMIT 1
            ) AS g
            -- Row by row through the guardian's phone (LIMIT keeps it a per-row probe):
            -- as one anti-join the planner hashed every student of the academy, each chunk.
            LEFT JOIN LATERAL (
                SELECT true AS found FROM guardian o
                JOIN student_guardian sg ON sg.guardian = o.id
                JOIN student s ON s.id = sg.student
                WHERE o.tenant = $1 AND o.phone = c.guardian_phone
                  AND s.tenant = $1 AND s.name = c.name AND s.id <> c.student_id
                LIMIT 1
            ) AS taken ON true
            WHERE c.verdict = 'create' AND taken.found IS NULL
            ON CONFLICT (id) DO NOTHING
            RETURNING id, guardians_json -> 0 AS link
        ), linked AS (
            -- The link is read back from the row just written, not joined again: no
            -- estimate of the CTE's size can then choose a nested loop over the chunk.
            INSERT INTO student_guardian (id, tenant, student, guardian, relation, is_primary)
            SELECT gen_random_uuid(), $1, new.id, (new.link ->> 'id')::uuid,
                   new.link ->> 'relation', true
            FROM new
            ON CONFLICT (student, guardian) DO NOTHING
        )
        SELECT id FROM new
        """
    )
    await db.execute("SELECT set_config('academy.guardians_json_written', '', true)")
    return set(created)


async def update_students(scope: TenantScope) -> int:
    """Update the chunk's matched students; returns how many really changed. Empty cells
    keep what is stored."""
    changed = await scope.values(
        """
        UPDATE student s SET
            phone = COALESCE(t.phone, s.phone),
            school = COALESCE(NULLIF(t.school, ''), s.school),
            grade = COALESCE(NULLIF(t.grade, ''), s.grade),
            grade_raw = COALESCE(NULLIF(t.grade_raw, ''), s.grade_raw),
            updated_at = now()
        FROM import_chunk t
        WHERE t.verdict = 'update' AND s.tenant = $1 AND s.id = t.student_id
          AND s.deleted_at IS NULL
          AND (s.phone IS DISTINCT FROM COALESCE(t.phone, s.phone)
               OR s.school <> COALESCE(NULLIF(t.school, ''), s.school)
               OR s.grade <> COALESCE(NULLIF(t.grade, ''), s.grade)
               OR s.grade_raw <> COALESCE(NULLIF(t.grade_raw, ''), s.grade_raw))
        RETURNING s.id
        """
    )
    return len(changed)


async def merge_search_keys() -> None:
    """Merge the search index's pending list (the chunk's new and changed students' keys)
    into the index, in the chunk's transaction: one descent per distinct key instead of one
    per key of every student, and searches never scan more than the chunks in flight.

    Only the index's owner may (a deployment whose API role does not own the tables): then
    nothing is called, and the inserts merge the list themselves once it passes the
    transaction's ``gin_pending_list_limit``, slower but never failing the import."""
    await db.execute(
        """
        SELECT gin_clean_pending_list(i.oid) FROM pg_class i
        WHERE i.oid = 'student_search_keys_idx'::regclass
          AND pg_has_role(i.relowner, 'MEMBER')
        """
    )


async def record_chunk(
    scope: TenantScope,
    import_id: uuid.UUID,
    index: int,
    *,
    created: int,
    updated: int,
    unchanged: int,
    enrolled: int,
    errors: list[dict[str, Any]],
) -> None:
    """Chunk ``index`` is written: its counts and row errors join the import's, and
    ``applied_chunks`` moves past it. Chunks commit in order, so it must stand at
    ``index``; otherwise the chunk was applied elsewhere meanwhile (``ChunkTaken``)."""
    advanced = await scope.value(
        """
        UPDATE excel_import SET applied_chunks = $3 + 1,
            created = created + $4, updated = updated + $5, unchanged = unchanged + $6,
            enrolled = enrolled + $7, apply_errors = apply_errors || $8::jsonb,
            updated_at = now()
        WHERE tenant = $1 AND id = $2 AND applied_chunks = $3
        RETURNING true
        """,
        import_id,
        index,
        created,
        updated,
        unchanged,
        enrolled,
        errors,
    )
    if not advanced:
        raise ChunkTaken(f"chunk {index} of import {import_id}")


async def refresh_enrolment_counts(students: Sequence[uuid.UUID]) -> None:
    """Recount the enrolments of ``students`` whose count the chunk's enrolment insert
    left to its writer (``write_enrolments``' ``counts_kept``): new students written with
    the count their rows asked for where a seat was then refused, and students known
    before who were enrolled."""
    if students:
        await db.execute("SELECT student_refresh_enrollments($1::uuid[])", list(students))


async def analyze() -> None:
    """Fresh planner statistics for the tables an import fills (see the apply step)."""
    await db.execute("ANALYZE " + ", ".join(ANALYZED_TABLES))
