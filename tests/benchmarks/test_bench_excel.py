"""Excel import figures (``just bench excel``): a 100k-row workbook end to end, and
parse+validate against an openpyxl-based reader on the same file.

Printed, never asserted. The local SQS server (moto) adds its own latency to each of the
five steps' hand-offs; that shows up as "queue hand-offs" below.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import openpyxl

from models.db import connection
from pipelines.excel.common import ALIAS_TO_FIELD, header_key
from pipelines.excel.read import read_sheet
from pipelines.excel.validate import validate
from pipelines.korean import InvalidPhone, clean_text, normalize_phone
from tests.benchmarks.server import api_server
from tests.conftest import wait_for
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import large_xlsx

ROWS = 100_000


def openpyxl_parse_validate(data: bytes) -> tuple[int, int]:
    """The usual row-by-row reader: openpyxl (read-only mode), the header found by the same
    aliases, every cell cleaned and every phone normalised one at a time. Returns (valid
    rows, errors)."""
    wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    ws = wb.worksheets[0]
    header: dict[str, int] | None = None
    valid = errors = 0
    seen: set[tuple[str, str]] = set()
    for row in ws.iter_rows(values_only=True):
        if header is None:
            found: dict[str, int] = {}
            for j, cell in enumerate(row):
                if cell is None:
                    continue
                field = ALIAS_TO_FIELD.get(header_key(str(cell)))
                if field and field not in found:
                    found[field] = j
            if "name" in found and "guardian_phone" in found:
                header = found
            continue
        if all(c is None or str(c).strip() == "" for c in row):
            continue

        def text(field: str, row: tuple[Any, ...] = row, header: dict[str, int] = header) -> str:
            j = header.get(field)
            value = row[j] if j is not None and j < len(row) else None
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            return clean_text(str(value)) if value is not None else ""

        bad = False
        name = text("name")
        if not name:
            bad = True
        phones = {}
        for field in ("phone", "guardian_phone"):
            raw = text(field)
            if not raw:
                bad = bad or field == "guardian_phone"
                continue
            try:
                phones[field] = normalize_phone(raw)
            except InvalidPhone:
                bad = True
        for field in ("school", "grade"):
            text(field)
        key = (name, phones.get("guardian_phone", ""))
        if key in seen:
            bad = True
        seen.add(key)
        if bad:
            errors += 1
        else:
            valid += 1
    wb.close()
    return valid, errors


def test_bench_excel_parse_validate_vs_openpyxl() -> None:
    data = large_xlsx(ROWS, lecture="BENCH")
    assert data is not None

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
        f"  ratio: {theirs / ours:.1f}x faster (target >= 10x)"
    )


async def test_bench_excel_import_end_to_end(tenant: Any, start_worker: Any) -> None:
    await create_lecture(tenant, code="BENCH", capacity=None)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.xlsx"
        large_xlsx(ROWS, lecture="BENCH", path=str(path))
        data = path.read_bytes()
    worker = start_worker(["ai-lite"], threads=2)
    async with (
        api_server(tenant) as server,
        httpx.AsyncClient(base_url=server.base, timeout=120) as client,
    ):
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
    assert body and body["status"] == "DONE", (body, worker.output()[-3000:])
    async with connection() as conn:
        imp = await conn.fetchrow(
            "SELECT timings::text AS t FROM excel_import WHERE id = $1", uuid.UUID(job_id)
        )
    assert imp is not None
    stages = json.loads(imp["t"])
    result = body["result"]
    in_steps = sum(stages.values())
    print(
        f"\nexcel import end to end, {ROWS:,} rows (HTTP upload -> R2 -> 5 steps on one "
        f"ai-lite worker -> DONE; embedded Postgres, local SQS/S3 server):\n"
        f"  total {total:.1f} s (target <= 20 s): upload+202 {uploaded:.2f} s, "
        + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
        + f", queue hand-offs and polling {total - uploaded - in_steps:.2f} s\n"
        f"  created {result['created']:,}, enrolled {result['enrolled']:,}, "
        f"errors {result['error_count']}"
    )
