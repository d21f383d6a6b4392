"""Exams over HTTP, against real Postgres: CRUD, answer keys, validation, paging and
deletes."""

from __future__ import annotations

import uuid
from typing import Any

from tests.factories.grades import (
    API,
    create_exam,
    create_lecture,
    exam_payload,
    field_errors,
    score_audit,
    scored_exam,
)

# --- exams -----------------------------------------------------------------------------


async def test_exam_crud(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, title="고2 수학")
    exam = await create_exam(
        tenant,
        lecture,
        h,
        title="  3월   모의고사 ",
        date="2026-03-20",
        max_score=50.5,
        question_count=5,
        answer_key={"1": ["③"], "2": ["1", "④"]},
    )
    assert exam["title"] == "3월 모의고사" and exam["date"] == "2026-03-20"
    assert exam["max_score"] == 50.5 and exam["question_count"] == 5
    assert exam["answer_key"] == {"1": ["3"], "2": ["1", "4"]}
    assert exam["lecture_id"] == str(lecture) and exam["lecture_title"] == "고2 수학"
    assert exam["score_count"] == 0

    r = await tenant.client.get(f"{API}/exams/{exam['id']}", headers=h)
    assert r.status_code == 200 and r.json() == exam

    r = await tenant.client.patch(
        f"{API}/exams/{exam['id']}", json={"title": "3월 학력평가", "answer_key": None}, headers=h
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["title"] == "3월 학력평가" and body["answer_key"] is None
    assert body["max_score"] == 50.5 and body["question_count"] == 5  # untouched
    assert body["updated_at"] > exam["updated_at"]

    r = await tenant.client.delete(f"{API}/exams/{exam['id']}", headers=h)
    assert r.status_code == 204
    assert (await tenant.client.get(f"{API}/exams/{exam['id']}", headers=h)).status_code == 404


async def test_answer_key_circled_digits_equal_plain_digits(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    circled = await create_exam(
        tenant, lecture, h, question_count=3, answer_key={"①": ["⑤"], "2": ["②", "④", "4"]}
    )
    plain = await create_exam(
        tenant, lecture, h, question_count=3, answer_key={"1": ["5"], "2": ["2", "4"]}
    )
    assert circled["answer_key"] == plain["answer_key"] == {"1": ["5"], "2": ["2", "4"]}


async def test_every_exam_field_error_is_listed(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json={"title": "  ", "date": "2026-03-01", "max_score": 0, "question_count": 0},
        headers=h,
    )
    # What the schema states (``ExamCreate``) is checked first, every field of it.
    assert sorted(field_errors(r)) == ["max_score", "question_count", "title"]
    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json={
            "title": "x",
            "date": "2026-03-01",
            "question_count": 3,
            "answer_key": {"0": ["1"], "4": ["1"], "x": ["1"], "2": [], "3": ["①", ""]},
        },
        headers=h,
    )
    assert sorted(field_errors(r)) == sorted(
        [
            "answer_key.0",
            "answer_key.4",
            "answer_key.x",
            "answer_key.2",
            "answer_key.3[1]",
        ]
    )
    assert r.json()["type"] == "/problems/validation"

    # Type errors of the body are all listed too (the app's problem handler).
    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json={"title": 3, "date": "someday", "max_score": "lots", "colour": "red"},
        headers=h,
    )
    assert set(field_errors(r)) == {"title", "date", "max_score", "colour"}

    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json=exam_payload(max_score=100.001, question_count=3),
        headers=h,
    )
    assert field_errors(r) == ["max_score"]  # two decimal places


async def test_answer_key_needs_question_count_and_must_keep_fitting(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json=exam_payload(answer_key={"1": ["3"]}),
        headers=h,
    )
    assert field_errors(r) == ["question_count"]

    exam = await create_exam(tenant, lecture, h, question_count=5, answer_key={"5": ["1"]})
    url = f"{API}/exams/{exam['id']}"
    # Shrinking the exam below a keyed question, or dropping the count, is refused...
    assert field_errors(await tenant.client.patch(url, json={"question_count": 4}, headers=h)) == [
        "question_count"
    ]
    r = await tenant.client.patch(url, json={"question_count": None}, headers=h)
    assert field_errors(r) == ["question_count"]
    # ...unless the key changes with it.
    r = await tenant.client.patch(
        url, json={"question_count": 4, "answer_key": {"4": ["⑤"]}}, headers=h
    )
    assert r.status_code == 200 and r.json()["answer_key"] == {"4": ["5"]}
    r = await tenant.client.patch(url, json={"answer_key": {"5": ["1"]}}, headers=h)
    assert field_errors(r) == ["answer_key.5"]
    r = await tenant.client.patch(url, json={"date": None}, headers=h)
    assert field_errors(r) == ["date"]  # an exam keeps a date


async def test_max_score_cannot_go_below_a_recorded_score(tenant):
    h = await tenant.headers()
    exam, _ = await scored_exam(tenant, [40, 72.5], h)
    url = f"{API}/exams/{exam['id']}"
    r = await tenant.client.patch(url, json={"max_score": 70, "title": "x"}, headers=h)
    assert field_errors(r) == ["max_score"]
    assert "72.50" in r.json()["errors"][0]["message"]
    r = await tenant.client.patch(url, json={"max_score": 72.5}, headers=h)
    assert r.status_code == 200 and r.json()["max_score"] == 72.5


async def test_lecture_exams_are_paged_by_date(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    other = await create_lecture(tenant)
    dates = ["2026-03-05", "2026-01-10", "2026-02-01", "2026-02-01", "2026-04-30"]
    made = [await create_exam(tenant, lecture, h, date=d) for d in dates]
    await create_exam(tenant, other, h)
    expected = [e["id"] for e in sorted(made, key=lambda e: (e["date"], e["id"]))]
    for sort, order in (("date", expected), ("-date", expected[::-1])):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            r = await tenant.client.get(f"{API}/lectures/{lecture}/exams", params=params, headers=h)
            assert r.status_code == 200, r.text
            seen += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if not cursor:
                break
        assert seen == order
    r = await tenant.client.get(
        f"{API}/lectures/{lecture}/exams", params={"cursor": "garbage"}, headers=h
    )
    assert field_errors(r) == ["cursor"]
    r = await tenant.client.get(f"{API}/lectures/{uuid.uuid4()}/exams", headers=h)
    assert r.status_code == 404


async def test_delete_with_scores_needs_force_and_is_audited(tenant):
    h = await tenant.headers()
    exam, students = await scored_exam(tenant, [55, 66], h)
    url = f"{API}/exams/{exam['id']}"
    r = await tenant.client.delete(url, headers=h)
    assert r.status_code == 409 and r.json()["type"] == "/problems/exam-has-scores"
    assert (await tenant.client.get(url, headers=h)).json()["score_count"] == 2
    r = await tenant.client.delete(url, params={"force": "true"}, headers=h)
    assert r.status_code == 204
    deletes = [a for a in await score_audit(tenant) if a["action"] == "delete"]
    assert {(a["before"]["student_id"], a["before"]["score"]) for a in deletes} == {
        (str(students[0]), 55),
        (str(students[1]), 66),
    }
    assert all(a["after"] is None for a in deletes)


async def test_an_exam_being_read_by_omr_cannot_be_deleted(tenant):
    from models.db import connection

    h = await tenant.headers()
    exam = await create_exam(tenant, await create_lecture(tenant), h, question_count=5)
    async with connection() as conn:
        batch = await conn.fetchval(
            "INSERT INTO omr_batch (id, tenant, exam, template_spec) "
            "VALUES ($1, $2, $3, '{}') RETURNING id",
            uuid.uuid4(),
            tenant.id,
            uuid.UUID(exam["id"]),
        )
    r = await tenant.client.delete(f"{API}/exams/{exam['id']}", headers=h)
    assert r.status_code == 409 and r.json()["type"].endswith("/exam-is-being-graded")
    async with connection() as conn:
        await conn.execute("UPDATE omr_batch SET finished_at = now() WHERE id = $1", batch)
    r = await tenant.client.delete(f"{API}/exams/{exam['id']}", headers=h)
    assert r.status_code == 204
