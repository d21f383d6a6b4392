"""``just dev``: the whole system on embedded defaults, until Ctrl-C.

Starts the local runtime (embedded Postgres, local SQS+S3) for whatever the environment
does not provide, migrates, provisions, ensures a demo tenant, starts the API, the
scheduler and one worker process per tier, runs the readiness check once and prints the
URLs. Ctrl-C (or SIGTERM)
stops everything it started; children also die with it if it is killed outright.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from models import accounts
from models.db import configure_db
from ops.commands.migrate import migrate
from ops.commands.provision import provision
from ops.commands.readiness import render, run_checks
from ops.commands.tenants import create_tenant
from ops.commands.worker import command
from ops.logging import configure_logging
from ops.passwords import hash_password
from ops.runtime import (
    PROJECT_ROOT,
    _die_with_parent,
    free_port,
    local_runtime,
    publish_dev_env,
)
from ops.settings import get_settings

DEMO_SLUG = "demo"
DEMO_EMAIL = "owner@demo.academy"
DEMO_PASSWORD = "demo-password-1234"
WORKER_GROUPS = ("video", "ai-cpu", "ai-gpu", "messaging")


def _spawn(cmd: list[str], name: str) -> subprocess.Popen[bytes]:
    print(f"  starting {name}: {' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)}")
    # A session of its own: the terminal's Ctrl-C reaches only us, and we stop each child
    # with exactly one SIGTERM (a second one makes Dramatiq hard-kill its workers).
    return subprocess.Popen(
        cmd,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


async def _ensure_demo_tenant() -> str:
    if await accounts.tenant_id(DEMO_SLUG) is not None:
        # Keep the printed password true even if someone changed it.
        await accounts.set_password_by_email(DEMO_SLUG, DEMO_EMAIL, hash_password(DEMO_PASSWORD))
        return "exists"
    await create_tenant("데모 학원", DEMO_EMAIL, DEMO_PASSWORD, slug=DEMO_SLUG)
    return "created"


async def _prepare() -> str:
    configure_db()
    await migrate()
    return await _ensure_demo_tenant()


def _wait_healthy(url: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for name, p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"  {name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _run(procs: list[tuple[str, subprocess.Popen[bytes]]], started: float) -> int:
    configure_logging("WARNING")
    demo = asyncio.run(_prepare())
    changed = [f"{action} {res}" for res, action in provision() if action != "unchanged"]
    print(f"  migrated; provisioned ({', '.join(changed) or 'all unchanged'}); demo tenant {demo}")

    port = int(os.environ.get("PORT") or 8000)
    if not _port_free(port):
        port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    api_cmd = [
        sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
    ]  # fmt: skip
    if not os.environ.get("CDN_HLS_BASE_URL"):
        # The local HLS edge: serves the renditions through the playback-token verifier.
        hls_port = free_port()
        os.environ["CDN_HLS_BASE_URL"] = f"http://127.0.0.1:{hls_port}/hls"
        hls_cmd = [sys.executable, "-m", "ops.commands.hls_server", "--port", str(hls_port)]
        procs.append(("hls edge", _spawn(hls_cmd, "hls edge")))
    procs.append(("api", _spawn(api_cmd, "api")))
    scheduler_cmd = [sys.executable, "-m", "ops.commands.scheduler"]
    procs.append(("scheduler", _spawn(scheduler_cmd, "scheduler")))
    for group in WORKER_GROUPS:
        procs.append((f"worker {group}", _spawn(command(group, 1, 2), f"worker {group}")))

    if not _wait_healthy(api_url, 60, [p for _, p in procs]):
        print("the API did not become healthy; stopping", file=sys.stderr)
        return 1
    healthy_after = time.monotonic() - started
    checks = asyncio.run(run_checks(probe_timeout=60))
    print(render(checks))
    settings = get_settings()
    print(
        f"""
academy is up: /health answered 200 {healthy_after:.1f}s after start
  API            {api_url}
  health         {api_url}/health
  OpenAPI UI     {api_url}/schema
  OpenAPI JSON   {api_url}/schema/openapi.json
  SQS + S3       {settings.sqs_endpoint_url}
  HLS (signed)   {os.environ.get("CDN_HLS_BASE_URL", "")}
  database       {settings.database_url}
  messages       {settings.messaging_provider or "none"} provider (console: logged and appended to .data/messages-outbox.jsonl)
  demo login     {DEMO_EMAIL} / {DEMO_PASSWORD} (academy slug "{DEMO_SLUG}")
Ctrl-C stops everything."""
    )
    if os.environ.get("ACADEMY_DEV_EXIT_AFTER_READY"):
        return 0 if all(c.ok for c in checks) else 1
    while True:
        for name, p in procs:
            if p.poll() is not None:
                print(f"{name} exited with {p.returncode}; stopping", file=sys.stderr)
                return 1
        time.sleep(1)


def main() -> int:
    started = time.monotonic()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    # Local queues cost nothing to poll; a short long-poll makes Ctrl-C stop workers quickly.
    os.environ.setdefault("SQS_WAIT_TIME_SECONDS", "2")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        with local_runtime(purpose="dev") as rt:
            print("academy dev: started locally:", ", ".join(sorted(rt.env)) or "nothing")
            publish_dev_env(rt.env)
            try:
                return _run(procs, started)
            finally:
                # A second Ctrl-C must not cut the stop short: that would leave the children
                # without their database and queues, and signal them twice.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                # Children first: they need the database and queues to stop cleanly.
                print("stopping ...")
                _stop(procs)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
