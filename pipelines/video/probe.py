"""Probe a source with PyAV: duration, streams, rotation and frame rate.

A file with no video stream, or one that is corrupt or truncated, is rejected with a
reason a person can act on (``VideoRejected``); the pipeline ends it FAILED, no retry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

# How much of the file is decoded to prove it is readable, besides its last second.
PROBE_DECODE_FRAMES = 3


class VideoRejected(Exception):
    """The source cannot become a video: the reason is shown to the uploader."""


@dataclass(frozen=True)
class ProbeResult:
    duration: float  # seconds
    width: int  # coded size
    height: int
    rotation: int  # degrees, counter-clockwise as FFmpeg reports it (-90: turn clockwise)
    fps_num: int
    fps_den: int
    video_codec: str
    has_audio: bool
    audio_codec: str | None
    size_bytes: int

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def normalise_rotation(degrees: float) -> int:
    """Snap a display-matrix angle to 0/90/180/270 (as -90..180 like FFmpeg: 0, 90, -90, 180)."""
    snapped = round(degrees / 90.0) * 90 % 360
    return {0: 0, 90: 90, 180: 180, 270: -90}[snapped]


def _rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.base_rate, stream.guessed_rate):
        if rate and rate > 0:
            fr = Fraction(rate)
            if 1 <= fr <= 240:
                return fr.limit_denominator(1001)
    return Fraction(30, 1)


def probe(path: Path) -> ProbeResult:
    """Read the source's facts, decoding its first frames and its last second.

    Decoding the end is what catches a truncated upload: its header (and so its declared
    duration) can be intact while the data stops early.
    """
    size = path.stat().st_size
    if size == 0:
        raise VideoRejected("the uploaded file is empty")
    try:
        container = av.open(str(path))
    except av.error.InvalidDataError:
        raise VideoRejected(
            "the file cannot be read as a video: it is corrupt, truncated (an interrupted "
            "upload?) or not a video format"
        ) from None
    except av.error.FFmpegError as exc:
        raise VideoRejected(f"the file cannot be opened as a video: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoRejected("the file has no video stream")
        vs = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = _duration(container, vs)
        if duration <= 0:
            raise VideoRejected("the video has no duration (no frames could be read)")
        rate = _rate(vs)
        rotation = 0
        first_time = None
        try:
            for i, frame in enumerate(container.decode(vs)):
                if i == 0:
                    rotation = normalise_rotation(frame.rotation or 0.0)
                    first_time = frame.time
                if i + 1 >= PROBE_DECODE_FRAMES:
                    break
        except av.error.FFmpegError as exc:
            raise VideoRejected(f"the video stream cannot be decoded: {exc}") from None
        if first_time is None:
            raise VideoRejected("the video stream has no decodable frames")
        last_time = _decode_tail(container, vs, duration)
        width, height = vs.codec_context.width, vs.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoRejected("the video stream has no picture size")
        covered = last_time - (first_time or 0.0)
        # A frame period of slack, plus 10% for containers whose declared end is rounded.
        if covered + 2 / float(rate) < duration * 0.9 - 0.5:
            raise VideoRejected(
                f"the file is truncated: it declares {duration:.1f} s of video but its "
                f"frames stop at {last_time:.1f} s (was the upload interrupted?)"
            )
        return ProbeResult(
            duration=round(duration, 3),
            width=width,
            height=height,
            rotation=rotation,
            fps_num=rate.numerator,
            fps_den=rate.denominator,
            video_codec=vs.codec_context.name,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            size_bytes=size,
        )


def _duration(container: Any, vs: Any) -> float:
    if vs.duration and vs.time_base:
        return float(vs.duration * vs.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def _decode_tail(container: Any, vs: Any, duration: float) -> float:
    """The time of the last frame decodable in the final second or so."""
    target = max(0.0, duration - 1.5)
    last = -1.0
    try:
        container.seek(int(target / vs.time_base), stream=vs, backward=True, any_frame=False)
        for frame in container.decode(vs):
            if frame.time is not None:
                last = max(last, float(frame.time))
    except av.error.FFmpegError:
        # Data that stops mid-packet: what was decoded so far is where the video ends.
        pass
    if last < 0:
        raise VideoRejected("the file is truncated: its last frames cannot be read")
    return last
