"""``GET /api/v1/jobs/{id}``: poll a background job (tenant-scoped); ``.../events``: follow
it live as Server-Sent Events (see ``api/job_events.py``)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import ServerSentEvent

from api import job_events
from api.auth import require_staff
from models.jobs import Job, get_job
from models.scope import TenantScope
from ops.settings import get_settings


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]
    # Jobs are started by staff; family accounts never need to read them.
    guards = [require_staff]

    @get("/{job_id:str}", summary="A job's status, progress and result")
    async def get_job(
        self, job_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Job:
        return await get_job(tenant_scope, job_id)

    @get(
        "/{job_id:str}/events",
        media_type="text/event-stream",
        responses={
            200: ResponseSpec(
                str,
                media_type="text/event-stream",
                description="The job's events, until it is DONE or FAILED",
            )
        },
        summary="Follow a job live (Server-Sent Events) until DONE or FAILED",
        description=(
            "`text/event-stream`. Events `status`, `stage` and `progress` carry "
            "`{id, status, stage, progress}` when that field changes (the first event is "
            "`status`); `done` or `failed` carries the whole job, then the stream ends "
            "(close the EventSource then, or it reconnects). A `: heartbeat` comment comes "
            "after 15 s without an event. Same rules as `GET /api/v1/jobs/{id}`: another "
            "academy's job is a 404."
        ),
    )
    async def events(
        self, job_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ServerSentEvent:
        # Read before the stream starts: an unknown or foreign job is a plain 404 problem.
        job = await get_job(tenant_scope, job_id)
        heartbeat = get_settings().job_events_heartbeat_seconds
        return ServerSentEvent(job_events.stream(tenant_scope, job.id, heartbeat=heartbeat))
