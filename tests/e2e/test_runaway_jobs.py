"""Runaway jobs through real worker processes: a step that outgrows the worker's memory
ceiling ends FAILED and the worker goes on; a message that keeps killing its workers is
recognised by SQS's receive count, its job FAILED ``worker_killed`` and the message
dead-lettered, instead of a job RUNNING for ever."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actors.jobs import submit
from ops.settings import get_settings
from tests import actors as test_actors
from tests.conftest import wait_for
from tests.sqs_helpers import counts, decode, receive, release

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


def finished(job_id: Any) -> Any:
    async def check() -> Any:
        row = await test_actors.job_row(job_id)
        return row if row and row["status"] in ("DONE", "FAILED") else None

    return check


async def test_killed_workers_and_memory_ceiling_end_jobs_failed(
    tenant: Any, lite_queue: str, start_worker: Any
) -> None:
    # A short visibility timeout: the killed worker's message comes back in 2 s.
    env = {"SQS_VISIBILITY_TIMEOUT_AI_LITE": "2", "WORKER_MEMORY_LIMIT_MB": "512"}
    assert get_settings().job_max_receives == 3
    first = start_worker(["ai-lite"], env=env)
    job = await submit(test_actors.die, tenant_id=tenant.id, kind="test")

    async def exited() -> bool:
        return first.proc.poll() is not None

    assert await wait_for(exited, timeout=60), first.output()[-3000:]
    row = await test_actors.job_row(job.id)
    assert row and (row["status"], row["attempts"]) == ("RUNNING", 1)

    # A job queued behind it, not started yet.
    innocent = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)

    # A second worker that died holding both: each received once more and never deleted
    # (held out of sight until then, so neither is received more often).
    received: dict[str, int] = {}
    held: dict[str, str] = {}

    async def held_by_dead_workers() -> bool:
        for m in receive(lite_queue, visibility=30):
            key = decode(m["Body"]).kwargs["job_id"]
            received[key] = int(m["Attributes"]["ApproximateReceiveCount"])
            held[key] = m["ReceiptHandle"]
            if received[key] < 2:
                release(lite_queue, held.pop(key))
        return received.get(str(job.id), 0) >= 2 and received.get(str(innocent.id), 0) >= 2

    assert await wait_for(held_by_dead_workers, timeout=30), received
    for handle in held.values():
        release(lite_queue, handle)

    second = start_worker(["ai-lite"], env=env)
    row = await wait_for(finished(job.id), timeout=60)
    assert row and row["status"] == "FAILED", second.output()[-3000:]
    assert row["error_code"] == "worker_killed"
    assert row["error"].startswith("worker_killed: exceeded memory limit")
    assert row["attempts"] == 1  # the third delivery did not run the step
    # The job that never started runs, though its message came back as often.
    row = await wait_for(finished(innocent.id), timeout=60)
    assert row and (row["status"], row["attempts"]) == ("DONE", 1), second.output()[-3000:]
    redelivered = [
        json.loads(line)
        for line in second.output().splitlines()
        if '"SQS_MESSAGE_REDELIVERED"' in line and str(innocent.id) in line
    ]
    assert redelivered and redelivered[0]["receive_count"] >= 3

    async def dead_lettered() -> list[dict[str, Any]]:
        return receive(f"{lite_queue}-dlq")

    dlq = await wait_for(dead_lettered, timeout=30)
    assert len(dlq) == 1
    assert decode(dlq[0]["Body"]).kwargs["job_id"] == str(job.id)
    assert dlq[0]["MessageAttributes"]["reason"]["StringValue"] == "worker_killed"
    assert '"event": "JOB_WORKER_KILLED"' in second.output()

    # Under its memory ceiling, a step asking for more fails at once (not retried)...
    hog = await submit(test_actors.hog, tenant_id=tenant.id, kind="test", mib=1024)
    row = await wait_for(finished(hog.id), timeout=60)
    assert row and row["status"] == "FAILED", second.output()[-3000:]
    assert row["error_code"] == "out_of_memory"
    assert row["error"].startswith("out_of_memory: exceeded memory limit")
    assert "512 MiB" in row["error"] and row["attempts"] == 1
    assert '"event": "WORKER_MEMORY_CEILING"' in second.output()

    # ...and the same worker process serves the next job.
    ok = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    row = await wait_for(finished(ok.id), timeout=60)
    assert row and row["status"] == "DONE", second.output()[-3000:]
    assert second.proc.poll() is None
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}
