"""The video API over real Postgres and the local S3/SQS server: upload URLs, completion,
playback authorisation and signing, watch progress, reports, deletion and the cleanup."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import httpx
import pytest

from models.tables import LectureSession, Video
from ops import storage
from ops.commands.storage_cleanup import cleanup_raw_uploads
from ops.settings import get_settings
from ops.storage import hls_prefix
from pipelines.video.signing import verify
from tests.factories import create_student
from tests.factories.accounts import family_headers
from tests.factories.lectures import add_session, create_lecture, enrol
from tests.factories.videos import create_video, make_video, mark_ready
from tests.sqs_helpers import counts, decode, purge, receive

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def video_queue(broker):
    q = get_settings().queue_for("video")
    purge(q)
    yield q
    purge(q)


@pytest.fixture
def small_video(tmp_path):
    return make_video(tmp_path / "clip.mp4", width=160, height=90, seconds=1, fps=5)


async def test_upload_then_complete_starts_the_pipeline_once(tenant, video_queue, small_video):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    created = await create_video(tenant, headers, lecture_id=lecture["id"], source=small_video)
    video = created["video"]
    assert video["status"] == "UPLOADING" and video["lecture_id"] == lecture["id"]
    key = (await Video.select(Video.raw_key).where(Video.id == video["id"]).first())["raw_key"]
    assert key.startswith(f"raw/{tenant.id}/{video['id']}/")

    r = await tenant.client.post(f"/api/v1/videos/{video['id']}/complete", headers=headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "PROCESSING" and body["job_id"]
    assert body["size_bytes"] == small_video.stat().st_size
    messages = receive(video_queue)
    assert len(messages) == 1
    msg = decode(messages[0]["Body"])
    assert msg.actor_name == "video.probe"
    assert msg.kwargs["video_id"] == video["id"] and msg.kwargs["job_id"] == body["job_id"]

    again = await tenant.client.post(f"/api/v1/videos/{video['id']}/complete", headers=headers)
    assert again.status_code == 202 and again.json()["job_id"] == body["job_id"]
    assert counts(video_queue)["visible"] + counts(video_queue)["in_flight"] == 1


async def test_complete_needs_the_file_and_rejects_an_empty_one(tenant, video_queue, tmp_path):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    created = await create_video(tenant, headers, lecture_id=lecture["id"])
    r = await tenant.client.post(
        f"/api/v1/videos/{created['video']['id']}/complete", headers=headers
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/upload-missing"

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=empty, size_bytes=10
    )
    vid = created["video"]["id"]
    r = await tenant.client.post(f"/api/v1/videos/{vid}/complete", headers=headers)
    assert r.status_code == 422 and r.json()["type"] == "/problems/upload-rejected"
    shown = (await tenant.client.get(f"/api/v1/videos/{vid}", headers=headers)).json()
    assert shown["status"] == "FAILED" and "empty" in shown["error"]
    assert shown["error_code"] == "empty_file"
    assert counts(video_queue)["visible"] == 0


async def test_create_reports_every_field_error(tenant):
    headers = await tenant.headers()
    r = await tenant.client.post(
        "/api/v1/videos",
        json={"title": " ", "filename": "a.mp4", "size_bytes": 0, "content_type": "text/plain"},
        headers=headers,
    )
    assert r.status_code == 422
    # The schema's rules (``VideoCreate``) first, every field of them ...
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"title", "size_bytes", "content_type"}
    r = await tenant.client.post(
        "/api/v1/videos",
        json={"title": "x", "filename": "a.mp4",
              "size_bytes": get_settings().video_max_upload_bytes + 1},
        headers=headers,
    )  # fmt: skip
    assert r.status_code == 422
    # ... then the server's own: its upload limit, a lecture to belong to.
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"size_bytes", "lecture_id"}
    r = await tenant.client.post(
        "/api/v1/videos",
        json={"title": "x", "filename": "a.mp4", "size_bytes": 5, "lecture_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "lecture_id"
    student = await create_student(tenant, headers)
    student_headers = await family_headers(tenant, "student", student_id=student["id"])
    r = await tenant.client.post(
        "/api/v1/videos",
        json={"title": "x", "filename": "a", "size_bytes": 1},
        headers=student_headers,
    )
    assert r.status_code == 403


async def test_a_session_video_belongs_to_its_lecture(tenant):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    session = await add_session(tenant, lecture["id"], headers)
    created = await create_video(tenant, headers, session_id=session["id"])
    assert created["video"]["lecture_id"] == lecture["id"]
    assert created["video"]["session_id"] == session["id"]
    shown = await tenant.client.get(f"/api/v1/sessions/{session['id']}", headers=headers)
    if shown.status_code == 200:
        assert shown.json()["video_id"] == created["video"]["id"]
    # The session's video is a foreign key: no session can name a video that does not
    # exist, and a video that goes (by any statement) leaves its session with none.
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await LectureSession.update({LectureSession.video_id: uuid.uuid4()}).where(
            LectureSession.id == session["id"]
        )
    await Video.delete().where(Video.id == created["video"]["id"])
    row = (
        await LectureSession.select(LectureSession.video_id)
        .where(LectureSession.id == session["id"])
        .first()
    )
    assert row["video_id"] is None


async def test_large_files_upload_in_parts(tenant, video_queue, small_video):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    declared = get_settings().video_multipart_threshold_bytes + 1
    created = await create_video(tenant, headers, lecture_id=lecture["id"], size_bytes=declared)
    upload = created["upload"]
    assert upload["method"] == "MULTIPART" and upload["upload_id"]
    assert len(upload["parts"]) * upload["part_size"] >= declared
    # A client with a smaller file than declared sends one (last) part.
    async with httpx.AsyncClient() as http:
        put = await http.put(upload["parts"][0]["url"], content=small_video.read_bytes())
    assert put.status_code == 200, put.text
    vid = created["video"]["id"]
    r = await tenant.client.post(f"/api/v1/videos/{vid}/complete", headers=headers, json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "parts"
    r = await tenant.client.post(
        f"/api/v1/videos/{vid}/complete",
        headers=headers,
        json={"parts": [{"part_number": 1, "etag": put.headers["ETag"]}]},
    )
    assert r.status_code == 202, r.text
    assert r.json()["size_bytes"] == small_video.stat().st_size


async def _ready_video(tenant, headers, *, proctored=False, duration=100.0):
    lecture = await create_lecture(tenant, headers)
    created = await create_video(tenant, headers, lecture_id=lecture["id"], proctored=proctored)
    await mark_ready(created["video"]["id"], duration=duration)
    return lecture, created["video"]["id"]


async def test_playback_is_for_staff_and_enrolled_students(tenant):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    created = await create_video(tenant, headers, lecture_id=lecture["id"])
    vid = created["video"]["id"]
    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=headers)
    assert r.status_code == 409 and r.json()["type"] == "/problems/video-not-ready"
    await mark_ready(vid)

    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    url = urlsplit(body["master_url"])
    assert body["master_url"].startswith(get_settings().cdn_hls_base_url)
    assert url.path.endswith(f"/{tenant.id}/{vid}/master.m3u8")
    s = get_settings()
    keys = {s.cdn_hls_signing_key_id: s.cdn_hls_signing_secret}
    query = dict(parse_qsl(url.query))
    assert verify(url.path, query, keys=keys) is None
    assert verify(url.path.replace("master.m3u8", "360p/seg_00000.ts"), query, keys=keys) is None
    expires = dt.datetime.fromisoformat(body["expires_at"])
    left = (expires - dt.datetime.now(dt.UTC)).total_seconds()
    assert 3500 < left <= 3600

    student = await create_student(tenant, headers)
    student_headers = await family_headers(tenant, "student", student_id=student["id"])
    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=student_headers)
    assert r.status_code == 403 and r.json()["type"] == "/problems/not-enrolled"
    await enrol(tenant, lecture["id"], student["id"], headers)
    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=student_headers)
    assert r.status_code == 200, r.text
    parent_headers = await family_headers(tenant, "parent")
    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=parent_headers)
    assert r.status_code == 403
    # A dropped enrollment ends access.
    from models.tables import Enrollment

    await Enrollment.update({Enrollment.status: "dropped"}).where(
        Enrollment.student == student["id"]
    )
    r = await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=student_headers)
    assert r.status_code == 403


async def _student(tenant, headers, lecture_id):
    student = await create_student(tenant, headers)
    await enrol(tenant, lecture_id, student["id"], headers)
    return student, await family_headers(tenant, "student", student_id=student["id"])


async def test_progress_is_the_union_and_completion_is_coverage(tenant):
    headers = await tenant.headers()
    lecture, vid = await _ready_video(tenant, headers)
    student, sh = await _student(tenant, headers, lecture["id"])
    other, _ = await _student(tenant, headers, lecture["id"])
    url = f"/api/v1/videos/{vid}/progress"

    r = await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    assert r.status_code == 200, r.text
    r = await tenant.client.post(
        url, json={"position": 100, "played": [[5, 20], [95, 100]]}, headers=sh
    )
    body = r.json()
    assert body["intervals"] == [[0, 20], [95, 100]]
    assert body["watched_seconds"] == 25 and not body["completed"]
    r = await tenant.client.post(url, json={"position": 95, "played": [[20, 90]]}, headers=sh)
    body = r.json()
    assert body["coverage_percent"] == 95.0 and body["completed"] and body["completed_at"]

    bad = await tenant.client.post(url, json={"position": -1, "played": [[-5, 1]]}, headers=sh)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"position", "played[0][0]"}
    bad = await tenant.client.post(url, json={"position": 1, "played": [[5, 1]]}, headers=sh)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"played[0]"}
    staff_beat = await tenant.client.post(
        url, json={"position": 1, "played": [[0, 1]]}, headers=headers
    )
    assert staff_beat.status_code == 200 and staff_beat.json()["recorded"] is False
    parent_beat = await tenant.client.post(
        url, json={"position": 1}, headers=await family_headers(tenant, "parent")
    )
    assert parent_beat.status_code == 403

    report = await tenant.client.get(f"/api/v1/videos/{vid}/watch-report", headers=headers)
    assert report.status_code == 200
    rows = {row["student_id"]: row for row in report.json()["students"]}
    assert rows[student["id"]]["completed"] and rows[student["id"]]["coverage_percent"] == 95.0
    assert rows[other["id"]]["watched_seconds"] == 0 and not rows[other["id"]]["completed"]
    body = report.json()
    assert body["student_count"] == len(rows) == 2 and body["completed_count"] == 1
    # Paged by name like every list: one at a time, the totals on each page.
    base = f"/api/v1/videos/{vid}/watch-report?limit=1"
    first = (await tenant.client.get(base, headers=headers)).json()
    assert len(first["students"]) == 1 and first["next_cursor"] and first["student_count"] == 2
    second = (
        await tenant.client.get(f"{base}&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert len(second["students"]) == 1 and second["next_cursor"] is None
    assert {first["students"][0]["student_id"], second["students"][0]["student_id"]} == set(rows)
    r = await tenant.client.get(f"/api/v1/videos/{vid}/watch-report", headers=sh)
    assert r.status_code == 403


async def test_proctored_lecture_rules(tenant):
    from models.tables import VideoWatch

    headers = await tenant.headers()
    lecture, vid = await _ready_video(tenant, headers, proctored=True)
    _, sh = await _student(tenant, headers, lecture["id"])
    url = f"/api/v1/videos/{vid}/progress"
    assert (
        await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=sh)
    ).status_code == 200

    async def rewind_clock(seconds: float) -> None:
        # As if the previous heartbeat had been ``seconds`` ago.
        await VideoWatch.raw(
            "UPDATE video_watch SET last_heartbeat_at = now() - make_interval(secs => {}) "
            "WHERE video = {}",
            seconds,
            vid,
        )

    await rewind_clock(10)
    r = await tenant.client.post(
        url, json={"position": 10, "played": [[0, 10]], "seq": 1}, headers=sh
    )
    assert r.status_code == 200, r.text
    await rewind_clock(10)
    # A seek to 50 s: the 10 s watched there do not count.
    r = await tenant.client.post(
        url, json={"position": 60, "played": [[50, 60]], "seq": 2}, headers=sh
    )
    assert r.status_code == 200 and r.json()["intervals"] == [[0, 10]]
    # Replayed (same seq) and out-of-order heartbeats are refused.
    await rewind_clock(10)
    r = await tenant.client.post(
        url, json={"position": 20, "played": [[10, 20]], "seq": 2}, headers=sh
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/heartbeat-out-of-order"
    # 60 s of new playback 10 s after the last heartbeat: faster than real time.
    r = await tenant.client.post(
        url, json={"position": 70, "played": [[10, 70]], "seq": 3}, headers=sh
    )
    assert r.status_code == 409 and r.json()["type"] == "/problems/heartbeat-too-fast"
    r = await tenant.client.post(
        url, json={"position": 20, "played": [[10, 20]], "seq": 3}, headers=sh
    )
    assert r.status_code == 200 and r.json()["intervals"] == [[0, 20]]
    report = await tenant.client.get(f"/api/v1/videos/{vid}/watch-report", headers=headers)
    row = report.json()["students"][0]
    assert row["rejected_heartbeats"] == 2 and row["heartbeats"] == 3


async def test_delete_removes_the_hls_prefix_and_the_source(tenant, small_video):
    s = get_settings()
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    created = await create_video(tenant, headers, lecture_id=lecture["id"], source=small_video)
    vid = created["video"]["id"]
    prefix = hls_prefix(tenant.id, vid)
    for name in ("master.m3u8", "360p/index.m3u8", "360p/seg_00000.ts", "poster.jpg"):
        storage.put_bytes(s.r2_video_bucket, f"{prefix}/{name}", b"x")
    other_prefix = hls_prefix(tenant.id, uuid.uuid4())
    storage.put_bytes(s.r2_video_bucket, f"{other_prefix}/master.m3u8", b"keep")
    raw = (await Video.select(Video.raw_key).where(Video.id == vid).first())["raw_key"]

    r = await tenant.client.delete(f"/api/v1/videos/{vid}", headers=headers)
    assert r.status_code == 204, r.text
    listed = storage.client().list_objects_v2(Bucket=s.r2_video_bucket, Prefix=prefix + "/")
    assert listed.get("KeyCount", 0) == 0
    assert storage.head(s.r2_video_bucket, raw) is None
    assert storage.head(s.r2_video_bucket, f"{other_prefix}/master.m3u8") is not None
    assert (await tenant.client.get(f"/api/v1/videos/{vid}", headers=headers)).status_code == 404


async def test_raw_uploads_are_deleted_days_after_ready(tenant, small_video):
    s = get_settings()
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    old = (await create_video(tenant, headers, lecture_id=lecture["id"], source=small_video))[
        "video"
    ]
    new = (await create_video(tenant, headers, lecture_id=lecture["id"], source=small_video))[
        "video"
    ]
    for v, days in ((old, s.video_raw_retention_days + 1), (new, 1)):
        await mark_ready(v["id"])
        await Video.update(
            {Video.ready_at: dt.datetime.now(dt.UTC) - dt.timedelta(days=days)}
        ).where(Video.id == v["id"])
    keys = {
        r["id"]: r["raw_key"]
        for r in await Video.select(Video.id, Video.raw_key).where(
            Video.id.is_in([old["id"], new["id"]])
        )
    }
    dry = await cleanup_raw_uploads(dry_run=True)
    assert dry["video_raw_deleted"] >= 1
    assert storage.head(s.r2_video_bucket, keys[uuid.UUID(old["id"])]) is not None
    await cleanup_raw_uploads()
    assert storage.head(s.r2_video_bucket, keys[uuid.UUID(old["id"])]) is None
    assert storage.head(s.r2_video_bucket, keys[uuid.UUID(new["id"])]) is not None
    row = await Video.select(Video.raw_deleted_at).where(Video.id == old["id"]).first()
    assert row["raw_deleted_at"] is not None
    # Repeating it finds nothing left to delete.
    assert (await cleanup_raw_uploads())["video_raw_deleted"] == 0


async def test_videos_of_a_lecture_in_cursor_pages(tenant):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    other = await create_lecture(tenant, headers)
    made = [
        (await create_video(tenant, headers, lecture_id=lecture["id"], title=f"{i}강"))["video"]
        for i in range(3)
    ]
    await create_video(tenant, headers, lecture_id=other["id"])
    url = f"/api/v1/videos?lecture_id={lecture['id']}&limit=2"
    first = (await tenant.client.get(url, headers=headers)).json()
    assert [v["id"] for v in first["items"]] == [made[2]["id"], made[1]["id"]]
    second = (
        await tenant.client.get(f"{url}&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert [v["id"] for v in second["items"]] == [made[0]["id"]]
    assert second["next_cursor"] is None
    bad = await tenant.client.get(f"{url}&cursor=garbage", headers=headers)
    assert bad.status_code == 422
