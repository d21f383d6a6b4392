"""A job's life through the real broker path: HTTP-speaking SQS, real worker processes."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from actors.jobs import submit, sweep_unsent
from models.db import transaction
from models.tables import Job
from ops.settings import get_settings
from tests import actors as test_actors
from tests.conftest import wait_for
from tests.sqs_helpers import counts, decode, purge, receive

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def lite_queue(broker):
    q = get_settings().queue_for("ai-lite")
    purge(q, f"{q}-dlq")
    yield q
    purge(q, f"{q}-dlq")


def _done(job_id):
    async def check():
        row = await test_actors.job_row(job_id)
        return row if row and row["status"] in ("DONE", "FAILED") else None

    return check


async def test_send_happens_after_commit_and_rollback_sends_nothing(tenant, lite_queue):
    async with transaction():
        kept = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
        # Inside the transaction nothing has reached the queue yet.
        assert counts(lite_queue)["visible"] == 0
    assert counts(lite_queue)["visible"] == 1
    assert (await test_actors.job_row(kept.id))["sent_at"] is not None

    with pytest.raises(RuntimeError):
        async with transaction():
            dropped = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
            raise RuntimeError("roll back")
    assert counts(lite_queue)["visible"] == 1
    assert await test_actors.job_row(dropped.id) is None


async def test_job_runs_end_to_end_and_logs_events(tenant, lite_queue, start_worker):
    worker = start_worker(["ai-lite"])
    job = await submit(
        test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0.1, request_id="req-e2e-1"
    )
    row = await wait_for(_done(job.id), timeout=60)
    assert row and row["status"] == "DONE", worker.output()[-3000:]
    assert row["result"] == {"slept": 0.1, "attempt": 1}
    assert row["progress"] == 100
    out = worker.output()
    assert '"event": "SQS_MESSAGE_RECEIVED"' in out and '"event": "SQS_JOB_COMPLETED"' in out
    assert '"request_id": "req-e2e-1"' in out
    for field in ("queue_wait_sec", "processing_duration", "total_duration"):
        assert f'"{field}"' in out


async def test_killed_worker_job_is_redelivered_and_finishes(tenant, lite_queue, start_worker):
    vt = get_settings().visibility_timeouts["ai-lite"]
    first = start_worker(["ai-lite"])
    job = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=3)

    async def running():
        row = await test_actors.job_row(job.id)
        return row if row and row["status"] == "RUNNING" else None

    assert await wait_for(running, timeout=60), first.output()[-3000:]
    first.kill9()
    killed_at = time.monotonic()
    second = start_worker(["ai-lite"])

    async def rerun():
        row = await test_actors.job_row(job.id)
        return row if row and row["attempts"] >= 2 else None

    # Redelivery is bounded by the visibility timeout (twice it, with worker start-up).
    assert await wait_for(rerun, timeout=2 * vt), second.output()[-3000:]
    row = await wait_for(_done(job.id), timeout=30)
    assert row["status"] == "DONE" and row["result"]["attempt"] == 2
    print(f"killed -> DONE in {time.monotonic() - killed_at:.1f}s (visibility {vt}s)")
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_heartbeat_keeps_a_slow_job_from_redelivery(tenant, lite_queue, start_worker):
    vt = get_settings().visibility_timeouts["ai-lite"]
    # Two idle threads are ready to take a redelivered copy if the heartbeat failed.
    worker = start_worker(["ai-lite"], threads=2)
    job = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=vt * 2.5)
    row = await wait_for(_done(job.id), timeout=vt * 2.5 + 60)
    assert row and row["status"] == "DONE", worker.output()[-3000:]
    assert row["attempts"] == 1, "the job was redelivered while its worker was alive"
    assert worker.output().count('"event": "SQS_MESSAGE_RECEIVED"') == 1


async def test_retry_beyond_the_sqs_delay_limit_is_not_lost(tenant, start_worker):
    # On its own queue: the delayed copy stays there for 15 minutes.
    queue = get_settings().queue_for("ai-premium")
    purge(queue)
    worker = start_worker(["ai-premium"])
    # Two hours: dramatiq-sqs would raise MessageDelayTooLong and the ack would drop it.
    job = await submit(
        test_actors.retry_later, tenant_id=tenant.id, kind="test", delay_ms=2 * 3600 * 1000
    )

    async def delayed():
        c = counts(queue)
        return c if c["delayed"] >= 1 else None

    assert await wait_for(delayed, timeout=60), worker.output()[-3000:]
    row = await test_actors.job_row(job.id)
    assert row["status"] == "RUNNING" and row["attempts"] == 1
    assert "MessageDelayTooLong" not in worker.output()

    # Silent on purpose until the retry arrives (15 minutes): not a lost message.
    async def silence_expected():
        row = await test_actors.job_row(job.id)
        return row["heartbeat_at"] - row["started_at"] > dt.timedelta(minutes=14)

    assert await wait_for(silence_expected, timeout=30), worker.output()[-3000:]


async def test_flaky_job_retries_then_succeeds(tenant, lite_queue, start_worker):
    worker = start_worker(["ai-lite"])
    job = await submit(test_actors.flaky, tenant_id=tenant.id, kind="test", failures=2)
    row = await wait_for(_done(job.id), timeout=90)
    assert row and row["status"] == "DONE", worker.output()[-3000:]
    assert row["attempts"] == 3


async def test_poison_message_lands_in_dlq_and_job_fails(tenant, lite_queue, start_worker):
    worker = start_worker(["ai-lite"])
    job = await submit(test_actors.poison, tenant_id=tenant.id, kind="test")
    row = await wait_for(_done(job.id), timeout=60)
    assert row and row["status"] == "FAILED", worker.output()[-3000:]
    assert "this message always fails" in row["error"]
    dlq = receive(f"{lite_queue}-dlq")
    assert len(dlq) == 1
    message = decode(dlq[0]["Body"])
    assert message.actor_name == "test.poison" and message.kwargs["job_id"] == str(job.id)
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_native_redrive_moves_a_message_that_keeps_dying(tenant, lite_queue):
    """A worker that dies on a message never acks or nacks it; SQS itself must move it to
    the DLQ after maxReceiveCount receives (set by provisioning)."""
    max_receives = get_settings().sqs_max_receive_count
    await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    for _ in range(max_receives):
        assert len(receive(lite_queue, visibility=0)) == 1
    assert receive(lite_queue, visibility=0) == []
    assert len(receive(f"{lite_queue}-dlq")) == 1


async def test_sweeper_sends_a_committed_but_unsent_job(tenant, lite_queue, start_worker):
    row = Job(
        tenant=tenant.id,
        kind="test",
        tier="ai-lite",
        actor_name="test.sleep",
        message={"seconds": 0, "request_id": "swept"},
    )
    await row.save()  # as if the process died between COMMIT and the send
    assert counts(lite_queue)["visible"] == 0
    assert await sweep_unsent(older_than_seconds=0) >= 1
    start_worker(["ai-lite"])
    done = await wait_for(_done(row.id), timeout=60)
    assert done and done["status"] == "DONE"
    assert await sweep_unsent(older_than_seconds=0) == 0
