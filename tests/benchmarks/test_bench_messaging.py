"""Messaging figures: a 5,000-recipient lecture broadcast against the fake Solapi server,
through one real messaging worker (1 process x 4 threads) and the local SQS server.

Prints messages per second (to accepted by the provider, and to delivered), the SQS
requests per message (counted by a proxy in front of the SQS server, by action) and the
duplicates the provider saw (must be 0). The local SQS server is slow; the figures show our
overhead on top of it, not what Amazon SQS can do.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from actors.jobs import submit
from actors.system import PROBES
from models.db import connection, copy_records
from models.tables import Job
from tests.conftest import wait_for
from tests.fakes.solapi import connect_tenant, running_fake

RECIPIENTS = 5000


class CountingProxy:
    """Forwards every request to the SQS server and counts them by action."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1] or "other"
                with proxy.lock:
                    proxy.counts[action] += 1
                conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _lecture_of(tenant_id: Any, n: int) -> uuid.UUID:
    """A lecture with ``n`` students, each with one guardian (valid, distinct phones)."""
    lecture = uuid.uuid4()
    async with connection() as conn:
        await conn.execute(
            "INSERT INTO lecture (id, tenant, title, subject, status) "
            "VALUES ($1, $2, '대형 특강', '수학', 'open')",
            lecture,
            tenant_id,
        )
    students, guardians, links, enrollments = [], [], [], []
    for i in range(n):
        sid, gid = uuid.uuid4(), uuid.uuid4()
        students.append((sid, tenant_id, f"학생{i}", "", "한빛중학교", "중2", "", "active"))
        guardians.append(
            (gid, tenant_id, f"보호자{i}", f"010-{2000 + i // 10000:04d}-{i % 10000:04d}")
        )
        links.append((uuid.uuid4(), tenant_id, sid, gid, "mother", True))
        enrollments.append((uuid.uuid4(), tenant_id, sid, lecture, "active", "manual"))
    await copy_records(
        "student",
        ["id", "tenant", "name", "name_initials", "school", "grade", "memo", "status"],
        students,
    )
    await copy_records("guardian", ["id", "tenant", "name", "phone"], guardians)
    await copy_records(
        "student_guardian", ["id", "tenant", "student", "guardian", "relation", "is_primary"], links
    )
    await copy_records(
        "enrollment", ["id", "tenant", "student", "lecture", "status", "source"], enrollments
    )
    return lecture


async def test_bench_messaging_broadcast(tenant, client, start_worker):
    from models.db import close_pool, start_pool

    await start_pool()
    proxy = CountingProxy(os.environ["SQS_ENDPOINT_URL"])
    try:
        with running_fake(MESSAGING_HTTP_TIMEOUT_SECONDS="10") as fake:
            await _broadcast(tenant, client, start_worker, proxy, fake)
    finally:
        proxy.stop()
        await close_pool()


async def _broadcast(tenant, client, start_worker, proxy, fake):
    await connect_tenant(tenant.id)
    lecture = await _lecture_of(tenant.id, RECIPIENTS)
    rate = "5000"
    worker = start_worker(
        ["messaging"],
        env={
            "SQS_ENDPOINT_URL": proxy.url,
            "SOLAPI_BASE_URL": fake.url,
            "MESSAGING_RATE_PER_SECOND": rate,
            "MESSAGING_POLL_DELAY_SECONDS": "2",
            "MESSAGING_HTTP_TIMEOUT_SECONDS": "10",
        },
        threads=4,
    )
    warm = await submit(PROBES["messaging"], tenant_id=tenant.id, kind="bench")

    async def done(job_id):
        row = await Job.select(Job.status, Job.result).where(Job.id == job_id).first()
        return row if row and row["status"] in ("DONE", "FAILED") else None

    assert await wait_for(lambda: done(warm.id), timeout=120), worker.output()[-2000:]
    before = proxy.snapshot()

    started = time.perf_counter()
    r = await client.post(
        "/api/v1/messaging/send",
        json={"text": "#{학생} 학생 보호자님, 다음 주 특강 일정 안내드립니다.",
              "target": {"lecture_id": str(lecture)}},
        headers=await tenant.headers(),
    )  # fmt: skip
    api_seconds = time.perf_counter() - started
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    row = await wait_for(lambda: done(job_id), timeout=1800, interval=0.5)
    sent_seconds = time.perf_counter() - started
    assert row and row["status"] == "DONE", worker.output()[-3000:]

    async def all_delivered():
        async with connection() as conn:
            open_ = await conn.fetchval(
                "SELECT count(*) FROM message WHERE job = $1 AND status <> 'delivered'",
                uuid.UUID(job_id),
            )
        return open_ == 0

    delivered = await wait_for(all_delivered, timeout=600, interval=0.5)
    delivered_seconds = time.perf_counter() - started
    used = proxy.snapshot() - before
    # The API process's own request: the expand message it sent (not through the proxy).
    used["SendMessage"] += 1
    total = sum(used.values())
    keys = fake.sends_by_key()
    duplicates = sum(c - 1 for c in keys.values() if c > 1)
    async with connection() as conn:
        stored = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT idempotency_key) AS keys, "
            "count(*) FILTER (WHERE status = 'failed') AS failed FROM message WHERE job = $1",
            uuid.UUID(job_id),
        )
    print(
        f"\nmessaging broadcast: {RECIPIENTS} recipients, 1 worker process x 4 threads, "
        f"batches of 100, our rate limit {rate}/s, fake Solapi on 127.0.0.1"
        f"\n  API send request (checks and renders all {RECIPIENTS}): {api_seconds:.2f} s"
        f"\n  accepted by the provider: {sent_seconds:.1f} s -> {RECIPIENTS / sent_seconds:,.0f} msgs/s"
        f"\n  delivered (polled): {delivered_seconds:.1f} s -> "
        f"{RECIPIENTS / delivered_seconds:,.0f} msgs/s (all delivered: {bool(delivered)})"
        f"\n  SQS requests: {total} -> {total / RECIPIENTS:.4f} per message; by action: "
        f"{dict(sorted(used.items()))}"
        f"\n  provider requests: {dict(fake.requests)}"
        f"\n  duplicates at the provider: {duplicates} (messages {len(fake.messages)}, "
        f"rows {stored['n']}, distinct keys {stored['keys']}, failed {stored['failed']})"
    )
