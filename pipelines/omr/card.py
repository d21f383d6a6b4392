"""The built-in Korean-style answer card (OMR 답안지) and its printable rendering.

Layout of ``korean_card()`` on an A4 page at 150 dpi (1240 x 1754 px):

* four solid corner markers and, right of the top-left one, a smaller orientation mark;
* 수험번호 (student number): a box of ``id_digits`` cells to write or print the digits in
  (read by OCR as a fallback) above a grid of 0..9 bubbles, one column per digit;
* the answers: up to 60 questions in columns of 20 rows, each row ①..⑤ (or ①..④).

The bubble values are ``"1".."5"``, so an answer key of ``"⑤"`` (normalised to ``"5"``)
matches a marked fifth bubble. The student number is matched against the last digits of a
student's mobile number (휴대폰 뒷자리), the common 학원 convention; see
``models.omr_pages.match_student``.

Rendering draws what a print shop would print, in greys: outlines and digits light (as
the red/pink ink of real cards is in a grey scan), markers solid black. The same renderer
is the base of the synthetic sheets the tests and benchmarks grade.
"""

from __future__ import annotations

import io
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipelines.omr.template import (
    Block,
    Markers,
    OcrBox,
    Step,
    Template,
    all_fields,
    check_template,
)

PAGE = (1240, 1754)
DPI = 150
MARKER = 48
MARKER_CENTRES = [(64.0, 64.0), (1176.0, 64.0), (1176.0, 1690.0), (64.0, 1690.0)]
ORIENTATION = (136.0, 64.0)
ORIENTATION_SIZE = 24.0
BUBBLE = 26.0
CHOICE_GAP = 36.0
ROW_GAP = 36.0
ROWS_PER_COLUMN = 20
QUESTION_COLUMNS_X = (520.0, 760.0, 1000.0)
TOP = 300.0
ID_X = 110.0
ID_GAP = 40.0
MAX_QUESTIONS = ROWS_PER_COLUMN * len(QUESTION_COLUMNS_X)

OUTLINE_GREY = 150
DIGIT_GREY = 175


def korean_card(
    questions: int = 20,
    choices: int = 5,
    id_digits: int = 8,
    name: str | None = None,
    offset: tuple[float, float] = (0.0, 0.0),
) -> Template:
    """The built-in card for ``questions`` (1..60) questions of ``choices`` (4 or 5)
    answers and an ``id_digits``-digit student number (4..8). ``offset`` moves every
    bubble (another print of the card whose grid sits elsewhere)."""
    if not 1 <= questions <= MAX_QUESTIONS:
        raise ValueError(f"questions must be within 1..{MAX_QUESTIONS}")
    if choices not in (4, 5):
        raise ValueError("choices must be 4 or 5")
    if not 4 <= id_digits <= 8:
        raise ValueError("id_digits must be within 4..8")
    dx, dy = offset
    blocks = [
        Block(
            name="student_number",
            origin=(ID_X + dx, TOP + dy),
            labels=[f"id{i}" for i in range(1, id_digits + 1)],
            values=[str(d) for d in range(10)],
            direction="vertical",
            bubble_gap=ROW_GAP,
            label_gap=ID_GAP,
            bubble_size=(BUBBLE, BUBBLE),
        )
    ]
    numbers = [str(q) for q in range(1, questions + 1)]
    for c, x in enumerate(QUESTION_COLUMNS_X):
        labels = numbers[c * ROWS_PER_COLUMN : (c + 1) * ROWS_PER_COLUMN]
        if not labels:
            break
        blocks.append(
            Block(
                name=f"answers_{c + 1}",
                origin=(x + dx, TOP + dy),
                labels=labels,
                values=[str(v) for v in range(1, choices + 1)],
                direction="horizontal",
                bubble_gap=CHOICE_GAP,
                label_gap=ROW_GAP,
                bubble_size=(BUBBLE, BUBBLE),
            )
        )
    template = Template(
        name=name or f"OMR 답안지 {questions}문항 {choices}지선다",
        page=PAGE,
        blocks=blocks,
        questions=numbers,
        groups={"student_number": [f"id{i}" for i in range(1, id_digits + 1)]},
        student_field="student_number",
        ocr_boxes=[
            OcrBox(
                name="student_number",
                box=(ID_X - 7 + dx, 200.0 + dy, ID_GAP * id_digits, 60.0),
                digits=id_digits,
            )
        ],
        preprocess=[Step(op="corner_markers")],
        markers=Markers(
            centres=MARKER_CENTRES,
            size=MARKER,
            orientation=ORIENTATION,
            orientation_size=ORIENTATION_SIZE,
        ),
        verify_layout=True,
    )
    check_template(template)
    return template


def _square(img: np.ndarray[Any, Any], centre: tuple[float, float], size: float) -> None:
    half = size / 2
    cv2.rectangle(
        img,
        (round(centre[0] - half), round(centre[1] - half)),
        (round(centre[0] + half), round(centre[1] + half)),
        0,
        -1,
    )


def render_card(template: Template, student_digits: str | None = None) -> np.ndarray[Any, Any]:
    """The empty card as a grey image of the template's page size. ``student_digits``
    prints a student number into the OCR box (a pre-printed card)."""
    w, h = template.page
    img = np.full((h, w), 255, np.uint8)
    if template.markers:
        for c in template.markers.centres:
            _square(img, c, template.markers.size)
        _square(img, template.markers.orientation, template.markers.orientation_size)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "ANSWER CARD / OMR", (int(w * 0.36), 120), font, 1.1, 60, 2, cv2.LINE_AA)
    for field in all_fields(template):
        for b in field:
            centre = (round(b.x + b.w / 2), round(b.y + b.h / 2))
            cv2.ellipse(
                img,
                centre,
                (round(b.w / 2), round(b.h / 2)),
                0,
                0,
                360,
                OUTLINE_GREY,
                2,
                cv2.LINE_AA,
            )
            size, _ = cv2.getTextSize(b.value, font, 0.5, 1)
            cv2.putText(
                img,
                b.value,
                (centre[0] - size[0] // 2, centre[1] + size[1] // 2),
                font,
                0.5,
                DIGIT_GREY,
                1,
                cv2.LINE_AA,
            )
        first = field[0]
        if first.field.isdigit():
            cv2.putText(
                img,
                first.field,
                (round(first.x - 44), round(first.y + first.h * 0.75)),
                font,
                0.55,
                40,
                1,
                cv2.LINE_AA,
            )
    for box in template.ocr_boxes:
        x, y, bw, bh = box.box
        cells = box.digits or 1
        cell = bw / cells
        for i in range(cells):
            cv2.rectangle(
                img,
                (round(x + i * cell + 2), round(y)),
                (round(x + (i + 1) * cell - 2), round(y + bh)),
                120,
                1,
            )
        cv2.putText(img, "STUDENT NO.", (round(x), round(y - 12)), font, 0.55, 40, 1, cv2.LINE_AA)
    if student_digits:
        print_digits(img, template, student_digits)
    return img


def print_digits(img: np.ndarray[Any, Any], template: Template, digits: str) -> None:
    """Print ``digits`` into the student number's boxes of a rendered card, in place."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    for box in template.ocr_boxes:
        if box.name != template.student_field:
            continue
        x, y, bw, bh = box.box
        cell = bw / (box.digits or 1)
        for i, d in enumerate(digits[: box.digits or 1]):
            cv2.putText(
                img,
                d,
                (round(x + i * cell + cell * 0.22), round(y + bh * 0.78)),
                font,
                1.2,
                0,
                3,
                cv2.LINE_AA,
            )


def card_png(template: Template, student_digits: str | None = None) -> bytes:
    ok, data = cv2.imencode(".png", render_card(template, student_digits))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(data)


def card_pdf(template: Template, pages: list[np.ndarray[Any, Any]] | None = None) -> bytes:
    """A printable PDF of the card (one page), or of the given grey pages, at 150 dpi."""
    images = [Image.fromarray(p) for p in (pages or [render_card(template)])]
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=DPI, save_all=True, append_images=images[1:])
    return out.getvalue()
