"""Exams, scores, standings, statistics and grade history over HTTP, against real Postgres."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest

from pipelines.grading import rank_scores, score_stats
from tests.factories import bulk_students, create_student
from tests.factories.grades import (
    bulk_exams,
    class_with_students,
    create_exam,
    create_lecture,
    enroll,
    enrolled_student,
    exam_payload,
    put_scores,
    scored_exam,
)

API = "/api/v1"


# --- helpers ---------------------------------------------------------------------------


async def _user_id(email: str) -> uuid.UUID:
    from models.tables import User

    row = await User.select(User.id).where(User.email == email).first()
    assert row is not None
    return uuid.UUID(str(row["id"]))


async def _audit(tenant: Any) -> list[dict[str, Any]]:
    from models.tables import AuditLog

    rows = (
        await AuditLog.select()
        .where((AuditLog.tenant == tenant.id) & (AuditLog.entity == "score"))
        .order_by(AuditLog.id)
    )
    return list(rows)


async def _events(tenant: Any) -> list[dict[str, Any]]:
    from models.tables import OutboxEvent

    rows = (
        await OutboxEvent.select()
        .where((OutboxEvent.tenant == tenant.id) & (OutboxEvent.kind == "score.recorded"))
        .order_by(OutboxEvent.created_at)
    )
    return list(rows)


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [e["field"] for e in response.json()["errors"]]


async def _scores(tenant: Any, exam_id: Any, h: dict[str, str]) -> dict[str, Any]:
    r = await tenant.client.get(f"{API}/exams/{exam_id}/scores", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


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
        json={
            "title": "  ",
            "date": "2026-03-01",
            "max_score": 0,
            "question_count": 3,
            "answer_key": {"0": ["1"], "4": ["1"], "x": ["1"], "2": [], "3": ["①", ""]},
        },
        headers=h,
    )
    assert sorted(_fields(r)) == sorted(
        [
            "title",
            "max_score",
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
    assert set(_fields(r)) == {"title", "date", "max_score", "colour"}

    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json=exam_payload(max_score=100.001, question_count=0),
        headers=h,
    )
    assert set(_fields(r)) == {"max_score", "question_count"}


async def test_answer_key_needs_question_count_and_must_keep_fitting(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    r = await tenant.client.post(
        f"{API}/lectures/{lecture}/exams",
        json=exam_payload(answer_key={"1": ["3"]}),
        headers=h,
    )
    assert _fields(r) == ["question_count"]

    exam = await create_exam(tenant, lecture, h, question_count=5, answer_key={"5": ["1"]})
    url = f"{API}/exams/{exam['id']}"
    # Shrinking the exam below a keyed question, or dropping the count, is refused...
    assert _fields(await tenant.client.patch(url, json={"question_count": 4}, headers=h)) == [
        "question_count"
    ]
    r = await tenant.client.patch(url, json={"question_count": None}, headers=h)
    assert _fields(r) == ["question_count"]
    # ...unless the key changes with it.
    r = await tenant.client.patch(
        url, json={"question_count": 4, "answer_key": {"4": ["⑤"]}}, headers=h
    )
    assert r.status_code == 200 and r.json()["answer_key"] == {"4": ["5"]}
    r = await tenant.client.patch(url, json={"answer_key": {"5": ["1"]}}, headers=h)
    assert _fields(r) == ["answer_key.5"]
    r = await tenant.client.patch(url, json={"date": None}, headers=h)
    assert _fields(r) == ["date"]  # an exam keeps a date


async def test_max_score_cannot_go_below_a_recorded_score(tenant):
    h = await tenant.headers()
    exam, _ = await scored_exam(tenant, [40, 72.5], h)
    url = f"{API}/exams/{exam['id']}"
    r = await tenant.client.patch(url, json={"max_score": 70, "title": ""}, headers=h)
    assert set(_fields(r)) == {"max_score", "title"}
    assert "72.50" in r.json()["errors"][0]["message"] + r.json()["errors"][1]["message"]
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
    assert _fields(r) == ["cursor"]
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
    deletes = [a for a in await _audit(tenant) if a["action"] == "delete"]
    assert {(a["before"]["student_id"], a["before"]["score"]) for a in deletes} == {
        (str(students[0]), 55),
        (str(students[1]), 66),
    }
    assert all(a["after"] is None for a in deletes)


# --- scores: single --------------------------------------------------------------------


async def test_single_score_is_audited_and_emits_one_event_per_distinct_value(tenant):
    teacher_email = await tenant.add_user("teacher")
    h = await tenant.headers(teacher_email, "password-123")
    teacher = await _user_id(teacher_email)
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, h, max_score=100)
    student = await enrolled_student(tenant, lecture)
    url = f"{API}/exams/{exam['id']}/scores/{student['id']}"

    r = await tenant.client.put(url, json={"score": 85}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "exam_id": exam["id"],
        "student_id": student["id"],
        "score": 85.0,
        "max_score": 100.0,
        "changed": True,
    }
    # A retry of the same request: nothing changes, no audit row, no second event.
    r = await tenant.client.put(url, json={"score": 85.0}, headers=h)
    assert r.status_code == 200 and r.json()["changed"] is False
    r = await tenant.client.put(url, json={"score": 91.5}, headers=h)
    assert r.json()["changed"] is True

    audit = await _audit(tenant)
    assert [a["action"] for a in audit] == ["create", "update"]
    assert audit[0]["before"] is None
    assert audit[0]["after"] == {"exam_id": exam["id"], "student_id": student["id"], "score": 85}
    assert audit[1]["before"]["score"] == 85 and audit[1]["after"]["score"] == 91.5
    assert {a["actor"] for a in audit} == {teacher}
    assert audit[0]["entity_id"] == audit[1]["entity_id"]  # the score row

    events = await _events(tenant)
    prefix = f"score.recorded:{exam['id']}:{student['id']}"
    assert [e["dedupe_key"] for e in events] == [f"{prefix}:85.00", f"{prefix}:91.50"]
    assert events[1]["payload"] == {
        "exam_id": exam["id"],
        "student_id": student["id"],
        "lecture_id": str(lecture),
        "score": 91.5,
        "max_score": 100,
    }
    from models.tables import Score

    row = await Score.select().where(Score.id == audit[0]["entity_id"]).first()
    assert row is not None and row["updated_by"] == teacher and row["source"] == "manual"


async def test_single_score_errors(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant)
    exam = await create_exam(tenant, lecture, h, max_score=20)
    outsider = await create_student(tenant, h)  # not enrolled
    r = await tenant.client.put(
        f"{API}/exams/{exam['id']}/scores/{outsider['id']}", json={"score": 20.5}, headers=h
    )
    assert sorted(_fields(r)) == ["score", "student_id"]

    inside = await enrolled_student(tenant, lecture)
    url = f"{API}/exams/{exam['id']}/scores/{inside['id']}"
    for bad in (-1, 20.01, 1.234):
        assert _fields(await tenant.client.put(url, json={"score": bad}, headers=h)) == ["score"]
    assert _fields(await tenant.client.put(url, json={"score": "x"}, headers=h)) == ["score"]

    # A dropped enrollment is not an active one.
    dropped = await create_student(tenant, h)
    await enroll(tenant, lecture, dropped["id"], status="dropped")
    r = await tenant.client.put(
        f"{API}/exams/{exam['id']}/scores/{dropped['id']}", json={"score": 1}, headers=h
    )
    assert _fields(r) == ["student_id"]

    # An unknown (or soft-deleted) student is a 404 like any unknown path id.
    for unknown in (uuid.uuid4(), "not-a-uuid"):
        r = await tenant.client.put(
            f"{API}/exams/{exam['id']}/scores/{unknown}", json={"score": 1}, headers=h
        )
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
    await tenant.client.delete(f"{API}/students/{inside['id']}", headers=h)
    assert (await tenant.client.put(url, json={"score": 1}, headers=h)).status_code == 404
    assert await _audit(tenant) == [] and await _events(tenant) == []


async def test_a_student_of_another_academy_cannot_be_scored(make_tenant):
    a, b = await make_tenant(), await make_tenant()
    ha, hb = await a.headers(), await b.headers()
    lecture_a = await create_lecture(a)
    student_a = await enrolled_student(a, lecture_a)
    exam_b = await create_exam(b, await create_lecture(b), hb)
    # b's own exam, a's student: the student is unknown in b.
    r = await b.client.put(
        f"{API}/exams/{exam_b['id']}/scores/{student_a['id']}", json={"score": 1}, headers=hb
    )
    assert r.status_code == 404 and "student" in r.json()["detail"]
    r = await b.client.put(
        f"{API}/exams/{exam_b['id']}/scores",
        json=[{"student_id": student_a["id"], "score": 1}],
        headers=hb,
    )
    assert _fields(r) == ["[0].student_id"]
    r = await b.client.get(f"{API}/students/{student_a['id']}/scores", headers=hb)
    assert r.status_code == 404
    assert (await a.client.get(f"{API}/students/{student_a['id']}/scores", headers=ha)).json()[
        "items"
    ] == []


# --- scores: bulk ----------------------------------------------------------------------


async def test_bulk_scores_write_everything_in_a_fixed_number_of_statements(tenant, count_queries):
    h = await tenant.headers()
    lecture, students = await class_with_students(tenant, 51)
    small = await create_exam(tenant, lecture, h)
    large = await create_exam(tenant, lecture, h)

    count_queries.count = 0
    await put_scores(tenant, small["id"], {students[0]: 10}, h)
    one = count_queries.count
    count_queries.count = 0
    body = await put_scores(tenant, large["id"], {s: i for i, s in enumerate(students[1:])}, h)
    assert count_queries.count == one, count_queries.statements
    assert body["received"] == body["changed"] == 50

    listed = await _scores(tenant, large["id"], h)
    assert listed["count"] == 50
    assert {i["student_id"]: i["score"] for i in listed["items"]} == {
        str(s): float(i) for i, s in enumerate(students[1:])
    }
    assert len(await _audit(tenant)) == 51 and len(await _events(tenant)) == 51


async def test_bulk_with_any_bad_item_lists_every_one_and_writes_nothing(tenant):
    h = await tenant.headers()
    lecture, (s1, s2, s3) = await class_with_students(tenant, 3)
    outsider = (await bulk_students(tenant.id, 1))[0]
    exam = await create_exam(tenant, lecture, h, max_score=50)
    url = f"{API}/exams/{exam['id']}/scores"
    r = await tenant.client.put(
        url,
        json=[
            {"student_id": str(s1), "score": 50},  # fine
            {"student_id": str(s2), "score": 50.5},  # above max
            {"student_id": str(outsider), "score": 10},  # not enrolled
            {"student_id": str(uuid.uuid4()), "score": 10},  # no such student
            {"student_id": str(s1), "score": 40},  # listed twice
            {"student_id": str(s3), "score": -2},  # negative
        ],
        headers=h,
    )
    assert _fields(r) == [
        "[1].score",
        "[2].student_id",
        "[3].student_id",
        "[4].student_id",
        "[5].score",
    ]
    messages = [e["message"] for e in r.json()["errors"]]
    assert "not actively enrolled" in messages[1] and "listed twice (also at [0])" in messages[3]
    assert (await _scores(tenant, exam["id"], h))["items"] == []
    assert await _audit(tenant) == [] and await _events(tenant) == []

    # Bodies that do not even decode: every item's problem, not just the first.
    r = await tenant.client.put(
        url,
        json=[
            {"student_id": str(s1), "score": 1},
            {"student_id": "nope", "score": "many"},
            {"score": 1, "extra": True},
            7,
        ],
        headers=h,
    )
    assert _fields(r) == [
        "[1].student_id",
        "[1].score",
        "[2].student_id",
        "[2].extra",
        "[3]",
    ]
    r = await tenant.client.put(url, json={"student_id": str(s1)}, headers=h)
    assert r.status_code == 422  # not a list at all
    assert (await _scores(tenant, exam["id"], h))["items"] == []


async def test_bulk_retry_is_one_event_per_distinct_score(tenant):
    h = await tenant.headers()
    lecture, (s1, s2) = await class_with_students(tenant, 2)
    exam = await create_exam(tenant, lecture, h)
    first = await put_scores(tenant, exam["id"], {s1: 70, s2: 80}, h)
    retry = await put_scores(tenant, exam["id"], {s1: 70, s2: 80}, h)
    assert first["changed"] == 2 and retry["changed"] == 0
    assert [i["changed"] for i in retry["items"]] == [False, False]
    changed = await put_scores(tenant, exam["id"], {s1: 70, s2: 85}, h)
    assert [i["changed"] for i in changed["items"]] == [False, True]

    keys = sorted(e["dedupe_key"] for e in await _events(tenant))
    prefix = f"score.recorded:{exam['id']}"
    assert keys == sorted([f"{prefix}:{s1}:70.00", f"{prefix}:{s2}:80.00", f"{prefix}:{s2}:85.00"])
    audit = await _audit(tenant)
    assert [(a["action"], a["after"]["student_id"]) for a in audit][-1] == ("update", str(s2))
    assert len(audit) == 3
    from models.tables import Score

    sources = await Score.select(Score.source).where(Score.exam == exam["id"])
    assert {r["source"] for r in sources} == {"bulk"}


async def test_a_score_going_back_to_an_earlier_value_is_audited_but_not_a_new_event(tenant):
    """The brief's dedupe key (exam, student, score) makes 70 -> 85 -> 70 two events, not
    three: the return to 70 is audited, but its event already exists. Pinned here so a
    change of key is a deliberate one."""
    h = await tenant.headers()
    lecture, (s1,) = await class_with_students(tenant, 1)
    exam = await create_exam(tenant, lecture, h)
    for value in (70, 85, 70):
        await put_scores(tenant, exam["id"], {s1: value}, h)
    assert [(a["before"] or {}).get("score") for a in await _audit(tenant)] == [None, 70, 85]
    assert len(await _events(tenant)) == 2


async def test_concurrent_writers_of_one_exam_keep_a_consistent_audit_chain(tenant):
    """Writers of one exam are serialised by the exam row lock: every audit row's ``before``
    is the previous row's ``after``, whatever order the requests ran in."""
    h = await tenant.headers()
    lecture, (s1, s2) = await class_with_students(tenant, 2)
    exam = await create_exam(tenant, lecture, h)
    values = [10, 20, 30, 40, 50, 60]

    async def single(v: int) -> Any:
        return await tenant.client.put(
            f"{API}/exams/{exam['id']}/scores/{s1}", json={"score": v}, headers=h
        )

    async def bulk(v: int) -> Any:
        return await tenant.client.put(
            f"{API}/exams/{exam['id']}/scores",
            json=[{"student_id": str(s1), "score": v}, {"student_id": str(s2), "score": v}],
            headers=h,
        )

    responses = await asyncio.gather(
        *(single(v) if i % 2 else bulk(v) for i, v in enumerate(values))
    )
    assert [r.status_code for r in responses] == [200] * len(values)
    audit = [a for a in await _audit(tenant) if a["after"]["student_id"] == str(s1)]
    assert len(audit) == len(values)
    assert audit[0]["action"] == "create" and audit[0]["before"] is None
    for previous, row in itertools.pairwise(audit):
        assert row["action"] == "update"
        assert row["before"]["score"] == previous["after"]["score"]
    final = {i["student_id"]: i["score"] for i in (await _scores(tenant, exam["id"], h))["items"]}
    assert final[str(s1)] == audit[-1]["after"]["score"]
    assert len([e for e in await _events(tenant) if f":{s1}:" in e["dedupe_key"]]) == 6


# --- reading scores --------------------------------------------------------------------


async def test_scores_list_ranks_ties_and_matches_the_pure_function(tenant):
    h = await tenant.headers()
    values = [90, 80, 80, 70, 95.5, 80, 60]
    exam, students = await scored_exam(tenant, values, h)
    listed = await _scores(tenant, exam["id"], h)
    assert listed["count"] == 7 and listed["max_score"] == 100
    by_student = {i["student_id"]: i for i in listed["items"]}
    expected = rank_scores([Decimal(str(v)) for v in values])
    for student, value, standing in zip(students, values, expected, strict=True):
        item = by_student[str(student)]
        assert item["score"] == value
        assert (item["rank"], item["percentile"]) == (standing.rank, standing.percentile)
    assert [i["rank"] for i in listed["items"]] == [1, 2, 3, 3, 3, 6, 7]  # best first
    assert [i["percentile"] for i in listed["items"]][:3] == [600 / 7, 500 / 7, 200 / 7]
    assert all(i["student_name"] for i in listed["items"])

    # A soft-deleted student leaves the ranking (and the stats) until restored.
    await tenant.client.delete(f"{API}/students/{students[4]}", headers=h)
    listed = await _scores(tenant, exam["id"], h)
    assert listed["count"] == 6 and listed["items"][0]["score"] == 90
    assert listed["items"][0]["rank"] == 1
    r = await tenant.client.get(f"{API}/exams/{exam['id']}/stats", headers=h)
    assert r.json()["count"] == 6


async def test_stats_endpoint_matches_the_pure_function(tenant):
    h = await tenant.headers()
    values = [2, 4, 4, 4, 5, 5, 7, 9]
    exam, _ = await scored_exam(tenant, values, h, max_score=10)
    r = await tenant.client.get(f"{API}/exams/{exam['id']}/stats", params={"bins": 5}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "exam_id": exam["id"],
        "max_score": 10.0,
        "count": 8,
        "mean": 5.0,
        "median": 4.5,
        "stdev": 2.0,
        "min": 2.0,
        "max": 9.0,
        "distribution": [
            {"lower": 0.0, "upper": 2.0, "count": 0},
            {"lower": 2.0, "upper": 4.0, "count": 1},
            {"lower": 4.0, "upper": 6.0, "count": 5},
            {"lower": 6.0, "upper": 8.0, "count": 1},
            {"lower": 8.0, "upper": 10.0, "count": 1},
        ],
    }

    odd = [Decimal("72.25"), Decimal("88"), Decimal("61.5"), Decimal("88"), Decimal("99.99")]
    exam, _ = await scored_exam(tenant, [float(v) for v in odd], h)
    body = (await tenant.client.get(f"{API}/exams/{exam['id']}/stats", headers=h)).json()
    expected = score_stats(odd, Decimal(100))
    assert body["count"] == expected.count
    for name in ("mean", "median", "stdev", "min", "max"):
        assert body[name] == float(getattr(expected, name)), name
    assert [b["count"] for b in body["distribution"]] == [b.count for b in expected.distribution]


async def test_stats_of_an_exam_without_scores(tenant):
    h = await tenant.headers()
    exam = await create_exam(tenant, await create_lecture(tenant), h)
    r = await tenant.client.get(f"{API}/exams/{exam['id']}/stats", headers=h)
    body = r.json()
    assert body["count"] == 0 and body["mean"] is None and body["stdev"] is None
    assert [b["count"] for b in body["distribution"]] == [0] * 10
    assert (await _scores(tenant, exam["id"], h))["items"] == []
    r = await tenant.client.get(f"{API}/exams/{exam['id']}/stats", params={"bins": 0}, headers=h)
    assert _fields(r) == ["bins"]


# --- grade history ---------------------------------------------------------------------


async def test_grade_history_by_date_with_rank_and_percentile(tenant):
    h = await tenant.headers()
    math_, english = (
        await create_lecture(tenant, title="수학"),
        await create_lecture(tenant, title="영어"),
    )
    me = await enrolled_student(tenant, math_)
    await enroll(tenant, english, me["id"])
    _, math_peers = await class_with_students(tenant, 3, lecture_id=math_)
    _, english_peers = await class_with_students(tenant, 2, lecture_id=english)

    late = await create_exam(tenant, math_, h, title="기말", date="2026-06-30")
    early = await create_exam(tenant, english, h, title="단어", date="2026-03-02")
    middle = await create_exam(tenant, math_, h, title="중간", date="2026-04-20")
    unscored = await create_exam(tenant, math_, h, title="안 봄", date="2026-05-01")
    await put_scores(
        tenant, late["id"], {me["id"]: 80, **dict(zip(math_peers, [80, 90, 70], strict=True))}
    )
    await put_scores(
        tenant, early["id"], {me["id"]: 50, **dict(zip(english_peers, [40, 60], strict=True))}
    )
    await put_scores(tenant, middle["id"], {me["id"]: 100, math_peers[0]: 20})
    await put_scores(tenant, unscored["id"], {math_peers[1]: 50})

    r = await tenant.client.get(f"{API}/students/{me['id']}/scores", headers=h)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["exam_title"], i["date"], i["lecture_title"]) for i in items] == [
        ("단어", "2026-03-02", "영어"),
        ("중간", "2026-04-20", "수학"),
        ("기말", "2026-06-30", "수학"),
    ]
    assert [(i["score"], i["max_score"], i["rank"], i["count"]) for i in items] == [
        (50, 100, 2, 3),
        (100, 100, 1, 2),
        (80, 100, 2, 4),  # tied second with a peer
    ]
    assert [i["percentile"] for i in items] == [100 / 3, 50.0, 25.0]
    # The same standing the exam's own score list shows.
    for item in items:
        listed = await _scores(tenant, item["exam_id"], h)
        mine = next(i for i in listed["items"] if i["student_id"] == me["id"])
        assert (mine["rank"], mine["percentile"]) == (item["rank"], item["percentile"])

    # Cursor pages.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await tenant.client.get(f"{API}/students/{me['id']}/scores", params=params, headers=h)
        ).json()
        seen += [i["exam_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [i["exam_id"] for i in items]
    r = await tenant.client.get(f"{API}/students/{uuid.uuid4()}/scores", headers=h)
    assert r.status_code == 404


# --- roles -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["teacher", "admin"])
async def test_graders_write(tenant, role):
    h = await tenant.headers(await tenant.add_user(role), "password-123")
    exam, students = await scored_exam(tenant, [30, 40], h)
    r = await tenant.client.put(
        f"{API}/exams/{exam['id']}/scores/{students[0]}", json={"score": 35}, headers=h
    )
    assert r.status_code == 200
    r = await tenant.client.patch(f"{API}/exams/{exam['id']}", json={"title": "x"}, headers=h)
    assert r.status_code == 200


async def test_staff_read_only_and_students_parents_forbidden(tenant):
    exam, students = await scored_exam(tenant, [30, 40])
    lecture = exam["lecture_id"]
    reads = [
        f"{API}/lectures/{lecture}/exams",
        f"{API}/exams/{exam['id']}",
        f"{API}/exams/{exam['id']}/scores",
        f"{API}/exams/{exam['id']}/stats",
        f"{API}/students/{students[0]}/scores",
    ]
    writes = [
        ("POST", f"{API}/lectures/{lecture}/exams", exam_payload()),
        ("PATCH", f"{API}/exams/{exam['id']}", {"title": "x"}),
        ("DELETE", f"{API}/exams/{exam['id']}", None),
        ("PUT", f"{API}/exams/{exam['id']}/scores/{students[0]}", {"score": 1}),
        ("PUT", f"{API}/exams/{exam['id']}/scores", [{"student_id": str(students[0]), "score": 1}]),
    ]
    staff = await tenant.headers(await tenant.add_user("staff"), "password-123")
    for url in reads:
        assert (await tenant.client.get(url, headers=staff)).status_code == 200, url
    for method, url, body in writes:
        r = await tenant.client.request(method, url, json=body, headers=staff)
        assert r.status_code == 403, (method, url, r.text)
    for role in ("student", "parent"):
        h = await tenant.headers(await tenant.add_user(role), "password-123")
        for url in reads:
            assert (await tenant.client.get(url, headers=h)).status_code == 403, (role, url)
        for method, url, body in writes:
            r = await tenant.client.request(method, url, json=body, headers=h)
            assert r.status_code == 403, (role, method, url)
    assert (await _scores(tenant, exam["id"], await tenant.headers()))["count"] == 2


# --- no N+1 ----------------------------------------------------------------------------


async def test_scores_list_is_a_constant_number_of_queries(tenant, count_queries):
    h = await tenant.headers()
    small, _ = await scored_exam(tenant, [50] * 5, h)
    large, _ = await scored_exam(tenant, [i * 2 for i in range(50)], h)
    count_queries.count = 0
    assert (await _scores(tenant, small["id"], h))["count"] == 5
    few = count_queries.count
    count_queries.count = 0
    assert (await _scores(tenant, large["id"], h))["count"] == 50
    assert count_queries.count == few == 1, count_queries.statements


async def test_grade_history_is_a_constant_number_of_queries(tenant, count_queries):
    h = await tenant.headers()
    lecture, students = await class_with_students(tenant, 4)
    await bulk_exams(tenant, lecture, students, 50)
    _, (lonely,) = await class_with_students(tenant, 1, lecture_id=lecture)
    other = await create_lecture(tenant)
    await enroll(tenant, other, lonely)
    await bulk_exams(tenant, other, [lonely], 5)

    count_queries.count = 0
    r = await tenant.client.get(f"{API}/students/{lonely}/scores", headers=h)
    assert len(r.json()["items"]) == 5
    few = count_queries.count
    count_queries.count = 0
    r = await tenant.client.get(f"{API}/students/{students[0]}/scores", headers=h)
    items = r.json()["items"]
    assert len(items) == 50 and r.json()["next_cursor"] is None
    assert count_queries.count == few <= 2, count_queries.statements
    dates = [i["date"] for i in items]
    assert dates == sorted(dates)
    assert all(i["count"] == 4 and 1 <= i["rank"] <= 4 for i in items)


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
