"""Reads folders of OMRChecker-style scans with the project's pipeline, the whole work of
a worker per page (align, read, student number, score, annotated PNG), and prints its
figures as one JSON line: ``python -m tests.benchmarks.omr_runner INPUT_DIR...``.

Each folder holds ``template.json``, ``config.json``, the marker image, optionally
``evaluation.json`` (with its key CSV), and the scans (``*.jpg``). Only the pages are
timed: the templates are imported before the clock starts.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import cv2

from pipelines.omr.annotate import annotate
from pipelines.omr.omrchecker import import_omrchecker
from pipelines.omr.score import import_omrchecker_evaluation, score_sheet
from pipelines.omr.sheet import read_sheet
from pipelines.omr.template import Template


def _design(folder: Path) -> tuple[Template, Any]:
    raw = json.loads((folder / "template.json").read_text())
    markers = {p.name: p.read_bytes() for p in folder.iterdir() if "marker" in p.name}
    template = import_omrchecker(
        raw,
        name=folder.name,
        marker_images=markers,
        config_json=(folder / "config.json").read_text(),
    )
    evaluation = folder / "evaluation.json"
    if not evaluation.exists():
        return template, None
    raw_eval = json.loads(evaluation.read_text())
    csv = raw_eval["options"].get("answer_key_csv_path")
    key = import_omrchecker_evaluation(
        raw_eval,
        template.questions,
        csv_text=(folder / csv).read_text() if csv else None,
    )
    return template, key


def main() -> None:
    cv2.setNumThreads(1)
    designs = [(Path(d), *_design(Path(d))) for d in sys.argv[1:]]
    sheets = 0
    started = time.perf_counter()
    for folder, template, key in designs:
        for scan in sorted(p for p in folder.glob("*.jpg") if "marker" not in p.name):
            reading = read_sheet(scan.read_bytes(), template, ocr="fallback")
            verdicts: dict[str, tuple[str, tuple[str, ...]]] = {}
            title = f"No. {reading.student_number}"
            if key is not None:
                result = score_sheet(reading.answers, key.key, key.marking, Decimal(100))
                fields = {str(i + 1): q for i, q in enumerate(template.questions)}
                verdicts = {fields[q.question]: (q.verdict, q.accepted) for q in result.questions}
                title += f" score {result.total}"
            annotate(reading.page, reading.read, verdicts, title)
            sheets += 1
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"sheets": sheets, "seconds": seconds, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
