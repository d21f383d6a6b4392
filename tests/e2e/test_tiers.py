"""Worker tiers through real worker processes: the ai-cpu weighting (basic 3 : lite 1) and
the graceful stop on SIGTERM."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from actors.jobs import submit
from actors.system import PROBES
from models.tables import Job
from ops.commands.worker import command
from ops.settings import get_settings
from tests import actors as test_actors
from tests.conftest import wait_for
from tests.idle_helpers import events, exited, names
from tests.sqs_helpers import counts, purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]

EACH = 40


@pytest.fixture
def cpu_queues(broker: Any) -> Any:
    s = get_settings()
    queues = [s.queue_for("ai-basic"), s.queue_for("ai-lite")]
    purge(*queues)
    yield queues
    purge(*queues)


def test_ai_cpu_worker_consumes_both_queues() -> None:
    cmd = command("ai-cpu", 2, 8)
    assert cmd[cmd.index("--processes") + 1] == "2" and cmd[cmd.index("--threads") + 1] == "8"
    s = get_settings()
    assert cmd[cmd.index("--queues") + 1 :] == [s.queue_for("ai-basic"), s.queue_for("ai-lite")]


async def test_basic_is_consumed_three_times_as_fast_as_lite(tenant, cpu_queues, start_worker):
    """Both queues full, one thread: while both still have messages, basic jobs start at
    about 3x the rate of lite jobs (AI_WORKER_BASIC_POLL_WEIGHT=3, ..._LITE_...=1)."""
    s = get_settings()
    assert (s.ai_worker_basic_poll_weight, s.ai_worker_lite_poll_weight) == (3, 1)
    jobs: dict[str, list[Any]] = {"ai-basic": [], "ai-lite": []}
    for _ in range(EACH):
        for tier in jobs:
            job = await submit(PROBES[tier], tenant_id=tenant.id, kind="probe")
            jobs[tier].append(job.id)
    worker = start_worker(["ai-basic", "ai-lite"], threads=1)

    async def all_done() -> bool:
        ids = jobs["ai-basic"] + jobs["ai-lite"]
        done = await Job.count().where(Job.id.is_in(ids) & (Job.status == "DONE"))
        return done == len(ids)

    assert await wait_for(all_done, timeout=180), worker.output()[-3000:]
    started = (
        await Job.select(Job.tier, Job.started_at)
        .where(Job.id.is_in(jobs["ai-basic"] + jobs["ai-lite"]))
        .order_by(Job.started_at)
    )
    order = [row["tier"] for row in started]
    # Only the stretch where both queues still had messages tells the weighting apart:
    # up to the last start of the tier that ran out first.
    cut = min(len(order) - 1 - order[::-1].index(tier) for tier in jobs)
    contested = order[: cut + 1]
    ratio = contested.count("ai-basic") / max(1, contested.count("ai-lite"))
    print(f"basic:lite start order over {len(contested)} contested jobs -> {ratio:.2f}:1")
    assert 2.0 <= ratio <= 4.5, "".join("B" if t == "ai-basic" else "l" for t in order)


async def test_sigterm_lets_running_jobs_finish_and_returns_the_rest_at_once(
    tenant, cpu_queues, start_worker
):
    lite = get_settings().queue_for("ai-lite")
    # One thread holds two messages (prefetch = 2 x threads): one runs, one waits.
    worker = start_worker(["ai-lite"], threads=1)
    running = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=3)

    async def is_running() -> bool:
        row = await test_actors.job_row(running.id)
        return bool(row and row["status"] == "RUNNING")

    assert await wait_for(is_running, timeout=60), worker.output()[-3000:]
    waiting = [
        await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
        for _ in range(3)
    ]

    async def prefetched() -> bool:
        return counts(lite)["in_flight"] >= 2

    assert await wait_for(prefetched, timeout=30), worker.output()[-3000:]
    worker.proc.send_signal(signal.SIGTERM)  # one SIGTERM, to the master only
    assert await wait_for(exited(worker.proc), timeout=60)
    out = worker.output()
    assert worker.proc.returncode == 0, out[-3000:]
    # The running job finished; what was only held went back with visibility 0.
    row = await test_actors.job_row(running.id)
    assert row["status"] == "DONE" and row["attempts"] == 1
    assert counts(lite) == {"visible": 3, "in_flight": 0, "delayed": 0}
    assert "Graceful shutdown" in names(out)
    for job in waiting:
        assert (await test_actors.job_row(job.id))["status"] == "PENDING"
    again = start_worker(["ai-lite"], threads=2)

    async def all_done() -> bool:
        rows = [await test_actors.job_row(j.id) for j in waiting]
        return all(r and r["status"] == "DONE" for r in rows)

    assert await wait_for(all_done, timeout=60), again.output()[-3000:]
    assert len([e for e in events(out) if e["event"] == "SQS_JOB_COMPLETED"]) == 1


async def test_worker_exposes_dramatiq_metrics_on_loopback_only(tenant, start_worker):
    import socket

    import httpx

    from ops.runtime import free_port

    port = free_port()
    purge(get_settings().queue_for("messaging"))
    worker = start_worker(["messaging"], env={"WORKER_METRICS_PORT": str(port)})
    await submit(PROBES["messaging"], tenant_id=tenant.id, kind="probe")

    async def scraped() -> str | None:
        try:
            async with httpx.AsyncClient(timeout=2) as c:
                r = await c.get(f"http://127.0.0.1:{port}/")
        except httpx.HTTPError:
            return None
        # Families appear once the worker has processed a message.
        return r.text if r.status_code == 200 and "dramatiq_messages_total" in r.text else None

    text = await wait_for(scraped, timeout=60)
    assert text, worker.output()[-3000:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # no packet sent: picks the outward address
        outward = probe.getsockname()[0]
    if not outward.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((outward, port), timeout=2):
            pass
