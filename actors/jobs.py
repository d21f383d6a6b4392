"""The ``@job`` actor decorator, job submission after commit, job state, and the sweeper."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq

from models.db import on_commit, transaction
from models.tables import Job, JobStatus
from ops.logging import bound, log_event
from ops.settings import get_settings

log = logging.getLogger("actors.jobs")

_REGISTRY: dict[str, JobActor] = {}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JobActor:
    """An actor declared with ``@job``; bound to a broker by ``setup_broker()``.

    Declaring does not touch a broker, so importing an actors module has no side effect.
    Calling the object runs the function in-process (for tests and scripts).
    """

    def __init__(
        self, fn: Callable[..., Awaitable[Any]], name: str, tier: str, options: dict[str, Any]
    ) -> None:
        self.fn = fn
        self.name = name
        self.tier = tier
        self.options = options

    @property
    def actor(self) -> dramatiq.Actor[Any, Any]:
        broker = dramatiq.broker.global_broker
        if broker is None:
            raise RuntimeError("no broker: call actors.broker.setup_broker() first")
        return broker.get_actor(self.name)

    @property
    def queue_name(self) -> str:
        return get_settings().queue_for(self.tier)

    def message(self, **kwargs: Any) -> dramatiq.Message[Any]:
        return self.actor.message_with_options(kwargs=kwargs)

    def send(self, **kwargs: Any) -> dramatiq.Message[Any]:
        return self.actor.send_with_options(kwargs=kwargs)

    async def send_async(self, **kwargs: Any) -> dramatiq.Message[Any]:
        """Send without blocking the event loop (boto3 is synchronous)."""
        return await asyncio.to_thread(self.send, **kwargs)

    async def __call__(self, **kwargs: Any) -> Any:
        return await self.fn(**kwargs)

    def __repr__(self) -> str:
        return f"JobActor({self.name!r}, tier={self.tier!r})"


def job(
    name: str,
    *,
    tier: str,
    max_retries: int = 5,
    min_backoff_ms: int = 1_000,
    max_backoff_ms: int = 900_000,
    time_limit_ms: int = 30 * 60 * 1000,
    **options: Any,
) -> Callable[[Callable[..., Awaitable[Any]]], JobActor]:
    """Declare an actor: ``name`` (``"video.transcode_rendition"``) doubles as its log prefix.

    Actors take keyword arguments only: ids and small values. ``job_id`` and ``request_id``
    (if passed) are bound into every log record of the run. Backoff is capped at SQS's
    15-minute delay limit whatever the caller asks for.
    """
    get_settings().queue_for(tier)  # fail fast on an unknown tier

    def decorate(fn: Callable[..., Awaitable[Any]]) -> JobActor:
        if not asyncio.iscoroutinefunction(fn):
            raise TypeError(f"@job {name}: actors are async functions")

        @functools.wraps(fn)
        async def run(**kwargs: Any) -> Any:
            request_id = kwargs.pop("request_id", "") or ""
            with bound(actor=name, job_id=kwargs.get("job_id"), request_id=request_id):
                return await fn(**kwargs)

        actor = JobActor(
            run,
            name,
            tier,
            {
                "max_retries": max_retries,
                "min_backoff": min_backoff_ms,
                "max_backoff": min(max_backoff_ms, 900_000),
                "time_limit": time_limit_ms,
                **options,
            },
        )
        if name in _REGISTRY and _REGISTRY[name].fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"two actors are named {name!r}")
        _REGISTRY[name] = actor
        return actor

    return decorate


def registered() -> dict[str, JobActor]:
    return dict(_REGISTRY)


def bind_actors(broker: dramatiq.Broker) -> None:
    settings = get_settings()
    for name, job_actor in _REGISTRY.items():
        if name in broker.actors:
            continue
        dramatiq.Actor(
            job_actor.fn,
            broker=broker,
            actor_name=name,
            queue_name=settings.queue_for(job_actor.tier),
            priority=0,
            options=dict(job_actor.options),
        )


# --- submission ------------------------------------------------------------------------


async def submit(
    actor: JobActor,
    *,
    tenant_id: uuid.UUID | str,
    kind: str,
    request_id: str = "",
    input_key: str | None = None,
    sha256: str | None = None,
    **kwargs: Any,
) -> Job:
    """Insert a PENDING Job and send ``actor(job_id=..., **kwargs)`` once the transaction
    commits. Inside an outer ``transaction()`` the send waits for that commit; on rollback
    nothing is sent. If the process dies between COMMIT and the send, the sweeper sends it."""
    payload = {**kwargs, "request_id": request_id}
    async with transaction():
        row = Job(
            tenant=tenant_id,
            kind=kind,
            tier=actor.tier,
            request_id=request_id,
            input_key=input_key,
            sha256=sha256,
            actor_name=actor.name,
            message=payload,
        )
        await row.save()
        job_id = str(row.id)
        await on_commit(functools.partial(_send_job, actor, job_id, payload))
    return row


async def _send_job(actor: JobActor, job_id: str, payload: dict[str, Any]) -> None:
    try:
        await actor.send_async(job_id=job_id, **payload)
    except Exception:
        # Committed but not sent: the sweeper will send it. The client still gets its id.
        log.exception("send after commit failed; the sweeper will retry", extra={"job_id": job_id})
        return
    await Job.update({Job.sent_at: utcnow()}).where(Job.id == job_id)


async def sweep_unsent(older_than_seconds: int | None = None, limit: int = 100) -> int:
    """Send PENDING jobs that were committed but never sent (``sent_at`` unset) and are
    older than the threshold. Returns how many it sent."""
    age = (
        older_than_seconds
        if older_than_seconds is not None
        else get_settings().job_sweep_after_seconds
    )
    cutoff = utcnow() - dt.timedelta(seconds=age)
    rows = (
        await Job.select(Job.id, Job.actor_name, Job.message)
        .where(
            (Job.status == JobStatus.pending.value)
            & Job.sent_at.is_null()
            & (Job.created_at < cutoff)
        )
        .order_by(Job.created_at)
        .limit(limit)
        .output(load_json=True)
    )
    sent = 0
    for row in rows:
        actor = _REGISTRY.get(row["actor_name"])
        if actor is None:
            await fail_job(str(row["id"]), f"unknown actor {row['actor_name']!r}")
            continue
        payload = dict(row["message"] or {})
        payload.pop("job_id", None)
        await _send_job(actor, str(row["id"]), payload)
        log_event(log, "JOB_RESENT_BY_SWEEPER", job_id=str(row["id"]), actor=actor.name)
        sent += 1
    return sent


# --- state, as the actors report it ------------------------------------------------------


async def start_job(job_id: str, stage: str = "running") -> dict[str, Any] | None:
    """Mark the job RUNNING (counting the attempt). Returns the row, or None if it is
    already finished -- a redelivered message must then do nothing."""
    rows = await Job.raw(
        """
        UPDATE job SET status = 'RUNNING', stage = {}, attempts = attempts + 1,
               started_at = COALESCE(started_at, now()), updated_at = now(),
               sent_at = COALESCE(sent_at, now())
        WHERE id = {} AND status IN ('PENDING', 'RUNNING')
        RETURNING *
        """,
        stage,
        job_id,
    )
    return rows[0] if rows else None


async def set_progress(job_id: str, progress: int, stage: str) -> None:
    await Job.update(
        {Job.progress: max(0, min(100, progress)), Job.stage: stage, Job.updated_at: utcnow()}
    ).where((Job.id == job_id) & (Job.status == JobStatus.running.value))


async def finish_job(job_id: str, result: dict[str, Any] | None = None) -> None:
    now = utcnow()
    await Job.update(
        {
            Job.status: JobStatus.done.value,
            Job.progress: 100,
            Job.stage: "done",
            Job.result: result,
            Job.error: None,
            Job.finished_at: now,
            Job.updated_at: now,
        }
    ).where(Job.id == job_id)


async def fail_job(job_id: str, reason: str) -> None:
    now = utcnow()
    await Job.update(
        {
            Job.status: JobStatus.failed.value,
            Job.stage: "failed",
            Job.error: reason[:2000],
            Job.finished_at: now,
            Job.updated_at: now,
        }
    ).where((Job.id == job_id) & (Job.status != JobStatus.done.value))
