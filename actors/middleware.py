"""Worker middleware of ours. Ordered and explained in ``actors.broker.build_broker``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, Retries, SkipMessage

from models.db import close_pool, start_pool
from models.jobs import expect_life_within, fail_job, fail_running
from ops.logging import log_event
from ops.settings import get_settings

log = logging.getLogger("actors")

MAX_BACKOFF_MS = 900_000.0  # SQS's longest delay


class SafeRetries(Retries):
    """Dramatiq's Retries, but a retry that cannot be enqueued is not lost.

    Retries re-enqueues the message (with a delay) from ``after_process_message`` and the
    worker acks the original afterwards. If that enqueue raises, Dramatiq logs it and acks
    anyway: the job is gone. Here the failure marks the message so our consumer's ack
    leaves it in SQS to be redelivered instead.
    """

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except Exception:
            log.exception("retry could not be enqueued; leaving the message for redelivery")
            message._academy_redeliver = True  # type: ignore[attr-defined]
            return
        job_id = (message.kwargs or {}).get("job_id")
        if exception is None or message.failed or not job_id:
            return
        # A retry is on its way, delayed: the job is silent until then, and the lifeline
        # must not take that for a lost message.
        try:
            _run_on_worker_loop(
                expect_life_within(job_id, _retry_delay(broker, message, exception))
            )
        except Exception:
            log.warning("could not record the retry delay on the job", exc_info=True)


def _retry_delay(broker: dramatiq.Broker, message: MessageProxy, exception: BaseException) -> float:
    """Seconds until the retry just enqueued arrives, at most (Dramatiq's backoff is this
    bound with jitter below it; SQS delays no message longer than 15 minutes)."""
    if isinstance(exception, dramatiq.Retry) and exception.delay is not None:
        delay_ms = float(exception.delay)
    else:
        options = {**broker.get_actor(message.actor_name).options, **message.options}
        attempts = int(options.get("retries", 1)) - 1
        delay_ms = min(float(options.get("min_backoff", 15_000)) * 2**attempts, MAX_BACKOFF_MS)
    return min(delay_ms, MAX_BACKOFF_MS) / 1000


class JobEvents(Middleware):
    """``SQS_MESSAGE_RECEIVED`` / ``SQS_JOB_COMPLETED`` log events with timings.

    queue_wait_sec: from the message's enqueue time to the start of processing;
    processing_duration: the actor's run; total_duration: enqueue to completion.
    """

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @staticmethod
    def _fields(message: MessageProxy) -> dict[str, Any]:
        kwargs = message.kwargs or {}
        return {
            "actor": message.actor_name,
            "queue": message.queue_name,
            "message_id": message.message_id,
            "job_id": kwargs.get("job_id"),
            "request_id": kwargs.get("request_id") or "",
            "retries": message.options.get("retries", 0),
        }

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        now = time.time()
        self._started[message.message_id] = now
        log_event(
            log,
            "SQS_MESSAGE_RECEIVED",
            queue_wait_sec=round(now - message.message_timestamp / 1000, 3),
            **self._fields(message),
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        now = time.time()
        started = self._started.pop(message.message_id, now)
        fields = self._fields(message)
        timing: dict[str, Any] = {
            "processing_duration": round(now - started, 3),
            "total_duration": round(now - message.message_timestamp / 1000, 3),
        }
        if exception is None:
            log_event(log, "SQS_JOB_COMPLETED", **timing, **fields)
        else:
            log_event(
                log,
                "SQS_JOB_FAILED",
                logging.WARNING,
                error=f"{type(exception).__name__}: {exception}",
                will_retry=not message.failed,
                **timing,
                **fields,
            )

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started.pop(message.message_id, None)


class FailJobWhenExhausted(Middleware):
    """Marks the message's Job FAILED (with the last error) once its retries are exhausted.

    Placed before Retries in the middleware list, so its ``after_process_message`` runs
    after Retries has decided (Dramatiq runs the "after" hooks in reverse order).
    """

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or not message.failed:
            return
        job_id = (message.kwargs or {}).get("job_id")
        if not job_id:
            return
        reason = f"{type(exception).__name__}: {exception}"
        _run_on_worker_loop(fail_job(job_id, reason))


WORKER_KILLED = "worker_killed"


class MemoryCeiling(Middleware):
    """Caps each worker process's data (``RLIMIT_DATA``) at ``WORKER_MEMORY_LIMIT_MB``, so
    a runaway step fails with a MemoryError (the job FAILED ``out_of_memory``, see
    ``actors.jobs``) instead of taking the host. Native code that cannot take a refused
    allocation aborts the process instead: its message comes back, and ``FailKilledJobs``
    ends it. The data limit, not the address space: thread pools and allocators reserve
    address space they never use."""

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        limit_mb = get_settings().worker_memory_limit_mb
        if limit_mb > 0:
            set_memory_ceiling(limit_mb)


def set_memory_ceiling(limit_mb: int) -> None:
    """This process's data ceiling, within the hard limit it was started with."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = limit_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    log_event(log, "WORKER_MEMORY_CEILING", limit_mb=soft // (1024 * 1024))


class FailKilledJobs(Middleware):
    """A message SQS hands out again was held by a worker that never finished it: the
    worker was killed (out of memory, most often) or lost its hold on it. Received
    ``JOB_MAX_RECEIVES`` times, it is not run again (it would kill the next worker too):
    its job, if a step of it had started (RUNNING), ends FAILED ``worker_killed`` and the
    message goes to the tier's DLQ. SQS's own receive count is the count
    (``ApproximateReceiveCount``, read by the consumer); a retry is a new message and
    starts again from one."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        received = int(getattr(message, "receive_count", 1))
        if received < 2:
            return
        job_id = (message.kwargs or {}).get("job_id")
        limit = get_settings().job_max_receives
        log_event(
            log,
            "SQS_MESSAGE_REDELIVERED",
            logging.WARNING,
            actor=message.actor_name,
            job_id=job_id,
            receive_count=received,
            limit=limit,
        )
        if received < limit:
            return
        reason = (
            f"{WORKER_KILLED}: exceeded memory limit or killed -- the worker running this "
            f"step ({message.actor_name}) died {received - 1} time(s) without finishing it; "
            "the message is in the dead-letter queue"
        )
        # A job not started yet was only prefetched by the workers that died (queued behind
        # the one that killed them): it runs. So does a finished job's late copy (its step
        # does nothing).
        if job_id and not _run_on_worker_loop(fail_running(job_id, reason, WORKER_KILLED)):
            return
        log_event(log, "JOB_WORKER_KILLED", logging.ERROR, actor=message.actor_name, job_id=job_id)
        message._academy_dead_reason = WORKER_KILLED  # type: ignore[attr-defined]
        message.fail()
        raise SkipMessage(reason)


class DatabasePool(Middleware):
    """Opens the asyncpg pool on the worker's event loop at boot and closes it once the
    worker has stopped."""

    # Before the boot, not after: Dramatiq starts the worker threads between the two hooks,
    # and a message taken in that gap would otherwise meet an unconfigured engine (which
    # connects to libpq's default database). AsyncIO's before-hook, earlier in the list,
    # has started the loop already.
    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _run_on_worker_loop(start_pool(max_size=4))

    # After the shutdown, not before: Dramatiq emits before_worker_shutdown ahead of letting
    # running jobs finish, and they still need the database. (The "after" hooks run in
    # reverse order, so this still runs before AsyncIO stops the loop.)
    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        try:
            _run_on_worker_loop(close_pool())
        except Exception:
            log.exception("closing the database pool failed")


def _run_on_worker_loop(coro: Any) -> Any:
    """Run a coroutine on the AsyncIO middleware's loop (where the pool lives)."""
    from dramatiq.asyncio import get_event_loop_thread

    thread = get_event_loop_thread()
    if thread is None:
        return asyncio.run(coro)
    return thread.run_coroutine(coro)
