"""Rebuild a video's work directory up to one step.

On the worker that ran the earlier steps their outputs are already there; on another
worker, or after the directory was lost, the earlier ``ensure_*`` functions rebuild them
(each is a no-op when its output exists), so any step can run wherever it lands.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from ops.settings import get_settings
from pipelines.video.ladder import Rung
from pipelines.video.package import ensure_packaged
from pipelines.video.probe import ProbeResult
from pipelines.video.thumbnails import ensure_thumbnails
from pipelines.video.transcode import Progress, ensure_transcoded
from pipelines.video.workdir import Workdir


def ensure_outputs(
    workdir: Workdir,
    info: ProbeResult,
    rungs: list[Rung],
    upto: str,
    *,
    fetch_source: Callable[[], None],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Make the work directory hold every output up to step ``upto`` (``transcode``,
    ``package`` or ``thumbnails``), running that step itself last. ``fetch_source`` puts the source in
    place when the transcode has to run; ``progress`` reports the transcode's share when
    it is the step asked for. Returns each step's record."""
    s = get_settings()
    out: dict[str, Any] = {}
    if workdir.done("transcode") is None or not workdir.hls.is_dir():
        fetch_source()
    out["transcode"] = ensure_transcoded(
        workdir,
        info,
        rungs,
        segment_seconds=s.hls_time_seconds,
        poster_at=s.thumbnail_at_seconds,
        max_fps=s.video_max_fps,
        progress=progress if upto == "transcode" else None,
    )
    if upto == "transcode":
        return out
    t = out["transcode"]
    out["package"] = ensure_packaged(
        workdir,
        rungs,
        # What was encoded: the source's length, and its rate capped by VIDEO_MAX_FPS.
        duration=t.get("duration", info.duration),
        fps=Fraction(t["fps_num"], t["fps_den"]),
        segment_seconds=s.hls_time_seconds,
        min_segments=s.min_segments_per_variant,
        has_audio=info.has_audio,
    )
    if upto == "package":
        return out
    out["thumbnails"] = ensure_thumbnails(
        workdir,
        tile_times=t["tile_times"],
        tile_interval=t["tile_interval"],
        duration=info.duration,
    )
    return out
