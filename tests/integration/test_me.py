"""The student/parent app: each account sees only its own students, in its own academy."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from models.tables import Attendance, Enrollment, Exam, Lecture, LectureSession, Score
from tests.factories import create_student, unique_mobile
from tests.factories.accounts import family_headers

ROUTES = [
    "/api/v1/me/students/{id}",
    "/api/v1/me/students/{id}/lectures",
    "/api/v1/me/students/{id}/sessions",
    "/api/v1/me/students/{id}/scores",
]


@pytest.fixture
async def family(tenant):
    """Two siblings sharing a mother, and an unrelated student, in one academy."""
    h = await tenant.headers()
    mom = unique_mobile()
    older = await create_student(
        tenant, h, name="김하나", guardians=[{"name": "엄마", "phone": mom, "is_primary": True}]
    )
    younger = await create_student(
        tenant, h, name="김두리", guardians=[{"name": "엄마", "phone": mom}]
    )
    stranger = await create_student(tenant, h, name="박남남")
    guardian_id = older["guardians"][0]["id"]
    return {
        "older": older,
        "younger": younger,
        "stranger": stranger,
        "parent": await family_headers(tenant, "parent", guardian_id=guardian_id),
        "student": await family_headers(tenant, "student", student_id=older["id"]),
    }


async def test_parent_sees_both_children_and_no_one_else(tenant, family):
    r = await tenant.client.get("/api/v1/me/students", headers=family["parent"])
    assert r.status_code == 200, r.text
    ids = {s["id"] for s in r.json()["items"]}
    assert ids == {family["older"]["id"], family["younger"]["id"]}
    # Cursor pages like every list: one at a time, then the end.
    first = (
        await tenant.client.get("/api/v1/me/students?limit=1", headers=family["parent"])
    ).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    r = await tenant.client.get(
        f"/api/v1/me/students?limit=1&cursor={first['next_cursor']}", headers=family["parent"]
    )
    second = r.json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    assert {first["items"][0]["id"], second["items"][0]["id"]} == ids


async def test_student_sees_only_themself(tenant, family):
    r = await tenant.client.get("/api/v1/me/students", headers=family["student"])
    assert [s["id"] for s in r.json()["items"]] == [family["older"]["id"]]


@pytest.mark.parametrize("route", ROUTES)
async def test_me_matrix(tenant, make_tenant, family, route):
    c = tenant.client
    own = route.format(id=family["older"]["id"])
    for who in ("parent", "student"):
        assert (await c.get(own, headers=family[who])).status_code == 200
    # Someone else's child, a sibling seen from the student's own account, a missing id,
    # a malformed id: all the same 404.
    for headers, sid in (
        (family["parent"], family["stranger"]["id"]),
        (family["student"], family["younger"]["id"]),
        (family["student"], str(uuid.uuid4())),
        (family["student"], "not-an-id"),
    ):
        r = await c.get(route.format(id=sid), headers=headers)
        assert r.status_code == 404 and r.json()["type"] == "/problems/not-found"
    # Another academy's parent account cannot reach this one's student.
    other = await make_tenant()
    other_child = await create_student(other)
    outsider = await family_headers(other, "parent", guardian_id=other_child["guardians"][0]["id"])
    assert (await c.get(own, headers=outsider)).status_code == 404
    # Staff use the academy endpoints: wrong role.
    assert (await c.get(own, headers=await tenant.headers())).status_code == 403


async def test_family_tokens_never_reach_admin_endpoints(tenant, family):
    for who in ("parent", "student"):
        for path in ("/api/v1/students", f"/api/v1/students/{family['older']['id']}"):
            r = await tenant.client.get(path, headers=family[who])
            assert r.status_code == 403, (who, path, r.text)


async def test_lectures_sessions_attendance_and_scores(tenant, family):
    sid = uuid.UUID(family["older"]["id"])
    lecture = Lecture(
        tenant=tenant.id,
        title="중2 수학",
        subject="수학",
        schedule=[{"weekday": 0, "start": "18:00", "end": "20:00"}],
    )
    await lecture.save()
    await Enrollment(tenant=tenant.id, student=sid, lecture=lecture.id).save()
    today = dt.date.today()
    sessions = []
    for i in range(3):
        s = LectureSession(
            tenant=tenant.id,
            lecture=lecture.id,
            seq=i + 1,
            date=today + dt.timedelta(days=7 * i),
            topic=f"{i + 1}강",
        )
        await s.save()
        sessions.append(s)
    await Attendance(
        tenant=tenant.id, session=sessions[0].id, student=sid, status="late", note="버스"
    ).save()
    exam = Exam(tenant=tenant.id, lecture=lecture.id, title="단원평가", date=today)
    await exam.save()
    await Score(tenant=tenant.id, exam=exam.id, student=sid, score=80).save()
    await Score(
        tenant=tenant.id, exam=exam.id, student=uuid.UUID(family["stranger"]["id"]), score=90
    ).save()

    h = family["parent"]
    base = f"/api/v1/me/students/{sid}"
    lectures = (await tenant.client.get(f"{base}/lectures", headers=h)).json()["items"]
    assert [lec["title"] for lec in lectures] == ["중2 수학"]
    assert lectures[0]["schedule"][0]["weekday"] == 0
    page = (await tenant.client.get(f"{base}/sessions", params={"limit": 2}, headers=h)).json()
    assert [s["topic"] for s in page["items"]] == ["1강", "2강"]
    assert page["items"][0]["attendance"] == "late" and page["items"][1]["attendance"] is None
    rest = (
        await tenant.client.get(
            f"{base}/sessions", params={"limit": 2, "cursor": page["next_cursor"]}, headers=h
        )
    ).json()
    assert [s["topic"] for s in rest["items"]] == ["3강"] and rest["next_cursor"] is None
    scores = (await tenant.client.get(f"{base}/scores", headers=h)).json()["items"]
    assert len(scores) == 1
    assert scores[0]["exam_title"] == "단원평가" and float(scores[0]["score"]) == 80
    assert scores[0]["rank"] == 2 and scores[0]["takers"] == 2
    # The younger sibling has none of it.
    other = f"/api/v1/me/students/{family['younger']['id']}"
    assert (await tenant.client.get(f"{other}/scores", headers=h)).json()["items"] == []


async def test_scores_come_newest_first_in_pages(tenant, family):
    sid = uuid.UUID(family["older"]["id"])
    lecture = Lecture(tenant=tenant.id, title="영어")
    await lecture.save()
    today = dt.date.today()
    for i in range(5):
        exam = Exam(
            tenant=tenant.id,
            lecture=lecture.id,
            title=f"시험{i}",
            date=today - dt.timedelta(days=i),
        )
        await exam.save()
        await Score(tenant=tenant.id, exam=exam.id, student=sid, score=50 + i).save()
    undated = Exam(tenant=tenant.id, lecture=lecture.id, title="날짜없음")
    await undated.save()
    await Score(tenant=tenant.id, exam=undated.id, student=sid, score=1).save()
    base = f"/api/v1/me/students/{sid}/scores"
    titles, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await tenant.client.get(base, params=params, headers=family["student"])).json()
        titles += [s["exam_title"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert titles == ["시험0", "시험1", "시험2", "시험3", "시험4", "날짜없음"]
