"""A lecture's sessions over HTTP, against real Postgres: generation from the weekly
schedule, numbering, paging, edits and deletes."""

from __future__ import annotations

import asyncio
import uuid

from tests.bola import assert_problem
from tests.factories import create_student
from tests.factories.lectures import (
    DEFAULT_SESSION_COUNT,
    add_session,
    all_pages,
    create_lecture,
    generate_sessions,
    record_attendance,
    sessions_url,
)
from tests.factories.lectures import LECTURES as BASE
from tests.factories.videos import create_video

# --- sessions -------------------------------------------------------------------------


async def test_generate_numbers_sessions_in_date_order(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(
        tenant,
        h,
        schedule=[
            {"weekday": 2, "start": "16:00", "end": "17:30"},
            {"weekday": 0, "start": "18:00", "end": "19:00"},
            {"weekday": 0, "start": "16:00", "end": "17:30"},
        ],
        start_date="2026-03-02",
        end_date="2026-03-11",
    )
    assert await generate_sessions(tenant, lecture["id"], h) == {"created": 6, "existing": 0}
    sessions = (await tenant.client.get(sessions_url(lecture), headers=h)).json()["items"]
    assert [(s["seq"], s["date"], s["start_time"], s["end_time"]) for s in sessions] == [
        (1, "2026-03-02", "16:00", "17:30"),
        (2, "2026-03-02", "18:00", "19:00"),
        (3, "2026-03-04", "16:00", "17:30"),
        (4, "2026-03-09", "16:00", "17:30"),
        (5, "2026-03-09", "18:00", "19:00"),
        (6, "2026-03-11", "16:00", "17:30"),
    ]
    got = await tenant.client.get(f"{BASE}/{lecture['id']}", headers=h)
    assert got.json()["session_count"] == 6


async def test_regeneration_is_idempotent_and_keeps_edited_sessions(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    first = await generate_sessions(tenant, lecture["id"], h)
    assert first == {"created": DEFAULT_SESSION_COUNT, "existing": 0}
    again = await generate_sessions(tenant, lecture["id"], h)
    assert again == {"created": 0, "existing": DEFAULT_SESSION_COUNT}

    before = await all_pages(tenant.client, sessions_url(lecture), h)
    second = before[1]
    r = await tenant.client.patch(
        f"/api/v1/sessions/{second['id']}", json={"topic": "이차방정식"}, headers=h
    )
    assert r.status_code == 200 and r.json()["topic"] == "이차방정식"
    extra = await add_session(tenant, lecture["id"], h)
    assert extra["seq"] == DEFAULT_SESSION_COUNT + 1

    # One more week: only its two sessions are new, numbered after the hand-added one.
    r = await tenant.client.patch(
        f"{BASE}/{lecture['id']}", json={"end_date": "2026-04-05"}, headers=h
    )
    assert r.status_code == 200
    assert await generate_sessions(tenant, lecture["id"], h) == {
        "created": 2,
        "existing": DEFAULT_SESSION_COUNT,
    }
    after = await all_pages(tenant.client, sessions_url(lecture), h)
    assert [s["seq"] for s in after] == list(range(1, DEFAULT_SESSION_COUNT + 4))
    by_id = {s["id"]: s for s in after}
    for old in before:  # untouched: same numbers, same rows
        assert by_id[old["id"]]["seq"] == old["seq"]
    assert by_id[second["id"]]["topic"] == "이차방정식"
    assert [s["date"] for s in after[-2:]] == ["2026-03-30", "2026-04-01"]


async def test_generation_needs_dates_and_a_sane_range(tenant):
    h = await tenant.headers()
    undated = await create_lecture(tenant, h, start_date=None, end_date=None)
    r = await tenant.client.post(f"{sessions_url(undated)}/generate", headers=h)
    assert_problem(r, 409, "/problems/cannot-generate")
    assert {e["field"] for e in r.json()["errors"]} == {"start_date", "end_date"}

    decades = await create_lecture(tenant, h, end_date="2062-03-29")
    r = await tenant.client.post(f"{sessions_url(decades)}/generate", headers=h)
    assert_problem(r, 409, "/problems/cannot-generate")
    assert (await tenant.client.get(sessions_url(decades), headers=h)).json()["items"] == []

    no_slots = await create_lecture(tenant, h, schedule=[])
    assert await generate_sessions(tenant, no_slots["id"], h) == {"created": 0, "existing": 0}


async def test_concurrent_generations_create_each_session_once(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    results = await asyncio.gather(
        *(tenant.client.post(f"{sessions_url(lecture)}/generate", headers=h) for _ in range(4))
    )
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sum(r.json()["created"] for r in results) == DEFAULT_SESSION_COUNT
    sessions = await all_pages(tenant.client, sessions_url(lecture), h)
    assert [s["seq"] for s in sessions] == list(range(1, DEFAULT_SESSION_COUNT + 1))


async def test_sessions_list_pages_by_number(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    await generate_sessions(tenant, lecture["id"], h)
    r = await tenant.client.get(sessions_url(lecture), params={"limit": 3}, headers=h)
    assert [s["seq"] for s in r.json()["items"]] == [1, 2, 3] and r.json()["next_cursor"]
    seen = await all_pages(tenant.client, sessions_url(lecture), h, limit=3)
    assert [s["seq"] for s in seen] == list(range(1, DEFAULT_SESSION_COUNT + 1))
    empty = await create_lecture(tenant, h)
    r = await tenant.client.get(sessions_url(empty), headers=h)
    assert r.status_code == 200 and r.json() == {"items": [], "limit": 50, "next_cursor": None}


async def test_session_validation_and_edit(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    r = await tenant.client.post(
        sessions_url(lecture),
        json={"date": "2026-05-01", "start_time": "25:00", "end_time": "9:00"},
        headers=h,
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"start_time", "end_time"}
    r = await tenant.client.post(
        sessions_url(lecture), json={"date": "2026-05-01", "topic": "x" * 201}, headers=h
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"topic"}
    r = await tenant.client.post(
        sessions_url(lecture),
        json={"date": "2026-05-01", "start_time": "11:00", "end_time": "10:00"},
        headers=h,
    )
    assert r.json()["errors"] == [{"field": "end_time", "message": "must be after start_time"}]

    session = await add_session(tenant, lecture["id"], h, start_time="10:00", end_time="11:00")
    assert session["seq"] == 1 and session["video_id"] is None
    url = f"/api/v1/sessions/{session['id']}"
    # Checked against the stored end time: 12:00 would start after it ends.
    r = await tenant.client.patch(url, json={"start_time": "12:00"}, headers=h)
    assert r.json()["errors"] == [{"field": "start_time", "message": "must be before end_time"}]
    # A video id the academy does not have (none, or another academy's) is a field error.
    r = await tenant.client.patch(url, json={"video_id": str(uuid.uuid4())}, headers=h)
    assert r.status_code == 422 and r.json()["errors"] == [
        {"field": "video_id", "message": "no such video in this academy"}
    ]
    video = (await create_video(tenant, h, lecture_id=lecture["id"]))["video"]["id"]
    r = await tenant.client.patch(
        url,
        json={"date": "2026-05-02", "start_time": "12:00", "end_time": "13:30", "video_id": video},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["date"], body["start_time"], body["end_time"]) == ("2026-05-02", "12:00", "13:30")
    assert body["video_id"] == video and body["seq"] == 1 and body["topic"] == "보강"
    r = await tenant.client.patch(url, json={"start_time": None, "video_id": None}, headers=h)
    assert r.json()["start_time"] is None and r.json()["video_id"] is None
    assert (await tenant.client.get(url, headers=h)).json() == r.json()


async def test_session_delete_leaves_a_gap_and_spares_attendance(tenant):
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h)
    await generate_sessions(tenant, lecture["id"], h)
    sessions = await all_pages(tenant.client, sessions_url(lecture), h)
    url = f"/api/v1/sessions/{sessions[2]['id']}"
    assert (await tenant.client.delete(url, headers=h)).status_code == 204
    assert_problem(await tenant.client.get(url, headers=h), 404)
    left = await all_pages(tenant.client, sessions_url(lecture), h)
    assert 3 not in [s["seq"] for s in left] and len(left) == DEFAULT_SESSION_COUNT - 1
    assert (await add_session(tenant, lecture["id"], h))["seq"] == DEFAULT_SESSION_COUNT + 1

    student = await create_student(tenant, h)
    await record_attendance(tenant.id, sessions[0]["id"], student["id"])
    r = await tenant.client.delete(f"/api/v1/sessions/{sessions[0]['id']}", headers=h)
    assert_problem(r, 409, "/problems/session-has-attendance")
