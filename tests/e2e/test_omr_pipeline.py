"""OMR end to end: a PDF of scanned cards and a corrupt scan uploaded over HTTP, read by a
real worker process over the HTTP-speaking SQS server, scores in Postgres and annotated
sheets in storage."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from models.db import connection
from ops import storage
from ops.settings import get_settings
from tests.conftest import wait_for
from tests.factories.grades import create_exam, create_lecture, enrolled_student
from tests.factories.omr_sheets import scanned_stack
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


async def _exam_with_its_card(
    tenant: Any, h: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, list[str]], dict[str, Any]]:
    """Four enrolled students and a 20-question exam with a key and a built-in card."""
    c = tenant.client
    lecture = await create_lecture(tenant)
    students = [await enrolled_student(tenant, lecture) for _ in range(4)]
    key = {str(q): [str(((q * 7) % 5) + 1)] for q in range(1, 21)}
    exam = await create_exam(tenant, lecture, question_count=20, answer_key=key, max_score=100)
    r = await c.post(
        "/api/v1/omr/templates/builtin", json={"name": "e2e", "questions": 20}, headers=h
    )
    assert r.status_code == 201, r.text
    r = await c.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": r.json()["id"]}, headers=h
    )
    assert r.status_code == 200, r.text
    return students, key, exam


async def _check_pages_in_storage(exam: dict[str, Any], accepted: dict[str, Any]) -> None:
    """The batch's page rows and the scores' source, and each read page's annotated sheet."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT source, status, annotated_key, error FROM omr_page WHERE batch = $1 "
            "ORDER BY page_no",
            uuid.UUID(accepted["batch_id"]),
        )
        sources = await conn.fetch(
            "SELECT DISTINCT source FROM score WHERE exam = $1", uuid.UUID(exam["id"])
        )
    assert [r["source"] for r in rows][:4] == [f"stack.pdf p.{n}" for n in range(1, 5)]
    assert [s["source"] for s in sources] == ["omr"]
    bucket = get_settings().r2_ai_bucket
    for row in rows[:4]:
        assert row["status"] == "DONE"
        assert storage.get_bytes(bucket, row["annotated_key"]).startswith(b"\x89PNG")
    assert rows[4]["status"] == "FAILED" and "image" in rows[4]["error"]


async def test_pdf_upload_to_scores_and_annotated_sheets(tenant: Any, start_worker: Any) -> None:
    queue = get_settings().queue_for("ai-basic")
    purge(queue, f"{queue}-dlq")
    h = await tenant.headers()
    c = tenant.client
    students, key, exam = await _exam_with_its_card(tenant, h)
    pdf, corrupt, expected = scanned_stack(key, students)

    worker = start_worker(["ai-basic"])
    r = await c.post(
        f"/api/v1/exams/{exam['id']}/scans",
        files=[
            ("files", ("stack.pdf", pdf, "application/pdf")),
            ("files", ("corrupt.jpg", corrupt, "image/jpeg")),
        ],
        headers=h,
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["tier"] == "ai-basic"

    async def finished() -> Any:
        job = (await c.get(accepted["status_url"], headers=h)).json()
        return job if job["status"] in ("DONE", "FAILED") else None

    job = await wait_for(finished, timeout=180)
    assert job and job["status"] == "DONE", (job, worker.output()[-4000:])
    result = job["result"]
    assert result["pages"] == 5 and result["failed"] == 1 and result["scored"] == 4, result
    assert result["failures"][0]["source"] == "corrupt.jpg"
    assert result["failures"][0]["code"] == "not_an_image"

    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert {s["student_id"]: s["score"] for s in scores["items"]} == expected

    await _check_pages_in_storage(exam, accepted)
    out = worker.output()
    assert '"event": "OMR_BATCH_DONE"' in out and '"event": "SQS_JOB_COMPLETED"' in out
