"""Reading one sheet: decode, align, check the layout, read the bubbles, identify.

``read_sheet`` is the whole reading of a page, pure (bytes or pixels in, a ``SheetReading``
out); scoring against an exam's key is ``pipelines.omr.score``. A page that cannot be read
raises ``SheetError`` with a stable code and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipelines.omr.align import SheetError, align, decode_image
from pipelines.omr.bubbles import SheetRead, read_bubbles
from pipelines.omr.ocr import OcrRead, read_digits
from pipelines.omr.orient import orient
from pipelines.omr.template import Template, all_fields, combine

# Share of bubble boxes that must show printed ink for a page to be this template.
LAYOUT_MIN_SHARE = 0.9
OCR_MIN_SCORE = 0.8

OcrMode = Literal["never", "fallback", "always"]


@dataclass
class SheetReading:
    page: np.ndarray[Any, Any]
    read: SheetRead
    response: dict[str, str]  # OMRChecker-style: groups concatenated, other fields as read
    answers: dict[str, str]  # question number ("1"..) -> marked answer ("" = none)
    question_fields: dict[str, str]  # question number -> template field or group
    student_number: str | None
    student_source: str | None  # bubbles | ocr
    student_flags: list[str] = field(default_factory=list)
    ocr: OcrRead | None = None
    rotated_180: bool = False
    rotation: int = 0  # degrees the scan was turned clockwise, corrected before reading
    groups: dict[str, list[str]] = field(default_factory=dict)

    def question_flags(self) -> dict[str, list[str]]:
        """Question number -> flags of the fields it is read from (only flagged ones)."""
        out: dict[str, list[str]] = {}
        groups = self.groups
        for q, name in self.question_fields.items():
            flags: list[str] = []
            for f in groups.get(name, [name]):
                read = self.read.fields.get(f)
                if read:
                    flags.extend(x for x in read.flags if x not in flags)
            if flags:
                out[q] = flags
        return out

    def keep_questions(self, count: int) -> set[str]:
        """Keep the first ``count`` questions only (an exam shorter than its card); the
        template fields of the questions left out are returned."""
        dropped = [q for q in self.question_fields if int(q) > count]
        fields: set[str] = set()
        for q in dropped:
            name = self.question_fields.pop(q)
            self.answers.pop(q, None)
            fields.update(self.groups.get(name, [name]))
        return fields

    def question_confidence(self, question: str) -> float:
        name = self.question_fields[question]
        members = self.groups.get(name, [name])
        return min(
            (self.read.fields[f].confidence for f in members if f in self.read.fields), default=1.0
        )


def _bands(w: float, h: float, pad: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Masks, in a bubble's padded box, of its printed outline (an elliptic band) and of
    the paper just outside it."""
    size = (int(h) + 2 * pad, int(w) + 2 * pad)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float64)
    r = np.hypot((xx - (w / 2 + pad)) / (w / 2), (yy - (h / 2 + pad)) / (h / 2))
    return (r > 0.8) & (r < 1.1), (r > 1.25) & (r < 1.45)


def _layout_share(page: np.ndarray[Any, Any], template: Template) -> float:
    """Share of the bubbles whose printed outline is where the template puts it: the band
    of the outline darker than the paper around it (a filled bubble counts too). A card
    printed with another grid shows, at the template's positions, paper or pieces of
    other outlines. Ratios, not grey levels: shading and blur scale both alike."""
    pad = max(int(max(max(b.bubble_size) for b in template.blocks) * 0.25), 2)
    found = total = 0
    masks: dict[tuple[int, int], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for f in all_fields(template):
        for b in f:
            key = (int(b.w), int(b.h))
            if key not in masks:
                masks[key] = _bands(b.w, b.h, pad)
            ring, outside = masks[key]
            x0, y0 = int(b.x) - pad, int(b.y) - pad
            patch = page[y0 : y0 + ring.shape[0], x0 : x0 + ring.shape[1]]
            total += 1
            if patch.shape == ring.shape and patch[ring].mean() < 0.95 * patch[outside].mean():
                found += 1
    return found / total if total else 1.0


def _student_from_bubbles(
    template: Template, read: SheetRead
) -> tuple[str | None, str | None, list[str]]:
    """``(number, candidate, flags)``: the bubbled number when every digit is clear; the
    candidate (one mark per digit, some unsure) for OCR to confirm; the problems.

    A number shorter than its field (8 digits in a 10-digit field) is its digits with the
    blank columns at either end trimmed; a blank column between digits, or no digit at
    all, is ``id_incomplete``."""
    name = template.student_field
    if name is None:
        return None, None, []
    columns = [read.fields[m] for m in template.groups.get(name, [name])]
    marked = [i for i, f in enumerate(columns) if f.values]
    if marked:
        columns = columns[marked[0] : marked[-1] + 1]
    digits, flags = [], []
    for f in columns:
        if len(f.values) != 1:
            flags.append("id_incomplete" if not f.values else "id_multiple")
        elif f.flags:
            flags.append("id_uncertain")
        digits.append(f.answer)
    number = "".join(digits)
    flags = sorted(set(flags))
    if not flags and number:
        return number, number, []
    if not number:
        flags = ["id_incomplete"]
    return None, (number if flags == ["id_uncertain"] else None), flags


def read_sheet(
    data: bytes | np.ndarray[Any, Any], template: Template, ocr: OcrMode = "fallback"
) -> SheetReading:
    """Read one page. ``ocr``: read the student number's OCR box ``never``, only when the
    bubbled number is missing or uncertain (``fallback``), or ``always`` (a disagreement
    between the two is flagged for review)."""
    image = decode_image(data) if isinstance(data, bytes) else data
    rotation = 0
    if any(step.op == "corner_markers" for step in template.preprocess):
        aligned = align(image, template)  # our cards carry their own orientation mark
        read = None
        rotation = 180 if aligned.rotated_180 else 0
    else:
        oriented = orient(image, template)
        aligned, read, rotation = oriented.aligned, oriented.read, oriented.rotation
    page = aligned.image
    if template.verify_layout:
        share = _layout_share(page, template)
        if share < LAYOUT_MIN_SHARE:
            raise SheetError(
                "wrong_template",
                f"the page does not match the template: only {share:.0%} of its bubbles "
                "are printed where the template expects them",
            )
    read = read or read_bubbles(page, template)
    empty = {label: b.empty_value for b in template.blocks for label in b.labels}
    response = combine(template, read.response(empty))
    question_fields = {str(i + 1): q for i, q in enumerate(template.questions)}
    answers = {n: response.get(f, "") for n, f in question_fields.items()}
    student, candidate, student_flags = _student_from_bubbles(template, read)
    source = "bubbles" if student else None
    box = next((b for b in template.ocr_boxes if b.name == template.student_field), None)
    ocr_read = None
    if box is not None and (ocr == "always" or (ocr == "fallback" and student is None)):
        ocr_read = read_digits(page, box)
        usable = ocr_read.score >= OCR_MIN_SCORE and (
            box.digits is None or len(ocr_read.text) == box.digits
        )
        if student is None and candidate is not None and ocr_read.text == candidate:
            # Two independent reads agree on the unsure bubbles: that settles it.
            student, source, student_flags = candidate, "bubbles", ["id_confirmed_by_ocr"]
        elif student is None and usable:
            student, source = ocr_read.text, "ocr"
            student_flags.append("id_from_ocr")
        elif student is not None and usable and ocr_read.text != student:
            student_flags.append("id_ocr_disagrees")
    return SheetReading(
        page=page,
        read=read,
        response=response,
        answers=answers,
        question_fields=question_fields,
        student_number=student,
        student_source=source,
        student_flags=student_flags,
        ocr=ocr_read,
        rotated_180=aligned.rotated_180,
        rotation=rotation,
        groups=dict(template.groups),
    )


def reading_json(reading: SheetReading) -> dict[str, Any]:
    """What is stored with a page: every field's marks, confidence and flags."""
    return {
        "fields": {
            name: {
                "values": f.values,
                "confidence": round(f.confidence, 3),
                "flags": f.flags,
                "means": [round(v, 1) for v in f.means],
                "threshold": round(f.threshold, 1),
            }
            for name, f in reading.read.fields.items()
        },
        "answers": reading.answers,
        "student_number": reading.student_number,
        "student_source": reading.student_source,
        "student_flags": reading.student_flags,
        "ocr": None
        if reading.ocr is None
        else {
            "text": reading.ocr.text,
            "raw": reading.ocr.raw,
            "score": round(reading.ocr.score, 3),
        },
        "rotated_180": reading.rotated_180,
        "rotation": reading.rotation,
        "threshold": round(reading.read.threshold, 1),
    }
