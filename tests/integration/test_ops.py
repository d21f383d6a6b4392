"""Provisioning, storage, readiness and the tenant CLI."""

from __future__ import annotations

import json

import httpx
import pytest

from ops import storage
from ops.commands.provision import provision
from ops.commands.readiness import render, run_checks
from ops.commands.tenants import create_tenant
from ops.queues import sqs_client
from ops.settings import get_settings


def test_provision_twice_changes_nothing(provisioned):
    again = provision()
    assert {resource for resource, _ in again} == {resource for resource, _ in provisioned}
    assert {action for _, action in again} == {"unchanged"}
    settings = get_settings()
    client = sqs_client(settings)
    for tier, name in settings.queues.items():
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        policy = json.loads(attrs["RedrivePolicy"])
        assert policy["deadLetterTargetArn"].endswith(f":{name}-dlq")
        assert int(policy["maxReceiveCount"]) == settings.sqs_max_receive_count
        assert int(attrs["VisibilityTimeout"]) == settings.visibility_timeouts[tier]


def test_provision_repairs_a_drifted_queue(provisioned):
    settings = get_settings()
    client = sqs_client(settings)
    name = settings.queue_for("messaging")
    url = client.get_queue_url(QueueName=name)["QueueUrl"]
    client.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "999"})
    report = dict(provision())
    assert report[f"sqs:{name}"] == "updated"
    attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert (
        int(attrs["Attributes"]["VisibilityTimeout"]) == settings.visibility_timeouts["messaging"]
    )


def test_presigned_put_then_get_round_trip(provisioned):
    bucket = get_settings().r2_storage_bucket
    key = storage.object_key("tests", "presigned.txt")
    put_url = storage.presigned_put(bucket, key, content_type="text/plain")
    r = httpx.put(put_url, content="안녕하세요".encode(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert storage.head(bucket, key)["ContentLength"] == len("안녕하세요".encode())
    r = httpx.get(storage.presigned_get(bucket, key))
    assert r.status_code == 200 and r.content.decode() == "안녕하세요"
    storage.delete(bucket, key)
    assert storage.head(bucket, key) is None


async def test_readiness_fails_when_no_worker_runs_the_probe(database, broker):
    from tests.sqs_helpers import purge

    checks = await run_checks(tiers=["video"], probe_timeout=2)
    purge(get_settings().queue_for("video"))
    by_name = {c.component: c for c in checks}
    assert by_name["database"].ok
    assert all(c.ok for name, c in by_name.items() if name.startswith(("queue", "bucket")))
    assert not by_name["worker video"].ok
    assert "no video worker ran the probe" in by_name["worker video"].detail
    assert "FAIL" in render(checks)


async def test_create_tenant_twice_is_refused(database):
    _, owner, password = await create_tenant("수학 학원", "Boss@Example.com ", slug="math-dup")
    assert owner.email == "boss@example.com" and len(password) >= 12
    assert owner.password_hash != password
    with pytest.raises(ValueError, match="already exists"):
        await create_tenant("수학 학원", "other@example.com", slug="math-dup")
