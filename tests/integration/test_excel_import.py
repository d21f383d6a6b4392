"""The import API and its steps over real Postgres, SQS and S3, with the steps run in this
process (as a worker would run them) so redeliveries and the lock can be staged exactly."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import uuid
from typing import Any

import polars as pl
import pytest

from actors import excel as steps
from actors.jobs import submit
from actors.system import PROBES
from models import imports
from models.db import connection
from models.scope import TenantScope
from ops import storage
from ops.settings import get_settings
from tests.factories.attendance import create_lecture
from tests.factories.workbooks import (
    encrypted_workbook,
    expected_students,
    messy_rows,
    with_problems,
    write_xls,
    write_xlsx,
)
from tests.sqs_helpers import purge

pytestmark = pytest.mark.usefixtures("broker")

CHAIN = (
    steps.parse_upload,
    steps.validate_rows,
    steps.match_rows,
    steps.apply_rows,
    steps.finish_import,
)


@pytest.fixture(autouse=True)
def lite_queue(broker: Any) -> Any:
    """The steps send their successors to the real queue; nothing consumes them here."""
    q = get_settings().queue_for("ai-lite")
    purge(q)
    yield q
    purge(q)


async def upload(tenant: Any, data: bytes, filename: str = "명단.xlsx", **form: Any) -> Any:
    return await tenant.client.post(
        "/api/v1/enrollments/excel",
        files={"file": (filename, data, "application/octet-stream")},
        data={k: str(v).lower() if isinstance(v, bool) else v for k, v in form.items()},
        headers=await tenant.headers(),
    )


async def accepted(tenant: Any, data: bytes, **form: Any) -> str:
    r = await upload(tenant, data, **form)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def run_chain(job_id: str, *, repeat: int = 1) -> None:
    """Each step in order, ``repeat`` times (a redelivered message runs a step again)."""
    for step in CHAIN:
        for _ in range(repeat):
            await step(job_id=job_id)


async def job_of(job_id: str) -> dict[str, Any]:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT * FROM job WHERE id = $1", uuid.UUID(job_id))
    assert row is not None
    return dict(row)


async def snapshot(tenant_id: Any) -> dict[str, Any]:
    """Everything an import can change in a tenant, comparable across runs."""
    async with connection() as conn:
        students = await conn.fetch(
            "SELECT id, name, phone, school, grade, deleted_at, guardians_json::text AS g, "
            "enrollment_count FROM student WHERE tenant = $1 ORDER BY id",
            tenant_id,
        )
        guardians = await conn.fetch(
            "SELECT id, name, phone FROM guardian WHERE tenant = $1 ORDER BY id", tenant_id
        )
        links = await conn.fetch(
            "SELECT student, guardian, relation FROM student_guardian WHERE tenant = $1 "
            "ORDER BY student, guardian",
            tenant_id,
        )
        enrollments = await conn.fetch(
            "SELECT student, lecture, status, source, enrolled_at FROM enrollment "
            "WHERE tenant = $1 ORDER BY student, lecture",
            tenant_id,
        )
    return {
        "students": [dict(r) for r in students],
        "guardians": [dict(r) for r in guardians],
        "links": [dict(r) for r in links],
        "enrollments": [dict(r) for r in enrollments],
    }


def objects_under(prefix: str) -> list[str]:
    listed = storage.client().list_objects_v2(Bucket=get_settings().r2_excel_bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


# --- upload --------------------------------------------------------------------------------


async def test_upload_stores_the_file_and_creates_the_job(tenant: Any) -> None:
    data = write_xlsx(messy_rows(3))
    r = await upload(tenant, data, filename="whatever.bin", mode="insert", dry_run=True)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "PENDING"
    assert body["status_url"] == f"/api/v1/enrollments/excel_job_status/{body['job_id']}/"
    job = await job_of(body["job_id"])
    assert job["kind"] == "excel_import" and job["tier"] == "ai-lite" and job["sha256"]
    stored = storage.get_bytes(get_settings().r2_excel_bucket, job["input_key"])
    assert stored == data and job["input_key"].endswith("/upload.xlsx")  # by content

    status = await tenant.client.get(body["status_url"], headers=await tenant.headers())
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "PENDING"


async def test_bad_uploads_are_refused_before_anything_is_stored(
    tenant: Any, make_tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = storage.object_key("imports", str(tenant.id))
    data = write_xlsx(messy_rows(3))

    small = dataclasses.replace(get_settings(), excel_max_upload_bytes=1024)
    monkeypatch.setattr("api.excel.get_settings", lambda: small)
    r = await upload(tenant, data)
    assert r.status_code == 413 and r.json()["type"] == "/problems/too-large", r.text
    monkeypatch.undo()

    r = await upload(tenant, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, filename="a.xlsx")
    assert r.status_code == 415 and r.json()["type"] == "/problems/unsupported-file", r.text
    r = await upload(tenant, b"", filename="a.xlsx")
    assert r.status_code == 422, r.text
    r = await upload(tenant, data, mode="replace")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "mode"
    r = await upload(tenant, data, dry_run="maybe")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "dry_run"

    other = await make_tenant()
    foreign = await create_lecture(other)
    closed = await create_lecture(tenant, status="closed", title="마감반")
    r = await upload(tenant, data, lecture_ids=f"{foreign},{closed},nope")
    assert r.status_code == 422, r.text
    messages = sorted(e["message"] for e in r.json()["errors"])
    assert messages == sorted(
        [f"no lecture {foreign}", "lecture 마감반 is closed", "'nope' is not a lecture id"]
    )
    r = await tenant.client.post(
        "/api/v1/enrollments/excel", data={"mode": "insert"}, headers=await tenant.headers()
    )
    assert r.status_code == 422, r.text

    teacher = await tenant.add_user("teacher")
    r = await tenant.client.post(
        "/api/v1/enrollments/excel",
        files={"file": ("a.xlsx", data)},
        headers=await tenant.headers(teacher, "password-123"),
    )
    assert r.status_code == 403, r.text
    assert objects_under(prefix + "/") == []


# --- the chain, step by step ---------------------------------------------------------------


async def test_import_applies_exact_rows_and_says_what_went_wrong(tenant: Any) -> None:
    lecture = await create_lecture(tenant, code="MATH-A", capacity=100)
    sheet = with_problems(messy_rows(10, lecture="math-a", seed=0))
    job_id = await accepted(tenant, write_xlsx(sheet))
    await run_chain(job_id)

    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    result = job["result"]
    # Ten good rows and one whose student phone is bad (imported without it; it names no
    # lecture).
    assert {k: result[k] for k in ("created", "updated", "unchanged", "enrolled", "merged")} == {
        "created": 11, "updated": 0, "unchanged": 0, "enrolled": 10, "merged": 0,
    }  # fmt: skip
    assert result["error_count"] == 3 and len(result["errors"]) == 3
    assert [(e["column"], e["code"]) for e in result["errors"]] == [
        ("이름", "name_missing"),
        ("보호자 연락처", "guardian_phone_invalid"),
        ("보호자 연락처", "guardian_phone_missing"),
    ]
    assert [w["reason"] for w in result["warnings"]] == ["student_phone_invalid"]
    assert result["warning_count"] == 1 and result["duplicate_count"] == 1
    first_row = result["duplicates"][0]["duplicate_of_row"]
    assert first_row == 5  # the first student row, under the title and the header
    assert result["error_workbook_url"] and result["same_file_as"] is None

    state = await snapshot(tenant.id)
    got = sorted((s["name"], s["phone"], s["school"], s["grade"]) for s in state["students"])
    want = sorted(
        (e["name"], e["phone"], e["school"], e["grade"]) for e in expected_students(sheet)
    )
    assert got == want
    assert {(e["lecture"], e["status"], e["source"]) for e in state["enrollments"]} == {
        (lecture, "active", "import")
    }
    # The read model is kept (the student without a lecture has none).
    assert sorted(s["enrollment_count"] for s in state["students"]) == [0] + [1] * 10
    assert {lk["relation"] for lk in state["links"]} == {"mother"}  # "어머니" is a relation
    # The upload and the work files are gone; the error workbook stays (24 h).
    assert objects_under(job["input_key"].rsplit("/", 1)[0]) == []
    assert len(objects_under(storage.object_key("exports", str(tenant.id), job_id))) == 1


async def test_dry_run_changes_nothing(tenant: Any) -> None:
    await create_lecture(tenant, code="DRY-1")
    sheet = with_problems(messy_rows(6, lecture="DRY-1", seed=1))
    before = await snapshot(tenant.id)
    job_id = await accepted(tenant, write_xlsx(sheet), dry_run=True)
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    assert job["result"]["dry_run"] is True
    assert (job["result"]["created"], job["result"]["enrolled"]) == (7, 6)
    assert job["result"]["error_count"] == 3
    assert await snapshot(tenant.id) == before
    async with connection() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM import_lock WHERE tenant = $1", tenant.id)
            == 0
        )


async def test_every_step_redelivered_gives_the_same_state(tenant: Any) -> None:
    lecture = await create_lecture(tenant, code="RE-1")
    sheet = messy_rows(7, lecture="RE-1", seed=2)
    job_id = await accepted(tenant, write_xlsx(sheet))
    # Every message delivered three times, each step racing nothing but itself.
    await run_chain(job_id, repeat=3)
    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    assert (job["result"]["created"], job["result"]["enrolled"]) == (7, 7)
    state = await snapshot(tenant.id)
    assert len(state["students"]) == 7 and len(state["enrollments"]) == 7
    assert {e["lecture"] for e in state["enrollments"]} == {lecture}
    # After DONE, a late copy of any step changes nothing.
    await run_chain(job_id)
    assert await snapshot(tenant.id) == state
    assert (await job_of(job_id))["result"] == job["result"]


async def test_same_file_again_changes_nothing_and_says_so(tenant: Any) -> None:
    await create_lecture(tenant, code="SAME-1")
    data = write_xlsx(messy_rows(5, lecture="SAME-1", seed=3))
    first = await accepted(tenant, data)
    await run_chain(first)
    state = await snapshot(tenant.id)
    second = await accepted(tenant, data)
    await run_chain(second)
    result = (await job_of(second))["result"]
    assert {k: result[k] for k in ("created", "updated", "unchanged", "enrolled")} == {
        "created": 0, "updated": 0, "unchanged": 5, "enrolled": 0,
    }  # fmt: skip
    assert result["same_file_as"] == first and "imported before" in result["note"]
    assert await snapshot(tenant.id) == state


async def matched_import(tenant: Any, code: str) -> tuple[Any, Any, pl.DataFrame]:
    """Four students for lecture ``code``, matched and not applied: (job, import, plan)."""
    await create_lecture(tenant, code=code)
    job_id = await accepted(tenant, write_xlsx(messy_rows(4, lecture=code, seed=4)))
    for step in CHAIN[:3]:
        await step(job_id=job_id)
    imp = await imports.load_import(job_id)
    assert imp is not None and imp.step == "matched" and imp.chunks == 1
    return job_id, imp, await steps.get_frame(imp, "plan.parquet")


async def test_a_chunk_applied_twice_writes_once(tenant: Any) -> None:
    job_id, imp, plan = await matched_import(tenant, "CH-1")
    assert await steps.apply_chunk(imp, 0, plan) is True
    once = await snapshot(tenant.id)
    assert await steps.apply_chunk(imp, 0, plan) is False
    assert await snapshot(tenant.id) == once
    imp = await imports.load_import(job_id)
    assert imp is not None and (imp.applied_chunks, imp.created, imp.enrolled) == (1, 4, 4)


async def test_a_chunk_applied_elsewhere_meanwhile_is_rolled_back(tenant: Any) -> None:
    job_id, imp, plan = await matched_import(tenant, "CH-2")
    before = await snapshot(tenant.id)

    async def commit_elsewhere() -> None:
        async with connection() as conn:
            await conn.execute("UPDATE excel_import SET applied_chunks = 1 WHERE id = $1", imp.id)

    async def taken_over() -> None:
        # Between this apply's first statements and its enrolments, an apply that took
        # over the import commits the same chunk (on a connection of its own).
        await asyncio.create_task(commit_elsewhere(), context=contextvars.Context())

    assert await steps.apply_chunk(imp, 0, plan, turn=taken_over()) is False
    assert await snapshot(tenant.id) == before
    imp = await imports.load_import(job_id)
    assert imp is not None and (imp.applied_chunks, imp.created, imp.enrolled) == (1, 0, 0)


async def test_second_import_waits_for_the_tenant_lock(tenant: Any, make_tenant: Any) -> None:
    first = await accepted(tenant, write_xlsx(messy_rows(3, seed=5)))
    second = await accepted(tenant, write_xlsx(messy_rows(3, seed=6)))
    for step in CHAIN[:3]:
        await step(job_id=first)  # first now holds the lock, not yet applied
    for step in CHAIN[:3]:
        await step(job_id=second)
    job = await job_of(second)
    assert (job["status"], job["stage"]) == ("RUNNING", "waiting for another import")
    imp = await imports.load_import(second)
    assert imp is not None and imp.step == "validated" and imp.waiting_since is not None
    assert len((await snapshot(tenant.id))["students"]) == 0

    # Another academy is not held up by this one's lock.
    other = await make_tenant()
    theirs = await accepted(other, write_xlsx(messy_rows(2, seed=7)))
    await run_chain(theirs)
    assert (await job_of(theirs))["status"] == "DONE"

    for step in CHAIN[3:]:
        await step(job_id=first)
    assert (await job_of(first))["status"] == "DONE"
    await run_chain(second)
    job = await job_of(second)
    assert job["status"] == "DONE" and job["result"]["created"] == 3
    assert len((await snapshot(tenant.id))["students"]) == 6


async def test_lock_of_a_dead_import_is_taken_over(tenant: Any) -> None:
    dead = await accepted(tenant, write_xlsx(messy_rows(2, seed=8)))
    scope = TenantScope(tenant.id)
    assert await imports.take_import_lock(scope, dead) is None
    live = await accepted(tenant, write_xlsx(messy_rows(2, seed=9)))
    assert await imports.take_import_lock(scope, live) == uuid.UUID(dead)
    async with connection() as conn:
        await conn.execute("UPDATE job SET status = 'FAILED' WHERE id = $1", uuid.UUID(dead))
    assert await imports.take_import_lock(scope, live) is None


async def test_corrupt_file_fails_with_a_reason_and_applies_nothing(tenant: Any) -> None:
    data = write_xlsx(messy_rows(20))
    job_id = await accepted(tenant, data[: len(data) // 2])  # a ZIP cut in half
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "FAILED"
    assert "could not be read as an Excel workbook" in job["error"]
    assert len((await snapshot(tenant.id))["students"]) == 0
    assert objects_under(job["input_key"].rsplit("/", 1)[0]) == []


async def test_password_protected_file_fails_with_a_reason(tenant: Any) -> None:
    job_id = await accepted(tenant, encrypted_workbook())
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "FAILED" and "protected with a password" in job["error"]


async def test_legacy_xls_is_imported(tenant: Any) -> None:
    sheet = messy_rows(4, seed=11)
    job_id = await accepted(tenant, write_xls(sheet))
    await run_chain(job_id)
    job = await job_of(job_id)
    assert job["status"] == "DONE", job["error"]
    assert job["input_key"].endswith("/upload.xls") and job["result"]["created"] == 4
    names = sorted(s["name"] for s in (await snapshot(tenant.id))["students"])
    assert names == sorted(e["name"] for e in expected_students(sheet))


async def test_status_route_is_tenant_scoped_and_for_excel_jobs_only(
    tenant: Any, make_tenant: Any
) -> None:
    job_id = await accepted(tenant, write_xlsx(messy_rows(2)))
    other = await make_tenant()
    path = f"/api/v1/enrollments/excel_job_status/{job_id}/"
    r = await other.client.get(path, headers=await other.headers())
    assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
    probe = await submit(PROBES["ai-lite"], tenant_id=tenant.id, kind="probe")
    r = await tenant.client.get(
        f"/api/v1/enrollments/excel_job_status/{probe.id}/", headers=await tenant.headers()
    )
    assert r.status_code == 404
