"""Tenant isolation: the BOLA matrix over every registered endpoint, and ``TenantScope``
checked directly against the database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from models.scope import NotFoundInTenant, TenantScope
from models.tables import Job, Tenant, User
from tests.bola import (
    BOLA_PATHS,
    NOT_FOUND_TYPE,
    BolaCase,
    assert_malformed_id_not_found,
    assert_problem,
    assert_tenant_isolated,
)

# Routes with a path parameter that do not address a tenant's object.
# /api/v1/me/... is the student/parent app: its own matrix (family accounts, siblings,
# other tenants, staff) is in tests/integration/test_me.py.
NOT_TENANT_OBJECTS = ("/schema", "/api/v1/me/")


@pytest.mark.parametrize("case", BOLA_PATHS, ids=lambda c: c.id)
async def test_bola_matrix(
    case: BolaCase, make_tenant: Callable[[], Any], client: Any, broker: Any
) -> None:
    owner, other = await make_tenant(), await make_tenant()
    object_id = await case.factory(owner)
    await assert_tenant_isolated(
        client,
        case.method,
        case.path,
        await owner.headers(),
        await other.headers(),
        object_id,
        case.json,
        read_path=case.read_path,
        foreign_statuses=case.foreign_statuses,
    )


@pytest.mark.parametrize("case", [c for c in BOLA_PATHS if c.of_a_lecture], ids=lambda c: c.id)
async def test_bola_matrix_teacher_column(
    case: BolaCase, tenant: Any, client: Any, broker: Any
) -> None:
    """A teacher reaches only the lectures they teach: another lecture's resource is the
    404 an unknown id gets (or a 403 where the role may not use the route at all)."""
    object_id = await case.factory(tenant)
    teacher = await tenant.add_user("teacher")
    await assert_tenant_isolated(
        client,
        case.method,
        case.path,
        await tenant.headers(),
        await tenant.headers(teacher, "password-123"),
        object_id,
        case.json,
        read_path=case.read_path,
        foreign_statuses=(*case.foreign_statuses, 403),
    )


def test_the_teacher_column_covers_every_lecture_resource() -> None:
    covered = {c.path.split("{id}")[0] for c in BOLA_PATHS if c.of_a_lecture}
    assert {"/api/v1/sessions/", "/api/v1/exams/", "/api/v1/videos/"} <= covered


@pytest.mark.parametrize("case", BOLA_PATHS, ids=lambda c: c.id)
async def test_malformed_id_is_404_problem(
    case: BolaCase, tenant: Any, client: Any, broker: Any
) -> None:
    await assert_malformed_id_not_found(
        client, case.method, case.path, await tenant.headers(), case.json
    )


def test_every_id_route_is_in_the_bola_matrix(app: Any) -> None:
    """A new endpoint addressed by an id must be registered in ``tests/bola.py``."""
    registered = {(c.method, c.path) for c in BOLA_PATHS}
    missing = []
    for route in app.routes:
        if "{" not in route.path or route.path.startswith(NOT_TENANT_OBJECTS):
            continue
        path = re.sub(r"\{[^}]*\}", "{id}", route.path)
        for method in sorted(getattr(route, "methods", ())):
            if method in ("HEAD", "OPTIONS"):
                continue
            if (method, path) not in registered:
                missing.append(f"{method} {path}")
    assert not missing, f"register these in tests/bola.py (BOLA_PATHS): {missing}"


async def test_unknown_job_id_is_404_problem(tenant: Any, client: Any) -> None:
    r = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=await tenant.headers())
    assert_problem(r, 404, NOT_FOUND_TYPE)


async def test_jobs_require_a_token(client: Any) -> None:
    r = await client.get(f"/api/v1/jobs/{uuid.uuid4()}")
    assert_problem(r, 401, "/problems/unauthenticated")


# --- TenantScope, directly against the database ----------------------------------------


async def _job(tenant_id: Any, stage: str = "queued") -> uuid.UUID:
    row = Job(tenant=tenant_id, kind="scope-test", tier="video", stage=stage)
    await row.save()
    return uuid.UUID(str(row.id))


async def _stage_of(job_id: uuid.UUID) -> str | None:
    row = await Job.select(Job.stage).where(Job.id == job_id).first()
    return None if row is None else str(row["stage"])


async def test_scope_get_never_returns_another_tenants_row(make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    job_a, job_b = await _job(a.id), await _job(b.id)
    scope_a = TenantScope(a.id)

    row = await scope_a.get(Job, job_a)
    assert row["id"] == job_a and row["tenant"] == a.id
    assert (await scope_a.get(Job, str(job_a)))["id"] == job_a

    with pytest.raises(NotFoundInTenant):
        await scope_a.get(Job, job_b)
    with pytest.raises(NotFoundInTenant):
        await scope_a.get(Job, uuid.uuid4())
    for malformed in ("not-a-uuid", "", "1; DROP TABLE job"):
        with pytest.raises(NotFoundInTenant):
            await scope_a.get(Job, malformed)

    b_owner = await User.select(User.id).where(User.tenant == b.id).first()
    assert b_owner is not None
    with pytest.raises(NotFoundInTenant):
        await scope_a.get(User, b_owner["id"])
    assert (await TenantScope(b.id).get(Job, job_b))["tenant"] == b.id


async def test_scope_select_and_objects_stay_in_the_tenant(make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    a_jobs = {await _job(a.id), await _job(a.id)}
    job_b = await _job(b.id)
    scope_a = TenantScope(a.id)

    rows = await scope_a.select(Job, Job.id, Job.tenant)
    assert {r["id"] for r in rows} == a_jobs
    assert {r["tenant"] for r in rows} == {a.id}

    # Extra conditions narrow the scope; they can never widen it.
    assert await scope_a.select(Job, Job.id).where(Job.id == job_b) == []
    assert await scope_a.select(Job, Job.id).where(Job.tenant == b.id) == []
    either = await scope_a.select(Job, Job.id).where(
        (Job.id == job_b) | (Job.id.is_in(list(a_jobs)))
    )
    assert {r["id"] for r in either} == a_jobs
    anything = await scope_a.select(Job, Job.id).where(
        (Job.tenant == b.id) | (Job.kind == "scope-test")
    )
    assert {r["id"] for r in anything} == a_jobs

    objs = await scope_a.objects(Job)
    assert {o.id for o in objs} == a_jobs
    assert await scope_a.objects(Job).where(Job.id == job_b).first() is None

    users = await scope_a.select(User, User.tenant)
    assert users and {u["tenant"] for u in users} == {a.id}


async def test_scope_update_and_delete_never_touch_another_tenant(make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    job_a, job_b = await _job(a.id), await _job(b.id, stage="b-stage")
    scope_a = TenantScope(a.id)

    await scope_a.update(Job, {Job.stage: "hijacked"}).where(Job.id == job_b)
    assert await _stage_of(job_b) == "b-stage"
    await scope_a.update(Job, {Job.stage: "a-wide"}).where((Job.id == job_b) | (Job.id == job_a))
    assert await _stage_of(job_a) == "a-wide"
    assert await _stage_of(job_b) == "b-stage"

    await scope_a.delete(Job).where(Job.id == job_b)
    assert await _stage_of(job_b) == "b-stage"
    await scope_a.delete(Job).where((Job.id == job_b) | (Job.id == job_a))
    assert await _stage_of(job_a) is None
    assert await _stage_of(job_b) == "b-stage"


async def test_scope_new_rows_belong_to_the_scope(make_tenant: Any) -> None:
    a, b = await make_tenant(), await make_tenant()
    row = TenantScope(a.id).new(Job, kind="scope-test", tier="video")
    await row.save()
    assert (await TenantScope(a.id).get(Job, row.id))["tenant"] == a.id
    with pytest.raises(NotFoundInTenant):
        await TenantScope(b.id).get(Job, row.id)


def test_scope_refuses_tables_without_a_tenant() -> None:
    scope = TenantScope(uuid.uuid4())
    with pytest.raises(TypeError):
        scope.select(Tenant)
    with pytest.raises(TypeError):
        scope.delete(Tenant)
    with pytest.raises(ValueError):
        TenantScope("not-a-uuid")


async def test_scoped_raw_sql_must_use_the_tenant_parameter(tenant: Any) -> None:
    from models.scope import TenantScope

    scope = TenantScope(tenant.id)
    with pytest.raises(ValueError, match=r"\$1"):
        await scope.fetch("SELECT id FROM student WHERE name = $10", *range(9), "x")
    assert await scope.fetch("SELECT id FROM student WHERE tenant = $1") == []
