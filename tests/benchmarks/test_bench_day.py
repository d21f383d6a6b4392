"""`just bench day`: a school day's load on the whole system, with k6.

``DAY_ACADEMIES`` (50) academies of ``DAY_STUDENTS`` (200) students are seeded (COPY;
``tests.benchmarks.day_seed``). The system runs as production lays it out, on this host:
2 API processes behind a transaction-mode PgBouncer in front of Postgres, one worker
process per tier group (video, ai-cpu, ai-gpu, messaging; 2 threads each), the scheduler,
and the local SQS/S3 server.

The day: ``DAY_USERS`` (10,000) daily users, each doing their day's visits inside a
``DAY_WINDOW_MINUTES`` (10) peak window, with the mix below, while ``DAY_VIEWERS`` (1,000)
students watch a proctored lecture video, a heartbeat every 10 s each. The window's rates
run for ``DAY_MINUTES`` (3): a slice of the peak, not the whole of it, so a run stays short.
In the background: an Excel import (``DAY_EXCEL_ROWS`` rows), an OMR batch (a class's
answer cards as one PDF) and a broadcast to an academy's guardians, plus whatever the
day's writes make (absence and score notices through the outbox and the scheduler's pump).

Printed: p50/p90/p99 per endpoint, errors, heartbeats accepted and refused, the rates
planned and achieved, CPU seconds of the API, Postgres, PgBouncer, workers and k6 (all on
the same 2 cores), and job latencies per tier. Nothing is asserted about speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from models.db import connection
from ops.processes import stop_server
from ops.runtime import pgbouncer
from tests.benchmarks import cpu
from tests.benchmarks.day_seed import Academy, k6_data, login_all, pool_emails, seed_day
from tests.benchmarks.k6 import k6_run
from tests.benchmarks.server import api_server
from tests.conftest import ROOT, wait_for
from tests.factories.grades import create_exam
from tests.factories.omr_sheets import scanned_stack
from tests.factories.workbooks import messy_rows, write_xlsx

# The share of the daily users per role, and the visits each makes in the day.
MIX = {"student": (0.50, 1), "parent": (0.46, 1), "teacher": (0.03, 2), "staff": (0.01, 20)}
REQUESTS_PER_VISIT = {"student": 4, "parent": 4, "teacher": 4, "staff": 3}
TIERS = ("video", "ai-cpu", "ai-gpu", "messaging")
STATS = "count,avg,p(50),p(90),p(99),max"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class Day:
    academies: int = _env_int("DAY_ACADEMIES", 50)
    students: int = _env_int("DAY_STUDENTS", 200)
    users: int = _env_int("DAY_USERS", 10_000)
    window: float = float(os.environ.get("DAY_WINDOW_MINUTES") or 10)
    minutes: float = float(os.environ.get("DAY_MINUTES") or 3)
    viewers: int = _env_int("DAY_VIEWERS", 1000)
    pool: int = _env_int("DAY_POOL", 6)  # logged-in students and parents per academy
    excel_rows: int = _env_int("DAY_EXCEL_ROWS", 500)
    job_wait: float = float(os.environ.get("DAY_JOB_WAIT_SECONDS") or 90)

    def per_minute(self, role: str) -> float:
        share, visits = MIX[role]
        return self.users * share * visits / self.window


@dataclass
class Background:
    name: str
    tier: str
    at: float  # seconds into the run
    send: Any  # async () -> job id
    submit_ms: float = 0.0
    job: str = ""
    status: str = ""
    seconds: float = 0.0


async def test_bench_day(runtime: Any, database: None, provisioned: Any, start_worker: Any) -> None:
    day = Day()
    started = time.monotonic()
    academies = await seed_day(day.academies, day.students)
    print(f"\nschool day: seeded {day.academies} academies x {day.students} students "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    direct = os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"]
    with contextlib.ExitStack() as stack:
        pooled = (
            os.environ["DATABASE_URL"]
            if os.environ.get("DATABASE_DIRECT_URL")
            else stack.enter_context(pgbouncer(direct))
        )
        outbox = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "outbox.jsonl"
        env = {
            "DATABASE_URL": pooled,
            "DATABASE_DIRECT_URL": direct,
            "ACCESS_TOKEN_TTL_SECONDS": "7200",
            "MESSAGING_CONSOLE_OUTBOX": str(outbox),
            "SQS_WAIT_TIME_SECONDS": "2",
            "LOG_LEVEL": "WARNING",
        }
        workers = {tier: start_worker([tier], env=env) for tier in TIERS}
        for worker in workers.values():  # stopped before their outbox directory goes
            stack.callback(worker.stop)
        scheduler = _scheduler(env)
        stack.callback(stop_server, scheduler, 15)
        owner = types.SimpleNamespace(owner_email=academies[0].owner, password=_password())
        # A busy shared host can take a while to start every process.
        async with api_server(owner, env=env, processes=2, start_timeout=180) as server:
            await _run(day, academies, server.base, server.pid, workers, scheduler, runtime)


def _password() -> str:
    from tests.benchmarks.day_seed import PASSWORD

    return PASSWORD


def _scheduler(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ops.commands.scheduler"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _run(
    day: Day,
    academies: list[Academy],
    base: str,
    api_pid: int,
    workers: dict[str, Any],
    scheduler: subprocess.Popen[bytes],
    runtime: Any,
) -> None:
    started = time.monotonic()
    emails = pool_emails(academies, day.viewers, day.pool)
    tokens = await login_all(base, emails)
    print(f"  logged in {len(tokens):,} accounts over HTTP in {time.monotonic() - started:.0f} s")
    data = k6_data(academies, tokens, day.viewers, day.pool)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        background = await _background(day, academies, client, tokens)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            import json

            json.dump(data, f)
            f.flush()
            groups = await _groups(api_pid, workers, scheduler, runtime)
            before = cpu.sample(groups)
            serving = _api_processes(api_pid)
            run_started = await _db_now()
            clock = time.monotonic()
            jobs = asyncio.create_task(_send_all(background, clock))
            script = (Path(__file__).parent / "day.js").read_text()
            env = _k6_env(day, base, f.name)
            summary = await k6_run(script, env, STATS)
            wall = time.monotonic() - clock
            after = cpu.sample(groups)
            replaced = len(serving - _api_processes(api_pid))
        await jobs
        await _wait_jobs(background, run_started, day.job_wait)
    _report(day, data, summary, wall, cpu.used(before, after), background)
    # uvicorn's supervisor kills an API process that leaves its health-check ping
    # unanswered for 5 s, dropping what it was serving (a starved host can do that).
    print(f"  API processes killed and replaced by uvicorn's supervisor during the run: {replaced}")
    await _job_latencies(run_started)
    await _notices(run_started)


def _k6_env(day: Day, base: str, data: str) -> dict[str, str]:
    env = {"BASE": base, "DATA": data, "SECONDS": str(int(day.minutes * 60))}
    for role, key in (("student", "STUDENTS"), ("parent", "PARENTS"),
                      ("teacher", "TEACHERS"), ("staff", "STAFF")):  # fmt: skip
        env[f"{key}_PER_MIN"] = str(round(day.per_minute(role)))
    return env


def _api_processes(api_pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(api_pid).children()}


async def _db_now() -> Any:
    async with connection() as conn:
        return await conn.fetchval("SELECT now()")


async def _groups(
    api_pid: int, workers: dict[str, Any], scheduler: subprocess.Popen[bytes], runtime: Any
) -> dict[str, list[int]]:
    async with connection() as conn:
        # The backend's parent, while the backend is there: the postmaster.
        postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).ppid()
    groups = {
        "api": [api_pid],
        "postgres": [postmaster],
        "pgbouncer": cpu.children_named("pgbouncer"),
        "scheduler": [scheduler.pid],
        "sqs+s3 (moto)": [runtime.moto.pid] if getattr(runtime, "moto", None) else [],
    }
    for tier, worker in workers.items():
        groups[f"worker {tier}"] = [worker.proc.pid]
    return groups


# --- the background work ---------------------------------------------------------------


async def _background(
    day: Day, academies: list[Academy], client: httpx.AsyncClient, tokens: dict[str, str]
) -> list[Background]:
    """The three background jobs, prepared (files built, the exam given its card) and
    ready to send."""
    api = "/api/v1"
    n = len(academies)
    excel_owner, omr_owner, broadcast_owner = (
        {"Authorization": f"Bearer {tokens[academies[i % n].owner]}"} for i in (1, 0, 2)
    )
    workbook = write_xlsx(messy_rows(day.excel_rows, lecture="L0", seed=3))
    for a in academies:  # every academy sends from its number (notices, broadcasts)
        r = await client.post(f"{api}/messaging/senders",
                              json={"phone": "02-555-1234", "is_default": True},
                              headers={"Authorization": f"Bearer {tokens[a.owner]}"})  # fmt: skip
        assert r.status_code == 201, r.text

    async def excel() -> str:
        files = {"file": ("명단.xlsx", workbook)}
        r = await client.post(f"{api}/enrollments/excel", files=files, headers=excel_owner)
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    academy = academies[0]
    lecture = academy.lectures[0]
    key = {str(q): [str(((q * 7) % 5) + 1)] for q in range(1, 21)}
    exam = await create_exam(
        types.SimpleNamespace(client=client), lecture.id, omr_owner,
        question_count=20, answer_key=key, max_score=100,
    )  # fmt: skip
    r = await client.post(f"{api}/omr/templates/builtin", json={"name": "day", "questions": 20},
                          headers=omr_owner)  # fmt: skip
    assert r.status_code == 201, r.text
    r = await client.put(f"{api}/exams/{exam['id']}/omr", json={"template_id": r.json()["id"]},
                         headers=omr_owner)  # fmt: skip
    assert r.status_code == 200, r.text
    cards = [{"id": s, "phone": academy.students[s][2]} for s in lecture.students]
    pdf, _, _ = scanned_stack(key, cards)

    async def omr() -> str:
        files = [("files", ("stack.pdf", pdf, "application/pdf"))]
        r = await client.post(f"{api}/exams/{exam['id']}/scans", files=files, headers=omr_owner)
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    everyone = [str(s) for s in academies[2 % n].students]

    async def broadcast() -> str:
        body = {"text": "내일은 학원 휴강입니다. 보강 일정은 추후 안내드립니다.",
                "target": {"student_ids": everyone}}  # fmt: skip
        r = await client.post(f"{api}/messaging/send", json=body, headers=broadcast_owner)
        assert r.status_code == 202, r.text
        return str(r.json()["job_id"])

    run = day.minutes * 60
    return [
        Background(f"Excel import ({day.excel_rows} rows)", "ai-lite", 0.15 * run, excel),
        Background(f"OMR batch ({len(cards)} cards, one PDF)", "ai-basic", 0.30 * run, omr),
        Background(
            f"broadcast ({len(everyone)} students' guardians)", "messaging", 0.45 * run, broadcast
        ),
    ]


async def _send_all(background: list[Background], clock: float) -> None:
    for b in background:
        await asyncio.sleep(max(0.0, clock + b.at - time.monotonic()))
        sent = time.perf_counter()
        b.job = await b.send()
        b.submit_ms = (time.perf_counter() - sent) * 1000


async def _wait_jobs(background: list[Background], since: Any, timeout: float) -> None:
    """Until every background job has ended and every notice of the run was dispatched
    (or ``timeout``); the jobs' status and seconds."""
    ids = [uuid.UUID(b.job) for b in background]

    async def ended() -> bool:
        async with connection() as conn:
            pending = await conn.fetchval(
                "SELECT count(*) FROM outbox_event WHERE created_at >= $1 AND processed_at IS NULL",
                since,
            )
            rows = await conn.fetch(
                "SELECT id, status, EXTRACT(EPOCH FROM finished_at - created_at) AS s "
                "FROM job WHERE id = ANY($1::uuid[])",
                ids,
            )
        found = {str(r["id"]): r for r in rows}
        for b in background:
            b.status = found[b.job]["status"]
            b.seconds = float(found[b.job]["s"] or 0)
        return not pending and all(b.status in ("DONE", "FAILED") for b in background)

    await wait_for(ended, timeout=timeout, interval=1)


# --- the report ------------------------------------------------------------------------


def _count(summary: dict[str, Any], name: str) -> float:
    return float(summary["metrics"].get(name, {}).get("count", 0))


def _report(
    day: Day,
    data: dict[str, Any],
    summary: dict[str, Any],
    wall: float,
    used: dict[str, float],
    background: list[Background],
) -> None:
    m = summary["metrics"]
    requests = m["http_reqs"]["count"]
    # k6's own run time (its virtual users' start-up is not in it; the CPU window has it).
    ran = float(summary.get("state", {}).get("testRunDurationMs", wall * 1000)) / 1000
    minutes = ran / 60
    print(
        f"\nschool day: {day.academies} academies x {day.students} students; 2 API processes "
        "behind PgBouncer (transaction mode), one worker process per tier group, the scheduler "
        "and the local SQS/S3 server.\n  k6, the API, Postgres, PgBouncer and the workers all "
        f"share this host's {os.cpu_count()} cores: the figures are the host's, not a fleet's."
        f"\n  the day: {day.users:,} daily users in a {day.window:g}-minute peak window, run for "
        f"{day.minutes:g} minutes of it (a slice at the peak's rates): k6 ran {ran:.0f} s"
    )
    for role in MIX:
        done = _count(summary, f"visits_{role}")
        print(f"  {role:8s} visits/min planned {day.per_minute(role):7.1f}, achieved "
              f"{done / minutes:7.1f} ({done:,.0f} visits, {REQUESTS_PER_VISIT[role]} requests each)")  # fmt: skip
    viewers = len(data["viewers"])
    beats = _count(summary, "ep_video_progress")
    print(f"  viewers  {viewers:,} concurrent, a heartbeat every 10 s each: planned "
          f"{viewers / 10:.0f}/s, achieved {beats / ran:.1f}/s; accepted "
          f"{_count(summary, 'beats_accepted'):,.0f}, refused (409) "
          f"{_count(summary, 'beats_refused'):,.0f}")  # fmt: skip
    errors = sum(_count(summary, k) for k in m if k.startswith("err_"))
    print(f"  requests {requests:,} in {ran:.0f} s = {requests / ran:,.1f} req/s; errors "
          f"{errors:,.0f} ({errors / max(requests, 1):.2%}); dropped iterations "
          f"{_count(summary, 'dropped_iterations'):,.0f}")  # fmt: skip
    print(f"\n  {'endpoint':18s} {'requests':>9s} {'req/s':>7s} {'p50 ms':>8s} {'p90 ms':>8s} "
          f"{'p99 ms':>8s} {'max ms':>8s} {'errors':>7s}")  # fmt: skip
    for name in sorted(k for k in m if k.startswith("ep_")):
        t = m[name]
        print(f"  {name[3:]:18s} {t['count']:9,.0f} {t['count'] / ran:7.1f} {t['p(50)']:8.1f} "
              f"{t['p(90)']:8.1f} {t['p(99)']:8.1f} {t['max']:8.1f} "
              f"{_count(summary, 'err_' + name[3:]):7,.0f}")  # fmt: skip
    _report_cpu(used, wall, requests)
    print("\n  background (sent during the run over HTTP; created -> finished):")
    for b in background:
        ended = f"in {b.seconds:.1f} s" if b.status in ("DONE", "FAILED") else "when the wait ended"
        print(f"    {b.name:38s} submit {b.submit_ms:6.0f} ms; {b.status or '?'} {ended}")


def _report_cpu(used: dict[str, float], wall: float, requests: int) -> None:
    available = (os.cpu_count() or 1) * wall
    print(
        f"\n  CPU seconds over the run ({os.cpu_count()} cores x {wall:.0f} s = {available:.0f} available):"
    )
    ours = 0.0
    for name, seconds in used.items():
        if name in ("machine", "children"):
            continue
        ours += seconds
        per = (
            f"{seconds / requests * 1000:6.2f} ms/request"
            if name in ("api", "postgres", "pgbouncer")
            else ""
        )
        print(f"    {name:22s} {seconds:8.1f} s  {per}")
    print(f"    {'k6 (load generator)':22s} {used['children']:8.1f} s")
    ours += used["children"]
    print(f"    {'host busy, all':22s} {used['machine']:8.1f} s ({used['machine'] / available:.0%} of the cores); "
          f"not this run's: {max(0.0, used['machine'] - ours):.1f} s")  # fmt: skip


async def _job_latencies(since: Any) -> None:
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT tier, kind, count(*) AS n,
                   count(*) FILTER (WHERE status = 'DONE') AS done,
                   count(*) FILTER (WHERE status = 'FAILED') AS failed,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY EXTRACT(EPOCH FROM started_at - created_at)) AS wait50,
                   percentile_cont(0.5) WITHIN GROUP (
                       ORDER BY EXTRACT(EPOCH FROM finished_at - created_at)) AS p50,
                   percentile_cont(0.99) WITHIN GROUP (
                       ORDER BY EXTRACT(EPOCH FROM finished_at - created_at)) AS p99,
                   max(EXTRACT(EPOCH FROM finished_at - created_at)) AS worst
            FROM job WHERE created_at >= $1 GROUP BY tier, kind ORDER BY tier, kind
            """,
            since,
        )
    print("\n  job latencies per tier, every job created during the run (seconds; created -> "
          "started, created -> finished):")  # fmt: skip
    print(f"    {'tier':10s} {'kind':28s} {'jobs':>5s} {'done':>5s} {'failed':>6s} "
          f"{'wait p50':>8s} {'p50':>7s} {'p99':>7s} {'max':>7s}")  # fmt: skip
    for r in rows:
        cells = [r["wait50"], r["p50"], r["p99"], r["worst"]]
        shown = [f"{float(c):7.2f}" if c is not None else "      -" for c in cells]
        print(f"    {r['tier']:10s} {r['kind']:28s} {r['n']:5d} {r['done']:5d} {r['failed']:6d} "
              f"{shown[0]:>8s} {shown[1]} {shown[2]} {shown[3]}")  # fmt: skip


async def _notices(since: Any) -> None:
    """The messaging tier's other work: the day's automatic notices (outbox events the
    scheduler's pump hands to the messaging workers) and the broadcast's messages."""
    async with connection() as conn:
        events = await conn.fetch(
            "SELECT kind, count(*) AS n, count(processed_at) AS done, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM processed_at - created_at)) AS p50, "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM processed_at - created_at)) AS p99 "
            "FROM outbox_event WHERE created_at >= $1 GROUP BY kind ORDER BY kind",
            since,
        )
        messages = await conn.fetch(
            "SELECT CASE WHEN m.event_id IS NULL THEN 'sent by hand' ELSE e.kind END AS what, "
            "count(*) AS n, count(m.sent_at) AS sent, count(m.delivered_at) AS delivered, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM m.sent_at - "
            "coalesce(e.created_at, m.created_at))) AS p50, "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM m.sent_at - "
            "coalesce(e.created_at, m.created_at))) AS p99 "
            "FROM message m LEFT JOIN outbox_event e ON e.id = m.event_id "
            "WHERE m.created_at >= $1 GROUP BY 1 ORDER BY 1",
            since,
        )
    print("\n  outbox events of the run (seconds, created -> processed by the pump's dispatch):")
    for r in events:
        print(f"    {r['kind']:24s} {r['n']:6,d} events, {r['done']:6,d} processed; "
              f"p50 {_s(r['p50'])}, p99 {_s(r['p99'])}")  # fmt: skip
    print("  messages of the run (seconds, event or request -> accepted by the provider):")
    for r in messages:
        print(f"    {r['what']:24s} {r['n']:6,d} messages, {r['sent']:6,d} sent, "
              f"{r['delivered']:6,d} delivered; p50 {_s(r['p50'])}, p99 {_s(r['p99'])}")  # fmt: skip


def _s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"
