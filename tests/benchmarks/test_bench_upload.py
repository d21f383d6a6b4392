"""`just bench upload`: what a 147 MB chunked JSON scan upload (no Content-Length, over the
100 MiB OMR limit) costs the API process. Prints the process's peak RSS (VmHWM) before and
after, and the answer; asserts nothing."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.server import api_server
from tests.factories.grades import create_exam, create_lecture

TOTAL = 147 * 1024 * 1024
CHUNK = 64 * 1024


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def body() -> AsyncIterator[bytes]:
    sent = 0
    yield b'{"files": [{"filename": "a.png", "content_base64": "'
    piece = base64.b64encode(b"\0" * (CHUNK // 4 * 3))
    while sent < TOTAL:
        sent += len(piece)
        yield piece
    yield b'"}]}'


async def upload(server: Any, exam_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.base, timeout=120) as client:
        try:
            r = await client.post(
                f"/api/v1/exams/{exam_id}/scans",
                content=body(),
                headers={**server.headers, "Content-Type": "application/json"},
            )
        except httpx.HTTPError as exc:
            return f"connection closed while sending ({type(exc).__name__})"
    return f"{r.status_code} {r.json().get('type')}"


async def test_bench_chunked_upload_memory(tenant: Any) -> None:
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, question_count=5, answer_key={"1": ["1"]})
    card = await tenant.client.post(
        "/api/v1/omr/templates/builtin", json={"name": "card", "questions": 5}, headers=h
    )
    await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card.json()["id"]}, headers=h
    )
    async with api_server(tenant) as server:
        before = peak_rss_mb(server.pid)
        answer = await upload(server, exam["id"])
        after = peak_rss_mb(server.pid)
    print(
        f"\n147 MB chunked JSON upload: {answer}; API peak RSS {before:.0f} MB -> {after:.0f} MB "
        f"(+{after - before:.0f} MB)"
    )
