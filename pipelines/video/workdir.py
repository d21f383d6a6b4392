"""A video's work directory on the worker: where each step leaves its output.

Layout (``<root>/<video id>/``)::

    source            the downloaded upload
    hls/<rung>/       media playlist + segments of each rung (written as hls.partial/)
    hls/master.m3u8   the master playlist (package)
    hls/poster.jpg, hls/sprite_<n>.jpg, hls/thumbnails.vtt   (thumbnails)
    tiles/            frames captured while transcoding, for the sprite and the poster
    *.done            a step's completion marker (JSON): its presence makes the step a no-op

Markers are written last and atomically (rename), so a step killed half-way leaves no
marker and is redone from a clean slate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ops.settings import get_settings

# A work directory untouched this long belongs to a video some other worker finished.
STALE_WORKDIR_SECONDS = 24 * 3600


def root(configured: str = "") -> Path:
    base = Path(configured) if configured else Path(tempfile.gettempdir()) / "academy-video"
    base.mkdir(parents=True, exist_ok=True)
    return base


class Workdir:
    def __init__(self, base: Path, video_id: str) -> None:
        self.path = base / str(video_id)

    @property
    def source(self) -> Path:
        return self.path / "source"

    @property
    def hls(self) -> Path:
        return self.path / "hls"

    @property
    def tiles(self) -> Path:
        return self.path / "tiles"

    def ensure(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def marker(self, step: str) -> Path:
        return self.path / f"{step}.done"

    def done(self, step: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self.marker(step).read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def mark(self, step: str, data: dict[str, Any]) -> None:
        self.ensure()
        tmp = self.marker(step).with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.marker(step))

    def clear(self, step: str) -> None:
        self.marker(step).unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete everything of this video on this worker (finalise, or a final failure)."""
        shutil.rmtree(self.path, ignore_errors=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this video's file lock: two copies of one message on one worker (SQS
        delivers at least once) take turns, and the second finds the step done."""
        self.ensure()
        with (self.path / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def workdir_for(video_id: Any) -> Workdir:
    """The video's work directory under ``VIDEO_WORKER_TEMP_DIR``."""
    return Workdir(root(get_settings().video_worker_temp_dir), str(video_id))


def prune_stale_workdirs(max_age: float = STALE_WORKDIR_SECONDS) -> int:
    """Remove work directories nobody touched for ``max_age`` seconds (left by a video that
    another worker finished). Returns how many."""
    base = root(get_settings().video_worker_temp_dir)
    cutoff = time.time() - max_age
    removed = 0
    for child in base.iterdir():
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
