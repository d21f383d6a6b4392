"""The annotated sheet a teacher looks at instead of reading numbers.

On the aligned page: every marked bubble ringed (green when the question is right, red
when wrong, grey for fields that are not questions), the accepted answer of a wrong or
blank question ringed in blue, and every flagged field (low confidence, several marks,
faint marks, erasures) boxed in orange with its flags. The score is written at the top.

A page larger than ``MAX_SIDE`` (a 300 dpi template page is 2550 x 3300) is drawn at that
size: enough to see every bubble on a screen, and the PNG of a full-size page would cost
more to compress than reading the page. The PNG is an 8-bit palette image (128 greys and
the five colours): a third of the bytes of a colour PNG to compress.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cv2
import numpy as np

from pipelines.omr.bubbles import SheetRead
from pipelines.omr.template import Bubble

# Palette indices: 0..127 are the page's greys, then the colours (RGB in PALETTE).
GREEN, RED, BLUE, ORANGE, GREY = 128, 129, 130, 131, 132
PALETTE = bytes(
    [v for i in range(128) for v in (round(i * 255 / 127),) * 3]
    + [40, 160, 40, 220, 30, 30, 20, 90, 200, 255, 140, 0, 110, 110, 110]
)
MAX_SIDE = 1500


def annotate(
    page: np.ndarray[Any, Any],
    read: SheetRead,
    verdicts: dict[str, tuple[str, tuple[str, ...]]],
    header: str,
    hidden: set[str] | frozenset[str] = frozenset(),
) -> bytes:
    """PNG bytes. ``verdicts`` maps a question *field* to ``(verdict, accepted answers)``;
    the ``hidden`` fields (questions the exam does not have) are not drawn."""
    scale = min(1.0, MAX_SIDE / max(page.shape[:2]))
    if scale < 1.0:
        page = cv2.resize(page, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    img = page >> 1
    for name, field in read.fields.items():
        if name in hidden:
            continue
        bubbles = [_scaled(b, scale) for b in read.bubbles[name]]
        verdict, accepted = verdicts.get(name, ("", ()))
        for b, marked in zip(bubbles, field.marked, strict=True):
            centre = (round(b.x + b.w / 2), round(b.y + b.h / 2))
            radius = round(max(b.w, b.h) / 2) + 3
            if marked:
                colour = GREEN if verdict == "correct" else RED if verdict else GREY
                cv2.circle(img, centre, radius, colour, 3, cv2.LINE_8)
            elif verdict in ("incorrect", "unmarked") and b.value in accepted:
                cv2.circle(img, centre, radius, BLUE, 2, cv2.LINE_8)
        if field.flags:
            x0 = round(min(b.x for b in bubbles)) - 6
            y0 = round(min(b.y for b in bubbles)) - 6
            x1 = round(max(b.x + b.w for b in bubbles)) + 6
            y1 = round(max(b.y + b.h for b in bubbles)) + 6
            cv2.rectangle(img, (x0, y0), (x1, y1), ORANGE, 3)
            cv2.putText(
                img,
                ",".join(field.flags),
                (x0, max(y0 - 4, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                ORANGE,
                1,
                cv2.LINE_8,
            )
    cv2.putText(
        img,
        header,
        (20, max(30, img.shape[0] // 60)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.9,
        RED,
        2,
        cv2.LINE_8,
    )
    return _palette_png(img)


def _palette_png(index: np.ndarray[Any, Any]) -> bytes:
    """``index`` as an 8-bit palette PNG of ``PALETTE``. OpenCV writes the indices as a
    grey PNG, whose pixel data is laid out as a palette PNG's; its header then says
    "palette" (colour type 3) and the PLTE chunk is put before the pixel data."""
    ok, data = cv2.imencode(".png", index, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    png = bytes(np.asarray(data).tobytes())
    # The 8-byte signature, then IHDR: length, type, 13 bytes of data, CRC.
    ihdr = bytearray(png[8:33])
    if ihdr[4:8] != b"IHDR" or ihdr[16] != 8 or ihdr[17] != 0:
        raise RuntimeError("unexpected PNG header from OpenCV")
    ihdr[17] = 3
    ihdr[21:25] = struct.pack(">I", zlib.crc32(bytes(ihdr[4:21])))
    plte = b"PLTE" + PALETTE
    chunk = struct.pack(">I", len(PALETTE)) + plte + struct.pack(">I", zlib.crc32(plte))
    return png[:8] + bytes(ihdr) + chunk + png[33:]


def _scaled(b: Bubble, scale: float) -> Bubble:
    if scale == 1.0:
        return b
    return Bubble(b.field, b.value, b.x * scale, b.y * scale, b.w * scale, b.h * scale)
