"""Sheet templates: the page, how a scan is aligned to it, and where the bubbles are.

A template is plain JSON (``Template`` below), stored per academy. Coordinates are pixels
of the template's page (``page`` = ``[width, height]``); a scan is warped onto that page
before any bubble is read.

* ``blocks`` -- grids of bubbles. A block has ``labels`` (one field each, e.g. questions
  ``"1".."20"`` or the digits ``"id1".."id8"`` of a student number) and ``values`` (the
  bubbles of one field, e.g. ``"1".."5"``). ``direction`` says which way one field's bubbles
  run: ``horizontal`` (a question row ①②③④⑤) or ``vertical`` (a digit column 0..9);
  fields then follow each other the other way, ``label_gap`` apart. ``origin`` is the
  top-left corner of the first bubble box. This is exactly OMRChecker's field-block
  geometry, so its templates import without loss.
* ``groups`` -- fields read as one value by concatenation (``"student_number": ["id1", ...]``).
* ``questions`` -- the fields that are exam questions, in order: question ``n`` of the
  exam's answer key is ``questions[n - 1]``.
* ``student_field`` -- the group (or field) that identifies the student, and
  ``ocr_boxes`` -- boxes of printed/written digits, read by OCR as a fallback.
* ``preprocess`` -- image steps in order: ``blur``, ``levels``, ``crop_page`` (warp the
  page contour), ``crop_markers`` (OMRChecker's marker image matched in four quadrants) and
  ``corner_markers`` (our cards: four solid squares at known positions plus an orientation
  mark, which also fixes upside-down and rotated scans).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

MAX_FIELDS = 2000
# Bubbles of one field: an A..Z name column has 26; a few more are allowed.
MAX_VALUES = 40
MAX_PAGE = 10000


class TemplateError(ValueError):
    """Every problem of a template: ``issues`` is ``[(path, message)]``."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in issues))
        self.issues = issues


class Block(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    origin: tuple[float, float]
    labels: list[str]
    values: list[str]
    direction: Literal["horizontal", "vertical"] = "horizontal"
    bubble_gap: float = 40.0
    label_gap: float = 40.0
    bubble_size: tuple[float, float] = (30.0, 30.0)
    empty_value: str = ""


class OcrBox(msgspec.Struct, forbid_unknown_fields=True):
    """A box of digits (printed or written in boxes) read by OCR; ``x, y, w, h``."""

    name: str
    box: tuple[float, float, float, float]
    digits: int | None = None  # expected length, when known


class Step(msgspec.Struct, forbid_unknown_fields=True):
    """One preprocessing step. ``op`` is one of ``blur`` (``ksize``), ``levels`` (``low``,
    ``high``, ``gamma``), ``crop_page`` (``morph_kernel``), ``crop_markers`` (``marker_png``
    base64, ``width_ratio``, ``min_match``, ``max_variation``, ``rescale_range``,
    ``rescale_steps``, ``erode_subtract``), ``median_blur`` (``ksize``) and
    ``corner_markers``."""

    op: Literal["blur", "median_blur", "levels", "crop_page", "crop_markers", "corner_markers"]
    ksize: tuple[int, int] = (3, 3)
    sigma_x: float = 0.0
    low: float = 0.0
    high: float = 1.0
    gamma: float = 1.0
    morph_kernel: tuple[int, int] = (10, 10)
    marker_png: str | None = None
    width_ratio: float | None = None
    min_match: float = 0.3
    max_variation: float = 0.41
    # The marker is looked for at scales from high down to low percent, in this many steps.
    rescale_range: tuple[int, int] = (35, 100)
    rescale_steps: int = 10
    # OMRChecker's flag, with its meaning: true matches the eroded-and-subtracted marker
    # against the page as it is; false matches it against the page eroded and subtracted.
    erode_subtract: bool = True


class Markers(msgspec.Struct, forbid_unknown_fields=True):
    """Corner markers of our own cards: solid squares of side ``size`` centred at
    ``centres`` (top-left, top-right, bottom-right, bottom-left), and an orientation mark
    (a solid square, centre ``orientation``) near the top-left one only."""

    centres: list[tuple[float, float]]
    size: float
    orientation: tuple[float, float]
    orientation_size: float


class Template(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    page: tuple[int, int]
    blocks: list[Block]
    questions: list[str] = []
    groups: dict[str, list[str]] = {}
    student_field: str | None = None
    ocr_boxes: list[OcrBox] = []
    preprocess: list[Step] = []
    markers: Markers | None = None
    # OMRChecker resizes every scan to this size before its preprocessing steps.
    processing_size: tuple[int, int] | None = None
    # Thresholding: the smallest jump between empty and filled means (0..255 scale).
    min_jump: float = 25.0
    # OMRChecker's MIN_GAP and CONFIDENT_SURPLUS, and the threshold a page falls back to
    # when its bubbles show no clear jump (200 for white pages, 100 for black).
    min_gap: float = 30.0
    confident_surplus: float = 5.0
    default_threshold: float = 200.0
    # Our cards: a page whose printed bubble outlines are not where the template says
    # is the wrong template, not a sheet of blank answers.
    verify_layout: bool = False
    version: int = 1


# --- geometry --------------------------------------------------------------------------


class Bubble(msgspec.Struct, frozen=True):
    field: str
    value: str
    x: float
    y: float
    w: float
    h: float


def block_fields(block: Block) -> list[list[Bubble]]:
    """Each field of the block with its bubbles, in reading order (OMRChecker's
    ``traverse_bubbles``)."""
    along, across = (1, 0) if block.direction == "vertical" else (0, 1)
    lead = [float(block.origin[0]), float(block.origin[1])]
    out: list[list[Bubble]] = []
    w, h = block.bubble_size
    for label in block.labels:
        point = lead.copy()
        field: list[Bubble] = []
        for value in block.values:
            field.append(Bubble(label, value, point[0], point[1], w, h))
            point[along] += block.bubble_gap
        out.append(field)
        lead[across] += block.label_gap
    return out


def all_fields(template: Template) -> list[list[Bubble]]:
    return [field for block in template.blocks for field in block_fields(block)]


def field_labels(template: Template) -> list[str]:
    return [label for block in template.blocks for label in block.labels]


def combine(template: Template, response: Mapping[str, str]) -> dict[str, str]:
    """The sheet's answers as OMRChecker reports them: groups concatenated, the other
    fields as read."""
    grouped = {f for members in template.groups.values() for f in members}
    out = {
        name: "".join(response.get(f, "") for f in members)
        for name, members in template.groups.items()
    }
    for label in field_labels(template):
        if label not in grouped:
            out[label] = response.get(label, "")
    return out


# --- validation ------------------------------------------------------------------------

_decoder = msgspec.json.Decoder(Template)


def parse_template(data: bytes | str | Mapping[str, Any]) -> Template:
    """A template from JSON (bytes, text or a decoded mapping), checked; ``TemplateError``
    lists every problem."""
    try:
        if isinstance(data, Mapping):
            template = msgspec.convert(dict(data), Template)
        else:
            template = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise TemplateError([("", str(exc))]) from None
    except msgspec.DecodeError as exc:
        raise TemplateError([("", f"not valid JSON: {exc}")]) from None
    check_template(template)
    return template


def template_json(template: Template) -> dict[str, Any]:
    return dict(msgspec.to_builtins(template))


def check_template(t: Template) -> None:
    issues: list[tuple[str, str]] = []
    if not t.name.strip() or len(t.name) > 200:
        issues.append(("name", "must be 1..200 characters"))
    w, h = t.page
    if not (10 <= w <= MAX_PAGE and 10 <= h <= MAX_PAGE):
        issues.append(("page", f"width and height must be within 10..{MAX_PAGE}"))
    if not t.blocks:
        issues.append(("blocks", "at least one block of bubbles"))
    labels: set[str] = set()
    total = 0
    for i, block in enumerate(t.blocks):
        where = f"blocks[{i}]"
        if not block.labels:
            issues.append((f"{where}.labels", "at least one field"))
        if not 1 <= len(block.values) <= MAX_VALUES:
            issues.append((f"{where}.values", f"1..{MAX_VALUES} bubble values"))
        if len(set(block.values)) != len(block.values):
            issues.append((f"{where}.values", "values must be distinct"))
        bw, bh = block.bubble_size
        if not (1 <= bw <= w and 1 <= bh <= h):
            issues.append((f"{where}.bubble_size", "must be positive and fit the page"))
        for label in block.labels:
            if label in labels:
                issues.append((f"{where}.labels", f"field {label!r} is defined twice"))
            labels.add(label)
        total += len(block.labels)
        for field in block_fields(block):
            for b in field:
                # OMRChecker templates overhang the page by a pixel or two at times.
                if b.x < -2 or b.y < -2 or b.x + b.w > w + 2 or b.y + b.h > h + 2:
                    issues.append((where, f"bubble {b.field}={b.value} lies off the page"))
                    break
            else:
                continue
            break
    if total > MAX_FIELDS:
        issues.append(("blocks", f"at most {MAX_FIELDS} fields"))
    grouped: set[str] = set()
    for name, members in t.groups.items():
        if name in labels and members != [name]:
            issues.append((f"groups.{name}", "a group cannot be named like a field"))
        for m in members:
            if m not in labels:
                issues.append((f"groups.{name}", f"unknown field {m!r}"))
            if m in grouped:
                issues.append((f"groups.{name}", f"field {m!r} is in two groups"))
            grouped.add(m)
    known = labels | set(t.groups)
    for q in t.questions:
        if q not in known:
            issues.append(("questions", f"unknown field {q!r}"))
    if len(set(t.questions)) != len(t.questions):
        issues.append(("questions", "a field is listed twice"))
    if t.student_field is not None and t.student_field not in known:
        issues.append(("student_field", f"unknown field {t.student_field!r}"))
    for i, box in enumerate(t.ocr_boxes):
        x, y, bw, bh = box.box
        if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > w or y + bh > h:
            issues.append((f"ocr_boxes[{i}]", "box must lie on the page"))
    for i, step in enumerate(t.preprocess):
        if step.op == "crop_markers":
            if not step.marker_png:
                issues.append((f"preprocess[{i}]", "crop_markers needs marker_png"))
            else:
                try:
                    base64.b64decode(step.marker_png, validate=True)
                except ValueError:
                    issues.append((f"preprocess[{i}].marker_png", "not base64"))
        if step.op == "corner_markers" and t.markers is None:
            issues.append((f"preprocess[{i}]", "corner_markers needs markers"))
        if step.op in ("blur", "median_blur") and any(k < 1 or k % 2 == 0 for k in step.ksize):
            issues.append((f"preprocess[{i}].ksize", "odd positive sizes"))
    if t.markers is not None and len(t.markers.centres) != 4:
        issues.append(("markers.centres", "exactly four corner markers"))
    if issues:
        raise TemplateError(issues)


# --- OMRChecker field labels -----------------------------------------------------------

_RANGE = re.compile(r"^([^.\d]+)(\d+)\.{2,3}(\d+)$")


def expand_labels(labels: list[str]) -> list[str]:
    """OMRChecker's ``"q1..4"`` → ``q1, q2, q3, q4``."""
    out: list[str] = []
    for label in labels:
        m = _RANGE.match(label.strip())
        if m:
            prefix, start, end = m.group(1), int(m.group(2)), int(m.group(3))
            if end < start or end - start > MAX_FIELDS:
                raise TemplateError([("fieldLabels", f"bad range {label!r}")])
            out.extend(f"{prefix}{i}" for i in range(start, end + 1))
        else:
            out.append(label)
    return out


def natural_key(label: str) -> tuple[str, int]:
    m = re.match(r"^(\D*)(\d+)$", label)
    return (m.group(1), int(m.group(2))) if m else (label, -1)
