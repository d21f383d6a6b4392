"""The deployment readiness check (``just readiness``).

Checks the database, every queue and its DLQ, and every bucket from this side; then sends a
probe job to every tier queue and waits until a worker of that tier has run it against the
database and storage. Prints one table; exits non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import dramatiq.broker

from actors.broker import setup_broker
from actors.jobs import submit
from actors.system import PROBES
from models.accounts import ensure_tenant
from models.db import ensure_configured
from models.jobs import job_states
from models.ops import server_version
from ops import storage
from ops.queues import sqs_client
from ops.settings import get_settings

READINESS_TENANT_SLUG = "_readiness"


@dataclass
class Check:
    component: str
    ok: bool
    seconds: float
    detail: str = ""


async def _timed(component: str, fn: Callable[[], Awaitable[str]]) -> Check:
    started = time.perf_counter()
    try:
        detail = await fn()
        return Check(component, True, time.perf_counter() - started, detail)
    except Exception as exc:
        return Check(
            component, False, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"
        )


def _queue(client: Any, name: str) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        def run() -> str:
            url = client.get_queue_url(QueueName=name)["QueueUrl"]
            attrs = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            client.get_queue_url(QueueName=f"{name}-dlq")
            if "RedrivePolicy" not in attrs:
                raise RuntimeError("no RedrivePolicy: run `just provision`")
            policy = json.loads(attrs["RedrivePolicy"])
            return (
                f"depth={attrs.get('ApproximateNumberOfMessages')} "
                f"maxReceiveCount={policy.get('maxReceiveCount')}"
            )

        return await asyncio.to_thread(run)

    return check


def _bucket(bucket: str) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        def run() -> str:
            key = storage.object_key("_readiness", "api-side.txt")
            storage.put_bytes(bucket, key, b"ok")
            if storage.get_bytes(bucket, key) != b"ok":
                raise RuntimeError("read back different bytes")
            storage.delete(bucket, key)
            return "put/get/delete"

        return await asyncio.to_thread(run)

    return check


def _probe(tier: str, tenant_id: Any, timeout: float) -> Callable[[], Awaitable[str]]:
    async def check() -> str:
        job = await submit(
            PROBES[tier], tenant_id=tenant_id, kind="readiness", request_id="readiness"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await job_states([job.id])
            state = found[0] if found else None
            if state and state.status == "DONE":
                return f"ran on {state.result['host']} pid {state.result['pid']}"
            if state and state.status == "FAILED":
                raise RuntimeError(state.error)
            await asyncio.sleep(0.25)
        raise TimeoutError(f"no {tier} worker ran the probe within {timeout:.0f}s")

    return check


async def run_checks(tiers: list[str] | None = None, probe_timeout: float = 60.0) -> list[Check]:
    settings = get_settings()
    ensure_configured()
    if dramatiq.broker.global_broker is None:
        setup_broker(worker=False)
    # One client shared by the queue checks: boto3 clients are thread-safe, but creating them
    # from several threads at once on the default session is not.
    sqs = sqs_client(settings)
    checks = [await _timed("database", server_version)]
    checks += await asyncio.gather(
        *[_timed(f"queue {name}", _queue(sqs, name)) for name in settings.queues.values()],
        *[_timed(f"bucket {b}", _bucket(b)) for b in settings.buckets.values()],
    )
    if not checks[0].ok:
        return checks
    tenant_id = await ensure_tenant(READINESS_TENANT_SLUG, "readiness probes")
    checks += await asyncio.gather(
        *[
            _timed(f"worker {tier}", _probe(tier, tenant_id, probe_timeout))
            for tier in (tiers or list(settings.queues))
        ]
    )
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.component) for c in checks)
    lines = [f"{'component':<{width}}  result  latency_ms  detail", "-" * (width + 40)]
    for c in checks:
        lines.append(
            f"{c.component:<{width}}  {'OK' if c.ok else 'FAIL':<6}  {c.seconds * 1000:>10.1f}  {c.detail}"
        )
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} OK, {failed} FAIL")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just readiness", description=__doc__)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait per probe")
    parser.add_argument("--tier", action="append", help="only these tiers (default: all)")
    args = parser.parse_args(argv)
    checks = asyncio.run(run_checks(args.tier, args.timeout))
    print(render(checks))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
