"""The job figures of /metrics come from a summary kept by a trigger on ``job``; they must
equal a scan of the job rows whatever happened to the rows: every state change the job
functions make, saves through the ORM, deletes, concurrent changes with folds between
them, and times that sit exactly on a histogram bound."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from typing import Any

import pytest

from models import db, jobs
from models.ops import (
    JobTableStats,
    fold_job_stats,
    job_table_stats,
    job_table_stats_by_scan,
)
from models.tables import Job
from ops.commands.scheduler import ROUNDS, run_once
from ops.metrics import BUCKETS
from tests.integration.test_metrics import add_job

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def figures(stats: JobTableStats) -> dict[str, Any]:
    """Comparable form: keyed, order-free, sums rounded past float noise, ages to 10 s."""
    return {
        "counts": {
            (c.actor_name, c.tier, c.status): (c.n, c.retries, c.resends) for c in stats.counts
        },
        "sums": {
            (s.actor_name, s.tier): (s.n, round(s.processing_sum, 3), round(s.wait_sum, 3))
            for s in stats.sums
        },
        "buckets": {
            (b.actor_name, b.tier, b.i): (b.processing_le, b.wait_le) for b in stats.buckets
        },
        "oldest": {p.tier: round(p.age / 10) for p in stats.oldest},
    }


async def assert_summary_matches_scan() -> None:
    summary = figures(await job_table_stats(BUCKETS))
    scan = figures(await job_table_stats_by_scan(BUCKETS))
    assert summary == scan


async def lifecycle(tenant_id: uuid.UUID, actor: str, i: int) -> None:
    """One job through what the system does to jobs, chosen by ``i``."""
    row = await add_job(tenant_id, actor, "PENDING", attempts=0, created_at=T0)
    job_id = str(row.id)
    await jobs.mark_sent(job_id)
    await jobs.start_job(job_id)
    await jobs.set_progress(job_id, 40, "working")
    if i % 6 == 1:
        # What the lifeline's re-send does to the row (a reopen below sets it back to 0).
        await db.execute(
            "UPDATE job SET lifeline_resends = lifeline_resends + 2 WHERE id = $1", row.id
        )
    if i % 3 == 0:
        await jobs.start_job(job_id)  # a redelivery: a second attempt
    if i % 4 == 0:
        await jobs.fail_job(job_id, "RuntimeError: boom")
        previous = await jobs.reopen(row.id, "redrive")
        if i % 8 == 0 and previous is not None:
            await jobs.restore(row.id, previous)
        else:
            await jobs.start_job(job_id)
            await jobs.finish_job(job_id, {"ok": True})
    elif i % 4 == 1:
        await jobs.finish_job(job_id, {"ok": True})
        await jobs.fail_job(job_id, "too late")  # refused: already DONE
    elif i % 4 == 2:
        await jobs.fail_job(job_id, "ValueError: bad input")
    if i % 5 == 0:
        await Job.delete().where(Job.id == row.id)


async def test_summary_equals_a_scan_through_every_job_change(tenant):
    actor = f"stats.case_{secrets.token_hex(4)}"
    for i in range(24):
        await lifecycle(tenant.id, actor, i)
    await assert_summary_matches_scan()
    # The actor's own figures, so the comparison is not of two empty sets.
    stats = figures(await job_table_stats(BUCKETS))
    mine = {k: v for k, v in stats["counts"].items() if k[0] == actor}
    assert sum(n for n, _, _ in mine.values()) == 24 - 5  # five deleted
    assert sum(r for _, _, r in mine.values()) > 0
    assert {k[2] for k in mine} == {"DONE", "FAILED", "RUNNING"}


async def test_summary_equals_a_scan_after_concurrent_changes_and_folds(tenant):
    actor = f"stats.busy_{secrets.token_hex(4)}"

    async def folds() -> None:
        for _ in range(10):
            await fold_job_stats()
            await asyncio.sleep(0.01)

    await asyncio.gather(*(lifecycle(tenant.id, actor, i) for i in range(40)), folds(), folds())
    await assert_summary_matches_scan()


async def test_times_on_a_bound_negative_times_and_missing_times(tenant):
    actor = f"stats.edges_{secrets.token_hex(4)}"
    start = T0 + dt.timedelta(seconds=10)  # waited 10 s: exactly the bound 10
    for seconds in (0.1, 0.25, 10, 3600, 3600.5):
        await add_job(tenant.id, actor, "DONE", created_at=T0, sent_at=T0, started_at=start,
                      finished_at=start + dt.timedelta(seconds=seconds))  # fmt: skip
    # Clocks that disagree: finished before started counts as 0 s.
    await add_job(tenant.id, actor, "FAILED", created_at=T0, started_at=start,
                  finished_at=start - dt.timedelta(seconds=3), attempts=4)  # fmt: skip
    # DONE without a start time has no processing time.
    await add_job(tenant.id, actor, "DONE", created_at=T0, finished_at=start)
    await assert_summary_matches_scan()

    stats = await job_table_stats(BUCKETS)
    le = {b.i: b.processing_le for b in stats.buckets if b.actor_name == actor}
    assert [le[i + 1] for i in range(len(BUCKETS))] == [
        2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 5
    ]  # fmt: skip
    (sums,) = [s for s in stats.sums if s.actor_name == actor]
    assert sums.n == 6 and sums.processing_sum == pytest.approx(0.1 + 0.25 + 10 + 3600 + 3600.5)
    wait = {b.i: b.wait_le for b in stats.buckets if b.actor_name == actor}
    assert wait[BUCKETS.index(10) + 1] == 6 and wait[BUCKETS.index(5) + 1] == 0


async def test_jobs_moved_between_actors_and_tiers_leave_no_figures_behind(tenant):
    actor = f"stats.moved_{secrets.token_hex(4)}"
    row = await add_job(tenant.id, actor, "RUNNING", attempts=2)
    await Job.update({Job.actor_name: f"{actor}.renamed", Job.tier: "video"}).where(
        Job.id == row.id
    )
    await assert_summary_matches_scan()
    counts = {(c.actor_name, c.tier) for c in (await job_table_stats(BUCKETS)).counts}
    assert (actor, "ai-lite") not in counts and (f"{actor}.renamed", "video") in counts


async def test_bounds_other_than_the_summary_s_are_refused(database):
    with pytest.raises(ValueError, match="job_stat_buckets"):
        await job_table_stats((1.0, 2.0))


async def test_the_scheduler_fold_round_moves_every_delta_into_the_summary(tenant):
    actor = f"stats.fold_{secrets.token_hex(4)}"
    row = await add_job(tenant.id, actor, "PENDING", attempts=0)
    await jobs.start_job(str(row.id))
    await jobs.finish_job(str(row.id))

    [(name, ran, folded)] = await run_once(tuple(r for r in ROUNDS if r.name == "fold"))
    assert (name, ran) == ("fold", True) and folded >= 5  # insert, and -/+ per change
    assert await db.value("SELECT count(*) FROM job_stat_delta") == 0
    await assert_summary_matches_scan()
