"""BOLA cases of the OMR API: every route addressed by an id."""

from __future__ import annotations

import base64
import random
from typing import Any

from tests.bola import bola_case
from tests.factories.grades import create_exam, create_lecture


async def _template(tenant: Any) -> str:
    r = await tenant.client.post(
        "/api/v1/omr/templates/builtin",
        json={"name": f"card-{random.randrange(10**9)}", "questions": 5},
        headers=await tenant.headers(),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _exam(tenant: Any) -> str:
    return str((await create_exam(tenant, await create_lecture(tenant), question_count=5))["id"])


async def _exam_with_card(tenant: Any) -> str:
    exam = await _exam(tenant)
    r = await tenant.client.put(
        f"/api/v1/exams/{exam}/omr",
        json={"template_id": await _template(tenant)},
        headers=await tenant.headers(),
    )
    assert r.status_code == 200, r.text
    return exam


async def _batch(tenant: Any) -> str:
    exam = await _exam_with_card(tenant)
    r = await tenant.client.post(
        f"/api/v1/exams/{exam}/scans",
        json={"files": [{"filename": "x.png", "content_base64": base64.b64encode(b"x").decode()}]},
        headers=await tenant.headers(),
    )
    assert r.status_code == 202, r.text
    return str(r.json()["batch_id"])


async def _page(tenant: Any) -> str:
    """A page that was read (the batch's steps run in this process)."""
    from actors import omr as omr_actors
    from models.db import connection

    batch = await _batch(tenant)
    async with connection() as conn:
        job = await conn.fetchval("SELECT job FROM omr_batch WHERE id = $1::uuid", batch)
    await omr_actors._split(str(job), batch)
    async with connection() as conn:
        page = await conn.fetchval("SELECT id FROM omr_page WHERE batch = $1::uuid", batch)
        # Stand in for a read page: review needs one.
        await conn.execute(
            "UPDATE omr_page SET status = 'DONE', answers = $2::jsonb, error = NULL, "
            "error_code = NULL WHERE id = $1",
            page,
            '{"1": "", "2": "", "3": "", "4": "", "5": ""}',
        )
    return str(page)


bola_case("GET", "/api/v1/omr/templates/{id}")(_template)
bola_case(
    "PATCH",
    "/api/v1/omr/templates/{id}",
    json={"name": "hijacked"},
    read_path="/api/v1/omr/templates/{id}",
)(_template)
bola_case("DELETE", "/api/v1/omr/templates/{id}", read_path="/api/v1/omr/templates/{id}")(_template)
bola_case("GET", "/api/v1/omr/templates/{id}/card.png")(_template)
bola_case("GET", "/api/v1/omr/templates/{id}/card.pdf")(_template)
bola_case("GET", "/api/v1/exams/{id}/omr")(_exam)
bola_case(
    "PUT",
    "/api/v1/exams/{id}/omr",
    json={"marking": {"default": {"correct": 2}}},
    read_path="/api/v1/exams/{id}/omr",
)(_exam)
bola_case("GET", "/api/v1/exams/{id}/scans")(_exam_with_card)
bola_case(
    "POST",
    "/api/v1/exams/{id}/scans",
    json={"files": [{"filename": "x.png", "content_base64": base64.b64encode(b"x").decode()}]},
    read_path="/api/v1/exams/{id}/omr",
)(_exam_with_card)
bola_case("GET", "/api/v1/exams/{id}/omr/review")(_exam)
bola_case("GET", "/api/v1/omr/batches/{id}")(_batch)
bola_case("GET", "/api/v1/omr/batches/{id}/pages")(_batch)
bola_case("POST", "/api/v1/omr/batches/{id}/regrade", read_path="/api/v1/omr/batches/{id}")(_batch)
bola_case("GET", "/api/v1/omr/pages/{id}")(_page)
bola_case(
    "POST",
    "/api/v1/omr/pages/{id}/review",
    json={},
    read_path="/api/v1/omr/pages/{id}",
)(_page)


bola_case(
    "POST",
    "/api/v1/exams/{id}/omr/omrchecker-evaluation",
    json={
        "evaluation": {
            "source_type": "custom",
            "options": {"questions_in_order": ["1", "2"], "answers_in_order": ["1", "2"]},
            "marking_schemes": {"DEFAULT": {"correct": "1", "incorrect": "0", "unmarked": "0"}},
        }
    },
    read_path="/api/v1/exams/{id}/omr",
)(_exam_with_card)
