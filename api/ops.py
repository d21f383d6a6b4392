"""Operations endpoints: ``GET /metrics`` (Prometheus) and ``GET /api/v1/ops/queues``.

``/metrics`` is for the monitoring system, not for academies: with ``METRICS_TOKEN`` set it
wants ``Authorization: Bearer <token>``; without one it answers only loopback and private
network addresses (the scraper next to the API), never the internet.

``/api/v1/ops/queues`` is the ops view for an academy's owner or admin: queue and DLQ
depths (global numbers, nothing tenant-specific) and the academy's own recent failures.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from api.auth import require_admin
from models.ops import ActorFailures, FailedJob, failures_by_actor, recent_failures
from models.scope import TenantScope
from ops import metrics as ops_metrics
from ops.settings import get_settings

RECENT_FAILURES = 20


def _trusted_network(host: str | None) -> bool:
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def check_metrics_access(request: Request[Any, Any, Any]) -> None:
    token = get_settings().metrics_token
    if token:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise NotAuthorizedException("a valid metrics token is required")
        return
    host = request.client.host if request.client else None
    if not _trusted_network(host):
        raise PermissionDeniedException(
            "metrics are served to private networks only; set METRICS_TOKEN to scrape from elsewhere"
        )


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (queues, DLQs, jobs by actor)",
    media_type=MediaType.TEXT,
)
async def metrics(request: Request[Any, Any, Any]) -> Response[str]:
    check_metrics_access(request)
    text = await ops_metrics.collect()
    return Response(text, media_type=ops_metrics.CONTENT_TYPE)


class QueueDepth(msgspec.Struct):
    visible: int
    in_flight: int
    delayed: int


class QueueView(msgspec.Struct):
    tier: str
    queue: str
    reachable: bool
    depth: QueueDepth | None
    dlq: QueueDepth | None
    oldest_pending_job_age_seconds: float


class OpsQueues(msgspec.Struct):
    queues: list[QueueView]
    failures_by_actor: list[ActorFailures]
    recent_failures: list[FailedJob]


class OpsController(Controller):
    path = "/api/v1/ops"
    tags = ["ops"]
    guards = [require_admin]

    @get("/queues", summary="Queue and DLQ depths, and this academy's recent failures by actor")
    async def queues(self, tenant_scope: NamedDependency[TenantScope]) -> OpsQueues:
        settings = get_settings()
        (stats, _age), oldest = await asyncio.gather(
            ops_metrics.sampler.get(settings), ops_metrics.oldest_pending()
        )
        ops_metrics.sampler.refresh_if_due(settings)
        by_queue = {(q.tier, q.kind): q for q in stats}

        def depth(tier: str, kind: str) -> QueueDepth | None:
            q = by_queue.get((tier, kind))
            return QueueDepth(q.visible, q.in_flight, q.delayed) if q and q.up else None

        views = [
            QueueView(
                tier=tier,
                queue=name,
                reachable=bool(by_queue.get((tier, "queue")) and by_queue[(tier, "queue")].up),
                depth=depth(tier, "queue"),
                dlq=depth(tier, "dlq"),
                oldest_pending_job_age_seconds=round(oldest.get(tier, 0.0), 1),
            )
            for tier, name in settings.queues.items()
        ]
        return OpsQueues(
            queues=views,
            failures_by_actor=await failures_by_actor(tenant_scope),
            recent_failures=await recent_failures(tenant_scope, RECENT_FAILURES),
        )


CONTROLLERS = [OpsController]
