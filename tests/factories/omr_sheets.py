"""Synthetic answer sheets with known ground truth, rendered from a template's card.

``make_sheet`` fills the built-in card the way students and scanners do: pencil fills of
varying darkness, partial fills, faint marks, erasures (a grey residue in a bubble that is
*not* the answer), stray pencil marks between the bubbles, printed student digits, then
rotation (up to ±15°, or upside down), perspective, blur, noise, shadows and JPEG
compression. Everything is driven by a ``random.Random`` seed, so a failure reproduces.

The truth is per bubble: filled (however lightly or partly) means marked; an erased bubble
is unmarked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from pipelines.omr.card import card_pdf, korean_card, render_card
from pipelines.omr.card import print_digits as print_student_digits
from pipelines.omr.template import Bubble, Template, all_fields, template_json

Distortion = Literal["clean", "moderate", "heavy"]


@dataclass
class Sheet:
    data: bytes  # JPEG (or PNG) bytes as a scanner or phone would deliver
    marked: dict[str, set[str]]  # field -> values truly marked
    answers: dict[str, str]  # question number -> intended answer ("" = blank)
    student: str
    upside_down: bool = False
    hard: dict[str, str] = field(default_factory=dict)  # field -> what makes it hard


_cards: dict[str, np.ndarray[Any, Any]] = {}


def _base(template: Template) -> np.ndarray[Any, Any]:
    """The empty rendered card, cached per template (rendering is the slow part)."""
    key = str(template_json(template))
    if key not in _cards:
        if len(_cards) > 16:
            _cards.clear()
        _cards[key] = render_card(template)
    return _cards[key]


def _fill(
    img: np.ndarray[Any, Any], b: Bubble, rng: random.Random, grey: int, coverage: float
) -> None:
    """A pencil fill of ``grey`` covering ``coverage`` of the bubble (a chord cut)."""
    h, w = img.shape
    x0, y0 = int(b.x) - 2, int(b.y) - 2
    x1, y1 = int(b.x + b.w) + 3, int(b.y + b.h) + 3
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cx, cy = (b.x + b.w / 2) - x0, (b.y + b.h / 2) - y0
    axes = (int(b.w / 2 * rng.uniform(0.85, 1.05)), int(b.h / 2 * rng.uniform(0.85, 1.05)))
    cv2.ellipse(mask, (round(cx), round(cy)), axes, rng.uniform(0, 180), 0, 360, 255, -1)
    if coverage < 1.0:
        # Keep the part of the ellipse on one side of a random line.
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
        proj = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        limit = np.quantile(proj[mask > 0], coverage)
        mask[proj > limit] = 0
    region = img[y0:y1, x0:x1]
    texture = np.clip(
        grey + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 12, region.shape), 0, 255
    )
    sel = mask > 0
    region[sel] = np.minimum(region[sel], texture[sel].astype(np.uint8))
    del h, w


def _stray(img: np.ndarray[Any, Any], rng: random.Random, avoid: list[Bubble]) -> None:
    h, w = img.shape
    for _ in range(20):
        x, y = rng.uniform(100, w - 100), rng.uniform(180, h - 120)
        length = rng.uniform(10, 40)
        angle = rng.uniform(0, np.pi)
        x2, y2 = x + length * np.cos(angle), y + length * np.sin(angle)
        if any(
            b.x - 12 < px < b.x + b.w + 12 and b.y - 12 < py < b.y + b.h + 12
            for b in avoid
            for px, py in ((x, y), (x2, y2), ((x + x2) / 2, (y + y2) / 2))
        ):
            continue
        cv2.line(
            img,
            (int(x), int(y)),
            (int(x2), int(y2)),
            rng.randint(60, 120),
            rng.randint(1, 3),
            cv2.LINE_AA,
        )
        return


def make_sheet(
    template: Template,
    rng: random.Random,
    *,
    distortion: Distortion = "moderate",
    answers: dict[str, str] | None = None,
    student: str | None = None,
    print_digits: bool = True,
    bubble_student: bool = True,
    difficulty: float = 0.15,
    fmt: str = ".jpg",
) -> Sheet:
    """One filled, scanned sheet. ``difficulty`` is the share of fields made hard (faint,
    partial, erased-and-remarked, several marks or left blank)."""
    digits_box = next((b.digits for b in template.ocr_boxes if b.name == template.student_field), 8)
    id_fields = template.groups.get(template.student_field or "", [])
    student = student or "".join(
        str(rng.randrange(10)) for _ in range(len(id_fields) or digits_box or 8)
    )
    img = _base(template).copy()
    if print_digits:
        print_student_digits(img, template, student)
    fields = all_fields(template)
    by_label = {f[0].field: f for f in fields}
    marked: dict[str, set[str]] = {label: set() for label in by_label}
    hard: dict[str, str] = {}
    intended: dict[str, str] = {}
    for n, label in enumerate(template.questions, start=1):
        values = [b.value for b in by_label[label]]
        if answers is not None:
            intended[str(n)] = answers.get(str(n), "")
        else:
            intended[str(n)] = rng.choice(values) if rng.random() > 0.05 else ""
    for i, d in enumerate(student):
        if bubble_student and i < len(id_fields):
            intended_digit = d
            marked[id_fields[i]] = {intended_digit}
    for n, label in enumerate(template.questions, start=1):
        if intended[str(n)]:
            marked[label] = set(intended[str(n)])
    for label, bubbles in by_label.items():
        kind = "normal"
        if rng.random() < difficulty:
            kind = rng.choice(["faint", "partial", "erasure", "multiple", "light"])
            hard[label] = kind
        want = marked[label]
        if kind == "multiple" and label in template.questions:
            extra = rng.choice([b.value for b in bubbles])
            want.add(extra)
        if kind == "erasure":
            others = [b for b in bubbles if b.value not in want]
            if others:
                _fill(img, rng.choice(others), rng, rng.randint(185, 215), 1.0)
        for b in bubbles:
            if b.value not in want:
                continue
            if kind == "faint":
                grey, coverage = rng.randint(115, 140), 1.0
            elif kind == "light":
                grey, coverage = rng.randint(90, 115), rng.uniform(0.85, 1.0)
            elif kind == "partial":
                grey, coverage = rng.randint(40, 90), rng.uniform(0.6, 0.8)
            else:
                grey, coverage = rng.randint(25, 85), rng.uniform(0.9, 1.0)
            _fill(img, b, rng, grey, coverage)
    if distortion != "clean":
        flat = [b for f in fields for b in f]
        for _ in range(rng.randint(1, 4)):
            _stray(img, rng, flat)
    out, upside_down = _distort(img, rng, distortion)
    params = [cv2.IMWRITE_JPEG_QUALITY, rng.randint(60, 92)] if fmt == ".jpg" else []
    ok, data = cv2.imencode(fmt, out, params)
    assert ok
    return Sheet(bytes(data), marked, intended, student, upside_down, hard)


def _distort(
    img: np.ndarray[Any, Any], rng: random.Random, level: Distortion
) -> tuple[np.ndarray[Any, Any], bool]:
    h, w = img.shape
    if level == "clean":
        return img, False
    heavy = level == "heavy"
    margin = int(0.06 * w)
    canvas_w, canvas_h = w + 2 * margin, h + 2 * margin
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    angle = np.deg2rad(rng.uniform(-15, 15) if heavy else rng.uniform(-5, 5))
    scale = rng.uniform(0.8, 0.95) if heavy else rng.uniform(0.9, 1.0)
    cx, cy = canvas_w / 2, canvas_h / 2
    pts = []
    jitter = 0.025 * w if heavy else 0.006 * w
    for x, y in src:
        dx, dy = (x - w / 2) * scale, (y - h / 2) * scale
        rx = dx * np.cos(angle) - dy * np.sin(angle)
        ry = dx * np.sin(angle) + dy * np.cos(angle)
        pts.append([cx + rx + rng.uniform(-jitter, jitter), cy + ry + rng.uniform(-jitter, jitter)])
    dst = np.array(pts, np.float32)
    # The whole page stays in the picture, with some table around it.
    pad = rng.uniform(0.01, 0.05) * w
    dst -= dst.min(axis=0) - pad
    canvas_w, canvas_h = (int(v) for v in dst.max(axis=0) + pad)
    upside_down = rng.random() < (0.25 if heavy else 0.1)
    if upside_down:
        dst = np.roll(dst, 2, axis=0)
    matrix = cv2.getPerspectiveTransform(src, dst)
    background = rng.randint(90, 170) if heavy else 255
    out = cv2.warpPerspective(img, matrix, (canvas_w, canvas_h), borderValue=background)
    out = out.astype(np.float32)
    # Uneven light: a soft gradient from one side (computed small, then stretched).
    direction = rng.uniform(0, 2 * np.pi)
    gy, gx = np.mgrid[0:32, 0:32].astype(np.float32)
    ramp = gx * np.cos(direction) + gy * np.sin(direction)
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-6)
    depth = rng.uniform(0.25, 0.45) if heavy else rng.uniform(0.0, 0.15)
    out *= cv2.resize(1.0 - depth * ramp, (canvas_w, canvas_h))
    sigma = rng.uniform(0.6, 1.4) if heavy else rng.uniform(0.0, 0.8)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    noise = np.empty_like(out)
    cv2.setRNGSeed(rng.randrange(1 << 30))
    cv2.randn(noise, 0.0, 6.0 if heavy else 3.0)
    out = np.clip(out + noise, 0, 255).astype(np.uint8)
    return out, upside_down


def render_pages(template: Template, sheets: list[Sheet]) -> list[np.ndarray[Any, Any]]:
    """The sheets decoded back to grey pages (for building a PDF of a scanned stack)."""
    return [cv2.imdecode(np.frombuffer(s.data, np.uint8), cv2.IMREAD_GRAYSCALE) for s in sheets]


def scanned_stack(
    key: dict[str, list[str]], students: list[dict[str, Any]], *, seed: int = 2026
) -> tuple[bytes, bytes, dict[str, float]]:
    """A PDF of the students' filled cards of the built-in card with ``len(key)``
    questions (student i gets i questions wrong, the number printed and bubbled is the last
    8 digits of their phone), a corrupt scan, and the score (out of 100) each should get."""
    template = korean_card(questions=len(key))
    rng = random.Random(seed)
    expected: dict[str, float] = {}
    sheets = []
    for i, student in enumerate(students):
        wrong = i % len(key)
        answers = {q: key[q][0] for q in key}
        for q in list(key)[:wrong]:
            answers[q] = "1" if key[q][0] != "1" else "2"
        number = student["phone"].replace("-", "")[-8:]
        sheets.append(
            make_sheet(
                template, rng, distortion="moderate", answers=answers, student=number, difficulty=0
            )
        )
        expected[str(student["id"])] = 100 - 100 / len(key) * wrong
    pdf = card_pdf(template, render_pages(template, sheets))
    corrupt = b"\xff\xd8\xff\xe0" + bytes(rng.randrange(256) for _ in range(3000))
    return pdf, corrupt, expected
