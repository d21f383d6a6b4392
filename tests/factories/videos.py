"""Test videos made with PyAV: small, deterministic, and as varied as what phones upload.

Every generator writes an MP4 (H.264, optionally AAC) whose picture moves (a gradient
that scrolls and a frame counter band), so an encoder cannot collapse it to nothing and a
decoded rung can be checked to be a real picture. ``rotate`` writes the track's display
matrix the way phones do (the pixels stay landscape; players turn them).
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np


def _picture(base: Any, index: int) -> Any:
    """The base gradient scrolled by ``index``, with a band that moves with it."""
    img = np.roll(base, index * 4, axis=1)
    height, width = base.shape[:2]
    band = (index * 7) % max(1, width - 16)
    img[: max(2, height // 8), band : band + 16] = 255
    return img


def _base(width: int, height: int) -> Any:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([(xs % 256), (ys % 256), ((xs + ys) // 2 % 256)], axis=-1).astype(np.uint8)


def make_video(
    path: Path,
    *,
    width: int = 320,
    height: int = 180,
    seconds: float = 4.0,
    fps: int = 24,
    audio: bool = True,
    rotate: int = 0,
    bitrate: int = 400_000,
    faststart: bool = False,
) -> Path:
    """Write an MP4 test video and return its path. ``faststart`` puts the index first
    (as streaming exports do), so a truncated copy still opens and must be caught by
    decoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * fps)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.bit_rate = bitrate
        as_ = None
        if audio:
            as_ = out.add_stream("aac", rate=48_000, layout="stereo")
        base = _base(width, height)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_picture(base, i), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if as_ is not None:
            samples_total = int(seconds * 48_000)
            pts = 0
            while pts < samples_total:
                n = min(1024, samples_total - pts)
                t = (np.arange(pts, pts + n) / 48_000.0).astype(np.float32)
                tone = (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
                data = np.stack([tone, tone])
                af = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
                af.sample_rate = 48_000
                af.pts = pts
                af.time_base = Fraction(1, 48_000)
                out.mux(as_.encode(af))
                pts += n
            out.mux(as_.encode(None))
    if rotate:
        set_rotation(path, rotate)
    return path


def set_rotation(path: Path, degrees: int) -> None:
    """Write a rotation into the first video track's ``tkhd`` matrix, as phones do."""
    cos = round(math.cos(math.radians(degrees)))
    sin = round(math.sin(math.radians(degrees)))
    one = 0x10000

    def fixed(v: int) -> bytes:
        return struct.pack(">i", v * one)

    # (a b u / c d v / x y w): a rotation by ``degrees`` clockwise on display.
    matrix = fixed(cos) + fixed(sin) + struct.pack(">i", 0)
    matrix += fixed(-sin) + fixed(cos) + struct.pack(">i", 0)
    matrix += struct.pack(">i", 0) + struct.pack(">i", 0) + struct.pack(">i", 0x40000000)
    data = bytearray(path.read_bytes())
    start = 0
    while True:
        at = data.find(b"tkhd", start)
        if at < 0:
            raise ValueError(f"{path}: no video track header")
        version = data[at + 4]
        offset = at + 4 + (52 if version == 1 else 40)
        width = struct.unpack(">I", data[offset + 36 : offset + 40])[0]
        if width:  # the audio track's header has zero width
            data[offset : offset + 36] = matrix
            break
        start = at + 4
    path.write_bytes(bytes(data))


def make_audio_only(path: Path, seconds: float = 2.0) -> Path:
    """An M4A with a tone and no picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000, layout="stereo")
        total, pts = int(seconds * 48_000), 0
        while pts < total:
            n = min(1024, total - pts)
            data = np.zeros((2, n), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 48_000, pts, Fraction(1, 48_000)
            out.mux(stream.encode(frame))
            pts += n
        out.mux(stream.encode(None))
    return path


def make_unsupported_codec(path: Path) -> Path:
    """A Matroska file whose video track names a codec no FFmpeg decodes (the H.264 track
    of a generated clip, relabelled)."""
    mp4 = make_video(path.with_suffix(".mp4"), seconds=1, fps=10, audio=False)
    with av.open(str(mp4)) as src, av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_NONE0/XXX/XXX"))
    return path


def truncate(path: Path, keep: float = 0.4) -> Path:
    """Cut the file to its first ``keep`` fraction, as an interrupted upload leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --- through the API ----------------------------------------------------------------------


async def create_video(
    tenant: Any,
    headers: dict[str, str],
    *,
    lecture_id: Any = None,
    session_id: Any = None,
    source: Path | None = None,
    size_bytes: int | None = None,
    complete: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """``POST /videos``; with ``source``, upload it to the presigned URL (real HTTP to the
    storage server), and with ``complete``, confirm the upload. Returns the create answer
    (plus ``completed``: the complete answer)."""
    import httpx

    data = source.read_bytes() if source else None  # noqa: ASYNC240 - a small test file
    payload: dict[str, Any] = {
        "title": "1강 - 함수의 극한",
        "filename": source.name if source else "lecture.mp4",
        "size_bytes": size_bytes or (len(data) if data is not None else 1_000_000),
        "content_type": "video/mp4",
        **overrides,
    }
    if lecture_id is not None:
        payload["lecture_id"] = str(lecture_id)
    if session_id is not None:
        payload["session_id"] = str(session_id)
    r = await tenant.client.post("/api/v1/videos", json=payload, headers=headers)
    assert r.status_code == 201, r.text
    created = dict(r.json())
    if data is not None:
        upload = created["upload"]
        assert upload["method"] == "PUT", upload
        async with httpx.AsyncClient() as http:
            put = await http.put(upload["url"], content=data, headers=upload["headers"])
        assert put.status_code == 200, put.text
    if complete:
        r = await tenant.client.post(
            f"/api/v1/videos/{created['video']['id']}/complete", headers=headers
        )
        assert r.status_code == 202, r.text
        created["completed"] = r.json()
    return created


async def mark_ready(video_id: Any, duration: float = 100.0, proctored: bool | None = None) -> None:
    """Make a video READY without transcoding (for playback and progress tests)."""
    from models.tables import Video

    values: dict[Any, Any] = {
        Video.status: "READY",
        Video.duration_seconds: duration,
        Video.rungs: [
            {
                "name": "360p",
                "width": 640,
                "height": 360,
                "video_bitrate": 365000,
                "audio_bitrate": 128000,
            }
        ],
    }
    if proctored is not None:
        values[Video.proctored] = proctored
    await Video.update(values).where(Video.id == video_id)


# --- variable frame rate ------------------------------------------------------------------

VFR_TIME_BASE = Fraction(1, 90_000)
BAR_PIXELS_PER_SECOND = 50  # where the bar stands says when its frame was taken


def vfr_timeline() -> tuple[list[float], list[float], float]:
    """Frame times of a screen-recording-like clip: 30 fps, a fast stretch at 60 fps, 15 fps,
    a 1.5 s freeze (no frames while the picture holds), 24 fps, a 1 s gap (frames missing,
    the picture jumps), 30 fps again. Returns (frame times, flash times, end).

    The fast stretch is offset so each odd frame there is the earlier of two frames nearest
    one 30 fps slot: the first flash is such a frame, which a "keep the latest" rule drops."""
    times = [i / 30 for i in range(60)]
    times += [2.004 + i / 60 for i in range(120)]
    times += [4.0 + i / 15 for i in range(30)]
    times += [6.0]  # the freeze: held until 7.5
    times += [7.5 + i / 24 for i in range(36)]
    times += [10.0 + i / 30 for i in range(60)]  # after the gap (9.0 .. 10.0)
    flashes = [2.004 + 61 / 60, 11.0]
    return times, flashes, 12.0


def bar_picture(width: int, height: int, at: float) -> Any:
    """Dark grey with a light bar whose x position is ``at`` seconds x 50 px."""
    img = np.full((height, width, 3), 60, dtype=np.uint8)
    x = round(at * BAR_PIXELS_PER_SECOND)
    img[:, x : x + 4] = 220
    return img


def make_vfr_video(
    path: Path,
    times: list[float],
    flashes: list[float],
    end: float,
    *,
    width: int = 640,
    height: int = 360,
) -> Path:
    """An MP4 with a frame at each of ``times`` (90 kHz time stamps), white frames at
    ``flashes`` (which must be among ``times``) and, in otherwise silent audio, a 10 ms click
    at each flash: the events a sync check finds again in the output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=60, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.time_base = VFR_TIME_BASE
        vs.time_base = VFR_TIME_BASE
        as_ = out.add_stream("aac", rate=48_000, layout="stereo")
        for i, at in enumerate(times):
            flash = any(abs(at - f) < 1e-9 for f in flashes)
            img = np.full((height, width, 3), 255, np.uint8) if flash else None
            frame = av.VideoFrame.from_ndarray(
                img if img is not None else bar_picture(width, height, at), format="rgb24"
            )
            frame.pts = round(at / VFR_TIME_BASE)
            frame.time_base = VFR_TIME_BASE
            # The last frame lasts until ``end``; the muxer takes each frame's length from
            # the next one's time.
            nxt = times[i + 1] if i + 1 < len(times) else end
            frame.duration = round((nxt - at) / VFR_TIME_BASE)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        total = round(end * 48_000)
        pcm = np.zeros(total, dtype=np.float32)
        for f in flashes:
            start = round(f * 48_000)
            t = np.arange(480) / 48_000.0
            pcm[start : start + 480] = 0.8 * np.sin(2 * math.pi * 1000 * t)
        for pts in range(0, total, 1024):
            chunk = pcm[pts : pts + 1024]
            af = av.AudioFrame.from_ndarray(
                np.stack([chunk, chunk]), format="fltp", layout="stereo"
            )
            af.sample_rate, af.pts, af.time_base = 48_000, pts, Fraction(1, 48_000)
            out.mux(as_.encode(af))
        out.mux(as_.encode(None))
    return path
