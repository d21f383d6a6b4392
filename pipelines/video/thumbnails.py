"""Poster and scrub-preview sprite sheets with their WebVTT track.

The frames were captured while transcoding (one decode of the source); this step only
lays them out: tiles of ``TILE_INTERVAL_SECONDS`` in sheets of ``COLUMNS x ROWS``, and a
WebVTT cue per tile pointing at ``sprite_<n>.jpg#xywh=x,y,w,h`` (the media fragment
syntax players use for thumbnail tracks).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from PIL import Image

from pipelines.video.workdir import Workdir

COLUMNS = 10
ROWS = 10


def vtt_timestamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def ensure_thumbnails(
    workdir: Workdir, *, tile_times: list[float], tile_interval: float, duration: float
) -> dict[str, Any]:
    """Write ``hls/poster.jpg``, ``hls/sprite_<n>.jpg`` and ``hls/thumbnails.vtt``."""
    record = workdir.done("thumbnails")
    if record is not None and (workdir.hls / "thumbnails.vtt").is_file():
        return record
    tiles = sorted(workdir.tiles.glob("tile_*.jpg"))
    if not tiles or len(tiles) != len(tile_times):
        raise FileNotFoundError(
            f"{workdir.tiles}: {len(tiles)} tiles for {len(tile_times)} tile times"
        )
    shutil.copyfile(workdir.tiles / "poster.jpg", workdir.hls / "poster.jpg")
    with Image.open(tiles[0]) as first:
        tw, th = first.size
    per_sheet = COLUMNS * ROWS
    cues = ["WEBVTT", ""]
    sheets: list[str] = []
    for sheet_no in range(0, len(tiles), per_sheet):
        batch = tiles[sheet_no : sheet_no + per_sheet]
        cols = min(COLUMNS, len(batch))
        rows = (len(batch) + COLUMNS - 1) // COLUMNS
        sheet = Image.new("RGB", (cols * tw, rows * th))
        name = f"sprite_{sheet_no // per_sheet}.jpg"
        for i, tile_path in enumerate(batch):
            x, y = (i % COLUMNS) * tw, (i // COLUMNS) * th
            with Image.open(tile_path) as tile:
                sheet.paste(tile.resize((tw, th)), (x, y))
            index = sheet_no + i
            start = tile_times[index]
            end = min(duration, start + tile_interval)
            if end <= start:
                continue
            cues.append(f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}")
            cues.append(f"{name}#xywh={x},{y},{tw},{th}")
            cues.append("")
        sheet.save(workdir.hls / name, quality=80)
        sheets.append(name)
    tmp = workdir.hls / "thumbnails.vtt.tmp"
    tmp.write_text("\n".join(cues))
    os.replace(tmp, workdir.hls / "thumbnails.vtt")
    record = {
        "poster": "poster.jpg",
        "sprites": sheets,
        "vtt": "thumbnails.vtt",
        "tiles": len(tiles),
    }
    workdir.mark("thumbnails", record)
    return record
