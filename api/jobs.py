"""``GET /api/v1/jobs/{id}``: poll a background job (tenant-scoped)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import require_staff
from models.scope import TenantScope
from models.tables import Job as JobRow


class Job(msgspec.Struct):
    id: uuid.UUID
    kind: str
    status: str
    progress: int
    stage: str
    result: Any
    error: str | None
    attempts: int
    request_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        return cls(**{f: row[f] for f in cls.__struct_fields__})


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]
    # Jobs are started by staff; family accounts never need to read them.
    guards = [require_staff]

    @get("/{job_id:str}", summary="A job's status, progress and result")
    async def get_job(
        self, job_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Job:
        return Job.from_row(await tenant_scope.get(JobRow, job_id))
