"""Cost of an idle worker (`just bench idle`): receive calls per minute per queue while idle,
counted where the SQS server sees them, and the time from the last job to the worker's exit.

The worker (ai-cpu: two queues) talks to the local SQS server through a counting proxy.
Defaults are production's: 20 s long polls, threshold 5 -> about 100 s idle, then exit.
BENCH_IDLE_WAIT and BENCH_IDLE_THRESHOLD shorten it. Figures are printed, not asserted.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from actors.jobs import submit
from actors.system import PROBES
from models.tables import Job
from ops.settings import get_settings
from tests.conftest import wait_for

WAIT = int(os.environ.get("BENCH_IDLE_WAIT", "20"))
THRESHOLD = int(os.environ.get("BENCH_IDLE_THRESHOLD", "5"))


class CountingProxy:
    """Forwards every request to the SQS server and records (time, action, queue)."""

    def __init__(self, upstream: str) -> None:
        self.calls: list[tuple[float, str, str]] = []
        target = urllib.parse.urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                queue = ""
                try:
                    queue = str(json.loads(body or b"{}").get("QueueUrl", "")).rsplit("/", 1)[-1]
                except ValueError:
                    form = urllib.parse.parse_qs(body.decode(errors="replace"))
                    action = action or form.get("Action", [""])[0]
                    queue = form.get("QueueUrl", [""])[0].rsplit("/", 1)[-1]
                proxy.calls.append((time.monotonic(), action, queue))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_bench_idle_cost(tenant, start_worker):
    settings = get_settings()
    proxy = CountingProxy(settings.sqs_endpoint_url)
    try:
        worker = start_worker(
            ["ai-basic", "ai-lite"],
            env={
                "SQS_ENDPOINT_URL": proxy.url,
                "SQS_WAIT_TIME_SECONDS": str(WAIT),
                "EC2_IDLE_STOP_THRESHOLD": str(THRESHOLD),
                "IDLE_STOP_MODE": "exit",
            },
        )
        job = await submit(PROBES["ai-basic"], tenant_id=tenant.id, kind="bench")

        async def done() -> Any:
            row = await Job.select(Job.status, Job.finished_at).where(Job.id == job.id).first()
            return row if row and row["status"] == "DONE" else None

        assert await wait_for(done, timeout=120), worker.output()[-3000:]
        last_job = time.monotonic()

        async def exited() -> bool:
            return worker.proc.poll() is not None

        await wait_for(exited, timeout=WAIT * (THRESHOLD + 3) + 60, interval=0.1)
        stopped = time.monotonic()
    finally:
        proxy.close()
    idle = [(t, q) for t, action, q in proxy.calls if action == "ReceiveMessage" and t > last_job]
    minutes = max(stopped - last_job, 1e-6) / 60
    per_queue = Counter(q for _, q in idle)
    print(
        f"\nidle worker (ai-cpu, long poll {WAIT} s, threshold {THRESHOLD}): exit code "
        f"{worker.proc.returncode}, {stopped - last_job:.1f} s from the last job to exit "
        f"(expected about {WAIT * THRESHOLD} s)"
    )
    for queue, n in sorted(per_queue.items()):
        print(f"  {queue}: {n} receive calls while idle = {n / minutes:.2f} per minute")
    others = Counter(a for t, a, _ in proxy.calls if t > last_job and a != "ReceiveMessage")
    print(f"  other SQS calls while idle: {dict(others) or 'none'}")
