"""The ``@job`` actor decorator, job submission after commit, the sweeper, and the step
chain every pipeline runs on.

Job state itself (start, progress, finish, fail) is ``models.jobs``; it is re-exported
here because every actor module uses it."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from models.db import on_commit, transaction
from models.jobs import (
    JobRecord,
    beat,
    fail_job,
    fail_lost,
    finish_job,
    insert_job,
    mark_sent,
    record_next_step,
    set_progress,
    start_job,
    take_lost,
    unsent_jobs,
    utcnow,
)
from models.tables import Job
from ops.logging import bound, current_context, log_event
from ops.settings import get_settings

log = logging.getLogger("actors.jobs")

_REGISTRY: dict[str, JobActor] = {}


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
            job_id = kwargs.get("job_id")
            with bound(actor=name, job_id=job_id, request_id=request_id):
                if not job_id:
                    return await fn(**kwargs)
                pulse = asyncio.create_task(_heartbeat(str(job_id), tier))
                try:
                    return await fn(**kwargs)
                except MemoryError:
                    # Not retried: the same input needs the same memory again.
                    failure = out_of_memory()
                    log_event(log, "JOB_OUT_OF_MEMORY", logging.ERROR, job_id=str(job_id))
                    await fail_job(job_id, str(failure), failure.code)
                    return None
                finally:
                    pulse.cancel()

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


async def _heartbeat(job_id: str, tier: str) -> None:
    """While a step runs, tell the lifeline it is alive, as often as SQS's own heartbeat
    extends its message (a third of the tier's visibility timeout)."""
    interval = max(1.0, get_settings().visibility_timeouts.get(tier, 120) / 3)
    while True:
        await asyncio.sleep(interval)
        try:
            await beat(job_id)
        except Exception:
            # A missed beat costs at most a needless re-send, which a step shrugs off.
            log.warning("job heartbeat failed", exc_info=True, extra={"job_id": job_id})


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
    request_id: str | None = None,
    input_key: str | None = None,
    sha256: str | None = None,
    **kwargs: Any,
) -> Job:
    """Insert a PENDING Job and send ``actor(job_id=..., **kwargs)`` once the transaction
    commits. Inside an outer ``transaction()`` the send waits for that commit; on rollback
    nothing is sent. If the process dies between COMMIT and the send, the sweeper sends it.

    ``request_id`` defaults to the one bound in the logging context (the HTTP request's, or
    the running actor's), so a job started by a request carries its id into the worker."""
    if request_id is None:
        request_id = str(current_context().get("request_id") or "")
    payload = {**kwargs, "request_id": request_id}
    async with transaction():
        row = await insert_job(
            tenant_id=tenant_id,
            kind=kind,
            tier=actor.tier,
            request_id=request_id,
            input_key=input_key,
            sha256=sha256,
            actor_name=actor.name,
            message=payload,
        )
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
    await mark_sent(job_id)


async def sweep_unsent(older_than_seconds: int | None = None, limit: int = 100) -> int:
    """Send PENDING jobs that were committed but never sent (``sent_at`` unset) and are
    older than the threshold. Returns how many it sent."""
    age = (
        older_than_seconds
        if older_than_seconds is not None
        else get_settings().job_sweep_after_seconds
    )
    sent = 0
    for row in await unsent_jobs(dt.timedelta(seconds=age), limit):
        job_id = str(row.id)
        actor = _REGISTRY.get(row.actor_name)
        if actor is None:
            await fail_job(job_id, f"unknown actor {row.actor_name!r}")
            continue
        payload = dict(row.message or {})
        payload.pop("job_id", None)
        await _send_job(actor, job_id, payload)
        log_event(log, "JOB_RESENT_BY_SWEEPER", job_id=job_id, actor=actor.name)
        sent += 1
    return sent


LOST_IN_TRANSIT = "lost_in_transit"


async def lifeline(limit: int = 100) -> dict[str, int]:
    """Re-send the jobs whose message was lost: sent (PENDING) or running (RUNNING) but
    silent -- no step started, beat or recorded -- for longer than their tier's visibility
    timeout plus ``JOB_LIFELINE_MARGIN_SECONDS``. A live step beats every third of that, and
    a message held by a dead worker comes back by itself within one visibility timeout, so
    silence beyond both means the message is gone (a purged queue, a local queue server
    restarted). The job's last recorded step is sent again (steps are idempotent: one done
    only re-sends the next); after ``JOB_LIFELINE_MAX_RESENDS`` re-sends the job is FAILED
    ``lost_in_transit``. Returns {"resent": n, "failed": n}."""
    settings = get_settings()
    quiet = {
        tier: float(seconds + settings.job_lifeline_margin_seconds)
        for tier, seconds in settings.visibility_timeouts.items()
    }
    failed = await fail_lost(
        quiet,
        settings.job_lifeline_max_resends,
        f"{LOST_IN_TRANSIT}: the job's message was lost "
        f"{settings.job_lifeline_max_resends} time(s) and re-sent each time; giving up",
    )
    for job_id in failed:
        log_event(log, "JOB_LOST_IN_TRANSIT", job_id=str(job_id))
    resent = 0
    for lost in await take_lost(quiet, settings.job_lifeline_max_resends, limit):
        actor = _REGISTRY.get(lost.actor_name)
        if actor is None:
            await fail_job(lost.id, f"unknown actor {lost.actor_name!r}")
            continue
        payload = dict(lost.message or {})
        payload.pop("job_id", None)
        try:
            await actor.send_async(job_id=str(lost.id), **payload)
        except Exception:
            # Counted and marked alive all the same: the next silence tries again.
            log.exception("lifeline re-send failed", extra={"job_id": str(lost.id)})
            continue
        log_event(
            log,
            "JOB_RESENT_BY_LIFELINE",
            job_id=str(lost.id),
            actor=actor.name,
            resend=lost.lifeline_resends,
        )
        resent += 1
    return {"resent": resent, "failed": len(failed)}


# --- the step chain ----------------------------------------------------------------------


class StepFailed(Exception):
    """A failure no retry can fix (a corrupt file, a rejected source): the chain's
    ``on_failure`` ends the work with this reason (and stable ``code``, if any) at once."""

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.code = code


OUT_OF_MEMORY = "out_of_memory"


def out_of_memory() -> StepFailed:
    """A step that hit its worker's memory ceiling (``WORKER_MEMORY_LIMIT_MB``)."""
    limit = get_settings().worker_memory_limit_mb
    return StepFailed(
        f"{OUT_OF_MEMORY}: exceeded memory limit -- the step needed more than the worker's "
        f"{limit} MiB (WORKER_MEMORY_LIMIT_MB); the input is too large to process",
        OUT_OF_MEMORY,
    )


@dataclass
class Claim:
    """What a step found when it claimed its work: the row, and the last step done."""

    row: Any
    done: str


FanOut = Callable[..., Awaitable[None]]
"""A step sent as many messages (a read per scanned page, a send per batch of messages).
Called inside the transaction that recorded the step before it, it finds its items there
and registers one send each, after the commit (``on_commit``)."""


@dataclass
class Chain:
    """The steps of one pipeline, in order, recorded on one row (``video.step_done``,
    ``excel_import.step``, ``omr_batch.page_count``): each step sends the next one only
    after its own result is committed, and a redelivered step that finds itself done only
    re-sends the next.

    A step is an actor (one message) or a ``FanOut`` (one message per item; the items then
    meet again at a ``when_last`` barrier). ``strict`` chains (the import) run a step only
    once the previous one is recorded; others (the video, whose steps can rebuild what they
    need) run it whenever it comes.
    """

    steps: Sequence[str]
    strict: bool = False
    actors: dict[str, JobActor | FanOut] = field(default_factory=dict)

    def bind(self, **actors: JobActor | FanOut) -> None:
        """Name the actor (or fan-out) of each step, once they are declared."""
        self.actors.update(actors)

    def index(self, step: str) -> int:
        return list(self.steps).index(step) if step else -1

    def past(self, done: str, step: str) -> bool:
        """True when ``step`` (or a later one) has completed."""
        return self.index(done) >= self.index(step)

    async def send(
        self, step: str, *, delay_ms: int | None = None, **kwargs: Any
    ) -> dramatiq.Message[Any]:
        """Send ``step``'s actor now (``delay_ms`` later: SQS caps it at 15 minutes). The
        request that started the chain goes along (``@job`` binds it into the context), so
        every step's log lines carry its ``request_id``."""
        kwargs.setdefault("request_id", str(current_context().get("request_id") or ""))
        actor = self.actors[step]
        if not isinstance(actor, JobActor):
            raise TypeError(f"step {step!r} is a fan-out: it sends its own messages")
        return await asyncio.to_thread(actor.actor.send_with_options, kwargs=kwargs, delay=delay_ms)

    async def send_after(self, step: str, job_id: str, kwargs: dict[str, Any]) -> None:
        """Send the step that follows ``step`` once the current transaction commits, and
        record it on the job in that transaction: the lifeline re-sends it if it is lost. A
        fan-out is not recorded: the step before it stays the one to re-send, and its
        re-send fans out again."""
        following = self.following(step)
        if following is None:
            return
        target = self.actors[following]
        if isinstance(target, JobActor):
            kwargs = {"request_id": str(current_context().get("request_id") or ""), **kwargs}
            await record_next_step(job_id, target.name, kwargs)
            await on_commit(functools.partial(self.send, following, **kwargs))
        else:
            await target(**kwargs)

    def following(self, step: str) -> str | None:
        index = self.index(step) + 1
        return self.steps[index] if index < len(self.steps) else None


StepBody = Callable[[Any], Awaitable[Callable[[], Awaitable[None]] | None]]


async def run_step(
    chain: Chain,
    step: str,
    *,
    job_id: str,
    stage: str,
    claim: Callable[[JobRecord], Awaitable[Claim | None]],
    body: StepBody,
    next_kwargs: dict[str, Any],
    on_failure: Callable[[Any, StepFailed], Awaitable[None]] | None = None,
) -> None:
    """One step of ``chain``: the bookkeeping every pipeline shares.

    1. start the job (a finished job: nothing to do) and ``claim(job)`` the step's row
       (None: the work is gone, cancelled or finished);
    2. a step already done only re-sends the next one (its first run may have died
       between its commit and that send); in a ``strict`` chain a step whose previous one
       is not recorded yet does nothing (the chain sends it again in its turn);
    3. ``body(row)`` does the work and returns how to record it (a coroutine function run
       in one transaction with the send of the next step), or None when it arranged its
       own continuation (waiting for a lock, say);
    4. a ``StepFailed`` ends the work with its reason through ``on_failure`` (by default:
       the job FAILED with that reason and code); so does a MemoryError (the worker's memory
       ceiling), as ``out_of_memory``.
    """
    job_row = await start_job(job_id, stage)
    if job_row is None:
        return
    claimed = await claim(job_row)
    if claimed is None:
        return
    if chain.past(claimed.done, step):
        log_event(log, "STEP_ALREADY_DONE", job_id=job_id, step=step)
        async with transaction():
            await chain.send_after(step, job_id, next_kwargs)
        return
    if chain.strict and not chain.past(claimed.done, chain.steps[chain.index(step) - 1]):
        return
    try:
        record = await body(claimed.row)
    except (StepFailed, MemoryError) as exc:
        # Out of memory fails through the chain's own ``on_failure`` too, so it can release
        # what it holds (an import's lock).
        failure = exc if isinstance(exc, StepFailed) else out_of_memory()
        if on_failure is None:
            await fail_job(job_id, str(failure), failure.code)
        else:
            await on_failure(claimed.row, failure)
        return
    if record is None:
        return
    async with transaction():
        await record()
        await chain.send_after(step, job_id, next_kwargs)


async def when_last(done: int, total: int | None, send: Callable[[], Awaitable[Any]]) -> bool:
    """Fan-in: the part that brings ``done`` up to ``total`` sends the next step, after
    its transaction commits (a barrier counter kept in Postgres, no Redis)."""
    if total is None or done != total:
        return False
    await on_commit(send)
    return True


__all__ = [
    "Chain",
    "Claim",
    "FanOut",
    "JobActor",
    "StepFailed",
    "bind_actors",
    "fail_job",
    "finish_job",
    "job",
    "lifeline",
    "registered",
    "run_step",
    "set_progress",
    "start_job",
    "submit",
    "sweep_unsent",
    "utcnow",
    "when_last",
]
