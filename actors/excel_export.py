"""Excel exports, on the ``ai-lite`` tier: ``excel.export`` writes one sheet to
``exports/{tenant}/{job}_{filename}`` in the Excel bucket and returns a presigned link;
exports expire after 24 h (bucket lifecycle rule, or ``just storage-cleanup``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from actors.excel import TIER, download_url, expiry
from actors.jobs import fail_job, finish_job, job, set_progress, start_job
from models import exports
from models.scope import TenantScope
from ops import storage
from ops.settings import get_settings
from pipelines.excel import exports as sheets
from pipelines.excel.workbook import XLSX_CONTENT_TYPE, write_sheet

ExportLines = Callable[[TenantScope, dict[str, Any]], Awaitable[Sequence[object]]]


async def _students(scope: TenantScope, params: dict[str, Any]) -> Sequence[object]:
    return await exports.student_lines(scope)


async def _roster(scope: TenantScope, params: dict[str, Any]) -> Sequence[object]:
    return await exports.roster_lines(
        scope, msgspec.convert(params, sheets.RosterParams).lecture_id
    )


async def _attendance(scope: TenantScope, params: dict[str, Any]) -> Sequence[object]:
    p = msgspec.convert(params, sheets.AttendanceParams)
    return await exports.attendance_lines(scope, p.date_from, p.date_to, p.lecture_id)


async def _scores(scope: TenantScope, params: dict[str, Any]) -> Sequence[object]:
    return await exports.score_lines(scope, msgspec.convert(params, sheets.ScoresParams).exam_id)


EXPORTS: dict[str, tuple[sheets.Sheet, ExportLines]] = {
    "students": (sheets.STUDENTS, _students),
    "roster": (sheets.ROSTER, _roster),
    "attendance": (sheets.ATTENDANCE, _attendance),
    "scores": (sheets.SCORES, _scores),
}


@job("excel.export", tier=TIER, max_retries=3)
async def export(job_id: str, sheet: str, filename: str, params: dict[str, Any]) -> None:
    """Write one export sheet and finish the job with its presigned link. A redelivery
    after DONE does nothing; one before DONE writes the same key again."""
    job_row = await start_job(job_id, stage="exporting")
    if job_row is None:
        return
    found = EXPORTS.get(sheet)
    if found is None:
        await fail_job(job_id, f"unknown export {sheet!r}")
        return
    started = time.perf_counter()
    layout, read = found
    lines = await read(TenantScope(job_row.tenant), params)
    await set_progress(job_id, 50, "writing")
    data = await asyncio.to_thread(write_sheet, layout.name, layout.columns, layout.rows(lines))
    key = storage.excel_export_key(job_row.tenant, job_id, filename)
    await asyncio.to_thread(
        storage.put_bytes, get_settings().r2_excel_bucket, key, data, XLSX_CONTENT_TYPE
    )
    await finish_job(
        job_id,
        {
            "sheet": sheet,
            "filename": filename,
            "key": key,
            "rows": len(lines),
            "bytes": len(data),
            "url": download_url(key, filename),
            "expires_at": expiry(),
            "seconds": round(time.perf_counter() - started, 3),
        },
    )
