"""Prometheus itself reads what the API serves: promtool checks a live /metrics body, and a
real Prometheus (loopback, temporary data dir, 1 s scrapes with the bearer token) scrapes a
real API process, finds a series for every metric the Grafana dashboard and the alert rules
query, answers every one of their queries, and puts the DLQ alert in pending once a job's
message has been dead-lettered by SQS."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.benchmarks.server import api_server
from tests.conftest import wait_for
from tests.integration.test_dlq import natively_dead
from tests.integration.test_metrics import add_job
from tests.prometheus import alert_exprs, dashboard_exprs, prometheus, promtool, used_metrics

TOKEN = f"scrape-{secrets.token_hex(16)}"
# Generous: a broken setup is waited for this long, nothing is timed.
DEADLINE = 90


async def test_a_live_metrics_body_passes_promtool(tenant, client, broker):
    actor = f"promtool.case_{secrets.token_hex(4)}"
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    times = {"created_at": t0, "sent_at": t0, "started_at": t0 + dt.timedelta(seconds=1)}
    await add_job(tenant.id, actor, "DONE", finished_at=t0 + dt.timedelta(seconds=3), **times)
    await add_job(tenant.id, actor, "FAILED", attempts=3, finished_at=t0, **times)
    await add_job(tenant.id, actor, "PENDING", attempts=0, created_at=t0)

    r = await client.get("/metrics")
    assert r.status_code == 200 and f'actor="{actor}"' in r.text
    promtool("check", "metrics", stdin=r.text)


async def test_a_real_prometheus_scrapes_the_api_and_the_dlq_alert_goes_pending(
    tenant, lite_queue, tmp_path: Path
):
    async with api_server(tenant, env={"METRICS_TOKEN": TOKEN}) as api:
        target = api.base.removeprefix("http://")
        with prometheus(target, TOKEN, tmp_path) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as prom:
                await _scraped(prom, tmp_path)
                await natively_dead(tenant, lite_queue)
                await _every_used_metric_has_a_series(prom)
                await _every_query_is_answered(prom)
                await _dlq_alert_pending(prom, f"{lite_queue}-dlq")


async def _get(prom: httpx.AsyncClient, path: str, **params: Any) -> Any:
    try:
        r = await prom.get(path, params=params)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]


async def _scraped(prom: httpx.AsyncClient, workdir: Path) -> None:
    """The target is up: Prometheus reached /metrics with the token and parsed it."""

    async def up() -> bool:
        data = await _get(prom, "/api/v1/targets")
        active = data["activeTargets"] if data else []
        return bool(active) and all(t["health"] == "up" for t in active)

    if not await wait_for(up, timeout=DEADLINE, interval=0.5):
        targets = await _get(prom, "/api/v1/targets")
        log = (workdir / "prometheus.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"target never up: {targets}\n{log}")


async def _every_used_metric_has_a_series(prom: httpx.AsyncClient) -> None:
    wanted = used_metrics()
    missing: set[str] = set(wanted)

    async def all_found() -> bool:
        for name in sorted(missing):
            if await _get(prom, "/api/v1/series", **{"match[]": name}):
                missing.discard(name)
        return not missing

    assert await wait_for(all_found, timeout=DEADLINE, interval=1), f"no series: {missing}"


async def _every_query_is_answered(prom: httpx.AsyncClient) -> None:
    """Prometheus parses and evaluates every dashboard query (the ``$tier`` variable set to
    all) and every alert expression."""
    for expr in [*dashboard_exprs(), *alert_exprs().values()]:
        r = await prom.get("/api/v1/query", params={"query": expr.replace("$tier", ".*")})
        assert r.status_code == 200 and r.json()["status"] == "success", (expr, r.text)


async def _dlq_alert_pending(prom: httpx.AsyncClient, dlq: str) -> None:
    async def pending() -> bool:
        data = await _get(prom, "/api/v1/alerts")
        return any(
            a["labels"].get("alertname") == "AcademyDeadLettersPresent"
            and a["labels"].get("queue") == dlq
            and a["state"] == "pending"
            for a in (data or {}).get("alerts", [])
        )

    if not await wait_for(pending, timeout=DEADLINE, interval=1):
        pytest.fail(f"no pending DLQ alert for {dlq}: {await _get(prom, '/api/v1/alerts')}")
