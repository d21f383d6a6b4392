"""Teachers see and change only the lectures they teach (finding 9 of the security probe);
owners, admins and staff see all. The per-id side is the BOLA matrix's teacher column
(tests/integration/test_tenancy.py); here are what a teacher does on their own lectures and
the lists, which leave the others' out."""

from __future__ import annotations

from typing import Any

from tests.factories.attendance import create_class
from tests.factories.grades import create_exam, enroll, put_scores
from tests.factories.lectures import user_id
from tests.factories.videos import create_video

API = "/api/v1"


async def _teacher_with_two_classes(tenant: Any) -> tuple[dict[str, str], Any, Any]:
    """A teacher's headers, a class they teach and a class they do not; one student is in
    both."""
    email = await tenant.add_user("teacher")
    mine = await create_class(tenant, students=2, teacher=await user_id(email))
    theirs = await create_class(tenant, students=1)
    await enroll(tenant, theirs.lecture, mine.students[0])
    return await tenant.headers(email, "password-123"), mine, theirs


async def test_a_teacher_grades_their_lecture_and_not_another(tenant: Any) -> None:
    headers, mine, theirs = await _teacher_with_two_classes(tenant)
    exam = await create_exam(tenant, mine.lecture, headers)
    await put_scores(tenant, exam["id"], {mine.students[0]: 80}, headers)
    r = await tenant.client.post(
        f"{API}/lectures/{theirs.lecture}/exams", json={"title": "x"}, headers=headers
    )
    assert r.status_code == 404, r.text

    other_exam = await create_exam(tenant, theirs.lecture)
    await put_scores(tenant, other_exam["id"], {mine.students[0]: 60})
    history = f"{API}/students/{mine.students[0]}/scores"
    seen = (await tenant.client.get(history, headers=headers)).json()["items"]
    assert [i["exam_id"] for i in seen] == [exam["id"]]
    everything = (await tenant.client.get(history, headers=await tenant.headers())).json()
    assert {i["exam_id"] for i in everything["items"]} == {exam["id"], other_exam["id"]}


async def test_a_teachers_attendance_report_covers_their_lectures(tenant: Any) -> None:
    headers, mine, theirs = await _teacher_with_two_classes(tenant)
    r = await tenant.client.get(f"{API}/attendance/report", headers=headers)
    assert r.status_code == 200, r.text
    assert {i["student_id"] for i in r.json()["items"]} == {str(s) for s in mine.students}
    r = await tenant.client.get(f"{API}/attendance/report", headers=await tenant.headers())
    students = {str(s) for s in mine.students + theirs.students}
    assert students <= {i["student_id"] for i in r.json()["items"]}


async def test_a_teacher_lists_and_adds_videos_of_their_lectures_only(tenant: Any) -> None:
    headers, mine, theirs = await _teacher_with_two_classes(tenant)
    own = await create_video(tenant, headers, lecture_id=mine.lecture)
    await create_video(tenant, await tenant.headers(), lecture_id=theirs.lecture)
    listed = (await tenant.client.get(f"{API}/videos", headers=headers)).json()["items"]
    assert [v["id"] for v in listed] == [own["video"]["id"]]

    body = {"title": "x", "filename": "x.mp4", "size_bytes": 1000, "content_type": "video/mp4"}
    r = await tenant.client.post(
        f"{API}/videos", json={**body, "lecture_id": str(theirs.lecture)}, headers=headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "lecture_id"


async def test_a_teacher_cannot_show_another_lectures_video_in_their_session(
    tenant: Any,
) -> None:
    headers, mine, theirs = await _teacher_with_two_classes(tenant)
    other = await create_video(tenant, await tenant.headers(), lecture_id=theirs.lecture)
    own = await create_video(tenant, headers, lecture_id=mine.lecture)
    session = f"{API}/sessions/{mine.sessions[0]}"
    r = await tenant.client.patch(session, json={"video_id": other["video"]["id"]}, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "video_id"
    r = await tenant.client.patch(session, json={"video_id": own["video"]["id"]}, headers=headers)
    assert r.status_code == 200, r.text
