"""Each pipeline step run in-process against real Postgres and the local S3/SQS server,
then delivered again: a redelivered step changes nothing and only re-sends its next step."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from actors import video as steps
from models.tables import Job, Video
from ops import storage
from ops.settings import get_settings
from ops.storage import hls_prefix
from pipelines.video.package import parse_master_playlist
from pipelines.video.workdir import workdir_for
from tests.factories.lectures import create_lecture
from tests.factories.videos import create_video, make_audio_only, make_video, truncate
from tests.sqs_helpers import decode, purge, receive

pytestmark = pytest.mark.usefixtures("broker")


@pytest.fixture
def video_queue(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEO_WORKER_TEMP_DIR", str(tmp_path / "work"))
    get_settings.cache_clear()
    q = get_settings().queue_for("video")
    purge(q)
    yield q
    purge(q)
    monkeypatch.delenv("VIDEO_WORKER_TEMP_DIR")
    get_settings.cache_clear()


def _next_messages(queue: str) -> list[str]:
    got = receive(queue, visibility=0)
    purge(queue)
    return [decode(m["Body"]).actor_name for m in got]


def _objects(prefix: str) -> dict[str, tuple[int, str]]:
    s = get_settings()
    page = storage.client().list_objects_v2(Bucket=s.r2_video_bucket, Prefix=prefix + "/")
    return {o["Key"]: (o["Size"], o["ETag"]) for o in page.get("Contents", [])}


async def test_every_step_is_idempotent_under_redelivery(tenant, video_queue, tmp_path):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = make_video(tmp_path / "in.mp4", width=320, height=180, seconds=7, fps=10)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]
    assert _next_messages(video_queue) == ["video.probe"]
    order = list(steps.ACTORS.items())
    prefix = hls_prefix(tenant.id, vid)
    for i, (name, actor) in enumerate(order):
        await actor(job_id=job_id, video_id=vid)
        row = await Video.select().where(Video.id == vid).first()
        assert row["step_done"] == name, (name, row["error"])
        expected_next = [order[i + 1][1].name] if i + 1 < len(order) else []
        assert _next_messages(video_queue) == expected_next
        objects = _objects(prefix)
        # Delivered again: the same state, the same objects, and only the next step re-sent.
        await actor(job_id=job_id, video_id=vid)
        again = await Video.select().where(Video.id == vid).first()
        assert again["step_done"] == name and again["status"] == row["status"]
        assert _objects(prefix) == objects
        assert _next_messages(video_queue) == (expected_next if name != "finalise" else [])

    row = await Video.select().where(Video.id == vid).first()
    assert row["status"] == "READY" and row["duration_seconds"] == pytest.approx(7.0, abs=0.1)
    assert [r["name"] for r in row["rungs"]] == ["180p"]
    assert row["poster_key"] == f"{prefix}/poster.jpg"
    job = await Job.select().where(Job.id == job_id).first()
    assert job["status"] == "DONE" and job["progress"] == 100
    assert job["result"]["rungs"] == ["180p"]
    objects = _objects(prefix)
    for name in ("master.m3u8", "180p/index.m3u8", "poster.jpg", "sprite_0.jpg", "thumbnails.vtt"):
        assert f"{prefix}/{name}" in objects
    assert sum(1 for k in objects if k.endswith(".ts")) == 2
    master = storage.get_bytes(get_settings().r2_video_bucket, f"{prefix}/master.m3u8").decode()
    assert [v["URI"] for v in parse_master_playlist(master)] == ["180p/index.m3u8"]
    # Temporary files are gone once READY.
    assert not workdir_for(vid).path.exists()


async def test_a_step_on_a_worker_without_the_earlier_outputs_rebuilds_them(
    tenant, video_queue, tmp_path
):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = make_video(tmp_path / "in.mp4", width=160, height=90, seconds=3, fps=10, audio=False)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]
    await steps.video_probe(job_id=job_id, video_id=vid)
    await steps.video_transcode(job_id=job_id, video_id=vid)
    # The next step lands on another worker: its work directory is empty.
    workdir_for(vid).remove()
    for name in ("package", "thumbnails", "upload", "finalise"):
        await steps.ACTORS[name](job_id=job_id, video_id=vid)
    row = await Video.select(Video.status).where(Video.id == vid).first()
    assert row["status"] == "READY"


def _renamed_document(tmp_path: Path) -> Path:
    (tmp_path / "lecture.mp4").write_text("1강 판서 노트\n" * 200)
    return tmp_path / "lecture.mp4"


def _cut(tmp_path: Path) -> Path:
    return truncate(make_video(tmp_path / "cut.mp4", width=160, height=90, seconds=3, fps=10))


def _audio_only(tmp_path: Path) -> Path:
    return make_audio_only(tmp_path / "voice.m4a")


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (_cut, "truncated", "truncated"),
        (_renamed_document, "not_a_video", "not a video"),
        (_audio_only, "no_video_stream", "no video stream"),
    ],
)
async def test_a_rejected_source_ends_failed_with_its_code(
    tenant, video_queue, tmp_path, make, code, words
):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=make(tmp_path), complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]
    purge(video_queue)
    await steps.video_probe(job_id=job_id, video_id=vid)
    shown = (await tenant.client.get(f"/api/v1/videos/{vid}", headers=headers)).json()
    assert shown["status"] == "FAILED" and words in shown["error"]
    assert shown["error_code"] == code
    polled = (await tenant.client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()
    assert polled["status"] == "FAILED" and words in polled["error"]
    assert polled["error_code"] == code
    assert _next_messages(video_queue) == []
    assert not workdir_for(vid).path.exists()
    # A late copy of any step does nothing.
    await steps.video_transcode(job_id=job_id, video_id=vid)
    assert (await Video.select(Video.status).where(Video.id == vid).first())["status"] == "FAILED"


async def test_a_delete_during_the_upload_step_leaves_no_hls_objects(
    tenant, video_queue, tmp_path, monkeypatch
):
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = make_video(tmp_path / "in.mp4", width=160, height=90, seconds=3, fps=10)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]
    for name in ("probe", "transcode", "package", "thumbnails"):
        await steps.ACTORS[name](job_id=job_id, video_id=vid)
    prefix = hls_prefix(tenant.id, vid)
    # The upload step has claimed its work when the user deletes the video; its uploads
    # happen after the API removed what was stored: the order a slow upload and a delete
    # meet in.
    claimed, deleted = threading.Event(), threading.Event()
    uploads: list[dict] = []
    real_upload = steps.ensure_uploaded

    def upload_after_the_delete(*args, **kwargs):
        claimed.set()
        assert deleted.wait(timeout=60)
        uploads.append(real_upload(*args, **kwargs))
        return uploads[-1]

    monkeypatch.setattr(steps, "ensure_uploaded", upload_after_the_delete)
    step = asyncio.create_task(steps.video_upload(job_id=job_id, video_id=vid))
    assert await asyncio.to_thread(claimed.wait, 60)
    r = await tenant.client.delete(f"/api/v1/videos/{vid}", headers=headers)
    assert r.status_code == 204, r.text
    deleted.set()
    await step
    assert uploads[0]["uploaded"] > 0  # the step did put its renditions in the bucket
    assert _objects(prefix) == {}
    assert await Video.count().where(Video.id == vid) == 0
    job = await Job.select().where(Job.id == job_id).first()
    assert job["status"] == "FAILED" and job["error_code"] == "deleted"
