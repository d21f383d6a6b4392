"""What operators read from the database: an academy's recent job failures, the job
table's counts and timings behind ``/metrics``, and the database checks of ``/health``
and the readiness command.

The job-table aggregates scan every job row kept; they are meant for a scrape every few
seconds, not for a request path.
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


JOB_COUNTS_SQL = """
SELECT actor_name, tier, status, count(*) AS n,
       coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries,
       coalesce(sum(lifeline_resends), 0) AS resends
FROM job GROUP BY actor_name, tier, status
"""

FINISHED_CTE = """
WITH d AS (
    SELECT actor_name, tier,
           greatest(extract(epoch FROM finished_at - started_at)::float8, 0) AS processing,
           greatest(extract(epoch FROM started_at - coalesce(sent_at, created_at))::float8, 0)
               AS wait
    FROM job
    WHERE status IN ('DONE', 'FAILED') AND started_at IS NOT NULL AND finished_at IS NOT NULL
)
"""

JOB_SUMS_SQL = (
    FINISHED_CTE
    + """
SELECT actor_name, tier, count(*) AS n, sum(processing) AS processing_sum, sum(wait) AS wait_sum
FROM d GROUP BY actor_name, tier
"""
)

# Cumulative bucket counts: every finished job against every bound, in one pass.
JOB_BUCKETS_SQL = (
    FINISHED_CTE
    + """
SELECT actor_name, tier, b.i,
       count(*) FILTER (WHERE processing <= b.le) AS processing_le,
       count(*) FILTER (WHERE wait <= b.le) AS wait_le
FROM d CROSS JOIN unnest($1::float8[]) WITH ORDINALITY AS b(le, i)
GROUP BY actor_name, tier, b.i
"""
)

OLDEST_PENDING_SQL = """
SELECT tier, extract(epoch FROM now() - min(coalesce(sent_at, created_at)))::float8 AS age
FROM job WHERE status = 'PENDING' GROUP BY tier
"""


async def oldest_pending() -> list[PendingAge]:
    """Age of the oldest job not yet started, per tier (tiers with none waiting are absent).

    Its own query so a caller that needs only this skips the histogram scans of
    ``job_table_stats``."""
    return await db.rows(PendingAge, OLDEST_PENDING_SQL)


async def job_table_stats(bounds: Sequence[float]) -> JobTableStats:
    """Counts by actor, tier and status; time sums and cumulative counts within each of
    ``bounds`` (seconds) of the finished jobs; the oldest pending job per tier."""
    async with db.connection() as conn:
        counts = await conn.fetch(JOB_COUNTS_SQL)
        sums = await conn.fetch(JOB_SUMS_SQL)
        buckets = await conn.fetch(JOB_BUCKETS_SQL, list(bounds))
        oldest = await conn.fetch(OLDEST_PENDING_SQL)
    return JobTableStats(
        counts=[db.as_struct(StatusCount, r) for r in counts],
        sums=[db.as_struct(TimeSums, r) for r in sums],
        buckets=[db.as_struct(BucketCount, r) for r in buckets],
        oldest=[db.as_struct(PendingAge, r) for r in oldest],
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
        conn = await asyncpg.connect(engine.config["dsn"], timeout=connect_timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()


async def server_version() -> str:
    """The server's version line, without the build details (``PostgreSQL 18.0``)."""
    return str(await db.value("SELECT version()")).split(" on ")[0]
