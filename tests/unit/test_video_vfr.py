"""Variable-frame-rate sources through the real transcode: the output runs at a constant
rate placed by time (repeats across a freeze and a gap, drops only in the fast stretch,
the single-frame event there kept), segments start on keyframes at HLS_TIME boundaries,
its length is the source's, and a white flash and an audio click that coincide in the
source still coincide in the decoded HLS."""

from __future__ import annotations

import bisect
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipelines.video.ladder import plan_ladder
from pipelines.video.package import ensure_packaged, parse_media_playlist
from pipelines.video.probe import output_rate, probe, sustained_rate
from pipelines.video.transcode import ensure_transcoded
from pipelines.video.workdir import Workdir
from tests.factories.videos import BAR_PIXELS_PER_SECOND, make_vfr_video, vfr_timeline

SEGMENT = 6
SYNC_SLACK = 0.025  # the bound: one frame + 25 ms


def transcode(tmp_path: Path, source: Path, max_fps: int = 30) -> tuple[Workdir, dict]:
    info = probe(source)
    rungs = plan_ladder(*info.display_size)
    wd = Workdir(tmp_path / "work", "v")
    wd.ensure()
    shutil.copyfile(source, wd.source)
    record = ensure_transcoded(
        wd, info, rungs, segment_seconds=SEGMENT, poster_at=5, max_fps=max_fps
    )
    ensure_packaged(
        wd, rungs, duration=record["duration"], fps=Fraction(record["fps_num"], record["fps_den"]),
        segment_seconds=SEGMENT, min_segments=3, has_audio=True,
    )  # fmt: skip
    return wd, record


def decode_rung(folder: Path) -> tuple[list[tuple[float, np.ndarray, bool]], list[tuple]]:
    """The rung's frames (time, grey picture, keyframe) and audio (time, samples) as a
    player gets them from its playlist."""
    frames, audio = [], []
    with av.open(str(folder / "index.m3u8")) as c:
        for f in c.decode(video=0, audio=0):
            if isinstance(f, av.VideoFrame):
                frames.append((float(f.time), f.to_ndarray(format="gray"), f.key_frame))
            else:
                audio.append((float(f.time), f.to_ndarray()[0]))
    frames.sort(key=lambda item: item[0])
    return frames, audio


def click_onsets(audio: list[tuple[float, np.ndarray]], rate: int = 48_000) -> list[float]:
    """Times where the signal first exceeds 0.3 after at least 100 ms of quiet."""
    onsets: list[float] = []
    for start, samples in audio:
        for i in np.flatnonzero(np.abs(samples) > 0.3):
            at = start + i / rate
            if not onsets or at - onsets[-1] > 0.1:
                onsets.append(at)
    return onsets


@pytest.fixture(scope="module")
def vfr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float], list[float], float]:
    times, flashes, end = vfr_timeline()
    path = tmp_path_factory.mktemp("vfr") / "screen.mp4"
    return make_vfr_video(path, times, flashes, end), times, flashes, end


def test_probe_finds_the_maximum_sustained_rate(vfr):
    source, _, _, _ = vfr
    info = probe(source)
    assert info.fps == 60 and info.variable_rate and info.average_fps < 30
    assert output_rate(info.fps, 30) == 30 and output_rate(info.fps, 60) == 60
    # Faster sources are divided evenly where that stays near the cap.
    rates = [(Fraction(60000, 1001), Fraction(30000, 1001)), (50, 25), (120, 30), (40, 30)]
    assert [output_rate(Fraction(r), 30) for r, _ in rates] == [w for _, w in rates]
    assert output_rate(Fraction(24), 30) == 24 and output_rate(Fraction(50), 60) == 50
    # A one-off burst (two frames 1 ms apart) is not a sustained rate; 29.97 is kept exact.
    assert sustained_rate([i / 25 for i in range(50)] + [0.501], Fraction(25)) == 25
    ntsc = [i * 1001 / 30000 for i in range(90)]
    assert sustained_rate(ntsc, Fraction(30)) == Fraction(30000, 1001)


def test_vfr_output_is_placed_by_time(tmp_path, vfr):
    source, times, flashes, end = vfr
    wd, record = transcode(tmp_path, source)
    assert Fraction(record["fps_num"], record["fps_den"]) == 30
    assert record["dropped"] > 0 and record["repeated"] > 0
    frames, audio = decode_rung(wd.hls / "360p")
    start = frames[0][0]
    period = 1 / 30
    # Constant rate: one frame every 1/30 s from start to end, nothing missing.
    gaps = np.diff([t for t, _, _ in frames])
    assert np.allclose(gaps, period, atol=0.002), sorted(set(np.round(gaps, 4)))
    assert len(frames) * period == pytest.approx(end, abs=0.2)
    playlist = parse_media_playlist((wd.hls / "360p" / "index.m3u8").read_text())
    assert playlist.duration == pytest.approx(end, abs=0.2)
    # Each output frame shows the source frame on screen at its time (within a frame):
    # the last one at or before it, repeated across the freeze (6.0-7.5) and the gap
    # (9.0-10.0), one of two in the 60 fps stretch.
    for at, grey, _ in frames:
        if grey.mean() > 200:
            continue  # a flash: no bar to read
        shown = int(np.argmax(grey[:, :].mean(axis=0))) / BAR_PIXELS_PER_SECOND
        rel = at - start
        expected = times[bisect.bisect_right(times, rel + period / 2 + 1e-6) - 1]
        assert shown == pytest.approx(expected, abs=period + 0.02), (rel, shown, expected)
    # Both flashes survive, where they were: the first is the earlier of two source frames
    # nearest one output slot.
    flash_times = [at - start for at, grey, _ in frames if grey.mean() > 200]
    assert len(flash_times) == len(flashes)
    for got, want in zip(flash_times, flashes, strict=True):
        assert got == pytest.approx(want, abs=period)
    # Keyframes exactly where segments start: the first frame at or after each 6 s.
    keys = [round((at - start) / period) for at, _, key in frames if key]
    assert keys == [0, 180]
    # Audio in sync: each click within one frame + 25 ms of its flash.
    clicks = click_onsets(audio)
    assert len(clicks) == len(flashes)
    for flash, click in zip(flash_times, clicks, strict=True):
        assert abs((click - start) - flash) <= period + SYNC_SLACK, (flash, click - start)


def test_vfr_output_at_60_keeps_every_frame_of_the_fast_stretch(tmp_path, vfr):
    source, _, flashes, end = vfr
    wd, record = transcode(tmp_path, source, max_fps=60)
    assert Fraction(record["fps_num"], record["fps_den"]) == 60
    assert record["dropped"] == 0
    frames, audio = decode_rung(wd.hls / "360p")
    start = frames[0][0]
    assert len(frames) / 60 == pytest.approx(end, abs=0.2)
    keys = [round((at - start) * 60) for at, _, key in frames if key]
    assert keys == [0, 360]
    # A source frame of 1/30 s is on two 1/60 s slots: a flash starts where it starts.
    white = [grey.mean() > 200 for _, grey, _ in frames]
    flash_times = [
        frames[i][0] - start for i in range(len(frames)) if white[i] and not (i and white[i - 1])
    ]
    clicks = [c - start for c in click_onsets(audio)]
    assert len(flash_times) == len(clicks) == len(flashes)
    for flash, click in zip(flash_times, clicks, strict=True):
        assert abs(click - flash) <= 1 / 60 + SYNC_SLACK
