"""System actors: the readiness probe, one per tier queue.

A probe proves a worker of that tier can reach the database and storage: it writes,
reads back and deletes an object, then records where it ran.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from actors.jobs import JobActor, finish_job, job, start_job
from ops import storage
from ops.settings import TIER_QUEUE_ENV, get_settings


async def _probe(job_id: str, tier: str) -> dict[str, Any] | None:
    if await start_job(job_id, stage="probing") is None:
        return None  # already finished: a redelivery
    settings = get_settings()
    key = storage.object_key("_readiness", f"{job_id}.txt")
    payload = f"probe {job_id} {tier}".encode()
    started = time.perf_counter()

    def roundtrip() -> None:
        storage.put_bytes(settings.r2_storage_bucket, key, payload, "text/plain")
        if storage.get_bytes(settings.r2_storage_bucket, key) != payload:
            raise RuntimeError("storage returned different bytes than were written")
        storage.delete(settings.r2_storage_bucket, key)

    await asyncio.to_thread(roundtrip)
    result = {
        "tier": tier,
        "queue": settings.queue_for(tier),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "storage_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    await finish_job(job_id, result)
    return result


def _make_probe(tier: str) -> JobActor:
    async def probe(job_id: str) -> dict[str, Any] | None:
        return await _probe(job_id, tier)

    probe.__qualname__ = f"probe_{tier.replace('-', '_')}"
    return job(f"system.probe_{tier.replace('-', '_')}", tier=tier, max_retries=2)(probe)


PROBES: dict[str, JobActor] = {tier: _make_probe(tier) for tier in TIER_QUEUE_ENV}
