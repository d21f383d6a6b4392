"""Check each rung's media playlist and write the master playlist.

The master lists every rung with ``BANDWIDTH`` (the peak segment bit rate, as RFC 8216
section 4.3.4.2 defines it), ``AVERAGE-BANDWIDTH``, ``RESOLUTION``, ``FRAME-RATE`` and
``CODECS`` (the H.264 profile/level read from the rung's own SPS, and AAC-LC).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipelines.video.ladder import Rung
from pipelines.video.workdir import Workdir

AAC_LC = "mp4a.40.2"


class PackagingError(Exception):
    """The renditions are not a valid HLS presentation (a bug or a broken source)."""


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float


@dataclass(frozen=True)
class MediaPlaylist:
    target_duration: int
    segments: list[Segment]
    ended: bool

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse an HLS media playlist (the subset our muxer writes, strictly)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PackagingError("not an HLS playlist (no #EXTM3U)")
    target = None
    segments: list[Segment] = []
    pending: float | None = None
    ended = False
    for line in lines[1:]:
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            pending = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif not line.startswith("#"):
            if pending is None:
                raise PackagingError(f"segment {line!r} has no #EXTINF")
            segments.append(Segment(line, pending))
            pending = None
    if target is None:
        raise PackagingError("no #EXT-X-TARGETDURATION")
    return MediaPlaylist(target, segments, ended)


def parse_master_playlist(text: str) -> list[dict[str, str]]:
    """The variants of a master playlist: their attributes, plus ``URI``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PackagingError("not an HLS playlist (no #EXTM3U)")
    variants: list[dict[str, str]] = []
    attrs: dict[str, str] | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = _attributes(line.split(":", 1)[1])
        elif not line.startswith("#") and attrs is not None:
            variants.append({**attrs, "URI": line})
            attrs = None
    return variants


def _attributes(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key, value, quoted, buf = "", "", False, ""
    for ch in raw + ",":
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted and not key:
            key, buf = buf, ""
        elif ch == "," and not quoted:
            value, buf = buf, ""
            if key:
                out[key] = value
            key = ""
        else:
            buf += ch
    return out


def h264_codec_string(segment: Path) -> str:
    """``avc1.PPCCLL`` from the first SPS in an MPEG-TS segment."""
    data = segment.read_bytes()
    # Walk the TS packets of the first PID carrying H.264 NALs; simplest robust way: scan
    # the payload bytes for an SPS NAL after a start code (0x000001 + type 7).
    at = 0
    while True:
        at = data.find(b"\x00\x00\x01", at)
        if at < 0 or at + 7 > len(data):
            raise PackagingError(f"{segment.name}: no H.264 SPS found")
        if data[at + 3] & 0x1F == 7:
            profile, constraints, level = data[at + 4], data[at + 5], data[at + 6]
            return f"avc1.{profile:02x}{constraints:02x}{level:02x}"
        at += 3


def ensure_packaged(
    workdir: Workdir,
    rungs: list[Rung],
    *,
    duration: float,
    fps: Fraction,
    segment_seconds: int,
    min_segments: int,
    has_audio: bool,
) -> dict[str, Any]:
    """Validate every rung and write ``hls/master.m3u8``; a no-op when done.

    Fewer than ``min_segments`` segments in a rung is an error unless the source itself is
    shorter than ``min_segments * segment_seconds``.
    """
    record = workdir.done("package")
    if record is not None and (workdir.hls / "master.m3u8").is_file():
        return record
    entries = [
        _checked_variant(
            workdir.hls / rung.name,
            rung,
            duration=duration,
            frame=1 / float(fps),
            segment_seconds=segment_seconds,
            min_segments=min_segments,
            has_audio=has_audio,
        )
        for rung in rungs
    ]
    _write_master(workdir.hls / "master.m3u8", entries, fps)
    record = {"variants": entries}
    workdir.mark("package", record)
    return record


def _checked_variant(
    folder: Path,
    rung: Rung,
    *,
    duration: float,
    frame: float,
    segment_seconds: int,
    min_segments: int,
    has_audio: bool,
) -> dict[str, Any]:
    """One rung's media playlist checked (ended, enough segments, each but the last one
    segment long, the whole as long as the source), as its master playlist entry."""
    playlist_path = folder / "index.m3u8"
    if not playlist_path.is_file():
        raise PackagingError(f"rung {rung.name} has no media playlist")
    playlist = parse_media_playlist(playlist_path.read_text())
    if not playlist.ended:
        raise PackagingError(f"rung {rung.name}: playlist has no #EXT-X-ENDLIST")
    count = len(playlist.segments)
    if count < min_segments and duration >= min_segments * segment_seconds:
        raise PackagingError(
            f"rung {rung.name} has {count} segments; at least {min_segments} are "
            f"required for a {duration:.1f} s video"
        )
    for seg in playlist.segments[:-1]:
        if abs(seg.duration - segment_seconds) > frame + 1e-3:
            raise PackagingError(
                f"rung {rung.name}: segment {seg.uri} lasts {seg.duration:.3f} s, "
                f"not {segment_seconds} s"
            )
    if abs(playlist.duration - duration) > max(1.0, 2 * frame):
        raise PackagingError(
            f"rung {rung.name} lasts {playlist.duration:.2f} s; the source {duration:.2f} s"
        )
    peak = 0.0
    total_bytes = 0
    for seg in playlist.segments:
        size = (folder / seg.uri).stat().st_size
        total_bytes += size
        peak = max(peak, size * 8 / max(seg.duration, frame))
    average = total_bytes * 8 / max(playlist.duration, frame)
    codecs = h264_codec_string(folder / playlist.segments[0].uri)
    if has_audio:
        codecs += f",{AAC_LC}"
    return {
        "name": rung.name,
        "width": rung.width,
        "height": rung.height,
        "bandwidth": int(peak),
        "average_bandwidth": int(average),
        "codecs": codecs,
        "segments": len(playlist.segments),
        "uri": f"{rung.name}/index.m3u8",
    }


def _write_master(path: Path, entries: list[dict[str, Any]], fps: Fraction) -> None:
    """The master playlist of ``entries``, written atomically (a rename)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for e in entries:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={e['bandwidth']},"
            f"AVERAGE-BANDWIDTH={e['average_bandwidth']},"
            f"RESOLUTION={e['width']}x{e['height']},"
            f"FRAME-RATE={float(fps):.3f},"
            f'CODECS="{e["codecs"]}"'
        )
        lines.append(e["uri"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
