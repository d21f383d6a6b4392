"""What operators read from the database: an academy's recent job failures, the job
table's counts and timings behind ``/metrics``, and the database checks of ``/health``
and the readiness command.

The job figures come from a summary that a trigger on ``job`` keeps (``job_stat``), so a
scrape costs the same with a thousand jobs kept or millions.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from models import db
from models.db import ensure_configured
from models.scope import TenantScope

# --- an academy's failures (GET /api/v1/ops/queues) ---------------------------------------
# No docstrings on these two: they would become OpenAPI descriptions.


class ActorFailures(msgspec.Struct):
    actor: str
    failed_24h: int
    done_24h: int
    last_error: str | None
    last_failed_at: dt.datetime | None


class FailedJob(msgspec.Struct):
    job_id: uuid.UUID
    actor: str
    kind: str
    error: str | None
    attempts: int
    request_id: str
    finished_at: dt.datetime | None


async def failures_by_actor(scope: TenantScope) -> list[ActorFailures]:
    """Per actor, the academy's jobs finished in the last 24 hours: failed, done, and the
    latest failure. Most failures first."""
    return await scope.rows(
        ActorFailures,
        """
        SELECT actor_name AS actor,
               count(*) FILTER (WHERE status = 'FAILED') AS failed_24h,
               count(*) FILTER (WHERE status = 'DONE') AS done_24h,
               max(finished_at) FILTER (WHERE status = 'FAILED') AS last_failed_at,
               (array_agg(error ORDER BY finished_at DESC)
                    FILTER (WHERE status = 'FAILED'))[1] AS last_error
        FROM job
        WHERE tenant = $1 AND finished_at > now() - interval '24 hours'
        GROUP BY actor_name ORDER BY failed_24h DESC, actor_name
        """,
    )


async def recent_failures(scope: TenantScope, limit: int) -> list[FailedJob]:
    """The academy's latest failed jobs, newest first."""
    return await scope.rows(
        FailedJob,
        """
        SELECT id AS job_id, actor_name AS actor, kind, error, attempts, request_id,
               finished_at
        FROM job WHERE tenant = $1 AND status = 'FAILED'
        ORDER BY finished_at DESC NULLS LAST, id LIMIT $2
        """,
        limit,
    )


# --- the job table for /metrics ----------------------------------------------------------


class StatusCount(msgspec.Struct):
    actor_name: str
    tier: str
    status: str
    n: int
    retries: int
    resends: int


class TimeSums(msgspec.Struct):
    """Jobs finished (DONE or FAILED), with their summed processing and queue-wait times."""

    actor_name: str
    tier: str
    n: int
    processing_sum: float
    wait_sum: float


class BucketCount(msgspec.Struct):
    """Finished jobs whose times are within the ``i``-th bound (1-based)."""

    actor_name: str
    tier: str
    i: int
    processing_le: int
    wait_le: int


class PendingAge(msgspec.Struct):
    tier: str
    age: float


class JobTableStats(msgspec.Struct):
    counts: list[StatusCount]
    sums: list[TimeSums]
    buckets: list[BucketCount]
    oldest: list[PendingAge]


# The definition: every figure as a scan of the job rows. A scrape reads the same figures
# from ``job_stat`` (kept by a trigger on ``job``, see its migration); the scan is what the
# tests hold the summary to, and the benchmark's anchor.
SCAN_COUNTS_SQL = """
SELECT actor_name, tier, status, count(*) AS n,
       coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries,
       coalesce(sum(lifeline_resends), 0) AS resends
FROM job GROUP BY actor_name, tier, status
"""

SCAN_FINISHED_CTE = """
WITH d AS (
    SELECT actor_name, tier,
           greatest(extract(epoch FROM finished_at - started_at)::float8, 0) AS processing,
           greatest(extract(epoch FROM started_at - coalesce(sent_at, created_at))::float8, 0)
               AS wait
    FROM job
    WHERE status IN ('DONE', 'FAILED') AND started_at IS NOT NULL AND finished_at IS NOT NULL
)
"""

SCAN_SUMS_SQL = (
    SCAN_FINISHED_CTE
    + """
SELECT actor_name, tier, count(*) AS n, sum(processing) AS processing_sum, sum(wait) AS wait_sum
FROM d GROUP BY actor_name, tier
"""
)

# Cumulative bucket counts: every finished job against every bound, in one pass.
SCAN_BUCKETS_SQL = (
    SCAN_FINISHED_CTE
    + """
SELECT actor_name, tier, b.i,
       count(*) FILTER (WHERE processing <= b.le) AS processing_le,
       count(*) FILTER (WHERE wait <= b.le) AS wait_le
FROM d CROSS JOIN unnest($1::float8[]) WITH ORDINALITY AS b(le, i)
GROUP BY actor_name, tier, b.i
"""
)

SCAN_OLDEST_PENDING_SQL = """
SELECT tier, extract(epoch FROM now() - min(coalesce(sent_at, created_at)))::float8 AS age
FROM job WHERE status = 'PENDING' GROUP BY tier
"""

# --- the same figures from the summary ------------------------------------------------

STAT_KEY = "actor_name, tier, status, processing_bucket, wait_bucket"

# Deltas appended by the trigger since the last fold, added into the summary; keys whose
# jobs are all gone are dropped (DROP_EMPTY_SQL, next).
FOLD_SQL = f"""
WITH moved AS (DELETE FROM job_stat_delta RETURNING *),
added AS (
    INSERT INTO job_stat
    SELECT {STAT_KEY}, sum(n), sum(retries), sum(processing_sum), sum(wait_sum), sum(resends)
    FROM moved GROUP BY {STAT_KEY}
    ON CONFLICT ({STAT_KEY}) DO UPDATE SET
        n = job_stat.n + excluded.n,
        retries = job_stat.retries + excluded.retries,
        processing_sum = job_stat.processing_sum + excluded.processing_sum,
        wait_sum = job_stat.wait_sum + excluded.wait_sum,
        resends = job_stat.resends + excluded.resends
)
SELECT count(*) FROM moved
"""
DROP_EMPTY_SQL = "DELETE FROM job_stat WHERE n = 0"

# The summary plus the deltas not folded yet: exact whether or not a fold ran.
STAT_CTE = f"""
WITH s AS (
    SELECT {STAT_KEY}, sum(n) AS n, sum(retries) AS retries,
           sum(processing_sum) AS processing_sum, sum(wait_sum) AS wait_sum,
           sum(resends) AS resends
    FROM (SELECT * FROM job_stat UNION ALL SELECT * FROM job_stat_delta) AS u
    GROUP BY {STAT_KEY}
)
"""

STAT_COUNTS_SQL = (
    STAT_CTE
    + """
SELECT actor_name, tier, status, sum(n)::bigint AS n, sum(retries)::bigint AS retries,
       sum(resends)::bigint AS resends
FROM s GROUP BY actor_name, tier, status HAVING sum(n) > 0
"""
)

# Bucket 0: the job is not finished with both times, so it has none.
STAT_SUMS_SQL = (
    STAT_CTE
    + """
SELECT actor_name, tier, sum(n)::bigint AS n, sum(processing_sum)::float8 AS processing_sum,
       sum(wait_sum)::float8 AS wait_sum
FROM s WHERE processing_bucket > 0 GROUP BY actor_name, tier HAVING sum(n) > 0
"""
)

STAT_BUCKETS_SQL = (
    STAT_CTE
    + """
SELECT actor_name, tier, b.i,
       coalesce(sum(n) FILTER (WHERE processing_bucket <= b.i), 0)::bigint AS processing_le,
       coalesce(sum(n) FILTER (WHERE wait_bucket <= b.i), 0)::bigint AS wait_le
FROM s CROSS JOIN generate_series(1, cardinality(job_stat_buckets())) AS b(i)
WHERE processing_bucket > 0
GROUP BY actor_name, tier, b.i HAVING sum(n) > 0
"""
)

# Per tier, the first pending job of the partial index ``job_pending_age``: a skip over
# the tiers present, so a long backlog costs no more than a short one.
OLDEST_PENDING_SQL = """
WITH RECURSIVE tiers(tier) AS (
    SELECT min(tier) FROM job WHERE status = 'PENDING'
    UNION ALL
    SELECT (SELECT min(j.tier) FROM job j WHERE j.status = 'PENDING' AND j.tier > t.tier)
    FROM tiers t WHERE t.tier IS NOT NULL
)
SELECT tier,
       extract(epoch FROM now() - (
           SELECT min(coalesce(j.sent_at, j.created_at)) FROM job j
           WHERE j.status = 'PENDING' AND j.tier = tiers.tier))::float8 AS age
FROM tiers WHERE tier IS NOT NULL
"""


async def oldest_pending() -> list[PendingAge]:
    """Age of the oldest job not yet started, per tier (tiers with none waiting are absent).

    Its own query so a caller that needs only this skips the rest of ``job_table_stats``."""
    return await db.rows(PendingAge, OLDEST_PENDING_SQL)


FOLD_LOCK = "academy.job_stat_fold"


async def fold_job_stat_deltas() -> int:
    """Add the trigger's deltas into ``job_stat``; how many there were. Call it holding
    ``FOLD_LOCK`` (the scheduler's ``fold`` round does, and ``fold_job_stats``)."""
    async with db.connection() as conn:
        # Lost at a crash, the fold is lost whole (deltas kept, summary unchanged): no need
        # to wait for the WAL flush on every scrape.
        await conn.execute("SET LOCAL synchronous_commit TO off")
        folded = int(await conn.fetchval(FOLD_SQL))
        await conn.execute(DROP_EMPTY_SQL)
    return folded


async def fold_job_stats() -> bool:
    """``fold_job_stat_deltas`` under ``FOLD_LOCK``. False when another session is folding
    (its fold covers them, and readers count unfolded deltas anyway)."""
    ran, _ = await db.run_exclusively(FOLD_LOCK, fold_job_stat_deltas)
    return ran


async def _stats(
    counts_sql: str, sums_sql: str, buckets_sql: str, oldest_sql: str, *bucket_args: object
) -> JobTableStats:
    async with db.connection() as conn:
        counts = await conn.fetch(counts_sql)
        sums = await conn.fetch(sums_sql)
        buckets = await conn.fetch(buckets_sql, *bucket_args)
        oldest = await conn.fetch(oldest_sql)
    return JobTableStats(
        counts=[db.as_struct(StatusCount, r) for r in counts],
        sums=[db.as_struct(TimeSums, r) for r in sums],
        buckets=[db.as_struct(BucketCount, r) for r in buckets],
        oldest=[db.as_struct(PendingAge, r) for r in oldest],
    )


_bounds_checked: set[tuple[float, ...]] = set()


async def job_table_stats(bounds: Sequence[float]) -> JobTableStats:
    """Counts by actor, tier and status; time sums and cumulative counts within each of
    ``bounds`` (seconds) of the finished jobs; the oldest pending job per tier. From the
    summary the job table's trigger keeps (folded first), so the cost follows the number
    of actors, not of jobs. ``bounds`` must be the ones the summary buckets by."""
    if tuple(bounds) not in _bounds_checked:
        kept = list(await db.value("SELECT job_stat_buckets()"))
        if kept != list(bounds):
            raise ValueError(
                f"histogram bounds {list(bounds)} differ from the job summary's {kept}: changing"
                " them takes a migration that redefines job_stat_buckets() and rebuilds it"
            )
        _bounds_checked.add(tuple(bounds))
    await fold_job_stats()
    return await _stats(STAT_COUNTS_SQL, STAT_SUMS_SQL, STAT_BUCKETS_SQL, OLDEST_PENDING_SQL)


async def job_table_stats_by_scan(bounds: Sequence[float]) -> JobTableStats:
    """The same figures as ``job_table_stats``, by scanning every job row kept."""
    return await _stats(
        SCAN_COUNTS_SQL, SCAN_SUMS_SQL, SCAN_BUCKETS_SQL, SCAN_OLDEST_PENDING_SQL, list(bounds)
    )


# --- database checks ----------------------------------------------------------------------


async def ping(connect_timeout: float) -> None:
    """One round trip: on a pooled connection when the pool is up, else on a new one
    opened within ``connect_timeout`` seconds."""
    engine = ensure_configured()
    if engine.pool is not None:
        async with engine.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    else:
        conn = await asyncpg.connect(**engine.config, timeout=connect_timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()


async def server_version() -> str:
    """The server's version line, without the build details (``PostgreSQL 18.0``)."""
    return str(await db.value("SELECT version()")).split(" on ")[0]
