"""Live job progress, in process: a change of the job row reaches a following stream
through Postgres NOTIFY and the one shared listener, with no polling at all (the heartbeat
is set far beyond the test, and the stream never polls while the listener is up)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.job_events import JobEvents, stream
from models.jobs import finish_job, set_progress, start_job
from models.scope import TenantScope
from tests.bola import NOT_FOUND_TYPE, assert_problem
from tests.conftest import following

pytestmark = pytest.mark.usefixtures("broker")

# A bound on a broken system, not a speed check.
EVENT_TIMEOUT = 30


@pytest.fixture
async def hub() -> AsyncIterator[JobEvents]:
    """A hub with its own listener, as the API's lifespan runs it."""
    followed = JobEvents()
    async with following(followed):
        yield followed


async def _probe(tenant: Any) -> Any:
    from actors.jobs import submit
    from actors.system import PROBES

    return await submit(PROBES["video"], tenant_id=tenant.id, kind="probe")


async def _next(events: AsyncIterator[Any]) -> tuple[str, dict[str, Any]]:
    message = await asyncio.wait_for(anext(events), EVENT_TIMEOUT)
    return message.event, json.loads(message.data)


async def test_changes_are_pushed_until_done(tenant: Any, hub: JobEvents) -> None:
    row = await _probe(tenant)
    events = stream(TenantScope(tenant.id), row.id, heartbeat=3600, hub=hub)

    event, data = await _next(events)
    assert (event, data["status"], data["progress"]) == ("status", "PENDING", 0)

    await start_job(str(row.id), stage="probing")
    assert [(await _next(events))[0] for _ in range(2)] == ["status", "stage"]

    await set_progress(row.id, 40, "probing")
    event, data = await _next(events)
    assert (event, data["progress"], data["stage"]) == ("progress", 40, "probing")

    await finish_job(row.id, {"probe": True})
    event, data = await _next(events)
    assert (event, data["status"], data["result"]) == ("done", "DONE", {"probe": True})
    with pytest.raises(StopAsyncIteration):
        await _next(events)


async def test_a_wrong_tenant_gets_404(tenant: Any, make_tenant: Any, client: Any) -> None:
    row = await _probe(tenant)
    other = await make_tenant()
    r = await client.get(f"/api/v1/jobs/{row.id}/events", headers=await other.headers())
    assert_problem(r, 404, NOT_FOUND_TYPE)
    parent = await tenant.headers(await tenant.add_user("teacher"), "password-123")
    await finish_job(row.id)
    r = await client.get(f"/api/v1/jobs/{row.id}/events", headers=parent)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "event: done" in r.text
