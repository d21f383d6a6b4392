"""GET /metrics (Prometheus text from SQS attributes and the job table) and the admin ops
view GET /api/v1/ops/queues."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import httpx
import pytest

from actors.jobs import submit
from actors.system import PROBES
from models.tables import Job
from ops.metrics import BUCKETS, parse
from ops.queues import sqs_client
from ops.settings import get_settings
from tests.conftest import wait_for
from tests.sqs_helpers import purge

NOW = dt.datetime.now(dt.UTC)


def sample(text: str, name: str, **labels: str) -> float:
    found = parse(text)
    key = (name, frozenset(labels.items()))
    assert key in found, f"{name}{labels} not in metrics"
    return found[key]


async def add_job(tenant_id: Any, actor: str, status: str, **times: Any) -> Job:
    row = Job(
        tenant=tenant_id,
        kind="test",
        tier="ai-lite",
        actor_name=actor,
        status=status,
        attempts=times.pop("attempts", 1),
        **times,
    )
    await row.save()
    return row


async def scrape(client: httpx.AsyncClient, **kw: Any) -> httpx.Response:
    return await client.get("/metrics", **kw)


async def test_metrics_count_jobs_by_actor_with_histograms(tenant, client):
    actor = f"metrics.case_{secrets.token_hex(4)}"
    t0 = NOW - dt.timedelta(minutes=10)
    # Waited 2 s, ran 0.3 s / 7 s / 40 s; one failed after three attempts; one pending.
    for run, status, attempts in ((0.3, "DONE", 1), (7, "DONE", 2), (40, "FAILED", 3)):
        await add_job(
            tenant.id,
            actor,
            status,
            attempts=attempts,
            created_at=t0,
            sent_at=t0,
            started_at=t0 + dt.timedelta(seconds=2),
            finished_at=t0 + dt.timedelta(seconds=2 + run),
        )
    await add_job(tenant.id, actor, "PENDING", attempts=0, created_at=NOW, sent_at=NOW)

    r = await scrape(client)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    labels = {"actor": actor, "tier": "ai-lite"}
    assert sample(text, "academy_jobs_finished_total", **labels, outcome="done") == 2
    assert sample(text, "academy_jobs_finished_total", **labels, outcome="failed") == 1
    assert sample(text, "academy_job_retries_total", **labels) == 3
    assert sample(text, "academy_jobs_current", **labels, status="pending") == 1
    assert sample(text, "academy_job_processing_seconds_count", **labels) == 3
    assert sample(text, "academy_job_processing_seconds_sum", **labels) == pytest.approx(47.3)
    bucket = {
        b: sample(text, "academy_job_processing_seconds_bucket", **labels, le=le)
        for b, le in ((0.5, "0.5"), (5, "5"), (10, "10"), (30, "30"), (60, "60"))
    }
    assert bucket == {0.5: 1, 5: 1, 10: 2, 30: 2, 60: 3}
    assert sample(text, "academy_job_processing_seconds_bucket", **labels, le="+Inf") == 3
    assert sample(text, "academy_job_queue_wait_seconds_bucket", **labels, le="2.5") == 3
    assert sample(text, "academy_job_queue_wait_seconds_sum", **labels) == pytest.approx(6)
    # Buckets are cumulative.
    counts = [
        sample(
            text,
            "academy_job_processing_seconds_bucket",
            **labels,
            le=str(b).rstrip("0").rstrip(".") if isinstance(b, float) else str(b),
        )
        for b in BUCKETS
    ]
    assert counts == sorted(counts)
    assert sample(text, "academy_queue_oldest_pending_job_age_seconds", tier="ai-lite") >= 0


async def test_metrics_report_real_queue_and_dlq_depth(client, broker):
    settings = get_settings()
    queue = settings.queue_for("messaging")
    purge(queue, f"{queue}-dlq")
    sqs = sqs_client(settings)
    for name, n in ((queue, 3), (f"{queue}-dlq", 2)):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        for i in range(n):
            sqs.send_message(QueueUrl=url, MessageBody=f"probe-{i}")
    try:
        text = (await scrape(client)).text
        common = {"queue": queue, "tier": "messaging"}
        assert sample(text, "academy_sqs_messages_visible", **common, kind="queue") == 3
        dlq = {"queue": f"{queue}-dlq", "tier": "messaging", "kind": "dlq"}
        assert sample(text, "academy_sqs_messages_visible", **dlq) == 2
        assert sample(text, "academy_sqs_messages_in_flight", **common, kind="queue") == 0
        assert sample(text, "academy_sqs_up", **common, kind="queue") == 1
    finally:
        purge(queue, f"{queue}-dlq")


async def test_metrics_after_a_real_worker_run(tenant, client, start_worker):
    lite = get_settings().queue_for("ai-lite")
    purge(lite)
    job = await submit(PROBES["ai-lite"], tenant_id=tenant.id, kind="probe")
    worker = start_worker(["ai-lite"])

    async def done() -> bool:
        row = await Job.select(Job.status).where(Job.id == job.id).first()
        return bool(row and row["status"] == "DONE")

    assert await wait_for(done, timeout=60), worker.output()[-3000:]
    text = (await scrape(client)).text
    labels = {"actor": "system.probe_ai_lite", "tier": "ai-lite"}
    assert sample(text, "academy_jobs_finished_total", **labels, outcome="done") >= 1
    assert sample(text, "academy_job_processing_seconds_count", **labels) >= 1


async def test_metrics_refuse_public_networks_without_a_token(app):
    transport = httpx.ASGITransport(app=app, client=("8.8.4.4", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as public:
        r = await public.get("/metrics")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_metrics_token_is_required_when_set(app, monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "scrape-secret-123")
    get_settings.cache_clear()
    try:
        transport = httpx.ASGITransport(app=app, client=("8.8.4.4", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/metrics")).status_code == 401
            bad = {"Authorization": "Bearer wrong"}
            assert (await c.get("/metrics", headers=bad)).status_code == 401
            good = {"Authorization": "Bearer scrape-secret-123"}
            r = await c.get("/metrics", headers=good)
            assert r.status_code == 200 and "academy_sqs_up" in r.text
    finally:
        monkeypatch.delenv("METRICS_TOKEN")
        get_settings.cache_clear()


async def test_ops_queues_for_admins_shows_own_failures_only(make_tenant, client, broker):
    mine, other = await make_tenant(), await make_tenant()
    actor = f"ops.case_{secrets.token_hex(4)}"
    finished = NOW - dt.timedelta(minutes=5)
    await add_job(mine.id, actor, "FAILED", error="RuntimeError: boom", finished_at=finished)
    await add_job(mine.id, actor, "DONE", finished_at=finished)
    await add_job(other.id, actor, "FAILED", error="RuntimeError: secret", finished_at=finished)

    r = await client.get("/api/v1/ops/queues", headers=await mine.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert {q["tier"] for q in body["queues"]} == set(get_settings().queues)
    assert all(
        q["reachable"] and q["depth"] is not None and q["dlq"] is not None for q in body["queues"]
    )
    row = next(a for a in body["failures_by_actor"] if a["actor"] == actor)
    assert (row["failed_24h"], row["done_24h"], row["last_error"]) == (1, 1, "RuntimeError: boom")
    errors = [f["error"] for f in body["recent_failures"]]
    assert "RuntimeError: boom" in errors and "RuntimeError: secret" not in errors

    teacher = await mine.add_user("teacher")
    r = await client.get("/api/v1/ops/queues", headers=await mine.headers(teacher, "password-123"))
    assert r.status_code == 403
    assert (await client.get("/api/v1/ops/queues")).status_code == 401
