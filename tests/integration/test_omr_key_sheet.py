"""An imported OMRChecker template with an A..Z name block and a ``StudentID`` field,
scoring a batch end to end: students found by a short ID (8 digits in a 10-digit field),
a key sheet (the exam's key ID, all 9s) in the middle of the batch becoming the answer
key, and results holding the exam's 5 questions only, not the card's 20."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from pipelines.omr.omrchecker import import_omrchecker
from tests.factories.grades import create_exam, create_lecture, enrolled_student
from tests.factories.omr_sheets import make_sheet
from tests.integration.test_omr_api import _run_batch

pytestmark = pytest.mark.usefixtures("broker")

TEMPLATE: dict[str, Any] = {
    "pageDimensions": [1000, 1300],
    "bubbleDimensions": [22, 22],
    "preProcessors": [],
    "customLabels": {"Name": ["name1..4"], "StudentID": ["id1..10"]},
    "fieldBlocks": {
        "Name": {
            "bubbleValues": list(string.ascii_uppercase),
            "direction": "vertical",
            "origin": [60, 220],
            "bubblesGap": 34,
            "labelsGap": 34,
            "fieldLabels": ["name1..4"],
        },
        "StudentID": {
            "fieldType": "QTYPE_INT",
            "origin": [260, 220],
            "bubblesGap": 34,
            "labelsGap": 34,
            "fieldLabels": ["id1..10"],
        },
        "Answers": {
            "fieldType": "QTYPE_MCQ5",
            "origin": [660, 220],
            "bubblesGap": 40,
            "labelsGap": 40,
            "fieldLabels": ["q1..20"],
        },
    },
}
KEY_ID = "9999999999"
KEY = {"1": "A", "2": "C", "3": "E", "4": "B", "5": "D"}


async def test_student_id_template_with_a_key_sheet_scores_a_batch(tenant: Any) -> None:
    h = await tenant.headers()
    c = tenant.client
    refused = {
        "name": "x",
        "template": {**TEMPLATE, "outputColumns": ["nope"]},
        "config": {"alignment_params": {"auto_align": True}},
    }
    r = await c.post("/api/v1/omr/templates/omrchecker", json=refused, headers=h)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {
        "template.outputColumns",
        "config.alignment_params.auto_align",
    }
    r = await c.post(
        "/api/v1/omr/templates/omrchecker",
        json={"name": "A-Z name card", "template": TEMPLATE},
        headers=h,
    )
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["spec"]["student_field"] == "StudentID"
    assert len(card["spec"]["blocks"][0]["values"]) == 26

    lecture = await create_lecture(tenant)
    students = [await enrolled_student(tenant, lecture) for _ in range(2)]
    exam = await create_exam(tenant, lecture, question_count=5, max_score=100)
    r = await c.put(
        f"/api/v1/exams/{exam['id']}/omr",
        json={"template_id": card["id"], "key_id": "99x"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "key_id"
    r = await c.put(
        f"/api/v1/exams/{exam['id']}/omr",
        json={"template_id": card["id"], "key_id": KEY_ID},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["key_id"] == KEY_ID

    template = import_omrchecker(TEMPLATE, name="x")
    rng = random.Random(7)
    ids = [s["phone"].replace("-", "")[-8:] for s in students]
    # Every question of the card is marked: only the exam's five may count.
    filler = {str(q): "B" for q in range(6, 21)}
    right = {**KEY, **filler}
    two_wrong = {**right, "1": "B", "2": "B"}
    sheets = [
        make_sheet(template, rng, distortion="clean", answers=right, student=ids[0], difficulty=0),
        make_sheet(template, rng, distortion="clean", answers=right, student=KEY_ID, difficulty=0),
        make_sheet(
            template, rng, distortion="clean", answers=two_wrong, student=ids[1], difficulty=0
        ),
    ]
    files = [("files", (f"{n}.jpg", s.data, "image/jpeg")) for n, s in enumerate(sheets)]
    r = await c.post(f"/api/v1/exams/{exam['id']}/scans", files=files, headers=h)
    assert r.status_code == 202, r.text
    accepted = r.json()
    await _run_batch(str(accepted["job_id"]), str(accepted["batch_id"]))

    settings = (await c.get(f"/api/v1/exams/{exam['id']}/omr", headers=h)).json()
    assert settings["answer_key"] == {q: [a] for q, a in KEY.items()}
    pages = (await c.get(f"/api/v1/omr/batches/{accepted['batch_id']}/pages", headers=h)).json()
    by_source = {p["source"]: p for p in pages["items"]}
    assert by_source["0.jpg"]["student_id"] == students[0]["id"]
    assert by_source["0.jpg"]["score"] == 100.0  # read before the key sheet, scored at the end
    assert by_source["2.jpg"]["score"] == 60.0
    assert by_source["1.jpg"]["student_id"] is None and by_source["1.jpg"]["score"] is None
    page = (await c.get(f"/api/v1/omr/pages/{by_source['2.jpg']['id']}", headers=h)).json()
    assert [r["question"] for r in page["results"]] == ["1", "2", "3", "4", "5"]
    assert sorted(page["answers"], key=int) == ["1", "2", "3", "4", "5"]
    key_page = (await c.get(f"/api/v1/omr/pages/{by_source['1.jpg']['id']}", headers=h)).json()
    assert key_page["reading"]["key_sheet"] is True
    scores = (await c.get(f"/api/v1/exams/{exam['id']}/scores", headers=h)).json()
    assert {(s["student_id"], s["score"]) for s in scores["items"]} == {
        (students[0]["id"], 100.0),
        (students[1]["id"], 60.0),
    }
