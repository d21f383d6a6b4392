"""The annotated sheet a teacher looks at instead of reading numbers.

On the aligned page: every marked bubble ringed (green when the question is right, red
when wrong, grey for fields that are not questions), the accepted answer of a wrong or
blank question ringed in blue, and every flagged field (low confidence, several marks,
faint marks, erasures) boxed in orange with its flags. The score is written at the top.

A page larger than ``MAX_SIDE`` (a 300 dpi template page is 2550 x 3300) is drawn at that
size: enough to see every bubble on a screen, and the PNG of a full-size page would cost
more to compress than reading the page.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipelines.omr.bubbles import SheetRead
from pipelines.omr.template import Bubble

GREEN = (40, 160, 40)
RED = (30, 30, 220)
BLUE = (200, 90, 20)
ORANGE = (0, 140, 255)
GREY = (110, 110, 110)
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
    img = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
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
                cv2.circle(img, centre, radius, colour, 3, cv2.LINE_AA)
            elif verdict in ("incorrect", "unmarked") and b.value in accepted:
                cv2.circle(img, centre, radius, BLUE, 2, cv2.LINE_AA)
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
                cv2.LINE_AA,
            )
    cv2.putText(
        img,
        header,
        (20, max(30, img.shape[0] // 60)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.9,
        RED,
        2,
        cv2.LINE_AA,
    )
    ok, data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(np.asarray(data).tobytes())


def _scaled(b: Bubble, scale: float) -> Bubble:
    if scale == 1.0:
        return b
    return Bubble(b.field, b.value, b.x * scale, b.y * scale, b.w * scale, b.h * scale)
