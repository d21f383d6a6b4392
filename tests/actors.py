"""Actors used only by the test suite, loaded into real workers through
``ACADEMY_EXTRA_ACTOR_MODULES=tests.actors``. They run on the ai-lite tier."""

from __future__ import annotations

import asyncio
import os
import signal

import dramatiq

from actors.jobs import finish_job, job, start_job
from models.tables import Job

TIER = "ai-lite"


@job("test.sleep", tier=TIER, max_retries=3)
async def sleep(job_id: str, seconds: float) -> None:
    row = await start_job(job_id, stage="sleeping")
    if row is None:
        return
    await asyncio.sleep(seconds)
    await finish_job(job_id, {"slept": seconds, "attempt": row.attempts})


@job("test.poison", tier=TIER, max_retries=1, min_backoff_ms=100, max_backoff_ms=200)
async def poison(job_id: str) -> None:
    await start_job(job_id, stage="poisoned")
    raise RuntimeError("this message always fails")


@job("test.retry_later", tier="ai-premium", max_retries=5)
async def retry_later(job_id: str, delay_ms: int) -> None:
    """Asks for a retry further away than SQS can delay a message."""
    row = await start_job(job_id, stage="waiting")
    if row is not None and row.attempts == 1:
        raise dramatiq.Retry(delay=delay_ms)
    await finish_job(job_id, {"attempt": row.attempts if row else None})


@job("test.flaky", tier=TIER, max_retries=5, min_backoff_ms=100, max_backoff_ms=500)
async def flaky(job_id: str, failures: int) -> None:
    row = await start_job(job_id, stage="trying")
    if row is None:
        return
    if row.attempts <= failures:
        raise RuntimeError(f"failure {row.attempts} of {failures}")
    await finish_job(job_id, {"attempts": row.attempts})


@job("test.hog", tier=TIER, max_retries=3)
async def hog(job_id: str, mib: int) -> None:
    """Asks for ``mib`` MiB at once, as a runaway parse would."""
    await start_job(job_id, stage="hogging")
    block = bytearray(mib * 1024 * 1024)
    await finish_job(job_id, {"held": len(block)})


@job("test.die", tier=TIER, max_retries=3)
async def die(job_id: str) -> None:
    """Kills its own worker process, as the kernel's OOM killer would."""
    await start_job(job_id, stage="dying")
    os.kill(os.getpid(), signal.SIGKILL)


async def job_row(job_id: object) -> dict[str, object] | None:
    return await Job.select().where(Job.id == job_id).first()
