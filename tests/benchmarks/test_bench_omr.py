"""OMR figures: sheets per minute per core (bubble reading alone, with the student
number's OCR, and the whole per-page work of a worker), peak memory, and accuracy on
generated scans with known truth. Printed, never asserted.

For comparison: OMRChecker states about 200 sheets/minute for its reading. Our target is
at least 400 sheets/minute per core for bubble reading.
"""

from __future__ import annotations

import random
import resource
import time
from decimal import Decimal
from typing import Any

import cv2

from pipelines.omr.annotate import annotate
from pipelines.omr.card import korean_card
from pipelines.omr.score import score_sheet
from pipelines.omr.sheet import read_sheet
from tests.factories.omr_sheets import Sheet, make_sheet

OMRCHECKER_CLAIM = 200  # sheets per minute


def _rate(sheets: list[Sheet], template: Any, work: Any) -> float:
    started = time.perf_counter()
    for sheet in sheets:
        work(sheet)
    return len(sheets) / (time.perf_counter() - started) * 60


def _accuracy(sheets: list[Sheet], template: Any) -> dict[str, Any]:
    bubbles = wrong = silent = ids = flagged = failed = 0
    for sheet in sheets:
        try:
            reading = read_sheet(sheet.data, template, ocr="fallback")
        except Exception:
            failed += 1
            continue
        for label, field in reading.read.fields.items():
            flagged += bool(field.flags)
            for bubble, marked in zip(reading.read.bubbles[label], field.marked, strict=True):
                bubbles += 1
                if marked != (bubble.value in sheet.marked[label]):
                    wrong += 1
                    silent += not field.flags
        ids += reading.student_number == sheet.student
    return {
        "sheets": len(sheets),
        "failed": failed,
        "bubble_accuracy": f"{100 * (1 - wrong / max(bubbles, 1)):.4f}%",
        "wrong_bubbles": wrong,
        "silent_errors": silent,
        "flagged_fields": flagged,
        "id_match_rate": f"{100 * ids / len(sheets):.1f}%",
    }


def test_bench_omr() -> None:
    cv2.setNumThreads(1)  # per core: OpenCV would otherwise spread some steps over cores
    template = korean_card(questions=60)
    rng = random.Random("bench-omr")
    timing = [make_sheet(template, rng, distortion="moderate") for _ in range(150)]
    key = {str(q): [str((q % 5) + 1)] for q in range(1, 61)}

    read_only = _rate(timing, template, lambda s: read_sheet(s.data, template, ocr="never"))
    with_ocr = _rate(timing[:60], template, lambda s: read_sheet(s.data, template, ocr="always"))

    def whole(sheet: Sheet) -> None:
        reading = read_sheet(sheet.data, template, ocr="fallback")
        result = score_sheet(reading.answers, key, None, Decimal(100))
        verdicts = {q.question: (q.verdict, q.accepted) for q in result.questions}
        annotate(reading.page, reading.read, verdicts, f"score {result.total}")

    worker = _rate(timing[:60], template, whole)
    print()
    print("OMR reading, one core (60-question card, 1240x1754 JPEG scans):")
    print(f"  bubble reading only          {read_only:8.0f} sheets/min  (target >= 400)")
    print(f"  with student-number OCR      {with_ocr:8.0f} sheets/min")
    print(f"  whole page (read, score, annotated PNG) {worker:8.0f} sheets/min")
    print(f"  OMRChecker's published claim {OMRCHECKER_CLAIM:8d} sheets/min")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: {peak:.0f} MiB (the test runner, 150 scans in memory, OCR model loaded)")

    for distortion, count in (("clean", 200), ("moderate", 400), ("heavy", 150)):
        sheets = [make_sheet(template, rng, distortion=distortion) for _ in range(count)]  # type: ignore[arg-type]
        print(f"  accuracy, {distortion:8s}", _accuracy(sheets, template))
        del sheets
