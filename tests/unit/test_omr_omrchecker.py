"""OMRChecker's own samples read through our importer, compared with its snapshot.

The samples, their templates, keys and OMRChecker's regression answers
(``expected_results.ambr``) live in the shared fixtures; they are read from there, never
copied. Every sheet of the snapshot is read and every field compared; the scores of the
samples with an ``evaluation.json`` are compared too (our arithmetic is exact, theirs is
float: 70.666... is compared to two places).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pipelines.omr.omrchecker import import_omrchecker
from pipelines.omr.score import import_omrchecker_evaluation, score_sheet
from pipelines.omr.sheet import read_sheet
from pipelines.omr.template import Template, TemplateError
from tests.conftest import OMRCHECKER_FIXTURES

ROOT = OMRCHECKER_FIXTURES
SAMPLES = ROOT / "samples"

pytestmark = pytest.mark.skipif(not ROOT.exists(), reason="OMRChecker fixtures not present")


@dataclass
class Expected:
    case: str
    image: Path
    kind: str  # result | multi | error
    score: str
    fields: dict[str, str]


def _snapshot() -> list[Expected]:
    text = (ROOT / "expected_results.ambr").read_text()
    out: list[Expected] = []
    for block in text.split("# name: ")[1:]:
        case = block.split("\n", 1)[0].strip()
        for m in re.finditer(r"'([^']+\.csv)': '''\n(.*?)'''", block, re.S):
            lines = [line.strip() for line in m.group(2).splitlines() if line.strip()]
            rows = list(csv.reader(io.StringIO("\n".join(lines))))
            if not rows or "input_path" not in rows[0]:
                continue  # per-question evaluation tables
            path = m.group(1)
            kind = "error" if "Error" in path else "multi" if "MultiMarked" in path else "result"
            for row in rows[1:]:
                d = dict(zip(rows[0], row, strict=True))
                fields = {
                    k: v
                    for k, v in d.items()
                    if k not in ("file_id", "input_path", "output_path", "score")
                }
                out.append(Expected(case, ROOT / d["input_path"], kind, d["score"], fields))
    return out


def _find_up(path: Path, name: str) -> Path | None:
    for folder in path.parents:
        if (folder / name).exists():
            return folder / name
        if folder == SAMPLES:
            break
    return None


@cache
def _template(folder: Path) -> Template:
    raw = json.loads((folder / "template.json").read_text())
    markers = {}
    for pp in raw.get("preProcessors", []):
        if pp["name"] == "CropOnMarkers":
            rel = pp["options"].get("relativePath", "omr_marker.jpg")
            markers[rel] = (folder / rel).read_bytes()
    config = _find_up(folder / "template.json", "config.json")
    return import_omrchecker(
        raw,
        name=folder.name,
        marker_images=markers,
        config_json=config.read_text() if config else None,
    )


def _read(image: Path) -> dict[str, str]:
    template_path = _find_up(image, "template.json")
    assert template_path is not None
    return read_sheet(image.read_bytes(), _template(template_path.parent), ocr="never").response


SNAPSHOT = _snapshot() if ROOT.exists() else []


def test_the_snapshot_is_complete() -> None:
    assert len(SNAPSHOT) >= 25
    assert all(e.image.exists() for e in SNAPSHOT)


def test_every_sample_reads_as_omrchecker_reads_it() -> None:
    """Agreement per sample set, printed; every field of every sheet must agree."""
    per_case: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    disagreements = []
    for e in SNAPSHOT:
        ours = _read(e.image)
        for field, theirs in e.fields.items():
            per_case[e.case][1] += 1
            if ours.get(field) == theirs:
                per_case[e.case][0] += 1
            else:
                disagreements.append((e.case, e.image.name, field, ours.get(field), theirs))
    for case, (agree, total) in sorted(per_case.items()):
        print(f"{case:45s} {agree:4d}/{total:<4d} fields agree")
    assert not disagreements, disagreements


def test_scores_match_omrcheckers_with_its_marking_schemes() -> None:
    """Weighted answers, several correct answers, fractions (-2/3), sections and a key
    read from a filled key sheet (UPSC-mock) all score as OMRChecker scored them."""
    compared = 0
    for e in SNAPSHOT:
        evaluation = _find_up(e.image, "evaluation.json")
        if evaluation is None:
            continue
        template = _template(_find_up(e.image, "template.json").parent)  # type: ignore[union-attr]
        raw = json.loads(evaluation.read_text())
        options = raw["options"]
        csv_text = key_response = None
        if "answer_key_csv_path" in options:
            csv_path = evaluation.parent / options["answer_key_csv_path"]
            if csv_path.exists():
                csv_text = csv_path.read_text()
            else:
                key_response = _read(evaluation.parent / options["answer_key_image_path"])
        key = import_omrchecker_evaluation(
            raw, template.questions, csv_text=csv_text, key_response=key_response
        )
        response = _read(e.image)
        answers = {str(i + 1): response.get(q, "") for i, q in enumerate(template.questions)}
        result = score_sheet(answers, key.key, key.marking, None)
        assert float(result.raw_total) == pytest.approx(float(e.score), abs=1e-9), e.image
        compared += 1
    assert compared >= 12


def test_unsupported_preprocessor_is_refused_not_skipped() -> None:
    raw = json.loads((SAMPLES / "sample2" / "template.json").read_text())
    raw["preProcessors"].append({"name": "FeatureBasedAlignment", "options": {}})
    with pytest.raises(TemplateError) as err:
        import_omrchecker(raw, name="x")
    assert "FeatureBasedAlignment" in str(err.value)


def test_missing_marker_image_is_an_error() -> None:
    raw = json.loads((SAMPLES / "sample1" / "template.json").read_text())
    with pytest.raises(TemplateError) as err:
        import_omrchecker(raw, name="x")
    assert "omr_marker.jpg" in str(err.value)


def test_every_problem_of_a_template_is_listed() -> None:
    raw: dict[str, Any] = {
        "fieldBlocks": {
            "a": {"fieldType": "QTYPE_NOPE", "origin": [0, 0], "fieldLabels": ["q1"]},
            "b": {"fieldLabels": ["q2"], "origin": [0, 0]},
        }
    }
    with pytest.raises(TemplateError) as err:
        import_omrchecker(raw, name="x")
    paths = [p for p, _ in err.value.issues]
    assert "pageDimensions" in paths
    assert "fieldBlocks.a.fieldType" in paths and "fieldBlocks.b" in paths


def test_a_key_csv_with_cr_line_ends_reads_like_one_with_lf() -> None:
    """A lone CR (old Mac exports) ends a line; it was a csv.Error, a 500."""
    questions = ["q1", "q2"]
    key = import_omrchecker_evaluation({}, questions, csv_text="q1,A\rq2,B\r")
    assert key == import_omrchecker_evaluation({}, questions, csv_text="q1,A\nq2,B\n")
