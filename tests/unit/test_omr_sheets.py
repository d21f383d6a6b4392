"""The built-in card read back from generated scans with known truth.

Fixed seeds: a failure reproduces. Accuracy is counted per bubble (marked or not, as the
student meant it); a *silent* error is a wrong bubble in a field that carries no flag --
the one kind of error a teacher would never see. Bad pages must fail with a reason.
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from pipelines.omr.align import SheetError
from pipelines.omr.annotate import annotate
from pipelines.omr.card import card_pdf, card_png, korean_card, render_card
from pipelines.omr.sheet import read_sheet
from tests.conftest import OMRCHECKER_FIXTURES
from tests.factories.omr_sheets import Sheet, make_sheet

FIXTURES = OMRCHECKER_FIXTURES


def _grade(template, sheets: list[Sheet]) -> dict[str, float]:
    bubbles = wrong = silent = ids = wrong_ids = 0
    for sheet in sheets:
        reading = read_sheet(sheet.data, template, ocr="fallback")
        assert reading.rotated_180 == sheet.upside_down
        for label, field in reading.read.fields.items():
            truth = sheet.marked[label]
            for bubble, marked in zip(reading.read.bubbles[label], field.marked, strict=True):
                bubbles += 1
                if marked != (bubble.value in truth):
                    wrong += 1
                    if not field.flags:
                        silent += 1
        ids += reading.student_number == sheet.student
        wrong_ids += reading.student_number not in (None, sheet.student)
    return {
        "accuracy": 1 - wrong / bubbles,
        "wrong": wrong,
        "silent": silent,
        "bubbles": bubbles,
        "id_rate": ids / len(sheets),
        "wrong_ids": wrong_ids,
    }


@pytest.mark.parametrize(("distortion", "count"), [("clean", 100), ("moderate", 200)])
def test_bubble_accuracy_on_clean_and_moderate_scans(distortion: str, count: int) -> None:
    template = korean_card(questions=40)
    rng = random.Random(f"omr-{distortion}")
    sheets = [make_sheet(template, rng, distortion=distortion) for _ in range(count)]  # type: ignore[arg-type]
    stats = _grade(template, sheets)
    print(distortion, stats)
    assert stats["accuracy"] >= 0.999, stats
    assert stats["silent"] == 0, stats
    # A number whose bubbles are unsure is settled by OCR of the printed digits, or left
    # unread for a teacher -- never read as someone else's.
    assert stats["id_rate"] >= 0.95, stats
    assert stats["wrong_ids"] == 0, stats


def test_rotated_upside_down_phone_photos() -> None:
    """±15°, upside down, perspective, shadows, blur, noise, JPEG: still no silent error."""
    template = korean_card(questions=40)
    rng = random.Random("omr-heavy")
    sheets = [make_sheet(template, rng, distortion="heavy") for _ in range(40)]
    assert any(s.upside_down for s in sheets)
    stats = _grade(template, sheets)
    print("heavy", stats)
    assert stats["accuracy"] >= 0.995, stats
    assert stats["silent"] == 0, stats
    assert stats["wrong_ids"] == 0, stats


def test_hard_marks_are_flagged_not_guessed() -> None:
    template = korean_card(questions=20)
    rng = random.Random("omr-hard")
    seen: dict[str, int] = {}
    for _ in range(30):
        sheet = make_sheet(template, rng, distortion="clean", difficulty=0.5)
        reading = read_sheet(sheet.data, template, ocr="never")
        for label, kind in sheet.hard.items():
            field = reading.read.fields[label]
            if kind == "multiple" and len(sheet.marked[label]) > 1:
                assert "multiple" in field.flags, (label, field)
                seen["multiple"] = seen.get("multiple", 0) + 1
            if kind == "erasure":
                # The residue is either seen as an erasure or read as unmarked anyway.
                wrong = any(
                    m != (b.value in sheet.marked[label])
                    for b, m in zip(reading.read.bubbles[label], field.marked, strict=True)
                )
                assert not wrong or field.flags
                seen["erasure"] = seen.get("erasure", 0) + ("erasure" in field.flags)
            if kind == "faint":
                seen["faint"] = seen.get("faint", 0) + bool(field.flags)
    assert seen.get("multiple") and seen.get("erasure") and seen.get("faint"), seen


def test_ocr_reads_printed_student_digits_when_bubbles_are_missing() -> None:
    template = korean_card(questions=10)
    rng = random.Random("omr-ocr")
    sheet = make_sheet(
        template, rng, distortion="moderate", student="12345678", bubble_student=False
    )
    reading = read_sheet(sheet.data, template, ocr="fallback")
    assert reading.student_number == "12345678"
    assert reading.student_source == "ocr"
    assert "id_from_ocr" in reading.student_flags


def test_bubbled_and_printed_numbers_agree_when_both_are_read() -> None:
    template = korean_card(questions=10)
    sheet = make_sheet(
        template, random.Random(5), distortion="clean", student="10293847", difficulty=0
    )
    reading = read_sheet(sheet.data, template, ocr="always")
    assert reading.student_number == "10293847" and reading.student_source == "bubbles"
    assert reading.ocr is not None and reading.ocr.text == "10293847"
    assert reading.student_flags == []


def test_not_an_image_fails_with_a_reason() -> None:
    with pytest.raises(SheetError) as err:
        read_sheet(b"%PDF-1.4 this is not a scan", korean_card())
    assert err.value.code == "not_an_image"
    with pytest.raises(SheetError) as err:
        read_sheet(b"", korean_card())
    assert err.value.code == "not_an_image"


def test_blank_page_fails_with_a_reason() -> None:
    blank = np.full((1754, 1240), 250, np.uint8)
    _ok, data = cv2.imencode(".jpg", blank)
    with pytest.raises(SheetError) as err:
        read_sheet(bytes(data), korean_card())
    assert err.value.code == "blank_page"
    assert "blank" in err.value.message


def test_markers_not_found_fails_with_a_reason() -> None:
    """A page with print on it but without our corner markers (an OMRChecker sheet)."""
    image = FIXTURES / "samples" / "sample2" / "AdrianSample" / "adrian_omr.png"
    if not image.exists():
        pytest.skip("fixtures not present")
    with pytest.raises(SheetError) as err:
        read_sheet(image.read_bytes(), korean_card())
    assert err.value.code == "markers_not_found"


def test_wrong_template_fails_with_a_reason() -> None:
    """Another print of a card with the same markers but its grid elsewhere."""
    other = korean_card(questions=40, offset=(18.0, 18.0))
    sheet = make_sheet(other, random.Random(9), distortion="clean")
    with pytest.raises(SheetError) as err:
        read_sheet(sheet.data, korean_card(questions=40))
    assert err.value.code == "wrong_template"
    assert "does not match" in err.value.message


def test_card_renders_as_png_and_pdf() -> None:
    template = korean_card(questions=60, choices=4, id_digits=6)
    png = card_png(template)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (1754, 1240)
    pdf = card_pdf(template)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
    # The empty card reads as an empty card: nothing marked, nothing silently decided.
    reading = read_sheet(render_card(template), template, ocr="never")
    assert all(not v for v in reading.answers.values())
    assert reading.student_number is None


def test_builtin_card_limits() -> None:
    with pytest.raises(ValueError):
        korean_card(questions=61)
    with pytest.raises(ValueError):
        korean_card(choices=3)


def test_pdf_pages_are_rasterised_and_a_broken_pdf_is_refused_with_a_reason() -> None:
    from pipelines.omr.scans import rasterise_pdf

    template = korean_card(questions=10)
    pages = rasterise_pdf(card_pdf(template, [render_card(template)] * 2))
    assert len(pages) == 2 and all(p.startswith(b"\x89PNG") for p in pages)
    reading = read_sheet(pages[1], template, ocr="never")
    assert all(not v for v in reading.answers.values())
    with pytest.raises(ValueError, match="could not be opened"):
        rasterise_pdf(b"%PDF-1.4 this is not really a PDF")


def test_annotated_sheet_is_a_png_with_its_colours_and_the_exams_questions_only() -> None:
    """A palette PNG any reader decodes: a right answer ringed green, a wrong one red;
    the questions the exam does not have are not drawn."""
    template = korean_card(questions=10)
    sheet = make_sheet(template, random.Random(5), distortion="clean", difficulty=0)
    reading = read_sheet(sheet.data, template, ocr="never")
    first, second, last = template.questions[0], template.questions[1], template.questions[-1]
    marks = {first: ("correct", ()), second: ("incorrect", ())}
    png = annotate(reading.page, reading.read, marks, "score", hidden={last})
    assert png.startswith(b"\x89PNG")
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    scale = image.shape[0] / reading.page.shape[0]  # a large page is drawn smaller
    assert max(image.shape) <= 1500 and abs(image.shape[1] / reading.page.shape[1] - scale) < 0.01

    def colours(label: str) -> set[tuple[int, int, int]]:
        bubbles = reading.read.bubbles[label]
        x0 = int(min(b.x for b in bubbles) * scale) - 8
        y0 = int(min(b.y for b in bubbles) * scale) - 8
        x1 = int(max(b.x + b.w for b in bubbles) * scale) + 8
        y1 = int(max(b.y + b.h for b in bubbles) * scale) + 8
        return {tuple(int(c) for c in px) for px in image[y0:y1, x0:x1].reshape(-1, 3)}

    assert (40, 160, 40) in colours(first)  # BGR of the palette's green
    assert (30, 30, 220) in colours(second)
    assert all(b == g == r for b, g, r in colours(last))  # only the page's greys
