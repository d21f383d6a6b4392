"""Spine figures: API requests per second over real HTTP, and job round trips through SQS.

The local SQS server (moto) is slow (about 90 msg/s); the job figures show our overhead on
top of it, not what Amazon SQS can do.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from actors.jobs import submit
from actors.system import PROBES
from models.tables import Job
from tests.benchmarks.server import api_server
from tests.conftest import wait_for


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def test_bench_spine_requests(tenant, broker):
    async with (
        api_server(tenant) as server,
        httpx.AsyncClient(base_url=server.base, timeout=10) as client,
    ):
        job = await submit(PROBES["video"], tenant_id=tenant.id, kind="bench")
        headers = server.headers

        for name, path in (
            ("GET /health", "/health"),
            ("GET /api/v1/jobs/{id}", f"/api/v1/jobs/{job.id}"),
        ):
            latencies: list[float] = []
            total, concurrency = 1000, 16

            async def one(path: str = path, latencies: list[float] = latencies) -> None:
                t = time.perf_counter()
                r = await client.get(path, headers=headers)
                r.raise_for_status()
                latencies.append(time.perf_counter() - t)

            started = time.perf_counter()
            for start in range(0, total, concurrency):
                await asyncio.gather(*[one() for _ in range(min(concurrency, total - start))])
            elapsed = time.perf_counter() - started
            print(
                f"\n{name}: {total / elapsed:,.0f} req/s over {total} requests "
                f"(concurrency {concurrency}, one uvicorn process); "
                f"p50 {_pct(latencies, 0.5) * 1000:.1f} ms, p95 {_pct(latencies, 0.95) * 1000:.1f} ms"
            )


async def test_bench_spine_job_round_trip(tenant, start_worker):
    from models.db import close_pool, start_pool

    await start_pool()  # as the API runs: pooled connections
    try:
        await _job_round_trip(tenant, start_worker)
    finally:
        await close_pool()


async def _job_round_trip(tenant, start_worker):
    worker = start_worker(["ai-lite"], threads=4)
    # Warm up: the worker is booted once its first probe is done.
    warm = await submit(PROBES["ai-lite"], tenant_id=tenant.id, kind="bench")

    async def done(job_id):
        row = await Job.select(Job.status).where(Job.id == job_id).first()
        return row and row["status"] == "DONE"

    assert await wait_for(lambda: done(warm.id), timeout=60), worker.output()[-2000:]

    n = 100
    started = time.perf_counter()
    jobs = [await submit(PROBES["ai-lite"], tenant_id=tenant.id, kind="bench") for _ in range(n)]
    submitted = time.perf_counter() - started

    async def all_done():
        count = await Job.count().where(Job.id.is_in([j.id for j in jobs]) & (Job.status == "DONE"))
        return count == n

    assert await wait_for(all_done, timeout=300, interval=0.1)
    elapsed = time.perf_counter() - started
    rows = await Job.select(Job.created_at, Job.started_at, Job.finished_at).where(
        Job.id.is_in([j.id for j in jobs])
    )
    waits = [(r["started_at"] - r["created_at"]).total_seconds() for r in rows]
    totals = [(r["finished_at"] - r["created_at"]).total_seconds() for r in rows]
    print(
        f"\njob round trip ({n} probe jobs: INSERT + send after commit -> worker runs an S3 "
        f"put/get/delete -> DONE; one worker process, 4 threads, local SQS/S3 server):\n"
        f"  submit (insert+commit+send): {n / submitted:.0f} jobs/s\n"
        f"  end to end: {n / elapsed:.1f} jobs/s; queue wait p50 {statistics.median(waits):.2f} s; "
        f"submit->DONE p50 {statistics.median(totals):.2f} s, p95 {_pct(totals, 0.95):.2f} s"
    )
