"""The OMR API over real Postgres and the local S3/SQS server: templates, an exam's
settings, a scan batch read step by step in this process (the steps are the actors'
own functions; the worker path is in tests/e2e/test_omr_pipeline.py), the review queue,
corrections and their audit."""

from __future__ import annotations

import base64
import json
import random
import uuid
from fractions import Fraction
from typing import Any

import cv2
import numpy as np
import pytest

from actors import omr as omr_actors
from models.db import connection
from ops import storage
from ops.settings import get_settings
from pipelines.omr.card import korean_card
from tests.conftest import OMRCHECKER_FIXTURES
from tests.factories.grades import create_exam, create_lecture, enrolled_student
from tests.factories.omr_sheets import make_sheet
from tests.sqs_helpers import purge

pytestmark = pytest.mark.usefixtures("broker")

FIXTURES = OMRCHECKER_FIXTURES


@pytest.fixture
def ai_queues(broker: Any) -> Any:
    names = [get_settings().queue_for(t) for t in ("ai-lite", "ai-basic")]
    purge(*names)
    yield
    purge(*names)


def _png(image: Any) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return bytes(data)


async def _builtin(tenant: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = await tenant.client.post("/api/v1/omr/templates/builtin", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_template_crud_and_printable_card(tenant: Any) -> None:
    h = await tenant.headers()
    c = tenant.client
    card = await _builtin(tenant, h, name="중간고사 카드", questions=30, choices=4, id_digits=8)
    assert card["source"] == "builtin" and card["questions"] == 30 and card["printable"]
    again = await c.post("/api/v1/omr/templates/builtin", json={"name": "중간고사 카드"}, headers=h)
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "name"

    png = await c.get(f"/api/v1/omr/templates/{card['id']}/card.png", headers=h)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    pdf = await c.get(f"/api/v1/omr/templates/{card['id']}/card.pdf", headers=h)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")

    r = await c.patch(f"/api/v1/omr/templates/{card['id']}", json={"name": "기말 카드"}, headers=h)
    assert r.status_code == 200 and r.json()["name"] == "기말 카드"
    bad = dict(card["spec"], page=[5, 5], questions=["nope"])
    r = await c.post("/api/v1/omr/templates", json={"spec": bad}, headers=h)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"spec.page", "spec.questions"} <= fields

    listed = await c.get("/api/v1/omr/templates?limit=1", headers=h)
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    r = await c.delete(f"/api/v1/omr/templates/{card['id']}", headers=h)
    assert r.status_code == 204
    r = await c.get(f"/api/v1/omr/templates/{card['id']}", headers=h)
    assert r.status_code == 404


async def test_omrchecker_import(tenant: Any) -> None:
    if not FIXTURES.exists():
        pytest.skip("fixtures not present")
    h = await tenant.headers()
    sample = FIXTURES / "samples" / "sample1"
    body = {
        "name": "sample1",
        "template": json.loads((sample / "template.json").read_text()),
        "config": json.loads((sample / "config.json").read_text()),
    }
    r = await tenant.client.post("/api/v1/omr/templates/omrchecker", json=body, headers=h)
    assert r.status_code == 422
    assert "omr_marker.jpg" in json.dumps(r.json()["errors"])
    body["marker_images"] = {
        "omr_marker.jpg": base64.b64encode((sample / "omr_marker.jpg").read_bytes()).decode()
    }
    r = await tenant.client.post("/api/v1/omr/templates/omrchecker", json=body, headers=h)
    assert r.status_code == 201, r.text
    imported = r.json()
    assert imported["source"] == "omrchecker" and not imported["printable"]
    assert imported["questions"] == 20 and imported["spec"]["student_field"] == "Roll"
    r = await tenant.client.get(f"/api/v1/omr/templates/{imported['id']}/card.png", headers=h)
    assert r.status_code == 409


async def test_exam_settings_validate_template_and_marking(tenant: Any) -> None:
    h = await tenant.headers()
    exam = await create_exam(
        tenant, await create_lecture(tenant), question_count=30, answer_key={"1": ["⑤"]}
    )
    small = await _builtin(tenant, h, name="small", questions=10)
    r = await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr",
        json={"template_id": small["id"], "marking": {"default": {"correct": "x"}}},
        headers=h,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"template_id", "marking.default.correct"}
    big = await _builtin(tenant, h, name="big", questions=30)
    marking = {"default": {"correct": 3, "incorrect": "-1/2"}, "points": {"1": 4}}
    r = await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr",
        json={"template_id": big["id"], "marking": marking},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["template_id"] == big["id"] and r.json()["answer_key"] == {"1": ["5"]}
    assert r.json()["marking"]["points"] == {"1": 4}
    r = await tenant.client.get(f"/api/v1/exams/{exam['id']}/omr", headers=h)
    assert r.json()["marking"]["default"]["incorrect"] == "-1/2"


async def _run_batch(job_id: str, batch_id: str) -> None:
    """The batch's steps in this process, in the order the workers run them."""
    await omr_actors._split(job_id, batch_id)
    async with connection() as conn:
        pages = await conn.fetch(
            "SELECT id FROM omr_page WHERE batch = $1 AND status = 'PENDING' ORDER BY page_no",
            uuid.UUID(batch_id),
        )
    for p in pages:
        await omr_actors._read_page_safe(str(p["id"]))
    await omr_actors._finish(job_id, batch_id)


async def _exam_with_its_card(
    tenant: Any, h: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, list[str]], dict[str, Any]]:
    """Four enrolled students and a 10-question exam with a key; a scan before the exam has
    a card is refused, then the card is set."""
    c = tenant.client
    lecture = await create_lecture(tenant)
    students = [await enrolled_student(tenant, lecture) for _ in range(4)]
    key = {str(q): [str((q % 5) + 1)] for q in range(1, 11)}
    key["10"] = ["⑤", "1"]
    exam = await create_exam(tenant, lecture, question_count=10, answer_key=key, max_score=100)
    card = await _builtin(tenant, h, name="10문항", questions=10)

    r = await c.post(
        f"/api/v1/exams/{exam['id']}/scans",
        headers=h,
        files=[("files", ("a.png", b"\x89PNG", "image/png"))],
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/no-omr-template"
    r = await c.put(f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card["id"]}, headers=h)
    assert r.status_code == 200
    return students, key, exam


async def _upload_scans(
    c: Any,
    h: dict[str, str],
    exam: dict[str, Any],
    key: dict[str, list[str]],
    students: list[dict[str, Any]],
) -> dict[str, Any]:
    """Six files (two good sheets, a stranger's, a text file, a blank page and another
    card's print) uploaded and read; returns the accepted upload."""
    template = korean_card(questions=10)
    rng = random.Random(42)
    digits = [s["phone"].replace("-", "")[-8:] for s in students]
    answers_a = {q: key[q][0].replace("⑤", "5") for q in key}  # all right
    answers_b = dict(answers_a, **{"1": "1", "2": "1"})  # two wrong
    sheet_a = make_sheet(
        template, rng, distortion="moderate", answers=answers_a, student=digits[0], difficulty=0
    )
    sheet_b = make_sheet(
        template, rng, distortion="clean", answers=answers_b, student=digits[1], difficulty=0
    )
    stranger = make_sheet(
        template,
        rng,
        distortion="clean",
        answers=answers_a,
        student="99990000",
        difficulty=0,
        print_digits=False,
    )
    # Another print of a card, its grid elsewhere: the wrong template for this exam.
    other_card = make_sheet(korean_card(questions=10, offset=(18.0, 18.0)), rng, distortion="clean")
    files = [
        ("files", ("a.jpg", sheet_a.data, "image/jpeg")),
        ("files", ("b.jpg", sheet_b.data, "image/jpeg")),
        ("files", ("notes.txt", b"this is not a scan", "text/plain")),
        ("files", ("stranger.jpg", stranger.data, "image/jpeg")),
        ("files", ("blank.png", _png(np.full((1754, 1240), 252, np.uint8)), "image/png")),
        ("files", ("other-card.jpg", other_card.data, "image/jpeg")),
    ]
    r = await c.post(f"/api/v1/exams/{exam['id']}/scans", files=files, headers=h)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["files"] == 6 and accepted["tier"] == "ai-basic"
    await _run_batch(str(accepted["job_id"]), str(accepted["batch_id"]))
    return accepted


async def _check_read_pages(
    c: Any,
    h: dict[str, str],
    exam: dict[str, Any],
    accepted: dict[str, Any],
    students: list[dict[str, Any]],
) -> dict[str, Any]:
    """The batch's pages, scores and annotated sheet; returns the failed text-file page."""
    job = (await c.get(accepted["status_url"], headers=h)).json()
    assert job["status"] == "DONE", job
    assert job["result"]["pages"] == 6 and job["result"]["failed"] == 3
    assert job["result"]["scored"] == 2 and job["result"]["unmatched"] == 1
    pages_url = f"/api/v1/omr/batches/{accepted['batch_id']}/pages"
    pages = (await c.get(pages_url, headers=h)).json()["items"]
    # Cursor pages in upload order, like every list.
    first = (await c.get(f"{pages_url}?limit=4", headers=h)).json()
    rest = (await c.get(f"{pages_url}?cursor={first['next_cursor']}", headers=h)).json()
    assert [p["page_no"] for p in first["items"] + rest["items"]] == [1, 2, 3, 4, 5, 6]
    assert rest["next_cursor"] is None
    by_source = {p["source"]: p for p in pages}
    failed = by_source["notes.txt"]
    assert failed["status"] == "FAILED" and failed["error_code"] == "not_an_image"
    assert "not an image" in failed["error"]
    assert by_source["blank.png"]["error_code"] == "blank_page"
    assert by_source["other-card.jpg"]["error_code"] == "wrong_template"
    assert "does not match the template" in by_source["other-card.jpg"]["error"]
    assert by_source["a.jpg"]["score"] == 100.0
    assert by_source["b.jpg"]["score"] == 80.0
    assert by_source["a.jpg"]["student_id"] == students[0]["id"]

    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert {(s["student_id"], s["score"]) for s in scores["items"]} == {
        (students[0]["id"], 100.0),
        (students[1]["id"], 80.0),
    }
    # The annotated sheet is in storage, linked from the page.
    async with connection() as conn:
        annotated = await conn.fetchval(
            "SELECT annotated_key FROM omr_page WHERE id = $1", uuid.UUID(by_source["a.jpg"]["id"])
        )
    png = storage.get_bytes(get_settings().r2_ai_bucket, annotated)
    assert png.startswith(b"\x89PNG") and by_source["a.jpg"]["annotated_url"]

    # Re-reading a page is a no-op: nothing is duplicated.
    await omr_actors._read_page_safe(by_source["a.jpg"]["id"])
    again = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert again["count"] == 2
    return failed


async def _review_the_stranger(
    c: Any, h: dict[str, str], exam: dict[str, Any], students: list[dict[str, Any]]
) -> str:
    # The stranger's sheet waits for a teacher, who assigns it and corrects question 1.
    queue = (await c.get(f"/api/v1/exams/{exam['id']}/omr/review", headers=h)).json()
    pending = {p["source"]: p for p in queue["items"]}
    assert "stranger.jpg" in pending
    assert pending["stranger.jpg"]["review_items"][0] == {
        "kind": "student",
        "reason": "unmatched",
        "student_number": "99990000",
    }
    page_id = pending["stranger.jpg"]["id"]
    r = await c.post(
        f"/api/v1/omr/pages/{page_id}/review", json={"student_id": students[0]["id"]}, headers=h
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/duplicate-student"
    r = await c.post(
        f"/api/v1/omr/pages/{page_id}/review",
        json={"student_id": students[2]["id"], "answers": {"1": "①", "99": "1"}},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "answers.99"
    r = await c.post(
        f"/api/v1/omr/pages/{page_id}/review",
        json={"student_id": students[2]["id"], "answers": {"1": "①"}},
        headers=h,
    )
    assert r.status_code == 200, r.text
    reviewed = r.json()
    assert reviewed["needs_review"] is False and reviewed["score"] == 90.0
    assert reviewed["answers"]["1"] == "1" and reviewed["reading"]["fields"]
    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert (students[2]["id"], 90.0) in {(s["student_id"], s["score"]) for s in scores["items"]}
    async with connection() as conn:
        audit = await conn.fetchrow(
            "SELECT action, before, after FROM audit_log WHERE entity = 'omr_page' "
            "AND entity_id = $1",
            uuid.UUID(page_id),
        )
    assert audit["action"] == "review"
    assert audit["after"]["student_id"] == students[2]["id"]
    queue = (await c.get(f"/api/v1/exams/{exam['id']}/omr/review", headers=h)).json()
    assert page_id not in {p["id"] for p in queue["items"]}
    return page_id


async def _move_to_another_student(
    c: Any, h: dict[str, str], exam: dict[str, Any], page_id: str, students: list[dict[str, Any]]
) -> None:
    # Given to the wrong student: moving the sheet takes the score along, audited.
    r = await c.post(
        f"/api/v1/omr/pages/{page_id}/review", json={"student_id": students[3]["id"]}, headers=h
    )
    assert r.status_code == 200 and r.json()["score"] == 90.0
    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    by_student = {s["student_id"]: s["score"] for s in scores["items"]}
    assert students[2]["id"] not in by_student and by_student[students[3]["id"]] == 90.0
    async with connection() as conn:
        deleted = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE entity = 'score' AND action = 'delete' "
            "AND before->>'student_id' = $1",
            students[2]["id"],
        )
    assert deleted == 1


async def _regrade_after_the_key_is_fixed(
    c: Any,
    h: dict[str, str],
    exam: dict[str, Any],
    key: dict[str, list[str]],
    accepted: dict[str, Any],
    students: list[dict[str, Any]],
) -> None:
    # The key is fixed after the scans were read: the batch is scored again, once.
    fixed = dict(key, **{"2": [key["2"][0], "1"]})
    r = await c.patch(f"/api/v1/exams/{exam['id']}", json={"answer_key": fixed}, headers=h)
    assert r.status_code == 200, r.text
    url = f"/api/v1/omr/batches/{accepted['batch_id']}/regrade"
    r = await c.post(url, headers=h)
    assert r.status_code == 200 and r.json()["pages"] == 3 and r.json()["changed"] == 1, r.text
    assert (await c.post(url, headers=h)).json()["changed"] == 0
    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert {s["student_id"]: s["score"] for s in scores["items"]} == {
        students[0]["id"]: 100.0,
        students[1]["id"]: 90.0,
        students[3]["id"]: 90.0,
    }


async def test_scan_batch_scores_fails_bad_pages_and_review_rescores(
    tenant: Any, ai_queues: Any
) -> None:
    h = await tenant.headers()
    c = tenant.client
    students, key, exam = await _exam_with_its_card(tenant, h)
    accepted = await _upload_scans(c, h, exam, key, students)
    failed = await _check_read_pages(c, h, exam, accepted, students)
    page_id = await _review_the_stranger(c, h, exam, students)
    await _move_to_another_student(c, h, exam, page_id, students)
    await _regrade_after_the_key_is_fixed(c, h, exam, key, accepted, students)

    r = await c.post(f"/api/v1/omr/pages/{failed['id']}/review", json={}, headers=h)
    assert r.status_code == 409 and r.json()["type"] == "/problems/page-not-read"
    batches = (await c.get(f"/api/v1/exams/{exam['id']}/scans", headers=h)).json()["items"]
    assert batches[0]["status"] == "DONE" and batches[0]["pages_failed"] == 3


async def test_small_json_upload_runs_on_the_lite_tier(tenant: Any, ai_queues: Any) -> None:
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, question_count=5, answer_key={"1": ["1"]})
    card = await _builtin(tenant, h, name="rescan", questions=5)
    await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card["id"]}, headers=h
    )
    sheet = make_sheet(korean_card(questions=5), random.Random(1), distortion="clean")
    r = await tenant.client.post(
        f"/api/v1/exams/{exam['id']}/scans",
        json={
            "files": [
                {"filename": "rescan.jpg", "content_base64": base64.b64encode(sheet.data).decode()}
            ]
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    assert r.json()["tier"] == "ai-lite"
    r = await tenant.client.post(f"/api/v1/exams/{exam['id']}/scans", json={"files": []}, headers=h)
    assert r.status_code == 422


async def test_omrchecker_template_key_and_sheets_through_the_api(
    tenant: Any, ai_queues: Any
) -> None:
    """OMRChecker's weighted-answers sample: its template and evaluation imported, its two
    sheets uploaded; the points match its snapshot (5.5 and 10)."""
    if not FIXTURES.exists():
        pytest.skip("fixtures not present")
    h = await tenant.headers()
    c = tenant.client
    sample = FIXTURES / "samples" / "answer-key" / "weighted-answers"
    r = await c.post(
        "/api/v1/omr/templates/omrchecker",
        json={"name": "weighted", "template": json.loads((sample / "template.json").read_text())},
        headers=h,
    )
    assert r.status_code == 201, r.text
    template_id = r.json()["id"]
    exam = await create_exam(tenant, await create_lecture(tenant), max_score=100)
    evaluation = json.loads((sample / "evaluation.json").read_text())
    r = await c.post(
        f"/api/v1/exams/{exam['id']}/omr/omrchecker-evaluation",
        json={"evaluation": evaluation},
        headers=h,
    )
    assert r.status_code == 409
    await c.put(f"/api/v1/exams/{exam['id']}/omr", json={"template_id": template_id}, headers=h)
    r = await c.post(
        f"/api/v1/exams/{exam['id']}/omr/omrchecker-evaluation",
        json={"evaluation": evaluation},
        headers=h,
    )
    assert r.status_code == 200, r.text
    settings = r.json()
    assert settings["question_count"] == 5
    assert settings["answer_key"] == {
        "1": ["C"],
        "2": ["E"],
        "3": ["A", "C"],
        "4": ["B", "C"],
        "5": ["C"],
    }
    assert settings["marking"]["answer_points"] == {"4": {"B": 2, "C": "3/2"}}

    files = [
        ("files", (name, (sample / "images" / name).read_bytes(), "image/png"))
        for name in ("adrian_omr.png", "adrian_omr_2.png")
    ]
    r = await c.post(f"/api/v1/exams/{exam['id']}/scans", files=files, headers=h)
    assert r.status_code == 202, r.text
    await _run_batch(str(r.json()["job_id"]), str(r.json()["batch_id"]))
    pages = (await c.get(f"/api/v1/omr/batches/{r.json()['batch_id']}/pages", headers=h)).json()[
        "items"
    ]
    points = {p["source"]: sum(Fraction(q["points"]) for q in p["results"]) for p in pages}
    assert points == {"adrian_omr.png": Fraction(11, 2), "adrian_omr_2.png": 10}
    # No student number on these sheets: they wait for a teacher, unscored.
    assert all(p["needs_review"] and p["score"] is None for p in pages)
    assert pages[0]["review_items"][0]["reason"] == "no_student_number"


async def test_a_page_failing_on_its_last_attempt_ends_failed_and_the_batch_finishes(
    tenant: Any, ai_queues: Any
) -> None:
    """Storage lost the page: retried, and on the last attempt the page is FAILED with the
    reason rather than left PENDING (the batch waits for every page)."""
    h = await tenant.headers()
    exam = await create_exam(tenant, await create_lecture(tenant), question_count=5)
    card = await _builtin(tenant, h, name="lost", questions=5)
    await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card["id"]}, headers=h
    )
    sheet = make_sheet(korean_card(questions=5), random.Random(3), distortion="clean")
    r = await tenant.client.post(
        f"/api/v1/exams/{exam['id']}/scans",
        files=[("files", ("s.jpg", sheet.data, "image/jpeg"))],
        headers=h,
    )
    job_id, batch_id = str(r.json()["job_id"]), str(r.json()["batch_id"])
    await omr_actors._split(job_id, batch_id)
    async with connection() as conn:
        page = await conn.fetchrow(
            "SELECT id, image_key FROM omr_page WHERE batch = $1", uuid.UUID(batch_id)
        )
    storage.delete(get_settings().r2_ai_bucket, page["image_key"])
    for _ in range(omr_actors.READ_RETRIES):
        with pytest.raises(Exception, match=r"NoSuchKey|Not Found|404"):
            await omr_actors._read_page_safe(str(page["id"]))
    await omr_actors._read_page_safe(str(page["id"]))  # the last attempt
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT status, error_code, error, attempts FROM omr_page WHERE id = $1", page["id"]
        )
        batch = await conn.fetchrow(
            "SELECT pages_done, pages_failed FROM omr_batch WHERE id = $1", uuid.UUID(batch_id)
        )
    assert row["status"] == "FAILED" and row["error_code"] == "internal"
    assert "could not be processed" in row["error"]
    assert row["attempts"] == omr_actors.READ_RETRIES + 1
    assert (batch["pages_done"], batch["pages_failed"]) == (1, 1)
    await omr_actors._finish(job_id, batch_id)
    job = (await tenant.client.get(f"/api/v1/jobs/{job_id}", headers=h)).json()
    assert job["status"] == "FAILED" and "every page failed" in job["error"]


async def test_a_failed_upload_leaves_no_stored_scans(
    tenant: Any, ai_queues: Any, monkeypatch: Any
) -> None:
    import api.omr

    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, question_count=5, answer_key={"1": ["1"]})
    card = await _builtin(tenant, h, name="orphans", questions=5)
    await tenant.client.put(
        f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card["id"]}, headers=h
    )

    async def broken_submit(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database went away")

    monkeypatch.setattr(api.omr, "submit", broken_submit)
    sheet = make_sheet(korean_card(questions=5), random.Random(3), distortion="clean")
    r = await tenant.client.post(
        f"/api/v1/exams/{exam['id']}/scans",
        files=[
            ("files", ("a.jpg", sheet.data, "image/jpeg")),
            ("files", ("b.jpg", sheet.data, "image/jpeg")),
        ],
        headers=h,
    )
    assert r.status_code == 500
    prefix = storage.object_key("omr", str(tenant.id))
    listed = storage.client().list_objects_v2(Bucket=get_settings().r2_ai_bucket, Prefix=prefix)
    assert listed.get("KeyCount", 0) == 0
