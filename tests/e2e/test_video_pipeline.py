"""Videos through the real broker path: HTTP upload to the storage server, a real video
worker process over HTTP SQS, and playback through the signing edge (``ops.commands.hls_server``)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

import av
import httpx
import pytest

from models.tables import Job, Video
from ops.commands.hls_server import serve_in_thread
from ops.settings import get_settings
from pipelines.video.package import parse_master_playlist, parse_media_playlist
from tests.conftest import wait_for
from tests.factories.lectures import create_lecture
from tests.factories.videos import create_video, make_video, truncate
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


@pytest.fixture
def video_queue(broker):
    q = get_settings().queue_for("video")
    purge(q, f"{q}-dlq")
    yield q
    purge(q, f"{q}-dlq")


@pytest.fixture
def edge():
    server = serve_in_thread()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _finished(video_id):
    async def check():
        row = (
            await Video.select(Video.status, Video.error, Video.error_code)
            .where(Video.id == video_id)
            .first()
        )
        return row if row and row["status"] in ("READY", "FAILED") else None

    return check


def _via(edge: str, url: str) -> str:
    """The CDN URL, served by our edge instead (same path and token)."""
    parts = urlsplit(url)
    return f"{edge}{parts.path}?{parts.query}"


async def test_upload_to_ready_and_signed_playback(
    tenant, video_queue, start_worker, edge, tmp_path
):
    worker = start_worker(["video"])
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = make_video(tmp_path / "lecture.mp4", width=640, height=360, seconds=13, fps=10)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]
    row = await wait_for(_finished(vid), timeout=180)
    assert row and row["status"] == "READY", (row, worker.output()[-4000:])
    job = await Job.select().where(Job.id == job_id).first()
    assert job["status"] == "DONE" and job["progress"] == 100 and job["stage"] == "done"
    shown = (await tenant.client.get(f"/api/v1/videos/{vid}", headers=headers)).json()
    assert shown["progress"] == 100 and shown["duration_seconds"] == pytest.approx(13, abs=0.2)
    assert [r["name"] for r in shown["rungs"]] == ["360p"]

    playback = (await tenant.client.get(f"/api/v1/videos/{vid}/playback", headers=headers)).json()
    master_url = _via(edge, playback["master_url"])
    async with httpx.AsyncClient() as http:
        master = await http.get(master_url)
        assert master.status_code == 200, master.text
        variants = parse_master_playlist(master.text)
        assert len(variants) == 1 and variants[0]["RESOLUTION"] == "640x360"
        assert "avc1.64" in variants[0]["CODECS"] and "mp4a.40.2" in variants[0]["CODECS"]
        # Variant and segment URIs carry the token; they resolve against the master's URL.
        variant_url = str(httpx.URL(master_url).join(variants[0]["URI"]))
        media = await http.get(variant_url)
        assert media.status_code == 200
        playlist = parse_media_playlist(media.text)
        assert len(playlist.segments) == 3
        assert [s.duration for s in playlist.segments[:-1]] == [6.0, 6.0]
        segment = await http.get(str(httpx.URL(variant_url).join(playlist.segments[0].uri)))
        assert segment.status_code == 200 and segment.content[:1] == b"\x47"  # MPEG-TS sync
        poster = await http.get(_via(edge, playback["poster_url"]))
        assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8"
        vtt = await http.get(_via(edge, playback["thumbnails_url"]))
        assert vtt.status_code == 200 and "sprite_0.jpg?" in vtt.text

        # Tampered, expired, unsigned, or another video's path: 403.
        parts = urlsplit(master_url)
        query = dict(parse_qsl(parts.query))
        base = f"{edge}{parts.path}"
        tampered = {**query, "sig": query["sig"][::-1]}
        expired = {**query, "exp": "1000000000"}
        for bad in (
            f"{base}?{urlencode(tampered)}",
            f"{base}?{urlencode(expired)}",
            base,
            f"{base.replace(vid, '00000000-0000-0000-0000-000000000000')}?{parts.query}",
        ):
            assert (await http.get(bad)).status_code == 403, bad

    # A real demuxer reads the rung through the edge, token and all.
    with av.open(variant_url) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames - 130) <= 1


async def test_a_truncated_upload_ends_failed_with_a_reason(
    tenant, video_queue, start_worker, tmp_path
):
    worker = start_worker(["video"])
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = truncate(make_video(tmp_path / "cut.mp4", width=160, height=90, seconds=4, fps=10))
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid = created["video"]["id"]
    row = await wait_for(_finished(vid), timeout=120)
    assert row and row["status"] == "FAILED", worker.output()[-3000:]
    assert "truncated" in row["error"] and row["error_code"] == "truncated"
    job = await Job.select().where(Job.id == created["completed"]["job_id"]).first()
    assert job["status"] == "FAILED" and job["error"] == row["error"]
    assert job["error_code"] == "truncated"


async def test_a_killed_worker_mid_transcode_is_restarted_cleanly(
    tenant, video_queue, start_worker, tmp_path
):
    first = start_worker(["video"])
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    source = make_video(tmp_path / "long.mp4", width=1280, height=720, seconds=19, fps=10)
    created = await create_video(
        tenant, headers, lecture_id=lecture["id"], source=source, complete=True
    )
    vid, job_id = created["video"]["id"], created["completed"]["job_id"]

    async def transcoding():
        job = await Job.select(Job.stage).where(Job.id == job_id).first()
        return job and job["stage"] == "transcode"

    assert await wait_for(transcoding, timeout=120, interval=0.1), first.output()[-3000:]
    first.kill9()
    # A visibility timeout far shorter than the transcode: only the heartbeat keeps the
    # running step from being delivered again.
    second = start_worker(["video"], env={"SQS_VISIBILITY_TIMEOUT_VIDEO": "3"})
    row = await wait_for(_finished(vid), timeout=240)
    assert row and row["status"] == "READY", (row, second.output()[-4000:])
    video = await Video.select().where(Video.id == vid).first()
    assert [r["name"] for r in video["rungs"]] == ["360p", "720p"]
    job = await Job.select().where(Job.id == job_id).first()
    # Six steps, the transcode twice (killed once), and nothing delivered twice while alive.
    assert job["status"] == "DONE" and job["attempts"] == 7, second.output()[-3000:]
    from ops import storage

    s = get_settings()
    for rung in ("360p", "720p"):
        text = storage.get_bytes(s.r2_video_bucket, f"{video['hls_prefix']}/{rung}/index.m3u8")
        playlist = parse_media_playlist(text.decode())
        assert [seg.duration for seg in playlist.segments] == [6.0, 6.0, 6.0, 1.0]
        listed = storage.client().list_objects_v2(
            Bucket=s.r2_video_bucket, Prefix=f"{video['hls_prefix']}/{rung}/"
        )
        assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == [
            "index.m3u8",
            *[seg.uri for seg in playlist.segments],
        ]
