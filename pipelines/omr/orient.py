"""Which way up a page was scanned, for any template, and how well it fits.

Our own cards carry an orientation mark (``corner_markers``); an imported template has
none, and its markers or page edges are symmetric, so a page fed sideways or upside down
aligns just as well as an upright one and is read as garbage. Here the page is tried in
its orientations and each is judged by how its bubbles read:

* the **aspect** of the scan against the template's (processing) page picks the pair of
  orientations tried first: upright/upside-down, or the two sideways ones; the other
  pair is tried too unless the first gives a clear winner (a surer one for a nearly
  square scan);
* each candidate is aligned and its bubbles read (an upside-down one through the grid
  turned over on the same aligned page, which costs no second alignment);
* its **fit** adds two things a misplaced grid lacks: how cleanly its fields read (the
  mean field confidence, times the share of fields with no flag) and how consistently
  the bubble boxes differ from the paper half a gap beside them (printed bubbles sit at
  the boxes; on a turned page the boxes fall on text and paper alike).

The best fit wins. A best fit below ``FIT_MIN`` is not this template's answer sheet at
all (``not_an_answer_sheet``); so is a page that aligns in no orientation and carries
almost no print (a photograph, a plain page); with print, the alignment's own failure
(``markers_not_found``, ``page_not_found``) is kept, being the likelier story. A best fit less than ``MARGIN`` ahead of the runner-up,
or below ``FIT_GOOD``, is read but every field is flagged ``poor_fit`` with a low
confidence, so the whole page goes to review: a page read in a doubtful orientation
never yields an answer stored with high confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import msgspec
import numpy as np

from pipelines.omr.align import Aligned, SheetError, align
from pipelines.omr.bubbles import LOW_CONFIDENCE, SheetRead, box_means, read_bubbles
from pipelines.omr.template import Template, block_fields

Image = np.ndarray[Any, Any]

FIT_MIN = 0.6
FIT_GOOD = 0.9
MARGIN = 0.2
# A page aligning in no orientation, with less print than this, is no answer sheet.
INK_MIN = 0.004
# A pair of orientations this clearly right (and the scan's aspect agreeing) spares
# aligning the other pair.
FIT_CLEAR = 1.3
# ... and, for a nearly square scan (whose aspect says nothing), this sure.
FIT_SURE = 1.5
MARGIN_SURE = 0.5
# A scan or page within this ratio of square may be either way round.
SQUARE = 1.15
# A box is darker (or lighter) than the paper beside it by more than this (grey levels).
CONTRAST = 3.0


@dataclass
class Oriented:
    aligned: Aligned
    read: SheetRead
    rotation: int  # degrees the scan was turned clockwise (0/90/180/270), corrected
    fit: float
    margin: float  # ahead of the runner-up


def _probes(template: Template) -> tuple[Image, Image]:
    """Every bubble box, and the same box shifted half a bubble gap along its field."""
    boxes, beside = [], []
    for block in template.blocks:
        shift = block.bubble_gap / 2 or block.bubble_size[0] / 2
        dx, dy = (0.0, shift) if block.direction == "vertical" else (shift, 0.0)
        for field in block_fields(block):
            for b in field:
                boxes.append((b.x, b.y, b.w, b.h))
                beside.append((b.x + dx, b.y + dy, b.w, b.h))
    return np.array(boxes, np.float64), np.array(beside, np.float64)


def fit(page: Image, template: Template, read: SheetRead, integral: Image | None = None) -> float:
    """How well the page fits the template's grid (about 0..2; see the module)."""
    fields = list(read.fields.values())
    if not fields:
        return 0.0
    clean = float(np.mean([not f.flags for f in fields]))
    confidence = float(np.mean([f.confidence for f in fields]))
    boxes, beside = _probes(template)
    if integral is None:
        integral = cv2.integral(page)
    diff = box_means(page, boxes, integral) - box_means(page, beside, integral)
    consistent = max(float(np.mean(diff < -CONTRAST)), float(np.mean(diff > CONTRAST)))
    return confidence * clean + consistent


def _turns(image: Image, template: Template) -> tuple[list[int], bool]:
    """Quarter turns (counter-clockwise) to try, in order: the one that makes the scan's
    aspect the template's first; each is also tried upside down. And whether the aspect
    says anything (a nearly square scan or page does not)."""
    pw, ph = template.processing_size or template.page
    scan = image.shape[0] / max(image.shape[1], 1)
    page = ph / max(pw, 1)
    telling = not (1 / SQUARE < scan < SQUARE or 1 / SQUARE < page < SQUARE)
    return ([0, 1] if (scan > 1) == (page > 1) else [1, 0]), telling


def turned_over(template: Template) -> Template:
    """The template's grid as it falls on its page turned by 180 degrees: the same fields
    and values, each box mirrored through the page's centre."""
    pw, ph = template.page
    blocks = [
        msgspec.structs.replace(
            b,
            origin=(pw - b.origin[0] - b.bubble_size[0], ph - b.origin[1] - b.bubble_size[1]),
            bubble_gap=-b.bubble_gap,
            label_gap=-b.label_gap,
        )
        for b in template.blocks
    ]
    return msgspec.structs.replace(template, blocks=blocks)


def _clear(candidates: list[tuple[float, int, Aligned, SheetRead]], telling: bool) -> bool:
    """The first pair has a clear winner: clear enough, when the scan's aspect says
    nothing, to be sure without the other pair."""
    fits = sorted((c[0] for c in candidates), reverse=True)
    bar, margin = (FIT_CLEAR, MARGIN) if telling else (FIT_SURE, MARGIN_SURE)
    return len(fits) > 1 and fits[0] >= bar and fits[0] - fits[1] >= margin


def orient(image: Image, template: Template) -> Oriented:
    """The page aligned in its best orientation, read; see the module for the rules. The
    sideways pair is tried only when the first pair leaves a doubt."""
    candidates: list[tuple[float, int, Aligned, SheetRead]] = []
    first_error: SheetError | None = None
    turns, telling = _turns(image, template)
    done: list[int] = []  # the turns aligned as they are
    for turn in turns:
        if _clear(candidates, telling):
            break
        try:
            aligned = align(np.ascontiguousarray(np.rot90(image, turn)), template)
        except SheetError as exc:
            first_error = first_error or exc
            continue
        done.append(turn)
        # Upside down is judged on the same pixels, through the grid turned over.
        page, integral = aligned.image, cv2.integral(aligned.image)
        for k, grid in ((turn, template), (turn + 2, turned_over(template))):
            read = read_bubbles(page, grid, integral)
            candidates.append((fit(page, grid, read, integral), k % 4, aligned, read))
    if not candidates:
        assert first_error is not None
        if _ink(image) < INK_MIN:
            raise SheetError(
                "not_an_answer_sheet",
                "this page carries no printing: a photograph or a plain page, not an answer sheet",
            ) from first_error
        raise first_error
    candidates.sort(key=lambda c: -c[0])
    best, k, aligned, read = candidates[0]
    margin = best - candidates[1][0]
    if best < FIT_MIN:
        raise SheetError(
            "not_an_answer_sheet",
            "this page does not look like an answer sheet of this template: its bubbles "
            "are not where the template puts them, whichever way up it is read",
        )
    if k not in done:
        # Judged through the grid turned over: the answers are read from the scan turned
        # upright and aligned afresh, exactly as an upright scan would be.
        aligned = align(np.ascontiguousarray(np.rot90(image, k)), template)
        read = read_bubbles(aligned.image, template)
    if best < FIT_GOOD or margin < MARGIN:
        _flag_whole_page(read)
    aligned.rotated_180 = k == 2
    if k:
        aligned.notes.append(f"the page was turned by {90 * k} degrees")
    return Oriented(aligned, read, 90 * k, best, margin)


def _ink(image: Image) -> float:
    """Share of a 600 px wide copy that is thin dark strokes (print, pencil): a black-hat
    response, darker than its 9 px neighbourhood by 40 grey levels. Every sample sheet,
    phone photos with a table around them included, shows 0.7 % or more."""
    small = cv2.resize(
        image,
        (600, max(int(600 * image.shape[0] / max(image.shape[1], 1)), 1)),
        interpolation=cv2.INTER_AREA,
    )
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    return float((cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, kernel) > 40).mean())


def _flag_whole_page(read: SheetRead) -> None:
    for f in read.fields.values():
        if "poor_fit" not in f.flags:
            f.flags.append("poor_fit")
        f.confidence = min(f.confidence, LOW_CONFIDENCE / 2)
