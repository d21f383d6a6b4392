"""The video pipeline's steps on real files made with PyAV: probe, ladder transcode,
packaging, thumbnails. Sources are small (low resolution, 10 fps, seconds long) so the
whole module runs in seconds; 1080p-sized work belongs to ``just bench video``."""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from pipelines.video.ladder import APPLE_H264_LADDER, plan_ladder
from pipelines.video.package import (
    PackagingError,
    ensure_packaged,
    parse_master_playlist,
    parse_media_playlist,
)
from pipelines.video.probe import VideoRejected, probe
from pipelines.video.thumbnails import ensure_thumbnails, vtt_timestamp
from pipelines.video.transcode import ensure_transcoded
from pipelines.video.workdir import Workdir
from tests.factories.videos import make_audio_only, make_unsupported_codec, make_video, truncate

SEGMENT = 6


def run_pipeline(tmp_path: Path, source: Path, min_segments: int = 3) -> tuple[Workdir, dict]:
    info = probe(source)
    rungs = plan_ladder(*info.display_size)
    wd = Workdir(tmp_path / "work", "v")
    wd.ensure()
    shutil.copyfile(source, wd.source)
    t = ensure_transcoded(wd, info, rungs, segment_seconds=SEGMENT, poster_at=5)
    p = ensure_packaged(
        wd,
        rungs,
        duration=info.duration,
        fps=info.fps,
        segment_seconds=SEGMENT,
        min_segments=min_segments,
        has_audio=info.has_audio,
    )
    th = ensure_thumbnails(
        wd, tile_times=t["tile_times"], tile_interval=t["tile_interval"], duration=info.duration
    )
    return wd, {"info": info, "rungs": rungs, "transcode": t, "package": p, "thumbnails": th}


def check_output(wd: Workdir, out: dict, *, audio: bool) -> None:
    info, rungs = out["info"], out["rungs"]
    frame = 1 / float(info.fps)
    variants = parse_master_playlist((wd.hls / "master.m3u8").read_text())
    assert [v["URI"] for v in variants] == [f"{r.name}/index.m3u8" for r in rungs]
    for variant, rung in zip(variants, rungs, strict=True):
        assert variant["RESOLUTION"] == f"{rung.width}x{rung.height}"
        assert int(variant["BANDWIDTH"]) > 0
        codecs = variant["CODECS"].split(",")
        assert codecs[0].startswith("avc1.64")  # H.264 High profile
        assert ("mp4a.40.2" in codecs) is audio
        playlist = parse_media_playlist((wd.hls / variant["URI"]).read_text())
        assert playlist.ended
        for seg in playlist.segments[:-1]:
            assert abs(seg.duration - SEGMENT) <= frame + 1e-3, seg
        assert 0 < playlist.segments[-1].duration <= SEGMENT + frame
        assert abs(playlist.duration - info.duration) <= 2 * frame
        # The rung decodes, at its size, with (about) every frame of the source.
        with av.open(str(wd.hls / variant["URI"])) as c:
            assert bool(c.streams.audio) is audio
            frames = [f for f in c.decode(video=0)]
        assert (frames[0].width, frames[0].height) == (rung.width, rung.height)
        expected = round(info.duration * float(info.fps))
        assert abs(len(frames) - expected) <= 1
    assert (wd.hls / "poster.jpg").stat().st_size > 0
    vtt = (wd.hls / "thumbnails.vtt").read_text().splitlines()
    assert vtt[0] == "WEBVTT"
    cues = [line for line in vtt if "#xywh=" in line]
    assert len(cues) == len(out["transcode"]["tile_times"]) >= 1
    assert all(c.startswith("sprite_0.jpg#xywh=") for c in cues)
    first_end = vtt_timestamp(min(5.0, info.duration))
    assert f"00:00:00.000 --> {first_end}" in vtt


# --- the ladder --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1920, 1080), [(640, 360), (1280, 720), (1920, 1080)]),
        ((1280, 720), [(640, 360), (1280, 720)]),
        ((1918, 1080), [(640, 360), (1278, 720), (1918, 1080)]),
        ((1080, 1920), [(360, 640), (720, 1280), (1080, 1920)]),
        ((854, 480), [(640, 360)]),
        ((320, 180), [(320, 180)]),
        ((3840, 2160), [(640, 360), (1280, 720), (1920, 1080)]),
    ],
)
def test_ladder_comes_from_the_source_and_never_upscales(size, expected):
    rungs = plan_ladder(*size)
    assert [(r.width, r.height) for r in rungs] == expected
    assert all(r.width % 2 == 0 and r.height % 2 == 0 for r in rungs)
    short = min(size)
    assert all(min(r.width, r.height) <= short for r in rungs)
    rates = dict(APPLE_H264_LADDER)
    for r in rungs:
        if min(r.width, r.height) in rates:
            assert r.video_bitrate == rates[min(r.width, r.height)]


# --- probe ------------------------------------------------------------------------------


def test_probe_reads_the_facts(tmp_path):
    info = probe(make_video(tmp_path / "a.mp4", width=320, height=180, seconds=2, fps=10))
    assert (info.width, info.height, info.fps, info.has_audio) == (320, 180, Fraction(10), True)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.rotation == 0
    rotated = probe(make_video(tmp_path / "r.mp4", seconds=1, fps=10, rotate=90, audio=False))
    assert rotated.rotation == -90 and rotated.display_size == (180, 320)
    assert rotated.has_audio is False


def _not_a_video(tmp: Path) -> Path:
    (tmp / "notes.mp4").write_text("강의 노트: 1강 함수의 극한\n" * 100)  # a renamed text file
    return tmp / "notes.mp4"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4"


def _corrupt(tmp: Path) -> Path:
    # An MP4's own header, then bytes that are no boxes at all.
    good = make_video(tmp / "good.mp4", seconds=1, fps=10).read_bytes()
    (tmp / "corrupt.mp4").write_bytes(good[:32] + bytes(range(256)) * 40)
    return tmp / "corrupt.mp4"


def _truncated_index_last(tmp: Path) -> Path:
    # Index at the end (as most cameras write): the cut file has no index at all.
    return truncate(make_video(tmp / "t1.mp4", seconds=4, fps=10), 0.5)


def _truncated_index_first(tmp: Path) -> Path:
    # Index first: the file opens, and decoding its end finds the frames missing.
    return truncate(make_video(tmp / "t2.mp4", seconds=6, fps=10, faststart=True), 0.5)


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (_empty, "empty_file", "empty"),
        (_not_a_video, "not_a_video", "not a video"),
        (_corrupt, "corrupt_file", "corrupt"),
        (_truncated_index_last, "truncated", "truncated"),
        (_truncated_index_first, "truncated", "truncated"),
        (lambda tmp: make_audio_only(tmp / "a.m4a"), "no_video_stream", "no video stream"),
        (lambda tmp: make_unsupported_codec(tmp / "u.mkv"), "unsupported_codec", "cannot decode"),
    ],
)
def test_probe_rejects_what_cannot_be_a_video_with_its_code(tmp_path, make, code, words):
    with pytest.raises(VideoRejected, match=words) as rejected:
        probe(make(tmp_path))
    assert rejected.value.code == code


def test_probe_refuses_a_source_over_the_duration_limit(tmp_path):
    src = make_video(tmp_path / "long.mp4", seconds=3, fps=10, audio=False)
    assert probe(src, max_duration=3.5).duration == pytest.approx(3.0, abs=0.1)
    with pytest.raises(VideoRejected, match="limit") as rejected:
        probe(src, max_duration=2.0)
    assert rejected.value.code == "too_long"


# --- transcode + package + thumbnails ---------------------------------------------------


def test_landscape_two_rungs_with_audio(tmp_path):
    src = make_video(tmp_path / "land.mp4", width=1280, height=720, seconds=13, fps=5)
    wd, out = run_pipeline(tmp_path, src)
    assert [r.name for r in out["rungs"]] == ["360p", "720p"]
    assert all(v["segments"] == 3 for v in out["package"]["variants"])
    check_output(wd, out, audio=True)
    assert out["transcode"]["tile_times"] == [0.0, 5.0, 10.0]


def test_rotated_portrait_comes_out_upright(tmp_path):
    src = make_video(tmp_path / "p.mp4", width=640, height=360, seconds=4, fps=10, rotate=90)
    wd, out = run_pipeline(tmp_path, src)
    assert [(r.width, r.height) for r in out["rungs"]] == [(360, 640)]
    check_output(wd, out, audio=True)
    with open_image(wd.hls / "poster.jpg") as poster:
        assert poster.size[1] > poster.size[0]


def test_no_audio_source_makes_video_only_hls(tmp_path):
    src = make_video(tmp_path / "n.mp4", width=320, height=180, seconds=7, fps=10, audio=False)
    wd, out = run_pipeline(tmp_path, src)
    check_output(wd, out, audio=False)


def test_very_short_source_is_one_segment(tmp_path):
    src = make_video(tmp_path / "s.mp4", width=320, height=180, seconds=2, fps=10)
    wd, out = run_pipeline(tmp_path, src)
    assert out["package"]["variants"][0]["segments"] == 1
    check_output(wd, out, audio=True)
    # The poster of a video shorter than THUMBNAIL_AT_SECONDS comes from its middle.
    assert out["transcode"]["poster_time"] == pytest.approx(1.0)


def test_odd_size_1918x1080_gets_even_rungs(tmp_path):
    src = make_video(tmp_path / "o.mp4", width=1918, height=1080, seconds=1, fps=10)
    wd, out = run_pipeline(tmp_path, src)
    assert [(r.width, r.height) for r in out["rungs"]] == [(640, 360), (1278, 720), (1918, 1080)]
    check_output(wd, out, audio=True)


def test_too_few_segments_for_a_long_source_is_an_error(tmp_path):
    src = make_video(tmp_path / "l.mp4", width=320, height=180, seconds=13, fps=10)
    info = probe(src)
    rungs = plan_ladder(*info.display_size)
    wd = Workdir(tmp_path / "work", "v")
    wd.ensure()
    shutil.copyfile(src, wd.source)
    ensure_transcoded(wd, info, rungs, segment_seconds=SEGMENT, poster_at=5)
    # As if the renditions had lost the tail of a 25 s source.
    with pytest.raises(PackagingError, match="at least 4 are required"):
        ensure_packaged(
            wd, rungs, duration=25.0, fps=info.fps, segment_seconds=SEGMENT,
            min_segments=4, has_audio=True,
        )  # fmt: skip
    # A source shorter than min_segments * HLS_TIME may have fewer.
    record = ensure_packaged(
        wd, rungs, duration=info.duration, fps=info.fps, segment_seconds=SEGMENT,
        min_segments=3, has_audio=True,
    )  # fmt: skip
    assert record["variants"][0]["segments"] == 3


def test_steps_are_idempotent_and_a_killed_run_restarts_clean(tmp_path):
    src = make_video(tmp_path / "i.mp4", width=320, height=180, seconds=3, fps=10)
    wd, out = run_pipeline(tmp_path, src)
    stamps = {p: p.stat().st_mtime_ns for p in wd.hls.rglob("*")}
    again = ensure_transcoded(wd, out["info"], out["rungs"], segment_seconds=SEGMENT, poster_at=5)
    assert again == out["transcode"]
    assert {p: p.stat().st_mtime_ns for p in wd.hls.rglob("*")} == stamps

    # A run killed half-way leaves a partial directory and no marker: the next run starts over.
    wd.clear("transcode")
    shutil.rmtree(wd.hls)
    (wd.path / "hls.partial" / "360p").mkdir(parents=True)
    (wd.path / "hls.partial" / "360p" / "seg_00000.ts").write_bytes(b"half a segment")
    redo = ensure_transcoded(wd, out["info"], out["rungs"], segment_seconds=SEGMENT, poster_at=5)
    assert redo["frames"] == out["transcode"]["frames"]
    assert not (wd.path / "hls.partial").exists()


def open_image(path: Path):
    from PIL import Image

    return Image.open(path)
