"""Builds the SQS broker and its middleware -- in one explicit function, never at import."""

from __future__ import annotations

import importlib
from typing import Any

import dramatiq
from botocore.config import Config
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    Pipelines,
    ShutdownNotifications,
    TimeLimit,
)

from actors import ACTOR_MODULES
from actors.jobs import bind_actors
from actors.middleware import (
    DatabasePool,
    FailJobWhenExhausted,
    FailKilledJobs,
    JobEvents,
    MemoryCeiling,
    SafeRetries,
)
from actors.sqs import AcademySQSBroker
from ops.idle import GracefulShutdown, IdleShutdown
from ops.settings import Settings, get_settings

# Longest retry back-off: SQS cannot delay a message longer than 15 minutes.
MAX_BACKOFF_MS = 900_000


def build_middleware(*, worker: bool = True) -> list[dramatiq.Middleware]:
    """The middleware stack, in order. "before" hooks run top-down, "after" bottom-up."""
    stack: list[dramatiq.Middleware] = [
        AgeLimit(),
        # Like AgeLimit, it turns a message away before anything else sees it run: one that
        # came back JOB_MAX_RECEIVES times from dead workers is dead-lettered, its job FAILED.
        FailKilledJobs(),
        # Default 30 min; long actors (transcodes) raise it per actor.
        TimeLimit(time_limit=30 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # Before Retries so that its after-hook sees Retries' verdict (message.failed).
        FailJobWhenExhausted(),
        SafeRetries(max_retries=5, min_backoff=1_000, max_backoff=MAX_BACKOFF_MS),
        JobEvents(),
        AsyncIO(),
    ]
    if worker:
        # WORKER_MEMORY_LIMIT_MB, set in each worker process as it boots.
        stack.append(MemoryCeiling())
        # After AsyncIO so the loop exists when the pool is opened on it.
        stack.append(DatabasePool())
        # Read the consumers' own counters; they add no receive call (ops.idle).
        stack.append(GracefulShutdown())
        stack.append(IdleShutdown.from_settings())
        if get_settings().worker_metrics_port:
            # Per process, gone when the worker is: the durable figures are the API's
            # /metrics. Bound to WORKER_METRICS_HOST (127.0.0.1 unless told otherwise).
            stack.append(_worker_prometheus())
    return stack


def _worker_prometheus() -> dramatiq.Middleware:
    from dramatiq.middleware.prometheus import Prometheus

    class WorkerPrometheus(Prometheus):
        @property
        def forks(self) -> list[Any]:
            return [serve_worker_metrics]

    return WorkerPrometheus()


def serve_worker_metrics() -> int:
    """The exposition process (a fork of the dramatiq master), on our host and port rather
    than Dramatiq's 0.0.0.0:9191 default."""
    from dramatiq.middleware import prometheus

    s = get_settings()
    prometheus.HTTP_HOST = s.worker_metrics_host
    prometheus.HTTP_PORT = s.worker_metrics_port
    return int(prometheus._run_exposition_server())


def build_broker(settings: Settings | None = None, *, worker: bool = True) -> AcademySQSBroker:
    s = settings or get_settings()
    options: dict[str, Any] = {
        "region_name": s.aws_region,
        "config": Config(
            retries={"max_attempts": 5, "mode": "standard"},
            # Long polls hold the connection for up to 20 s.
            read_timeout=s.sqs_wait_time_seconds + 10,
            connect_timeout=5,
            max_pool_connections=32,
        ),
    }
    if s.sqs_endpoint_url:
        options["endpoint_url"] = s.sqs_endpoint_url
    return AcademySQSBroker(s, build_middleware(worker=worker), **options)


def setup_broker(broker: dramatiq.Broker | None = None, *, worker: bool = True) -> dramatiq.Broker:
    """Make ``broker`` (default: a new SQS broker) the global one and bind every actor to it.

    Called by the worker entry point (``actors.worker``), by the API at start-up, and by
    tests (with a ``StubBroker``).
    """
    for module in (*ACTOR_MODULES, *get_settings().extra_actor_modules):
        importlib.import_module(module)
    broker = broker or build_broker(worker=worker)
    dramatiq.set_broker(broker)
    bind_actors(broker)
    return broker
