"""``GET /health``: the seed's contract, plus broker and storage.

200 ``{"status": "ok", "database": "connected", ...}`` while the database answers; 503 with
``"database": "disconnected"`` when it does not. A broker or storage outage degrades the
status (``"degraded"``) but keeps 200: the API still serves reads without them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Response, get

from models.ops import ping
from ops.queues import sqs_client
from ops.settings import get_settings
from ops.storage import client as storage_client

CHECK_TIMEOUT_SECONDS = 2.0


def _check_broker() -> None:
    settings = get_settings()
    client = _cached("sqs", lambda: sqs_client(settings))
    client.get_queue_url(QueueName=settings.queue_for("video"))


def _check_storage() -> None:
    storage_client().head_bucket(Bucket=get_settings().r2_storage_bucket)


_clients: dict[str, Any] = {}


def _cached(name: str, make: Any) -> Any:
    if name not in _clients:
        _clients[name] = make()
    return _clients[name]


async def _timed(fn: Any) -> tuple[bool, float, str]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(fn), CHECK_TIMEOUT_SECONDS)
        return True, time.perf_counter() - started, ""
    except Exception as exc:
        return False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"[:200]


async def _timed_db() -> tuple[bool, float, str]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(ping(CHECK_TIMEOUT_SECONDS), CHECK_TIMEOUT_SECONDS)
        return True, time.perf_counter() - started, ""
    except Exception as exc:
        return False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"[:200]


@get("/health", tags=["health"], summary="Liveness and dependencies")
async def health() -> Response[dict[str, Any]]:
    (db_ok, db_s, db_err), (mq_ok, mq_s, mq_err), (st_ok, st_s, st_err) = await asyncio.gather(
        _timed_db(), _timed(_check_broker), _timed(_check_storage)
    )
    body: dict[str, Any] = {
        "status": "ok" if db_ok and mq_ok and st_ok else ("degraded" if db_ok else "error"),
        "database": "connected" if db_ok else "disconnected",
        "broker": "connected" if mq_ok else "disconnected",
        "storage": "connected" if st_ok else "disconnected",
        "latency_ms": {
            "database": round(db_s * 1000, 1),
            "broker": round(mq_s * 1000, 1),
            "storage": round(st_s * 1000, 1),
        },
    }
    errors = {k: v for k, v in (("database", db_err), ("broker", mq_err), ("storage", st_err)) if v}
    if errors and get_settings().debug:
        body["errors"] = errors
    return Response(body, status_code=200 if db_ok else 503)
