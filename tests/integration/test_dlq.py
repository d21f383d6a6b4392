"""DLQ tools over the local SQS server: list (with the linked job and reconciliation of a
job whose message SQS dead-lettered natively), redrive by id, and purge with confirmation."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from actors.jobs import fail_job, start_job, submit
from ops.commands import dlq
from ops.queues import sqs_client
from ops.settings import get_settings
from tests import actors as test_actors
from tests.conftest import wait_for
from tests.sqs_helpers import counts, decode, receive

pytestmark = pytest.mark.usefixtures("broker")


async def exhausted(tenant: Any, queue: str) -> Any:
    """A job whose retries ran out: FAILED with its error, its message copied to the DLQ
    as our consumer's nack does."""
    job = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    (sent,) = receive(queue, visibility=30)
    await start_job(str(job.id))
    await fail_job(str(job.id), "RuntimeError: the printer is on fire")
    client = sqs_client(get_settings())
    client.send_message(
        QueueUrl=client.get_queue_url(QueueName=f"{queue}-dlq")["QueueUrl"],
        MessageBody=sent["Body"],
        MessageAttributes={
            "source_queue": {"DataType": "String", "StringValue": queue},
            "reason": {"DataType": "String", "StringValue": "retries exhausted"},
        },
    )
    client.delete_message(
        QueueUrl=client.get_queue_url(QueueName=queue)["QueueUrl"],
        ReceiptHandle=sent["ReceiptHandle"],
    )
    return job


async def natively_dead(tenant: Any, queue: str) -> Any:
    """A job whose worker died on every receive: SQS moved it; the row still says RUNNING."""
    job = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0)
    await start_job(str(job.id))
    for _ in range(get_settings().sqs_max_receive_count):
        assert len(receive(queue, visibility=0)) == 1
    assert receive(queue, visibility=0) == []
    return job


async def test_list_links_jobs_and_reconciles_natively_dead_letters(tenant, lite_queue, capsys):
    failed = await exhausted(tenant, lite_queue)
    stuck = await natively_dead(tenant, lite_queue)
    assert (await test_actors.job_row(stuck.id))["status"] == "RUNNING"

    letters, fixed = await dlq.list_letters("ai-lite")
    by_job = {d.job_id: d for d in letters}
    assert set(by_job) == {str(failed.id), str(stuck.id)}
    assert by_job[str(failed.id)].source == "retries exhausted"
    assert by_job[str(failed.id)].error == "RuntimeError: the printer is on fire"
    assert by_job[str(failed.id)].actor == "test.sleep"
    assert by_job[str(failed.id)].args == '{"seconds": 0}'
    assert by_job[str(stuck.id)].source == "native redrive"
    assert by_job[str(stuck.id)].receive_count >= get_settings().sqs_max_receive_count
    assert [d.job_id for d in fixed] == [str(stuck.id)]
    row = await test_actors.job_row(stuck.id)
    assert row["status"] == "FAILED" and "dead-lettered by SQS" in row["error"]
    # Listing leaves every message where it was, visible.
    assert counts(f"{lite_queue}-dlq") == {"visible": 2, "in_flight": 0, "delayed": 0}

    text = dlq.render(letters)
    assert "test.sleep" in text and "the printer is on fire" in text and str(stuck.id) in text
    # A second listing has nothing left to reconcile.
    assert (await dlq.list_letters("ai-lite"))[1] == []


async def test_redrive_one_by_job_id_and_a_worker_finishes_it(tenant, lite_queue, start_worker):
    failed = await exhausted(tenant, lite_queue)
    other = await exhausted(tenant, lite_queue)
    moved, problems = await dlq.redrive("ai-lite", {str(failed.id), "no-such-id"})
    assert moved == 1 and problems == ["no-such-id: not in academy-ai-jobs-lite-dlq"]
    row = await test_actors.job_row(failed.id)
    assert row["status"] == "PENDING" and row["error"] is None and row["stage"] == "redriven"
    assert counts(f"{lite_queue}-dlq")["visible"] == 1
    (back,) = receive(lite_queue, visibility=0)
    message = decode(back["Body"])
    assert message.kwargs["job_id"] == str(failed.id) and "retries" not in message.options
    assert (await test_actors.job_row(other.id))["status"] == "FAILED"

    worker = start_worker(["ai-lite"])

    async def done() -> Any:
        r = await test_actors.job_row(failed.id)
        return r if r["status"] == "DONE" else None

    assert await wait_for(done, timeout=60), worker.output()[-3000:]


async def test_purge_asks_first(tenant, lite_queue, monkeypatch, capsys):
    await exhausted(tenant, lite_queue)
    await natively_dead(tenant, lite_queue)
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # not a terminal
    assert await dlq._main(_args("purge", "ai-lite", yes=False)) == 1
    assert counts(f"{lite_queue}-dlq")["visible"] == 2
    assert await dlq._main(_args("purge", "ai-lite", yes=True)) == 0
    assert counts(f"{lite_queue}-dlq") == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert "2 message(s) deleted" in capsys.readouterr().out


async def test_list_command_prints_a_table(tenant, lite_queue, capsys):
    await exhausted(tenant, lite_queue)
    assert await dlq._main(_args("list", "ai-cpu")) == 0
    out = capsys.readouterr().out
    assert "academy-ai-jobs-basic-dlq: 0 message(s)" in out
    assert "academy-ai-jobs-lite-dlq: 1 message(s)" in out and "test.sleep" in out


def test_unknown_tier_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="unknown worker tier"):
        dlq.tiers_for("gpu-fast")


def test_undecodable_letters_are_listed_not_crashed() -> None:
    raw = {
        "MessageId": "m-1",
        "ReceiptHandle": "r",
        "Body": base64.b64encode(b"not a message").decode(),
        "Attributes": {"ApproximateReceiveCount": "4"},
    }
    letter = dlq._parse(raw)
    assert not letter.decodable and letter.error == "undecodable message body"


def _args(command: str, tier: str, **kw: Any) -> Any:
    import argparse

    return argparse.Namespace(command=command, tier=tier, id=kw.get("id"), yes=kw.get("yes"))
