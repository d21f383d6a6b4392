"""`just bench metrics`: the cost of a /metrics scrape with 1,000,000 job rows kept.

The anchor is the scan of the job rows the scrape used to run (``job_table_stats_by_scan``,
kept as the definition the summary is tested against); the new path reads the summary a
trigger on ``job`` keeps (``job_table_stats``). Both run in one process on pooled
connections, interleaved round by round; then the whole scrape (SQS attributes of every
queue and DLQ, job figures, rendering) as it was, with the summary only, and with the
queue sampler too, and GET /metrics over HTTP from a real API process (sampler on); last, what the trigger adds to one job change. Prints figures and ratios;
asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from models import ops as model_ops
from models.db import close_pool, connection, start_pool
from models.jobs import set_progress, start_job
from ops import metrics
from ops.settings import get_settings
from tests.benchmarks.server import api_server

JOBS, BATCH, ROUNDS, REPEATS = 1_000_000, 100_000, 5, 3

# One academy's history: 20 actors over the 5 tiers, one job a second for 11.5 days; 2 %
# failed, 1 in 2,000 still pending and as many running; a seventh took two attempts.
SEED_SQL = """
INSERT INTO job (id, tenant, kind, tier, status, progress, stage, attempts, request_id,
                 input_keys, actor_name, created_at, updated_at, sent_at, started_at,
                 finished_at)
SELECT gen_random_uuid(), $1, 'bench',
       (ARRAY['video', 'ai-lite', 'ai-basic', 'ai-premium', 'messaging'])[1 + i % 5],
       st, 0, 'bench', CASE WHEN st = 'PENDING' THEN 0 ELSE 1 + (i % 7 = 0)::int END, '',
       '[]'::jsonb, 'bench.actor_' || (i % 20), c, c, c,
       CASE WHEN st <> 'PENDING' THEN c + make_interval(secs => i % 30) END,
       CASE WHEN st IN ('DONE', 'FAILED')
            THEN c + make_interval(secs => i % 30 + (i::bigint * 7919 % 6000) / 10.0) END
FROM (SELECT i, now() - make_interval(secs => i) AS c,
             CASE WHEN i % 2000 = 0 THEN 'PENDING' WHEN i % 2000 = 1 THEN 'RUNNING'
                  WHEN i % 50 = 2 THEN 'FAILED' ELSE 'DONE' END AS st
      FROM generate_series($2::int, $3::int) AS i) AS g
"""


async def _seed(tenant_id: Any) -> None:
    started = time.perf_counter()
    async with connection() as conn:
        for first in range(1, JOBS + 1, BATCH):
            await conn.execute(SEED_SQL, tenant_id, first, first + BATCH - 1)
        await conn.execute("ANALYZE job")
        total = await conn.fetchval("SELECT count(*) FROM job")
    print(f"\nseeded {JOBS:,} job rows in {time.perf_counter() - started:.1f} s "
          f"(the table holds {total:,})")  # fmt: skip
    started = time.perf_counter()
    await model_ops.fold_job_stats()
    print(f"first fold of the trigger's deltas for them: {time.perf_counter() - started:.2f} s")


async def _timed(work: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


async def _job_figures() -> None:
    scan: list[float] = []
    summary: list[float] = []
    print(f"\njob figures at {JOBS:,} jobs, ms ({ROUNDS} rounds x {REPEATS}, interleaved):")
    for r in range(ROUNDS):
        a = [await _timed(lambda: model_ops.job_table_stats_by_scan(metrics.BUCKETS))
             for _ in range(REPEATS)]  # fmt: skip
        b = [await _timed(lambda: model_ops.job_table_stats(metrics.BUCKETS))
             for _ in range(REPEATS)]  # fmt: skip
        scan += a
        summary += b
        print(f"  round {r + 1}: scan (before) {' '.join(f'{x:8.1f}' for x in a)}   "
              f"summary (after) {' '.join(f'{x:6.2f}' for x in b)}")  # fmt: skip
    before, after = statistics.median(scan), statistics.median(summary)
    print(f"  median: before {before:.1f} ms, after {after:.2f} ms, "
          f"ratio {before / after:,.0f}x; after max {max(summary):.2f} ms")  # fmt: skip


async def _whole_scrape(monkeypatch: Any) -> None:
    """The scrape as it was (job rows scanned, SQS read every time), with only the summary,
    and as it is (summary, and the sampler's last SQS reading, refreshed in the background)."""
    fresh = dataclasses.replace(get_settings(), metrics_queue_refresh_seconds=0)
    sampled = dataclasses.replace(get_settings(), metrics_queue_refresh_seconds=10)
    ways = {
        "before (scan, SQS read)": (model_ops.job_table_stats_by_scan, fresh),
        "summary, SQS read": (model_ops.job_table_stats, fresh),
        "after (summary, SQS sampled)": (model_ops.job_table_stats, sampled),
    }
    runs: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(ROUNDS):
        for name, (source, settings) in ways.items():
            monkeypatch.setattr(metrics, "job_table_stats", source)
            if metrics.sampler._reading is not None:
                # As at every scrape of a 15 s interval: the last reading is past its
                # refresh, so this scrape also starts the background reading.
                metrics.sampler._reading = (time.monotonic() - 15, metrics.sampler._reading[1])
            runs[name].append(await _timed(lambda s=settings: metrics.collect(s)))
    monkeypatch.undo()
    sqs = [await _timed(lambda: asyncio.to_thread(metrics.queue_stats))
           for _ in range(ROUNDS)]  # fmt: skip
    print("\nwhole scrape in process (SQS attributes of 10 queues, job figures, text), ms:")
    for name, values in runs.items():
        print(f"  {name:30} {' '.join(f'{x:7.1f}' for x in values)}   "
              f"median {statistics.median(values):.1f}")  # fmt: skip
    before = statistics.median(runs["before (scan, SQS read)"])
    after = statistics.median(runs["after (summary, SQS sampled)"])
    print(f"  ratio before/after {before / after:,.0f}x; the 10 SQS calls alone "
          f"(local moto server): median {statistics.median(sqs):.1f}")  # fmt: skip


async def _write_cost() -> None:
    """What the trigger adds to a job change: the same RUNNING jobs, one UPDATE by id each,
    alternately a progress report (the trigger does not fire) and a redelivered start (it
    appends two deltas)."""
    async with connection() as conn:
        ids = [str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM job WHERE status = 'RUNNING' AND kind = 'bench' LIMIT 200")]  # fmt: skip
    runs: dict[str, list[float]] = {"progress (no trigger)": [], "start (trigger)": []}
    for _ in range(ROUNDS):
        for name, change in (("progress (no trigger)", lambda i: set_progress(i, 50, "bench")),
                             ("start (trigger)", start_job)):  # fmt: skip
            started = time.perf_counter()
            for job_id in ids:
                await change(job_id)
            runs[name].append((time.perf_counter() - started) * 1e6 / len(ids))
    print(f"\none job UPDATE by id, µs each ({len(ids)} RUNNING jobs x {ROUNDS} rounds):")
    for name, values in runs.items():
        print(f"  {name:22} {' '.join(f'{v:7.0f}' for v in values)}   "
              f"median {statistics.median(values):.0f}")  # fmt: skip


async def test_bench_metrics_scrape(tenant, broker, monkeypatch):
    await start_pool()  # as the API runs: pooled connections
    try:
        await _seed(tenant.id)
        await _job_figures()
        await _whole_scrape(monkeypatch)
        await _write_cost()
    finally:
        await close_pool()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per scrape otherwise
    # Scrapes 1 s apart with a 0.5 s refresh: each serves the last reading and starts the
    # next one in the background, done before the next scrape, as at a real interval.
    sampled = {"METRICS_QUEUE_REFRESH_SECONDS": "0.5"}
    async with (
        api_server(tenant, sampled) as server,
        httpx.AsyncClient(base_url=server.base) as client,
    ):
        times = []
        for _ in range(20):
            await asyncio.sleep(1)
            started = time.perf_counter()
            r = await client.get("/metrics")
            r.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    print(f"\nGET /metrics over HTTP (one uvicorn process, after), 20 scrapes: "
          f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms; "
          f"the server's own figure: {metrics.parse(r.text)[('academy_metrics_scrape_seconds', frozenset())] * 1000:.1f} ms")  # fmt: skip
