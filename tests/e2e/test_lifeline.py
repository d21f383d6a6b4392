"""The job lifeline: the job row is the truth, SQS the transport. A message deleted from
its queue mid-job, a purged queue and a message delivered twice each end in one result."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from actors.jobs import lifeline, registered, submit
from models.db import connection
from ops import metrics
from ops.queues import sqs_client
from ops.settings import get_settings
from tests import actors as test_actors
from tests.conftest import wait_for
from tests.e2e.test_excel_e2e import poll, upload
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import messy_rows, write_xlsx
from tests.sqs_helpers import counts, decode, purge, receive

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


@pytest.fixture
def lite_queue(broker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The ai-lite queue, empty, with a lifeline that re-sends as soon as a job has been
    silent for one visibility timeout (no margin)."""
    monkeypatch.setenv("JOB_LIFELINE_MARGIN_SECONDS", "0")
    get_settings.cache_clear()
    q = get_settings().queue_for("ai-lite")
    purge(q, f"{q}-dlq")
    yield q
    purge(q, f"{q}-dlq")
    monkeypatch.delenv("JOB_LIFELINE_MARGIN_SECONDS")
    get_settings.cache_clear()


def take(queue: str) -> Any:
    """Receive one message and delete it: what a lost message looks like to the system."""
    got = receive(queue, max_messages=1, visibility=30)
    assert len(got) == 1, got
    client = sqs_client(get_settings())
    url = client.get_queue_url(QueueName=queue)["QueueUrl"]
    client.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    return decode(got[0]["Body"])


async def job(job_id: Any) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM job WHERE id = $1", uuid.UUID(str(job_id)))
    assert row is not None
    return dict(row)


async def resent(job_id: Any, times: int) -> bool:
    """Run lifeline rounds until ``job_id`` has been re-sent ``times`` times."""

    async def check() -> bool:
        await lifeline()
        return bool((await job(job_id))["lifeline_resends"] >= times)

    return bool(await wait_for(check, timeout=60, interval=0.5))


async def students_of(tenant: Any) -> int:
    async with connection() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM student WHERE tenant = $1", tenant.id))


async def import_of(tenant: Any, rows: int) -> str:
    await create_lecture(tenant, code=f"LL-{uuid.uuid4().hex[:6]}", capacity=50)
    return await upload(tenant, write_xlsx(messy_rows(rows, seed=3)))


async def test_a_message_lost_mid_job_is_resent_from_its_step(
    tenant: Any, lite_queue: str, start_worker: Any
) -> None:
    job_id = await import_of(tenant, 6)
    # The first step runs here, as a worker would run it; it sends the second step.
    first = take(lite_queue)
    await registered()[first.actor_name](**first.kwargs)
    second = take(lite_queue)  # ... and that message is lost
    row = await job(job_id)
    assert row["status"] == "RUNNING" and row["step_actor"] == second.actor_name
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}

    worker = start_worker(["ai-lite"])
    assert await resent(job_id, 1), worker.output()[-3000:]
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    assert body["result"]["created"] == 6
    assert await students_of(tenant) == 6
    assert (await job(job_id))["lifeline_resends"] == 1


async def test_a_purged_queue_loses_nothing(
    tenant: Any, lite_queue: str, start_worker: Any
) -> None:
    imported = await import_of(tenant, 4)
    slept = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    client = sqs_client(get_settings())
    client.purge_queue(QueueUrl=client.get_queue_url(QueueName=lite_queue)["QueueUrl"])
    assert counts(lite_queue)["visible"] == 0

    worker = start_worker(["ai-lite"])
    assert await resent(imported, 1) and await resent(slept.id, 1), worker.output()[-3000:]
    body = await poll(tenant, imported, worker)
    assert body["status"] == "DONE" and body["result"]["created"] == 4, body
    assert await students_of(tenant) == 4

    async def slept_done() -> dict[str, Any] | None:
        row = await job(slept.id)
        return row if row["status"] == "DONE" else None

    assert await wait_for(slept_done, timeout=60), worker.output()[-3000:]


async def test_a_message_delivered_twice_gives_one_result(
    tenant: Any, lite_queue: str, start_worker: Any
) -> None:
    job_id = await import_of(tenant, 5)
    original = take(lite_queue)
    # Both copies go back: two deliveries of the first step, and later of every next one.
    for _ in range(2):
        registered()[original.actor_name].send(**original.kwargs)
    worker = start_worker(["ai-lite"], threads=2)
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    assert body["result"]["created"] == 5
    assert await students_of(tenant) == 5
    # The lifeline sees a finished job and sends nothing.
    await lifeline()
    assert (await job(job_id))["lifeline_resends"] == 0


async def test_a_job_lost_again_and_again_fails_lost_in_transit(
    tenant: Any, lite_queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_LIFELINE_MAX_RESENDS", "1")
    get_settings.cache_clear()
    row = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    take(lite_queue)
    assert await resent(row.id, 1)
    take(lite_queue)  # the re-sent copy is lost too

    async def failed() -> dict[str, Any] | None:
        await lifeline()
        found = await job(row.id)
        return found if found["status"] == "FAILED" else None

    found = await wait_for(failed, timeout=60, interval=0.5)
    assert found and found["error"].startswith("lost_in_transit"), found
    assert found["lifeline_resends"] == 1
    assert counts(lite_queue)["visible"] == 0

    exposed = metrics.parse(await metrics.collect())
    key = (
        "academy_job_lifeline_resends_total",
        frozenset({("actor", "test.sleep"), ("tier", "ai-lite")}),
    )
    assert exposed[key] >= 1
