"""`just bench attendance`: bulk attendance (``PUT /api/v1/sessions/{id}/attendance``) under
load, over real HTTP on loopback, one uvicorn process driven by k6.

The school-day case: 16 teachers, each logged in with their own token (teacher role,
scoped to the lectures they teach), each checking their own 30-student session over and
over with random statuses, so most requests change rows and write audit rows and absence
events. The students take several lectures, so the teachers' classes share students, as
they do in an academy. Around them the academy is realistically sized: 10k students
(two guardians each), 200 more lectures of ~100 students, past sessions with their checks.

The second line is the older figure: 64 clients as the owner on the 100-student sessions.

While k6 runs, ``pg_stat_activity`` is sampled: what the API's connections wait on
(``Lock:transactionid`` = a row lock another transaction holds, ``LWLock:*`` = a shared
structure, ``IO:*``/``Client:*`` = not a wait on others). req/s is sessions/s; nothing is
asserted about speed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import os
import random
import resource
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from models.db import copy_records, ensure_configured
from tests.benchmarks.k6 import k6_run, report
from tests.benchmarks.server import api_server
from tests.factories import bulk_students
from tests.factories.lectures import user_id

STUDENTS, LECTURES, PAST_SESSIONS = 10_000, 200, 8
TEACHERS, CLASS_SIZE, TEACHER_POOL = 16, 30, 240  # 16 classes of 30 from 240 students
DURATION = os.environ.get("ATTENDANCE_BENCH_DURATION", "15s")
OWNER_VUS = 64

TEACHER_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
export const options = { vus: __ENV.VUS * 1, duration: __ENV.DURATION };
const classes = JSON.parse(open(__ENV.SESSIONS));
const statuses = ['present', 'present', 'present', 'late', 'absent'];
export default function () {
  // Each VU is one teacher, on their own session with their own token.
  const c = classes[(__VU - 1) % classes.length];
  const params = { headers: { Authorization: `Bearer ${c.token}`, 'Content-Type': 'application/json' } };
  const items = c.students.map((id) => ({ student_id: id, status: statuses[Math.floor(Math.random() * 5)] }));
  const r = http.put(`${__ENV.BASE}/api/v1/sessions/${c.id}/attendance`, JSON.stringify({ items }), params);
  check(r, { '200': (res) => res.status === 200 });
}
"""

OWNER_SCRIPT = """
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


def _lecture_rows(tenant_id: uuid.UUID, ids: list[uuid.UUID], teachers: list[Any]) -> list[tuple]:
    return [
        (lid, tenant_id, f"강의 {i}", "수학", 200, "[]", "open", teacher)
        for i, (lid, teacher) in enumerate(zip(ids, teachers, strict=True))
    ]


async def seed(tenant: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The academy; returns today's session of each teacher's class and of each office
    lecture (id and enrolled students), and the teachers' e-mails."""
    rng = random.Random(7)
    students = await bulk_students(tenant.id, STUDENTS, guardians_per_student=2)
    emails = [await tenant.add_user("teacher") for _ in range(TEACHERS)]
    teacher_ids = [await user_id(e) for e in emails]
    office = [uuid.uuid4() for _ in range(LECTURES)]
    classes = [uuid.uuid4() for _ in range(TEACHERS)]
    await copy_records(
        "lecture",
        ["id", "tenant", "title", "subject", "capacity", "schedule", "status", "teacher"],
        _lecture_rows(tenant.id, office + classes, [None] * LECTURES + teacher_ids),
    )
    enrolled: dict[uuid.UUID, list[uuid.UUID]] = collections.defaultdict(list)
    for sid in students:
        for lid in rng.sample(office, 2):
            enrolled[lid].append(sid)
    pool = students[:TEACHER_POOL]
    for lid in classes:
        enrolled[lid] = rng.sample(pool, CLASS_SIZE)
    await copy_records(
        "enrollment",
        ["id", "tenant", "student", "lecture", "status", "source"],
        [
            (uuid.uuid4(), tenant.id, sid, lid, "active", "manual")
            for lid, sids in enrolled.items()
            for sid in sids
        ],
    )
    today = dt.date.today()
    sessions: dict[uuid.UUID, uuid.UUID] = {}
    session_rows, checks = [], []
    for lid, sids in enrolled.items():
        for seq in range(1, PAST_SESSIONS + 2):
            sid_ = uuid.uuid4()
            day = today - dt.timedelta(days=7 * (PAST_SESSIONS + 1 - seq))
            session_rows.append((sid_, tenant.id, lid, seq, day, f"{seq}강"))
            if seq <= PAST_SESSIONS:
                checks += [
                    (uuid.uuid4(), tenant.id, sid_, s, rng.choice(("present", "late")), "")
                    for s in sids
                ]
            else:
                sessions[lid] = sid_
    await copy_records(
        "lecture_session", ["id", "tenant", "lecture", "seq", "date", "topic"], session_rows
    )
    await copy_records(
        "attendance", ["id", "tenant", "session", "student", "status", "note"], checks
    )

    def listed(lids: list[uuid.UUID]) -> list[dict[str, Any]]:
        return [{"id": str(sessions[i]), "students": [str(s) for s in enrolled[i]]} for i in lids]

    return listed(classes), listed(office), emails


async def _sample_waits(stop: asyncio.Event, seen: collections.Counter[str]) -> int:
    """Every 10 ms, what each active API connection is doing (its wait event, or CPU);
    returns the number of samples."""
    conn = await asyncpg.connect(ensure_configured().config["dsn"])
    samples = 0
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 60) AS q "
                "FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND query NOT LIKE 'LISTEN%'"
            )
            samples += 1
            for r in rows:
                seen[r["w"]] += 1
                if r["w"].startswith("Lock"):
                    seen[f"  {r['w']} in: {r['q']}"] += 1
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    return samples


async def _database_totals() -> tuple[int, int, dict[int, float]]:
    """WAL written so far (bytes), transactions committed in this database, and the CPU
    seconds so far of each of its server processes (backends, WAL writer, checkpointer)."""
    conn = await asyncpg.connect(ensure_configured().config["dsn"])
    try:
        row = await conn.fetchrow(
            "SELECT pg_current_wal_lsn() - '0/0' AS wal, xact_commit FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        pids = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
    finally:
        await conn.close()
    return int(row["wal"]), int(row["xact_commit"]), _cpu({r["pid"] for r in pids})


def _cpu(pids: set[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            seconds[pid] = t.user + t.system
    return seconds


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _run(script: str, env: dict[str, str], api_pid: int) -> tuple[dict, str]:
    """k6 with the waits sampled meanwhile; the summary, and what it cost: CPU per request
    of the API process, of Postgres and of k6, WAL and transactions per request, waits."""
    stop, seen = asyncio.Event(), collections.Counter[str]()
    wal, commits, pg_cpu = await _database_totals()
    api_cpu, k6_cpu = sum(_cpu({api_pid}).values()), _children_cpu()
    sampler = asyncio.create_task(_sample_waits(stop, seen))
    try:
        summary = await k6_run(script, env)
    finally:
        stop.set()
    k6_cpu = _children_cpu() - k6_cpu
    api_cpu = sum(_cpu({api_pid}).values()) - api_cpu
    samples = max(await sampler, 1)
    wal_after, commits_after, pg_after = await _database_totals()
    # Processes started during the run count from zero; the sampler's own backend is gone.
    pg_used = sum(t - pg_cpu.get(pid, 0.0) for pid, t in pg_after.items())
    requests = max(summary["metrics"]["http_reqs"]["count"], 1)
    commits_after -= samples + 1  # the sampler's own statements, and one of the two totals
    waits = ", ".join(f"{w} {n / samples:.2f}" for w, n in seen.most_common(12))
    return summary, (
        f"  CPU per request: API {api_cpu / requests * 1000:.2f} ms, Postgres "
        f"{pg_used / requests * 1000:.2f} ms, k6 {k6_cpu / requests * 1000:.2f} ms\n"
        f"  per request: {(wal_after - wal) / requests / 1024:.1f} KiB of WAL, "
        f"{(commits_after - commits) / requests:.2f} commits\n"
        f"  active connections by wait (mean per sample): {waits}"
    )


async def test_bench_attendance(tenant):
    logging.getLogger("httpx").setLevel(logging.WARNING)
    classes, office, emails = await seed(tenant)
    env_server = {"LOGIN_MAX_ATTEMPTS_PER_CLIENT": "1000"}
    async with api_server(tenant, env=env_server) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
            for c, email in zip(classes, emails, strict=True):
                login = await client.post(
                    "/api/v1/auth/login", json={"email": email, "password": "password-123"}
                )
                c["token"] = login.json()["access_token"]
                r = await client.get(
                    f"/api/v1/sessions/{c['id']}/attendance",
                    headers={"Authorization": f"Bearer {c['token']}"},
                )
                assert r.status_code == 200 and len(r.json()["items"]) == CLASS_SIZE, r.text
        env = {"BASE": server.base, "TOKEN": server.token, "DURATION": DURATION}
        with tempfile.TemporaryDirectory() as tmp:
            mine, theirs = Path(tmp) / "classes.json", Path(tmp) / "office.json"
            mine.write_text(json.dumps(classes))
            theirs.write_text(json.dumps(office))
            per_session = sum(len(s["students"]) for s in office) / len(office)
            runs = (
                (TEACHER_SCRIPT, TEACHERS, mine,
                 f"{TEACHERS} teachers, each on their own {CLASS_SIZE}-student session with "
                 "their own token, random statuses"),
                (OWNER_SCRIPT, OWNER_VUS, theirs,
                 f"the owner, {per_session:.0f} students per session, any of {LECTURES} "
                 "sessions, random statuses"),
            )  # fmt: skip
            for script, vus, sessions, what in runs:
                env_run = {**env, "VUS": str(vus), "SESSIONS": str(sessions)}
                summary, waits = await _run(script, env_run, server.pid)
                report(f"PUT /api/v1/sessions/{{id}}/attendance ({what})", summary, vus)
                print(waits)
