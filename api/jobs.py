"""``GET /api/v1/jobs/{id}``: poll a background job (tenant-scoped)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import require_staff
from models.jobs import Job, get_job
from models.scope import TenantScope


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
