"""Jobs: what a client polls, what workers report, and what the sweeper re-sends.

A job row is the client's view of background work (``status``, ``progress``, ``stage``,
``result``, ``error``). Workers move it PENDING -> RUNNING -> DONE | FAILED; a finished
job never moves again, so a late or duplicated message finds it finished and does nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import msgspec

from models import db
from models.scope import TenantScope
from models.tables import Job as JobTable

# ``models.tables.JobStatus``'s values, as the API states them.
JobStatusValue = Literal["PENDING", "RUNNING", "DONE", "FAILED"]


# A job as its client sees it (GET /api/v1/jobs/{id}). No docstring: it would become the
# OpenAPI description of ``Job``.
class Job(msgspec.Struct):
    id: uuid.UUID
    kind: str
    status: JobStatusValue
    progress: int
    stage: str
    result: Any
    error: str | None
    error_code: str | None
    attempts: int
    request_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class JobRecord(msgspec.Struct):
    """A job as a worker sees it when it starts a step."""

    id: uuid.UUID
    tenant: uuid.UUID
    kind: str
    tier: str
    status: str
    stage: str
    attempts: int
    request_id: str
    input_key: str | None
    sha256: str | None
    created_at: dt.datetime


class JobState(msgspec.Struct):
    """Where a job stands, for operators' tools (readiness probes, dead letters)."""

    id: uuid.UUID
    status: str
    result: Any
    error: str | None


class Reopened(msgspec.Struct):
    """A job's state before ``reopen`` put it back to PENDING (for ``restore``)."""

    status: str
    stage: str
    error: str | None
    error_code: str | None
    finished_at: dt.datetime | None


class Unsent(msgspec.Struct):
    id: uuid.UUID
    actor_name: str
    message: dict[str, Any] | None


class Ids(msgspec.Struct):
    id: uuid.UUID


class Lost(msgspec.Struct):
    """A job whose message the lifeline re-sends: its last recorded step."""

    id: uuid.UUID
    actor_name: str
    message: dict[str, Any] | None
    lifeline_resends: int


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def get_job(scope: TenantScope, job_id: Any) -> Job:
    return await scope.one(Job, JobTable, "SELECT * FROM job WHERE tenant = $1 AND id = $2", job_id)


async def insert_job(
    *,
    tenant_id: uuid.UUID | str,
    kind: str,
    tier: str,
    request_id: str,
    input_key: str | None,
    sha256: str | None,
    actor_name: str,
    message: dict[str, Any],
) -> JobTable:
    """A PENDING job that remembers its first message (so the sweeper can send it)."""
    row = JobTable(
        tenant=tenant_id,
        kind=kind,
        tier=tier,
        request_id=request_id,
        input_key=input_key,
        sha256=sha256,
        actor_name=actor_name,
        message=message,
    )
    await row.save()
    return row


async def mark_sent(job_id: str) -> None:
    await db.execute("UPDATE job SET sent_at = now() WHERE id = $1", uuid.UUID(job_id))


async def unsent_jobs(older_than: dt.timedelta, limit: int) -> list[Unsent]:
    """PENDING jobs committed but never sent, oldest first."""
    return await db.rows(
        Unsent,
        """
        SELECT id, actor_name, message FROM job
        WHERE status = 'PENDING' AND sent_at IS NULL AND created_at < $1
        ORDER BY created_at LIMIT $2
        """,
        utcnow() - older_than,
        limit,
    )


# --- the lifeline ---------------------------------------------------------------------


async def beat(job_id: Any) -> None:
    """The running step is alive (sent every third of its tier's visibility timeout)."""
    await db.execute(
        "UPDATE job SET heartbeat_at = now() WHERE id = $1 AND status = 'RUNNING'",
        uuid.UUID(str(job_id)),
    )


async def expect_life_within(job_id: Any, seconds: float) -> None:
    """The job is silent on purpose for ``seconds`` (a delayed retry): its heartbeat is
    moved that far ahead, so the lifeline counts its silence from then."""
    await db.execute(
        "UPDATE job SET heartbeat_at = greatest(heartbeat_at, now() + make_interval(secs => $2)) "
        "WHERE id = $1 AND status IN ('PENDING', 'RUNNING')",
        uuid.UUID(str(job_id)),
        float(seconds),
    )


async def record_next_step(job_id: Any, actor_name: str, message: dict[str, Any]) -> None:
    """The step the chain sends next, in the transaction that records the step before it:
    the message the lifeline re-sends if this one is lost."""
    await db.execute(
        "UPDATE job SET step_actor = $2, step_message = $3, heartbeat_at = now() "
        "WHERE id = $1 AND status IN ('PENDING', 'RUNNING')",
        uuid.UUID(str(job_id)),
        actor_name,
        message,
    )


# A job is silent when neither a step nor a send showed life for its tier's threshold.
_SILENT = """
    FROM job JOIN unnest($1::text[], $2::float8[]) AS t(tier, quiet) ON t.tier = job.tier
    WHERE job.status IN ('PENDING', 'RUNNING') AND job.sent_at IS NOT NULL
      AND coalesce(job.heartbeat_at, job.sent_at) < now() - make_interval(secs => t.quiet)
"""


async def fail_lost(quiet: dict[str, float], max_resends: int, reason: str) -> list[uuid.UUID]:
    """FAILED with ``reason``: silent jobs the lifeline already re-sent ``max_resends`` times."""
    rows = await db.rows(
        Ids,
        f"""
        UPDATE job SET status = 'FAILED', stage = 'failed', error = $4,
               finished_at = now(), updated_at = now()
        WHERE id IN (SELECT job.id {_SILENT} AND job.lifeline_resends >= $3
                     FOR UPDATE OF job SKIP LOCKED)
        RETURNING id
        """,
        list(quiet),
        list(quiet.values()),
        max_resends,
        reason,
    )
    return [r.id for r in rows]


async def take_lost(quiet: dict[str, float], max_resends: int, limit: int) -> list[Lost]:
    """Silent jobs with re-sends left, oldest silence first: each is counted as re-sent and
    shows life now (so the next round waits a whole threshold again), and comes back with
    its last recorded step (the first message when no step recorded one)."""
    return await db.rows(
        Lost,
        f"""
        UPDATE job SET lifeline_resends = lifeline_resends + 1, heartbeat_at = now()
        FROM (SELECT job.id {_SILENT} AND job.lifeline_resends < $3
              ORDER BY coalesce(job.heartbeat_at, job.sent_at) LIMIT $4
              FOR UPDATE OF job SKIP LOCKED) AS lost
        WHERE job.id = lost.id
        RETURNING job.id,
                  CASE WHEN job.step_actor <> '' THEN job.step_actor ELSE job.actor_name END
                      AS actor_name,
                  CASE WHEN job.step_actor <> '' THEN job.step_message ELSE job.message END
                      AS message,
                  job.lifeline_resends
        """,
        list(quiet),
        list(quiet.values()),
        max_resends,
        limit,
    )


async def start_job(job_id: str, stage: str = "running") -> JobRecord | None:
    """Mark the job RUNNING (counting the attempt). None if it is already finished -- a
    redelivered message must then do nothing."""
    return await db.row(
        JobRecord,
        """
        UPDATE job SET status = 'RUNNING', stage = $2, attempts = attempts + 1,
               started_at = COALESCE(started_at, now()), updated_at = now(),
               sent_at = COALESCE(sent_at, now()), heartbeat_at = now()
        WHERE id = $1 AND status IN ('PENDING', 'RUNNING')
        RETURNING *
        """,
        uuid.UUID(str(job_id)),
        stage,
    )


async def set_progress(job_id: Any, progress: int, stage: str) -> None:
    await db.execute(
        "UPDATE job SET progress = $2, stage = $3, updated_at = now(), heartbeat_at = now() "
        "WHERE id = $1 AND status = 'RUNNING'",
        uuid.UUID(str(job_id)),
        max(0, min(100, progress)),
        stage,
    )


async def raise_progress(job_id: Any, progress: int) -> None:
    """Progress that only moves forward (steps of a fan-out finish in any order)."""
    await db.execute(
        "UPDATE job SET progress = GREATEST(progress, $2), updated_at = now(), "
        "heartbeat_at = now() WHERE id = $1 AND status = 'RUNNING'",
        uuid.UUID(str(job_id)),
        max(0, min(100, progress)),
    )


async def finish_job(job_id: Any, result: dict[str, Any] | None = None) -> None:
    await db.execute(
        """
        UPDATE job SET status = 'DONE', progress = 100, stage = 'done', result = $2,
               error = NULL, error_code = NULL, finished_at = now(), updated_at = now()
        WHERE id = $1
        """,
        uuid.UUID(str(job_id)),
        result,
    )


async def fail_job(
    job_id: Any, reason: str, code: str | None = None, result: dict[str, Any] | None = None
) -> None:
    """FAILED with ``reason`` and its stable ``code`` (where the pipeline has one), and
    ``result`` when the failure has details, unless the job is already DONE."""
    await db.execute(
        """
        UPDATE job SET status = 'FAILED', stage = 'failed', error = $2, error_code = $3,
               result = COALESCE($4, result), finished_at = now(), updated_at = now()
        WHERE id = $1 AND status <> 'DONE'
        """,
        uuid.UUID(str(job_id)),
        reason[:2000],
        code,
        result,
    )


async def fail_running(job_id: Any, reason: str, code: str) -> bool:
    """FAILED with ``reason`` and ``code`` if a step of the job has started (RUNNING); False
    for a job not started yet (PENDING) or already finished."""
    failed = await db.value(
        """
        UPDATE job SET status = 'FAILED', stage = 'failed', error = $2, error_code = $3,
               finished_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'RUNNING'
        RETURNING id
        """,
        uuid.UUID(str(job_id)),
        reason[:2000],
        code,
    )
    return failed is not None


async def job_states(job_ids: list[uuid.UUID]) -> list[JobState]:
    return await db.rows(
        JobState, "SELECT id, status, result, error FROM job WHERE id = ANY($1::uuid[])", job_ids
    )


async def reopen(job_id: uuid.UUID, stage: str) -> Reopened | None:
    """Put a job that is not DONE back to PENDING (at ``stage``) so its message can be sent
    again: a worker skips finished jobs. Returns what it was (None: DONE or unknown)."""
    return await db.row(
        Reopened,
        """
        UPDATE job SET status = 'PENDING', stage = $2, error = NULL, error_code = NULL,
               finished_at = NULL, updated_at = now(),
               lifeline_resends = 0, heartbeat_at = now()
        FROM (SELECT id, status, stage, error, error_code, finished_at FROM job
              WHERE id = $1) AS old
        WHERE job.id = old.id AND job.status <> 'DONE'
        RETURNING old.status, old.stage, old.error, old.error_code, old.finished_at
        """,
        job_id,
        stage,
    )


async def restore(job_id: uuid.UUID, previous: Reopened) -> None:
    """Undo ``reopen`` (its message could not be sent after all)."""
    await db.execute(
        "UPDATE job SET status = $2, stage = $3, error = $4, error_code = $5, finished_at = $6 "
        "WHERE id = $1",
        job_id,
        previous.status,
        previous.stage,
        previous.error,
        previous.error_code,
        previous.finished_at,
    )
