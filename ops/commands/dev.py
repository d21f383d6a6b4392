"""``just dev``: the whole system on embedded defaults, until Ctrl-C.

Starts the local runtime (embedded Postgres, local SQS+S3) for whatever the environment
does not provide, migrates, provisions, ensures a demo tenant, starts the API, the
scheduler and one worker process per tier, runs the readiness check once and prints the
URLs. A child that exits is started again after a backoff (``ops.commands.supervisor``);
one that exits 5 times within a minute stops the whole stack. Ctrl-C (or SIGTERM) stops
everything it started, in order: the workers, then the API side, then the queues, storage
and database; children also die with it if it is killed outright.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request

from models import accounts
from models.db import configure_db
from ops.commands.api import command as api_command
from ops.commands.migrate import migrate
from ops.commands.provision import provision
from ops.commands.readiness import render, run_checks
from ops.commands.supervisor import GaveUp, Supervisor, spawner
from ops.commands.tenants import create_tenant
from ops.commands.worker import command
from ops.logging import configure_logging
from ops.passwords import hash_password
from ops.processes import die_with_parent, free_port
from ops.runtime import PROJECT_ROOT, local_runtime, port_free, publish_dev_env
from ops.settings import get_settings

DEMO_SLUG = "demo"
DEMO_EMAIL = "owner@demo.academy"
DEMO_PASSWORD = "demo-password-1234"
WORKER_GROUPS = ("video", "ai-cpu", "ai-gpu", "messaging")
# Workers stop first: they finish their jobs while the API side and the queues are up.
STOP_ORDER = ("workers", "api")


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


def _wait_healthy(url: str, timeout: float, supervisor: Supervisor) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _run(supervisor: Supervisor, started: float) -> int:
    configure_logging("WARNING")
    demo = asyncio.run(_prepare())
    changed = [f"{action} {res}" for res, action in provision() if action != "unchanged"]
    print(f"  migrated; provisioned ({', '.join(changed) or 'all unchanged'}); demo tenant {demo}")

    settings = get_settings()
    port = int(os.environ.get("PORT") or 8000)
    if not port_free(port):
        port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    api_cmd = api_command(port, settings.api_processes)
    if not os.environ.get("CDN_HLS_BASE_URL"):
        # The local HLS edge: serves the renditions through the playback-token verifier.
        hls_port = free_port()
        os.environ["CDN_HLS_BASE_URL"] = f"http://127.0.0.1:{hls_port}/hls"
        hls_cmd = [sys.executable, "-m", "ops.commands.hls_server", "--port", str(hls_port)]
        supervisor.add("hls edge", hls_cmd, "api")
    supervisor.add("api", api_cmd, "api")
    supervisor.add("scheduler", [sys.executable, "-m", "ops.commands.scheduler"], "api")
    for group in WORKER_GROUPS:
        supervisor.add(f"worker {group}", command(group, settings.worker_processes, 2), "workers")

    if not _wait_healthy(api_url, 60, supervisor):
        print("the API did not become healthy; stopping", file=sys.stderr)
        return 1
    healthy_after = time.monotonic() - started
    checks = asyncio.run(run_checks(probe_timeout=60))
    print(render(checks))
    pooled = (
        f" (transaction pooler; direct {settings.database_direct_url or 'none'})"
        if settings.database_pooled
        else ""
    )
    print(
        f"""
academy is up: /health answered 200 {healthy_after:.1f}s after start
  API            {api_url} ({settings.api_processes} process(es); workers: {settings.worker_processes} per tier)
  health         {api_url}/health
  OpenAPI UI     {api_url}/schema
  OpenAPI JSON   {api_url}/schema/openapi.json
  SQS            {settings.sqs_endpoint_url}
  S3 (as R2)     {settings.r2_endpoint}
  HLS (signed)   {os.environ.get("CDN_HLS_BASE_URL", "")}
  database       {settings.database_url}{pooled}
  messages       {settings.messaging_provider or "none"} provider (console: logged and appended to .data/messages-outbox.jsonl)
  demo login     {DEMO_EMAIL} / {DEMO_PASSWORD} (academy slug "{DEMO_SLUG}")
Ctrl-C stops everything."""
    )
    if os.environ.get("ACADEMY_DEV_EXIT_AFTER_READY"):
        return 0 if all(c.ok for c in checks) else 1
    while True:
        supervisor.check()
        time.sleep(0.5)


def main() -> int:
    started = time.monotonic()

    def on_term(*_: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    # Local queues cost nothing to poll; a short long-poll makes Ctrl-C stop workers quickly.
    os.environ.setdefault("SQS_WAIT_TIME_SECONDS", "2")
    supervisor = Supervisor(spawner(PROJECT_ROOT, die_with_parent))
    try:
        with local_runtime(purpose="dev") as rt:
            print("academy dev: started locally:", ", ".join(sorted(rt.env)) or "nothing")
            publish_dev_env(rt.env)
            try:
                return _run(supervisor, started)
            except GaveUp as exc:
                print(exc, file=sys.stderr)
                return 1
            finally:
                # A second Ctrl-C must not cut the stop short: that would leave the children
                # without their database and queues, and signal them twice.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                # Children first: they need the database and queues to stop cleanly.
                print("stopping ...")
                supervisor.stop(STOP_ORDER)
                print("  stopping queues, storage and database")
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
