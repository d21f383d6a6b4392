"""Following an Excel import live, the way an SPA does: a real API server (with its
listener), the upload over HTTP, SQS and a real ``ai-lite`` worker; the client reads
``GET /api/v1/jobs/{id}/events`` as it comes and sees the job move, then DONE."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ops.settings import get_settings
from tests.benchmarks.server import api_server
from tests.bola import NOT_FOUND_TYPE, assert_problem
from tests.factories.workbooks import messy_rows, write_xlsx
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]

# Bounds on a broken system (a stream that never ends), not speed checks.
READ_TIMEOUT = httpx.Timeout(10, read=120)


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    comments: list[str] = field(default_factory=list)

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.data))


async def events_of(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """Server-Sent Events as a browser's EventSource parses them (comments kept aside)."""
    current = Event()
    async for line in lines:
        if not line:
            if current.data or current.comments:
                yield current
            current = Event()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                current.event = value
            elif name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value


async def _login(client: httpx.AsyncClient, tenant: Any) -> dict[str, str]:
    r = await client.post(
        "/api/v1/auth/login", json={"email": tenant.owner_email, "password": tenant.password}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_an_import_followed_live_until_done(
    tenant: Any, make_tenant: Any, start_worker: Any
) -> None:
    queue = get_settings().queue_for("ai-lite")
    purge(queue, f"{queue}-dlq")
    other = await make_tenant()
    seen: list[Event] = []
    async with (
        api_server(tenant) as server,
        httpx.AsyncClient(base_url=server.base, timeout=READ_TIMEOUT) as client,
    ):
        r = await client.post(
            "/api/v1/enrollments/excel",
            files={"file": ("명단.xlsx", write_xlsx(messy_rows(30, seed=3)))},
            headers=server.headers,
        )
        assert r.status_code == 202, r.text
        path = f"/api/v1/jobs/{r.json()['job_id']}/events"

        r = await client.get(path, headers=await _login(client, other))
        assert_problem(r, 404, NOT_FOUND_TYPE)

        worker = None
        async with client.stream("GET", path, headers=server.headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in events_of(response.aiter_lines()):
                seen.append(event)
                # Started only once the stream is open: the job cannot finish unseen.
                worker = worker or start_worker(["ai-lite"])
    names = [e.event for e in seen if e.data]

    assert names[0] == "status" and seen[0].body["status"] == "PENDING", names
    assert names[-1] == "done", (names, worker and worker.output()[-3000:])
    done = seen[-1].body
    assert done["status"] == "DONE" and done["progress"] == 100 and done["result"]
    moving = [e.body for e in seen[1:-1] if e.data]
    assert any(e["status"] == "RUNNING" for e in moving), names
    assert "progress" in names, names
    progress = [e["progress"] for e in moving]
    assert progress == sorted(progress), progress


async def test_an_idle_stream_sends_heartbeats(tenant: Any) -> None:
    """A job nobody works on: the stream stays open with heartbeat comments."""
    from actors.jobs import submit
    from actors.system import PROBES

    row = await submit(PROBES["video"], tenant_id=tenant.id, kind="probe")
    env = {"JOB_EVENTS_HEARTBEAT_SECONDS": "0.2"}
    async with (
        api_server(tenant, env) as server,
        httpx.AsyncClient(base_url=server.base, timeout=READ_TIMEOUT) as client,
        client.stream("GET", f"/api/v1/jobs/{row.id}/events", headers=server.headers) as r,
    ):
        received = events_of(r.aiter_lines())
        first = await anext(received)
        assert first.event == "status" and first.body["status"] == "PENDING"
        beat = await anext(received)
    assert beat.comments == ["heartbeat"] and not beat.data


async def test_a_stopping_server_ends_its_open_streams(tenant: Any) -> None:
    """A stop (SIGTERM) is not held up by a stream whose job may never end: the stream is
    cut after the server's grace, and its client reconnects to another process."""
    from actors.jobs import submit
    from actors.system import PROBES

    row = await submit(PROBES["video"], tenant_id=tenant.id, kind="probe")
    async with (
        api_server(tenant) as server,
        httpx.AsyncClient(base_url=server.base, timeout=READ_TIMEOUT) as client,
        client.stream("GET", f"/api/v1/jobs/{row.id}/events", headers=server.headers) as r,
    ):
        received = events_of(r.aiter_lines())
        assert (await anext(received)).event == "status"
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # A bound on a hung stop (uvicorn's grace is 5 s), not a speed check.
        exit_code = await asyncio.to_thread(server.process.wait, 60)
        with contextlib.suppress(httpx.HTTPError):
            async for _ in received:
                pass
    # uvicorn ends a signalled stop by re-raising the signal.
    assert exit_code in (0, -signal.SIGTERM)
