"""Excel import and exports through the real path: HTTP upload, R2 (the local S3 server),
SQS (the local server) and a real ``ai-lite`` worker process."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openpyxl
import pytest

from models.db import connection
from ops import storage
from ops.settings import get_settings
from tests.conftest import WorkerProcess, wait_for
from tests.factories.attendance import check_many, create_class
from tests.factories.bombs import huge_cell_xlsx
from tests.factories.grades import class_with_students, scored_exam
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import (
    expected_students,
    messy_rows,
    read_back,
    with_problems,
    write_csv,
    write_xlsx,
)
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


@pytest.fixture(scope="module")
def worker(database: None, provisioned: Any) -> Iterator[WorkerProcess]:
    """One ai-lite worker for the module (two threads: two imports can run at once)."""
    q = get_settings().queue_for("ai-lite")
    purge(q, f"{q}-dlq")
    w = WorkerProcess(["ai-lite"], threads=2)
    yield w
    w.stop()


async def upload(tenant: Any, data: bytes, filename: str = "명단.xlsx", **form: str) -> str:
    r = await tenant.client.post(
        "/api/v1/enrollments/excel",
        files={"file": (filename, data)},
        data=form,
        headers=await tenant.headers(),
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def poll(tenant: Any, job_id: str, worker: WorkerProcess, timeout: float = 90) -> Any:
    """Poll the seed's route until DONE or FAILED."""
    headers = await tenant.headers()
    path = f"/api/v1/enrollments/excel_job_status/{job_id}/"

    async def finished() -> Any:
        r = await tenant.client.get(path, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        return body if body["status"] in ("DONE", "FAILED") else None

    body = await wait_for(finished, timeout=timeout)
    assert body, f"job {job_id} did not finish:\n{worker.output()[-4000:]}"
    return body


async def download(url: str) -> bytes:
    def get() -> bytes:
        r = httpx.get(url, timeout=30)
        r.raise_for_status()
        return r.content

    return await asyncio.to_thread(get)


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_upload_to_done_with_exact_counts(tenant: Any, worker: WorkerProcess) -> None:
    lecture = await create_lecture(tenant, code="E2E-A", capacity=50)
    sheet = with_problems(messy_rows(15, lecture="e2e-a", seed=0))
    data = write_xlsx(sheet)
    job_id = await upload(tenant, data)
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    result = body["result"]
    assert {k: result[k] for k in ("created", "updated", "unchanged", "enrolled")} == {
        "created": 16, "updated": 0, "unchanged": 0, "enrolled": 15,
    }  # fmt: skip
    first_bad = 5 + 15 + len(sheet.blank_after)
    assert [(e["row"], e["column"], e["code"]) for e in result["errors"]] == [
        (first_bad, "이름", "name_missing"),
        (first_bad + 1, "보호자 연락처", "guardian_phone_invalid"),
        (first_bad + 3, "보호자 연락처", "guardian_phone_missing"),
    ]
    # The bad student phone is a warning (the student is imported without it), the repeat
    # of the first row a duplicate.
    assert result["warnings"] == [
        {"row": first_bad + 2, "column": "연락처", "reason": "student_phone_invalid"}
    ]
    assert result["duplicates"] == [{"row": first_bad + 4, "duplicate_of_row": 5}]
    assert set(result["stage_seconds"]) >= {"parsed", "validated", "matched", "applied"}

    students = await fetch(
        "SELECT name, phone, school, grade FROM student WHERE tenant = $1", tenant.id
    )
    want = [
        {k: e[k] for k in ("name", "phone", "school", "grade")} for e in expected_students(sheet)
    ]
    assert sorted(students, key=lambda s: (s["name"], s["phone"])) == sorted(
        want, key=lambda s: (s["name"], s["phone"])
    )
    roster = await tenant.client.get(
        f"/api/v1/lectures/{lecture['id']}/roster?limit=100", headers=await tenant.headers()
    )
    assert len(roster.json()["items"]) == 15

    # The error workbook: the three bad rows, the bad cells marked, behind a presigned link.
    book = openpyxl.load_workbook(io.BytesIO(await download(result["error_workbook_url"])))
    ws = book.active
    assert ws is not None
    assert [int(r[0].value) for r in ws.iter_rows(min_row=2)] == [
        first_bad, first_bad + 1, first_bad + 3,
    ]  # fmt: skip
    # The uploaded object is gone.
    job = (await fetch("SELECT input_key FROM job WHERE id = $1", uuid.UUID(job_id)))[0]
    assert storage.head(get_settings().r2_excel_bucket, job["input_key"]) is None

    # The same file again changes nothing, and says so.
    again = await upload(tenant, data)
    body = await poll(tenant, again, worker)
    assert body["status"] == "DONE", body["error"]
    assert (body["result"]["created"], body["result"]["unchanged"], body["result"]["enrolled"]) == (
        0,
        16,
        0,
    )
    assert body["result"]["same_file_as"] == job_id
    after = await fetch(
        "SELECT name, phone, school, grade FROM student WHERE tenant = $1", tenant.id
    )
    assert sorted(after, key=lambda s: (s["name"], s["phone"])) == sorted(
        students, key=lambda s: (s["name"], s["phone"])
    )


async def test_dry_run_and_csv_through_the_worker(tenant: Any, worker: WorkerProcess) -> None:
    sheet = messy_rows(6, seed=1)
    job_id = await upload(tenant, write_csv(sheet, encoding="cp949"), "명단.csv", dry_run="true")
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    assert (body["result"]["dry_run"], body["result"]["created"]) == (True, 6)
    assert await fetch("SELECT id FROM student WHERE tenant = $1", tenant.id) == []


async def test_corrupt_file_ends_failed(tenant: Any, worker: WorkerProcess) -> None:
    data = write_xlsx(messy_rows(10))
    job_id = await upload(tenant, data[:600])
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "FAILED"
    assert "could not be read as an Excel workbook" in body["error"]
    no_header = await upload(tenant, "학교,학년\n한빛중,중2\n".encode())
    body = await poll(tenant, no_header, worker)
    assert body["status"] == "FAILED" and "no recognisable header" in body["error"]
    assert await fetch("SELECT id FROM student WHERE tenant = $1", tenant.id) == []


def peak_worker_rss_kib(worker: WorkerProcess) -> int:
    """The worker process's peak resident size so far (the child of the dramatiq master)."""
    pid = worker.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        child = int(children.read().split()[0])
    with open(f"/proc/{child}/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1])


async def test_decompression_bomb_fails_at_once_and_the_worker_goes_on(
    tenant: Any, worker: WorkerProcess
) -> None:
    bomb = huge_cell_xlsx()  # about 1 MB that unpacks to a 1.1 GB cell
    # An import first, so the worker has loaded all it needs before it is measured.
    body = await poll(tenant, await upload(tenant, write_xlsx(messy_rows(5, seed=4))), worker)
    assert body["status"] == "DONE", body["error"]
    before = peak_worker_rss_kib(worker)
    job_id = await upload(tenant, bomb)
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "FAILED"
    assert body["result"]["code"] == "file_too_large_uncompressed"
    assert "too large once unpacked" in body["error"] and "1,100.0 MiB" in body["error"]
    r = await tenant.client.get(f"/api/v1/jobs/{job_id}", headers=await tenant.headers())
    assert (r.json()["error_code"], r.json()["attempts"]) == ("file_too_large_uncompressed", 1)
    # Refused from its directory and a few slices: the worker did not grow by the sheet.
    assert peak_worker_rss_kib(worker) - before < 64 * 1024
    # The same worker imports the next file.
    job_id = await upload(tenant, write_xlsx(messy_rows(5, seed=5)))
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    assert body["result"]["created"] == 5


async def test_concurrent_imports_of_one_tenant_take_turns(
    tenant: Any, make_tenant: Any, worker: WorkerProcess
) -> None:
    await create_lecture(tenant, code="LOCK-1")
    first = await upload(tenant, write_xlsx(messy_rows(40, lecture="LOCK-1", seed=2)))
    second = await upload(tenant, write_xlsx(messy_rows(30, lecture="LOCK-1", seed=3)))
    a, b = await poll(tenant, first, worker), await poll(tenant, second, worker)
    assert (a["status"], b["status"]) == ("DONE", "DONE"), (a["error"], b["error"])
    assert (a["result"]["created"], b["result"]["created"]) == (40, 30)
    windows = await fetch(
        "SELECT apply_started_at AS s, apply_finished_at AS f FROM excel_import "
        "WHERE job = ANY($1::uuid[]) ORDER BY apply_started_at",
        [uuid.UUID(first), uuid.UUID(second)],
    )
    # One applied after the other: the lock never let their writes interleave.
    assert windows[0]["f"] <= windows[1]["s"]
    assert len(await fetch("SELECT id FROM student WHERE tenant = $1", tenant.id)) == 70

    other = await make_tenant()
    r = await other.client.get(
        f"/api/v1/enrollments/excel_job_status/{first}/", headers=await other.headers()
    )
    assert r.status_code == 404
    r = await other.client.get(f"/api/v1/jobs/{first}", headers=await other.headers())
    assert r.status_code == 404


# --- exports -------------------------------------------------------------------------------


async def export(tenant: Any, path: str, worker: WorkerProcess, **body: Any) -> list[list[Any]]:
    r = await tenant.client.post(path, json=body or None, headers=await tenant.headers())
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    done = await poll(tenant, job_id, worker)
    assert done["status"] == "DONE", done["error"]
    result = done["result"]
    prefix = storage.object_key("exports", str(tenant.id), f"{job_id}_")
    assert result["key"].startswith(prefix) and result["filename"].endswith(".xlsx")
    rows = read_back(await download(result["url"]))
    assert result["rows"] == len(rows) - 1
    return rows


async def test_exports_round_trip(tenant: Any, worker: WorkerProcess) -> None:
    lecture, _ = await class_with_students(tenant, 4)
    students = await export(tenant, "/api/v1/exports/students", worker)
    db = await fetch(
        "SELECT name, phone, school, grade FROM student WHERE tenant = $1 AND deleted_at IS NULL "
        "ORDER BY name, id",
        tenant.id,
    )
    assert students[0][:4] == ["이름", "연락처", "학교", "학년"]
    assert [r[:4] for r in students[1:]] == [[d["name"], d["phone"], d["school"], d["grade"]]
                                               for d in db]  # fmt: skip
    assert all(r[1].startswith("010-") for r in students[1:])  # text, leading 0 kept

    roster = await export(tenant, f"/api/v1/exports/lectures/{lecture}/roster", worker)
    assert sorted(r[1] for r in roster[1:]) == sorted(d["name"] for d in db)

    exam, _ = await scored_exam(tenant, [90, 75.5, 60])
    scores = await export(tenant, f"/api/v1/exports/exams/{exam['id']}/scores", worker)
    want = await fetch(
        "SELECT s.name, sc.score FROM score sc JOIN student s ON s.id = sc.student "
        "WHERE sc.exam = $1 ORDER BY s.name, s.id",
        uuid.UUID(exam["id"]),
    )
    assert [(r[2], float(r[5])) for r in scores[1:]] == [
        (w["name"], float(w["score"])) for w in want
    ]

    klass = await create_class(tenant, students=3, sessions=2)
    statuses = dict(zip(klass.students, ["present", "late", "absent"], strict=True))
    for session in klass.sessions:
        await check_many(tenant, session, statuses)
    rows = await export(
        tenant,
        "/api/v1/exports/attendance",
        worker,
        date_from=klass.dates[0].isoformat(),
        date_to=klass.dates[-1].isoformat(),
        lecture_id=str(klass.lecture),
    )
    assert len(rows) == 1 + 6
    assert sorted(r[4] for r in rows[1:]) == sorted(["출석", "지각", "결석"] * 2)
    assert {r[0][:10] for r in rows[1:]} == {d.isoformat() for d in klass.dates}
    assert json.dumps(rows, ensure_ascii=False)  # everything read back as plain values
