"""``GET /api/v1/jobs/{id}``: poll a background job (tenant-scoped); ``.../events``: follow
it live as Server-Sent Events (see ``api/job_events.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import ServerSentEvent

from api import job_events
from api.auth import require_staff
from models.jobs import Job, JobStatusValue, get_job
from models.scope import TenantScope
from ops.settings import get_settings

# What every event's JSON carries: the ``Progress`` of a status, stage or progress event,
# and the same members in the whole ``Job`` of a done or failed one.
_PROGRESS: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "stage", "progress"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": list(get_args(JobStatusValue))},
        "stage": {"type": "string"},
        "progress": {"type": "integer"},
    },
}


class JobStreamEvent(msgspec.Struct):
    """One event of the job's stream as an SSE client reads it (a heartbeat is a comment,
    not an event). ``data`` is JSON: ``{id, status, stage, progress}``, or the whole job
    for ``done`` and ``failed``."""

    event: Literal["status", "stage", "progress", "done", "failed"]
    data: Annotated[
        str,
        # Litestar writes ``extra`` into the OpenAPI schema as it is.
        msgspec.Meta(
            extra_json_schema={
                "extra": {"contentMediaType": "application/json", "contentSchema": _PROGRESS}
            }
        ),
    ]


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
                JobStreamEvent,
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
