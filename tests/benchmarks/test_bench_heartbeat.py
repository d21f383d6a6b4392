"""`just bench heartbeat`: the video progress heartbeat under load, over real HTTP on loopback.

One READY 50-minute video (3,000 s) per kind (open, proctored) in a lecture, 2,000
enrolled students each with a student account, and a watch row as playback leaves it
(``open_watch``), already part-way through the lecture: a union of up to five stretches
with holes, up to 45 minutes in. One uvicorn process; k6 at 64 connections, each playing
its share of the students in turn and sending what a player sends: the position, the
stretch played since the last beat, and an increasing ``seq``. On the open video a beat
advances 10 s (one in twenty seeks ahead first, leaving a hole); at the end of the video
the student starts over from a random point, so unions keep changing. On the proctored
video a beat reports only the real time elapsed since that student's previous beat (at
most 10 s), as a player playing in real time does, so the real-time rule accepts it.

Each kind starts with a first round, one heartbeat per student, printed apart: a viewing's
first heartbeat is new to the API process (it reads and writes the row, and loads the
account), and a viewer of a 50-minute lecture sends ~300. The measured run follows.

Prints req/s, p50/p90/p99 and the share of answers that were 200s (a run mostly refused
would measure nothing); asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import tempfile
import uuid
from pathlib import Path

import httpx

from api.auth import Principal, issue_access_token
from models.db import connection, copy_records
from models.tables import Role
from pipelines.video.watch import covered
from tests.benchmarks.k6 import k6_run
from tests.benchmarks.k6 import report as k6_report
from tests.benchmarks.server import api_server
from tests.factories import bulk_students

STUDENTS, VUS, DURATION, LENGTH = 2_000, 64, "15s", 3000.0

SCRIPT = """
import http from 'k6/http';
import { Counter } from 'k6/metrics';
const accepted = new Counter('accepted');
const refused = new Counter('refused');
const other = new Counter('other');
// FIRST=1: each connection's first round alone, one heartbeat per student (a connection
// with one student fewer than others sends its first student a second one).
export const options = __ENV.FIRST === '1'
  ? { scenarios: { first: { executor: 'per-vu-iterations', vus: __ENV.VUS * 1,
                             iterations: Math.ceil(__ENV.STUDENT_COUNT / __ENV.VUS) } } }
  : { vus: __ENV.VUS * 1, duration: __ENV.DURATION };
const all = JSON.parse(open(__ENV.STUDENTS));
const proctored = __ENV.PROCTORED === '1';
const url = `${__ENV.BASE}/api/v1/videos/${__ENV.VIDEO}/progress`;
const length = __ENV.LENGTH * 1;
// Each connection plays its own students, in turn: a student's beats are never concurrent.
let mine = null;
let next = 0;
export default function () {
  if (mine === null) {
    mine = all.filter((_, i) => i % __ENV.VUS === __VU - 1).map((s) => ({
      token: s.token, position: s.position, seq: __ENV.SEQ0 * 1, last: Date.now() - 60000,
      params: { headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/json' } },
    }));
  }
  const s = mine[next];
  next = (next + 1) % mine.length;
  const now = Date.now();
  let start = s.position;
  if (!proctored && Math.random() < 0.05) start = Math.min(length - 10, start + 30 + Math.random() * 90);
  // A player plays in real time: on the proctored video a beat reports what real time allows.
  const step = proctored ? Math.min(10, (now - s.last) / 1000) : 10;
  const end = Math.min(length, start + step);
  const body = JSON.stringify({ position: end, played: [[start, end]], seq: s.seq });
  const r = http.post(url, body, s.params);
  if (r.status === 200) accepted.add(1); else if (r.status === 409) refused.add(1); else other.add(1);
  s.seq += 1;
  s.last = now;
  s.position = end >= length ? Math.floor(Math.random() * length * 0.8) : end;
}
"""


def _watched(rng: random.Random) -> tuple[float, list[tuple[float, float]]]:
    """A position up to 45 minutes in, and the union a viewing would have left behind it:
    up to five stretches with holes between them (seeks ahead)."""
    position = round(rng.uniform(0, LENGTH * 0.9), 1)
    cuts = sorted(rng.uniform(0, position) for _ in range(2 * rng.randint(0, 4)))
    bounds = [0.0, *cuts, position]
    return position, [
        (round(bounds[i], 3), round(bounds[i + 1], 3))
        for i in range(0, len(bounds) - 1, 2)
        if bounds[i + 1] > bounds[i]
    ]


async def seed(tenant_id: uuid.UUID) -> tuple[dict[str, uuid.UUID], list[dict[str, object]]]:
    """Two READY videos of one lecture (open, proctored), ``STUDENTS`` enrolled students with
    accounts and opened watch rows; each student's token and starting position."""
    students = await bulk_students(tenant_id, STUDENTS)
    lecture = uuid.uuid4()
    await copy_records(
        "lecture",
        ["id", "tenant", "title", "subject", "capacity", "schedule", "status"],
        [(lecture, tenant_id, "수학 심화", "수학", STUDENTS, "[]", "open")],
    )
    await copy_records(
        "enrollment",
        ["id", "tenant", "student", "lecture", "status", "source"],
        [(uuid.uuid4(), tenant_id, sid, lecture, "active", "manual") for sid in students],
    )
    users = [uuid.uuid4() for _ in students]
    await copy_records(
        "app_user",
        ["id", "tenant", "email", "name", "role", "password_hash", "student_id"],
        [
            (uid, tenant_id, f"s{i}-{uid.hex[:6]}@bench.example", "학생", "student", "x", sid)
            for i, (uid, sid) in enumerate(zip(users, students, strict=True))
        ],
    )
    videos = {"open": uuid.uuid4(), "proctored": uuid.uuid4()}
    await copy_records(
        "video",
        ["id", "tenant", "lecture", "title", "proctored", "status", "raw_key", "duration_seconds"],
        [
            (vid, tenant_id, lecture, f"{kind} 1강", kind == "proctored", "READY", "raw/x", LENGTH)
            for kind, vid in videos.items()
        ],
    )
    rng = random.Random(17)
    starts = [_watched(rng) for _ in students]
    opened = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rows = []
    for vid in videos.values():
        for sid, (position, intervals) in zip(students, starts, strict=True):
            watched = covered(intervals)
            rows.append(
                (uuid.uuid4(), tenant_id, vid, sid, json.dumps(intervals), watched,
                 watched / LENGTH, position, intervals[0][1] if intervals else 0.0, 0, opened)
            )  # fmt: skip
    await copy_records(
        "video_watch",
        ["id", "tenant", "video", "student", "intervals", "watched_seconds", "coverage",
         "position", "frontier", "last_seq", "last_heartbeat_at"],
        rows,
    )  # fmt: skip
    players = [
        {
            "token": issue_access_token(
                Principal(uid, tenant_id, Role.student, student_id=sid), ttl=3600
            ),
            "position": position,
        }
        for uid, sid, (position, _) in zip(users, students, starts, strict=True)
    ]
    return videos, players


async def _hot_updates() -> tuple[int, int]:
    """Updates of watch rows so far, and how many of them were HOT (in place, no index
    entries): the statistics lag their transactions by up to a second."""
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'video_watch'"
        )
    return int(row[0]), int(row[1])


async def _counts(video: uuid.UUID) -> tuple[int, int]:
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT sum(heartbeats), sum(rejected_heartbeats) FROM video_watch WHERE video = $1",
            video,
        )
    return int(row[0]), int(row[1])


def _cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU each process has used so far."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a backend that has gone
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def _postgres_pids(data_directory: str) -> list[int]:
    """The postmaster and its children (the API's pooled backends among them)."""
    main = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
    return [main, *map(int, Path(f"/proc/{main}/task/{main}/children").read_text().split())]


def _cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU used since ``before`` by ``pids`` (those started since: all of theirs)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _cpu_seconds(pids).items())


def _report(name: str, summary: dict) -> None:
    k6_report(name, summary, VUS)
    metrics = summary["metrics"]
    counts = {k: int(metrics.get(k, {}).get("count", 0)) for k in ("accepted", "refused", "other")}
    total = sum(counts.values()) or 1
    print(
        f"  answers: {counts['accepted'] / total:.1%} 200 (recorded), "
        f"{counts['refused'] / total:.1%} 409 (refused), {counts['other'] / total:.1%} other"
    )


async def test_bench_heartbeat(tenant):
    videos, players = await seed(tenant.id)
    async with connection() as conn:
        data_directory = await conn.fetchval("SHOW data_directory")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(players, f)
    try:
        async with api_server(tenant) as server:
            async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
                r = await client.post(
                    f"/api/v1/videos/{videos['open']}/progress",
                    json={"position": 1, "played": [[0, 1]]},
                    headers={"Authorization": f"Bearer {players[0]['token']}"},
                )
                assert r.status_code == 200 and r.json()["recorded"], r.text
            env = {"BASE": server.base, "VUS": str(VUS), "DURATION": DURATION,
                   "STUDENTS": f.name, "LENGTH": str(LENGTH),
                   "STUDENT_COUNT": str(STUDENTS)}  # fmt: skip
            for kind, vid in videos.items():
                kind_env = {**env, "VIDEO": str(vid),
                            "PROCTORED": "1" if kind == "proctored" else "0"}  # fmt: skip
                first = await k6_run(SCRIPT, {**kind_env, "FIRST": "1", "SEQ0": "1"})
                _report(
                    f"  first round ({kind}): each student's first heartbeat, new to the API "
                    "process (it reads and writes the row)",
                    first,
                )
                await asyncio.sleep(2)  # the first round's heartbeats stored behind
                before, hot = await _counts(vid), await _hot_updates()
                api_before = _cpu_seconds([server.pid])
                db_before = _cpu_seconds(_postgres_pids(data_directory))
                summary = await k6_run(SCRIPT, {**kind_env, "SEQ0": "1000"})
                api_cpu = _cpu_since(api_before, [server.pid])
                db_cpu = _cpu_since(db_before, _postgres_pids(data_directory))
                _report(
                    f"POST /api/v1/videos/{{id}}/progress ({kind} 3,000 s video, {STUDENTS:,} "
                    "students playing in turn, unions of up to 5 stretches growing)",
                    summary,
                )
                # Heartbeats an API process stores behind (within a second), and the
                # statistics of the last transactions.
                await asyncio.sleep(2)
                after = await _counts(vid)
                updates, hot_updates = (
                    b - a for a, b in zip(hot, await _hot_updates(), strict=True)
                )
                count = max(1, summary["metrics"]["http_reqs"]["count"])
                print(
                    f"  stored: {after[0] - before[0]:,} heartbeats recorded, "
                    f"{after[1] - before[1]:,} refused; CPU per request: API process "
                    f"{api_cpu / count * 1000:.2f} ms, Postgres {db_cpu / count * 1000:.2f} ms; "
                    f"{hot_updates / max(1, updates):.0%} of row updates HOT (in place)"
                )
    finally:
        os.unlink(f.name)
