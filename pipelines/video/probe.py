"""Probe a source with PyAV: duration, streams, rotation and frame rate.

A source that cannot become a video is rejected (``VideoRejected``) with a stable ``code``
and a reason a person can act on; the pipeline ends it FAILED, no retry. The codes:

``empty_file``        the upload has no bytes
``not_a_video``       the bytes are no media container at all (a renamed document, say)
``corrupt_file``      a media container whose header or pictures cannot be decoded
``truncated``         the file stops before its declared end (an interrupted upload)
``no_video_stream``   a media file with no picture (an audio recording)
``too_long``          longer than ``VIDEO_MAX_DURATION_SECONDS``
``unsupported_codec`` a picture in a codec our FFmpeg cannot decode

The frame rate recorded is the source's *maximum sustained* rate, read from every video
packet's time stamp (no decoding): screen recordings, video calls and phones that drop
frames are variable-rate, and their average rate (what the container declares) is lower
than the rate of their busiest stretch, which is the rate the output needs.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import filetype

# How much of the file is decoded to prove it is readable, besides its last second.
PROBE_DECODE_FRAMES = 3
# The window over which a rate counts as sustained: a burst of frames shorter than this
# (a time-stamp glitch) does not raise the output rate.
SUSTAINED_WINDOW = 1.0
# Common rates a measured one snaps to when within 1.5 % (29.97 stays 30000/1001).
STANDARD_RATES = tuple(
    Fraction(r)
    for r in ("10", "12", "15", "20", "24000/1001", "24", "25", "30000/1001", "30", "48",
              "50", "60000/1001", "60", "90", "100", "120")
)  # fmt: skip


class VideoRejected(Exception):
    """The source cannot become a video: ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ProbeResult:
    duration: float  # seconds
    width: int  # coded size
    height: int
    rotation: int  # degrees, counter-clockwise as FFmpeg reports it (-90: turn clockwise)
    fps_num: int  # the maximum sustained rate (see the module's doc)
    fps_den: int
    video_codec: str
    has_audio: bool
    audio_codec: str | None
    size_bytes: int
    average_fps: float = 0.0  # frames / duration
    variable_rate: bool = False  # some stretch runs well below the maximum rate

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
        # Records written before a field existed take its default.
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def output_rate(source_rate: Fraction, max_fps: int) -> Fraction:
    """The rate the renditions are encoded at: the source's, never above ``max_fps``.

    A faster source is divided by the smallest whole number that brings it under the cap
    (59.94 -> 29.97, 50 -> 25, 120 -> 30), so every kept frame is as far from the next and
    motion stays even; unless that falls far below the cap (40 -> 20), when the cap wins."""
    cap = Fraction(max_fps)
    if source_rate <= cap:
        return source_rate
    divided = source_rate / math.ceil(source_rate / cap)
    return divided if divided >= cap * Fraction(4, 5) else cap


def sustained_rate(times: list[float], fallback: Fraction) -> Fraction:
    """The highest frame rate held for ``SUSTAINED_WINDOW`` seconds among sorted ``times``
    (frame presentation times), snapped to a standard rate when close to one."""
    best = 0.0
    if len(times) >= 2:
        for i, start in enumerate(times):
            j = bisect.bisect_left(times, start + SUSTAINED_WINDOW, lo=i) - 1
            span = times[j] - start
            # A window must cover most of a second, unless the whole clip is shorter.
            whole = i == 0 and j == len(times) - 1
            if span > 0 and (span >= SUSTAINED_WINDOW / 2 or whole):
                best = max(best, (j - i) / span)
    if best <= 0:
        return fallback
    nearest = min(STANDARD_RATES, key=lambda rate: abs(float(rate) - best))
    if abs(float(nearest) - best) <= float(nearest) * 0.015:
        return nearest
    return Fraction(round(best)) if best >= 1 else Fraction(best).limit_denominator(1001)


def normalise_rotation(degrees: float) -> int:
    """Snap a display-matrix angle to 0/90/180/270 (as -90..180 like FFmpeg: 0, 90, -90, 180)."""
    snapped = round(degrees / 90.0) * 90 % 360
    return {0: 0, 90: 90, 180: 180, 270: -90}[snapped]


def _declared_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.base_rate, stream.guessed_rate):
        if rate and rate > 0:
            fr = Fraction(rate)
            if 1 <= fr <= 240:
                return fr.limit_denominator(1001)
    return Fraction(30, 1)


def _open(path: Path) -> Any:
    """The container, or the reason it is none: media that fails to open is corrupt, other
    bytes are no video at all (FFmpeg gives both the same error; the signature tells)."""
    if path.stat().st_size == 0:
        raise VideoRejected("empty_file", "the uploaded file is empty")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        kind = filetype.guess(str(path))
        if _box_runs_past_end(path):
            raise VideoRejected(
                "truncated",
                "the file is truncated: it stops inside its own data (was the upload interrupted?)",
            ) from None
        if kind is not None and kind.mime.split("/")[0] in ("video", "audio"):
            raise VideoRejected(
                "corrupt_file",
                f"the file looks like {kind.extension.upper()} but cannot be read: it is "
                f"corrupt or truncated (an interrupted upload?) ({exc.strerror})",
            ) from None
        raise VideoRejected(
            "not_a_video", "the file is not a video (no video format recognises it)"
        ) from None


def _box_runs_past_end(path: Path) -> bool:
    """True for an MP4/MOV (ISO BMFF) whose top-level boxes claim more bytes than the file
    has: the mark of an upload cut short (phones write the index last, so a cut file has
    none and FFmpeg cannot tell it from a broken one)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return False
        at = 0
        while at + 8 <= size:
            f.seek(at)
            header = f.read(16)
            length = int.from_bytes(header[:4], "big")
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            if length == 0:  # "to the end of the file"
                return False
            if length < 8 or not header[4:8].isalnum():
                return False  # not boxes after all: the file is corrupt, not cut
            at += length
        return at > size


def probe(path: Path, *, max_duration: float | None = None) -> ProbeResult:
    """Read the source's facts: its streams, its frames' time stamps, its first frames
    and its last second decoded.

    Decoding the end is what catches a truncated upload: its header (and so its declared
    duration) can be intact while the data stops early.
    """
    size = path.stat().st_size
    with _open(path) as container:
        if not container.streams.video:
            raise VideoRejected("no_video_stream", "the file has no video stream (audio only?)")
        vs = container.streams.video[0]
        if vs.codec_context is None:
            raise VideoRejected(
                "unsupported_codec", "the video is in a format (codec) we cannot decode"
            )
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = _duration(container, vs)
        if duration <= 0:
            raise VideoRejected("corrupt_file", "the video has no duration (no frames found)")
        if max_duration is not None and duration > max_duration:
            raise VideoRejected(
                "too_long",
                f"the video lasts {duration / 60:.0f} min; the limit is "
                f"{max_duration / 60:.0f} min",
            )
        times = _frame_times(container, vs)
        rate = sustained_rate(times, _declared_rate(vs))
        rotation, first_time = _decode_head(container, vs)
        last_time = _decode_tail(container, vs, duration)
        width, height = vs.codec_context.width, vs.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoRejected("corrupt_file", "the video stream has no picture size")
        covered = last_time - first_time
        # A frame period of slack, plus 10% for containers whose declared end is rounded.
        if covered + 2 / float(rate) < duration * 0.9 - 0.5:
            raise VideoRejected(
                "truncated",
                f"the file is truncated: it declares {duration:.1f} s of video but its "
                f"frames stop at {last_time:.1f} s (was the upload interrupted?)",
            )
        average = len(times) / duration if times else float(rate)
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
            average_fps=round(average, 3),
            variable_rate=average < float(rate) * 0.9,
        )


def _frame_times(container: Any, vs: Any) -> list[float]:
    """Every video packet's presentation time, sorted (demuxed only: cheap)."""
    times: list[float] = []
    try:
        for packet in container.demux(vs):
            if packet.pts is not None and packet.size:
                times.append(float(packet.pts * packet.time_base))
    except av.error.FFmpegError:
        pass  # data that stops early: the tail check below says so
    times.sort()
    container.seek(0)
    return times


def _decode_head(container: Any, vs: Any) -> tuple[int, float]:
    """The first frames decoded: the rotation they carry and the first one's time."""
    head: list[Any] = []
    try:
        for frame in container.decode(vs):
            head.append(frame)
            if len(head) >= PROBE_DECODE_FRAMES:
                break
    except av.error.FFmpegError as exc:
        raise VideoRejected(
            "corrupt_file", f"the video stream cannot be decoded: {exc.strerror}"
        ) from None
    if not head:
        raise VideoRejected("corrupt_file", "the video stream has no decodable frames")
    return normalise_rotation(head[0].rotation or 0.0), float(head[0].time or 0.0)


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
        raise VideoRejected("truncated", "the file is truncated: its last frames cannot be read")
    return last
