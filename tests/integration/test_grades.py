"""Reading grades over HTTP, against real Postgres: standings, statistics, grade history,
roles and query counts. Exams are in test_exams.py, score entry in test_scores.py."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from pipelines.grading import rank_scores, score_stats
from tests.factories.grades import (
    API,
    bulk_exams,
    class_with_students,
    create_exam,
    create_lecture,
    enroll,
    enrolled_student,
    exam_payload,
    exam_scores,
    field_errors,
    put_scores,
    scored_exam,
)
from tests.factories.lectures import user_id

# --- reading scores --------------------------------------------------------------------


async def test_scores_list_ranks_ties_and_matches_the_pure_function(tenant):
    h = await tenant.headers()
    values = [90, 80, 80, 70, 95.5, 80, 60]
    exam, students = await scored_exam(tenant, values, h)
    listed = await exam_scores(tenant, exam["id"], h)
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
    listed = await exam_scores(tenant, exam["id"], h)
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
    assert (await exam_scores(tenant, exam["id"], h))["items"] == []
    r = await tenant.client.get(f"{API}/exams/{exam['id']}/stats", params={"bins": 0}, headers=h)
    assert field_errors(r) == ["bins"]


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
        listed = await exam_scores(tenant, item["exam_id"], h)
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
    email = await tenant.add_user(role)
    h = await tenant.headers(email, "password-123")
    # A teacher grades the lectures they teach (test_teacher_scope.py: only those).
    lecture = await create_lecture(tenant, teacher=await user_id(email))
    _, students = await class_with_students(tenant, 2, lecture_id=lecture)
    exam = await create_exam(tenant, lecture, h)
    await put_scores(tenant, exam["id"], {students[0]: 30, students[1]: 40}, h)
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
    assert (await exam_scores(tenant, exam["id"], await tenant.headers()))["count"] == 2


# --- no N+1 ----------------------------------------------------------------------------


async def test_scores_list_is_a_constant_number_of_queries(tenant, count_queries):
    h = await tenant.headers()
    small, _ = await scored_exam(tenant, [50] * 5, h)
    large, _ = await scored_exam(tenant, [i * 2 for i in range(50)], h)
    count_queries.count = 0
    assert (await exam_scores(tenant, small["id"], h))["count"] == 5
    few = count_queries.count
    count_queries.count = 0
    assert (await exam_scores(tenant, large["id"], h))["count"] == 50
    assert count_queries.count == few == 1, count_queries.statements


async def test_grade_history_is_a_constant_number_of_queries(tenant, count_queries):
    h = await tenant.headers()
    lecture, students = await class_with_students(tenant, 4)
    await bulk_exams(tenant, lecture, students, 50)
    _, (lonely,) = await class_with_students(tenant, 1, lecture_id=lecture)
    other = await create_lecture(tenant)
    await enroll(tenant, other, lonely)
    await bulk_exams(tenant, other, [lonely], 5)
    # A token's first request looks its account up; the ones after are served from memory.
    assert (await tenant.client.get("/api/v1/auth/me", headers=h)).status_code == 200

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
