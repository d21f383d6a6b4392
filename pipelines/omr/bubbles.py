"""Bubble reading: how dark each bubble is, which are marked, and how sure we are.

The fill of a bubble is the mean grey level of its box (as OMRChecker measures it, so
imported templates read the same), taken from an integral image: one pass over the page,
then four lookups per bubble.

Thresholds follow OMRChecker's jump rule and add a confidence to every decision:

* the **sheet threshold** sits in the largest jump of the sorted bubble means (smoothed
  over a few neighbours), which separates marked from unmarked on this sheet's paper,
  pencil and lighting;
* each **field** (a question's row, a digit's column) gets its own threshold when its own
  means show a clear jump; otherwise the sheet's threshold applies;
* the **confidence** of a field is how far its bubbles lie from the threshold in units of
  the sheet's gap between the typical marked and unmarked bubble (1 = as clear as the
  clearest, 0 = on the threshold).

A field is *flagged* (and goes to review) when the confidence is low, when several bubbles
are marked, when a marked bubble is faint, or when an unmarked bubble carries a grey
residue (an erasure). Nothing ambiguous is decided silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipelines.omr.template import Bubble, Template, all_fields

# The smallest marked/unmarked gap confidences are measured in.
MIN_GAP = 30.0
# Flags, in units of the sheet's marked/unmarked gap.
LOW_CONFIDENCE = 0.25
FAINT = 0.55  # a marked bubble lighter than this share of the gap
RESIDUE = 0.3  # an unmarked bubble darker than this share of the gap


@dataclass
class FieldRead:
    label: str
    values: list[str]  # marked values, in the field's order
    means: list[float]  # grey mean of each bubble (0 black .. 255 white)
    marked: list[bool]
    threshold: float
    confidence: float
    flags: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return "".join(self.values)


@dataclass
class SheetRead:
    fields: dict[str, FieldRead]
    threshold: float
    empty_level: float
    marked_level: float
    bubbles: dict[str, list[Bubble]]

    def response(self, empty: dict[str, str] | None = None) -> dict[str, str]:
        out = {}
        for name, f in self.fields.items():
            out[name] = f.answer or (empty or {}).get(name, "")
        return out

    @property
    def flagged(self) -> dict[str, FieldRead]:
        return {k: f for k, f in self.fields.items() if f.flags}


def box_means(
    image: np.ndarray[Any, Any],
    boxes: np.ndarray[Any, Any],
    integral: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """Mean grey of each ``[x, y, w, h]`` box (clipped to the image), via an integral image
    (``integral``, when the caller has it already). Boxes use OMRChecker's integer
    corners: ``[int(x), int(x + w))``."""
    if integral is None:
        integral = cv2.integral(image)
    h, w = image.shape[:2]
    x0 = np.clip(boxes[:, 0].astype(np.int64), 0, w)
    y0 = np.clip(boxes[:, 1].astype(np.int64), 0, h)
    x1 = np.clip((boxes[:, 0] + boxes[:, 2]).astype(np.int64), 0, w)
    y1 = np.clip((boxes[:, 1] + boxes[:, 3]).astype(np.int64), 0, h)
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return np.asarray(sums / area, dtype=np.float64)


def global_threshold(
    values: list[float] | np.ndarray[Any, Any],
    min_jump: float,
    looseness: int = 1,
    default: float = 200.0,
) -> tuple[float, float]:
    """OMRChecker's sheet threshold: the middle of the largest jump of the sorted values,
    each compared ``looseness`` neighbours apart. Returns ``(threshold, jump)``."""
    q = np.sort(np.asarray(values, dtype=np.float64))
    ls = (looseness + 1) // 2
    best, threshold = min_jump, default
    for i in range(ls, len(q) - ls):
        jump = q[i + ls] - q[i - ls]
        if jump > best:
            best, threshold = jump, q[i - ls] + jump / 2
    return float(threshold), float(best)


def local_threshold(
    values: list[float], sheet: float, no_outliers: bool, template: Template
) -> float:
    """OMRChecker's field threshold: the field's own jump when it is clear, else the
    sheet's."""
    q = sorted(values)
    if len(q) < 3:
        return sheet if max(q) - min(q) < template.min_gap else float(np.mean(q))
    best, threshold = template.min_jump, 255.0
    for i in range(1, len(q) - 1):
        jump = q[i + 1] - q[i - 1]
        if jump > best:
            best, threshold = jump, q[i - 1] + jump / 2
    if best < template.min_jump + template.confident_surplus and no_outliers:
        threshold = sheet
    return float(threshold)


def read_bubbles(
    image: np.ndarray[Any, Any], template: Template, integral: np.ndarray[Any, Any] | None = None
) -> SheetRead:
    """Read every field of an aligned page (template page size, grey)."""
    fields = all_fields(template)
    flat = [b for f in fields for b in f]
    boxes = np.array([[b.x, b.y, b.w, b.h] for b in flat], dtype=np.float64)
    means = box_means(image, boxes, integral) if flat else np.zeros(0)
    strips: list[list[float]] = []
    i = 0
    for f in fields:
        strips.append([float(v) for v in means[i : i + len(f)]])
        i += len(f)
    stds = [float(np.std(s)) for s in strips]
    std_threshold, _ = global_threshold(stds, template.min_jump, default=template.default_threshold)
    sheet_threshold, _ = global_threshold(
        means, template.min_jump, looseness=4, default=template.default_threshold
    )
    # Typical levels either side of the threshold, for confidences.
    below = means[means < sheet_threshold]
    above = means[means >= sheet_threshold]
    empty_level = float(np.median(above)) if above.size else 255.0
    marked_level = float(np.median(below)) if below.size else min(empty_level - 4 * MIN_GAP, 60.0)
    gap = max(empty_level - marked_level, MIN_GAP)
    out: dict[str, FieldRead] = {}
    bubbles: dict[str, list[Bubble]] = {}
    for f, strip, std in zip(fields, strips, stds, strict=True):
        threshold = local_threshold(strip, sheet_threshold, std < std_threshold, template)
        marked = [v < threshold for v in strip]
        values = [b.value for b, m in zip(f, marked, strict=True) if m]
        # How clearly each bubble sits on its side of the threshold.
        margins = [abs(v - threshold) / gap for v in strip]
        confidence = float(min(1.0, min(margins) * 2)) if margins else 1.0
        flags: list[str] = []
        if len(values) > 1:
            flags.append("multiple")
        if confidence < LOW_CONFIDENCE:
            flags.append("low_confidence")
        for v, m in zip(strip, marked, strict=True):
            depth = (empty_level - v) / gap  # 0 = paper, 1 = a typical mark
            if m and depth < FAINT and "faint" not in flags:
                flags.append("faint")
            if not m and depth > RESIDUE and "erasure" not in flags:
                flags.append("erasure")
        label = f[0].field
        out[label] = FieldRead(label, values, strip, marked, threshold, confidence, flags)
        bubbles[label] = f
    return SheetRead(out, sheet_threshold, empty_level, marked_level, bubbles)
