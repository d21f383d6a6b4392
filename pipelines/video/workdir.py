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

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


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
