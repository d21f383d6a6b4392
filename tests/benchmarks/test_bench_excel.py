"""Excel import figures (``just bench excel``): a 100k-row workbook end to end, and
parse+validate against an openpyxl-based reader on the same file.

Printed, never asserted. The local SQS server (moto) adds its own latency to each of the
five steps' hand-offs; that shows up as "queue hand-offs" below.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import phonenumbers

from models.db import connection
from pipelines.excel.archive import ArchiveLimits, check_archive
from pipelines.excel.common import field_of
from pipelines.excel.read import read_sheet
from pipelines.excel.validate import validate
from pipelines.korean import clean_text
from tests.benchmarks.server import api_server
from tests.conftest import wait_for
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import large_xlsx

ROWS = 100_000
PLACEHOLDERS = {"", "없음", "-", "--", "x", "X"}
MOBILE = re.compile(r"^010[0-9]{8}$")
PHONE_TEXT = re.compile(r"^[0-9+\-.()\[\] ]*$")


def row_phone(value: str) -> tuple[str | None, str | None]:
    """One phone cell the row-by-row way: (canonical mobile, problem)."""
    text = clean_text(value)
    if text in PLACEHOLDERS:
        return None, "missing"
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits.startswith("82") and (text.startswith("+") or len(digits) in (11, 12)):
        digits = digits[2:] if digits[2:].startswith("0") else "0" + digits[2:]
    elif digits.startswith("10") and len(digits) == 10:
        digits = "0" + digits
    if MOBILE.match(digits) and PHONE_TEXT.match(text):
        return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", None
    try:
        number = phonenumbers.parse(digits, "KR")
        landline = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        landline = False
    return None, "not_mobile" if landline else "invalid"


def openpyxl_parse_validate(data: bytes) -> tuple[int, int]:
    """The usual row-by-row reader: openpyxl (read-only mode), the header found by the same
    header families, every cell cleaned and every phone checked one at a time. Returns
    (valid rows, errors)."""
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    ws = wb.worksheets[0]
    header: dict[str, int] | None = None
    valid = errors = 0
    for row in ws.iter_rows(values_only=True):
        if header is None:
            found: dict[str, int] = {}
            for j, cell in enumerate(row):
                field = field_of(str(cell)) if cell is not None else None
                if field and field not in found:
                    found[field] = j
            if "name" in found and "guardian_phone" in found:
                header = found
            continue

        def text(field: str, row: tuple[Any, ...] = row, header: dict[str, int] = header) -> str:
            j = header.get(field)
            value = row[j] if j is not None and j < len(row) else None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return clean_text(str(value)) if value is not None else ""

        name = text("name")
        student, _ = row_phone(text("phone"))
        guardian, problem = row_phone(text("guardian_phone"))
        if not name and student is None and problem == "missing":
            continue  # not a data row
        for field in ("school", "grade"):
            text(field)
        if not name or guardian is None:
            errors += 1
        else:
            valid += 1
    wb.close()
    return valid, errors


def peak_rss_mb(pid: int) -> float:
    """The largest peak resident set (VmHWM) among ``pid`` and its descendants: the
    worker process that ran the import."""
    peak = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
        todo += [int(c) for c in children]
    return peak


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants, those that
    ended and were waited for included. On a shared machine wall times swing with the
    others' load; the work done is steadier."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [(pid, True)]
    while todo:
        current, top = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        # utime, stime; and for the top process, cutime and cstime (the children that ended:
        # Postgres' backends come and go).
        fields = (11, 12, 13, 14) if top else (11, 12)
        total += sum(int(stat[i]) for i in fields) / tick
        todo += [(int(c), False) for c in children]
    return total


def parent_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


async def postmaster_pid() -> int:
    """The Postgres server process: the parent of this connection's backend (read while
    the backend is alive)."""
    async with connection() as conn:
        return parent_pid(await conn.fetchval("SELECT pg_backend_pid()"))


def test_bench_excel_parse_validate_vs_openpyxl() -> None:
    data = large_xlsx(ROWS, lecture="BENCH")
    assert data is not None

    started = time.perf_counter()
    check_archive(data, ArchiveLimits.from_settings())
    archive_s = time.perf_counter() - started

    started = time.perf_counter()
    sheet = read_sheet(data, "xlsx", max_rows=ROWS)
    read_s = time.perf_counter() - started
    checked = validate(sheet)
    ours = time.perf_counter() - started

    started = time.perf_counter()
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    for _ in wb.worksheets[0].iter_rows(values_only=True):
        pass
    wb.close()
    openpyxl_read = time.perf_counter() - started

    started = time.perf_counter()
    valid, errors = openpyxl_parse_validate(data)
    theirs = time.perf_counter() - started

    assert valid == checked.rows.height and errors == checked.errors.height  # same work done
    print(
        f"\nexcel parse+validate, {ROWS:,} rows ({len(data) / 1e6:.1f} MB xlsx, 6 columns):\n"
        f"  fastexcel + Polars:  {ours:.2f} s ({ROWS / ours:,.0f} rows/s; read {read_s:.2f} s, "
        f"validate {ours - read_s:.2f} s)\n"
        f"  openpyxl reader:     {theirs:.2f} s ({ROWS / theirs:,.0f} rows/s; of which reading "
        f"alone {openpyxl_read:.2f} s)\n"
        f"  ratio: {theirs / ours:.1f}x faster (target >= 10x)\n"
        f"  of the read, the archive check (sizes, ratio, cell length): {archive_s:.2f} s"
    )


async def test_bench_excel_import_end_to_end(tenant: Any, start_worker: Any) -> None:
    await create_lecture(tenant, code="BENCH", capacity=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.xlsx"
        large_xlsx(ROWS, lecture="BENCH", path=str(path))
        data = path.read_bytes()
    worker = start_worker(["ai-lite"], threads=2)
    postgres = await postmaster_pid()
    async with (
        api_server(tenant) as server,
        httpx.AsyncClient(base_url=server.base, timeout=120) as client,
    ):
        cpu_before = tree_cpu_seconds(worker.proc.pid), tree_cpu_seconds(postgres)
        started = time.perf_counter()
        r = await client.post(
            "/api/v1/enrollments/excel",
            files={"file": ("수강생.xlsx", data)},
            headers=server.headers,
        )
        uploaded = time.perf_counter() - started
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        async def done() -> Any:
            s = await client.get(
                f"/api/v1/enrollments/excel_job_status/{job_id}/", headers=server.headers
            )
            body = s.json()
            return body if body["status"] in ("DONE", "FAILED") else None

        body = await wait_for(done, timeout=600, interval=0.2)
        total = time.perf_counter() - started
        worker_cpu = tree_cpu_seconds(worker.proc.pid) - cpu_before[0]
        postgres_cpu = tree_cpu_seconds(postgres) - cpu_before[1]
    assert body and body["status"] == "DONE", (body, worker.output()[-3000:])
    rss = peak_rss_mb(worker.proc.pid)
    async with connection() as conn:
        imp = await conn.fetchrow(
            "SELECT timings::text AS t FROM excel_import WHERE id = $1", uuid.UUID(job_id)
        )
    assert imp is not None
    stages = json.loads(imp["t"])
    result = body["result"]
    in_steps = sum(stages.values())
    order = ("parsed", "validated", "matched", "applied", "finished")
    print(
        f"\nexcel import end to end, {ROWS:,} rows (HTTP upload -> R2 -> 5 steps on one "
        f"ai-lite worker -> DONE; embedded Postgres, local SQS/S3 server):\n"
        f"  upload -> DONE {total:.1f} s (target <= 6 s); peak worker RSS {rss:.0f} MB "
        f"(target <= 800 MB)\n"
        f"  upload+202 {uploaded:.2f} s, "
        + ", ".join(f"{k} {stages[k]:.2f} s" for k in order if k in stages)
        + f", queue hand-offs and polling {total - uploaded - in_steps:.2f} s\n"
        f"  CPU used meanwhile: worker {worker_cpu:.1f} s, Postgres {postgres_cpu:.1f} s "
        f"(steadier than wall times on a shared machine)\n"
        f"  created {result['created']:,}, enrolled {result['enrolled']:,}, "
        f"errors {result['error_count']}"
    )
