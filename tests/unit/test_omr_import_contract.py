"""The OMRChecker import contract, one row per property of its template and config schemas:
each is honoured with OMRChecker's meaning (the imported template says so) or refused
with an issue naming it. Nothing is skipped silently."""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from pipelines.omr.bubbles import read_bubbles
from pipelines.omr.omrchecker import import_omrchecker
from pipelines.omr.template import Template, TemplateError, block_fields

MARKER = bytes(
    cv2.imencode(".png", np.pad(np.zeros((20, 20), np.uint8), 5, constant_values=255))[1]
)

BASE: dict[str, Any] = {
    "pageDimensions": [600, 800],
    "bubbleDimensions": [20, 20],
    "preProcessors": [],
    "fieldBlocks": {
        "Answers": {
            "fieldType": "QTYPE_MCQ4",
            "origin": [100, 100],
            "bubblesGap": 30,
            "labelsGap": 30,
            "fieldLabels": ["q1..3"],
        },
        "Id": {
            "fieldType": "QTYPE_INT",
            "origin": [300, 100],
            "bubblesGap": 25,
            "labelsGap": 25,
            "fieldLabels": ["id1..3"],
        },
    },
}


def _patch(path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


def _pre(name: str, **options: Any) -> dict[str, Any]:
    return _patch("preProcessors", [{"name": name, "options": options}])


def _block(t: Template, name: str = "Answers") -> Any:
    return next(b for b in t.blocks if b.name == name)


def _step(t: Template) -> Any:
    return t.preprocess[0]


Check = Callable[[Template], bool]
AZ = list(string.ascii_uppercase)

# (property, template.json, config.json, what the imported template must say)
HONOURED: list[tuple[str, dict[str, Any], dict[str, Any] | None, Check]] = [
    ("pageDimensions", _patch("pageDimensions", [700, 900]), None, lambda t: t.page == (700, 900)),
    (
        "bubbleDimensions",
        _patch("bubbleDimensions", [18, 16]),
        None,
        lambda t: _block(t).bubble_size == (18, 16),
    ),
    ("emptyValue", _patch("emptyValue", "-"), None, lambda t: _block(t).empty_value == "-"),
    (
        "customLabels",
        _patch("customLabels", {"Code": ["id1..3"]}),
        None,
        lambda t: t.groups == {"Code": ["id1", "id2", "id3"]},
    ),
    (
        "outputColumns",
        _patch("outputColumns", ["id1..3", "q1..3"]),
        None,
        lambda t: len(t.questions) == 3,
    ),
    (
        "fieldBlocks.*.bubbleValues (A..Z)",
        _patch(
            "fieldBlocks.Name",
            {
                "bubbleValues": AZ,
                "direction": "vertical",
                "origin": [10, 10],
                "bubblesGap": 25,
                "labelsGap": 25,
                "fieldLabels": ["name1..4"],
            },
        ),
        None,
        lambda t: _block(t, "Name").values == AZ and "name1" not in t.questions,
    ),
    (
        "fieldBlocks.*.direction",
        _patch("fieldBlocks.Answers.direction", "vertical"),
        None,
        lambda t: _block(t).direction == "vertical",
    ),
    (
        "fieldBlocks.*.bubbleDimensions",
        _patch("fieldBlocks.Answers.bubbleDimensions", [12, 14]),
        None,
        lambda t: _block(t).bubble_size == (12, 14),
    ),
    (
        "fieldBlocks.*.bubblesGap / labelsGap / origin",
        _patch("fieldBlocks.Answers.bubblesGap", 33),
        None,
        lambda t: (
            [b.x for b in block_fields(_block(t))[1]] == [100, 133, 166, 199]
            and block_fields(_block(t))[1][0].y == 130
        ),
    ),
    (
        "fieldBlocks.*.emptyValue",
        _patch("fieldBlocks.Answers.emptyValue", "X"),
        None,
        lambda t: _block(t).empty_value == "X" and _block(t, "Id").empty_value == "",
    ),
    (
        "fieldBlocks.*.fieldLabels",
        _patch("fieldBlocks.Answers.fieldLabels", ["q1..2", "q9"]),
        None,
        lambda t: _block(t).labels == ["q1", "q2", "q9"],
    ),
    *(
        (
            f"fieldBlocks.*.fieldType {ft}",
            _patch("fieldBlocks.Answers.fieldType", ft),
            None,
            check,
        )
        for ft, check in (
            ("QTYPE_MCQ5", lambda t: _block(t).values == list("ABCDE")),
            ("QTYPE_MCQ4_RTL", lambda t: _block(t).values == list("DCBA")),
            ("QTYPE_MCQ5_RTL", lambda t: _block(t).values == list("EDCBA")),
            ("QTYPE_INT_FROM_1", lambda t: _block(t).values[-1] == "0"),
        )
    ),
    (
        "CropPage.morphKernel",
        _pre("CropPage", morphKernel=[7, 9]),
        None,
        lambda t: _step(t).op == "crop_page" and _step(t).morph_kernel == (7, 9),
    ),
    (
        "GaussianBlur.kSize / sigmaX",
        _pre("GaussianBlur", kSize=[5, 5], sigmaX=2),
        None,
        lambda t: _step(t).ksize == (5, 5) and _step(t).sigma_x == 2,
    ),
    (
        "MedianBlur.kSize",
        _pre("MedianBlur", kSize=7),
        None,
        lambda t: _step(t).op == "median_blur" and _step(t).ksize == (7, 7),
    ),
    (
        "Levels.low / high / gamma",
        _pre("Levels", low=0.2, high=0.9, gamma=0.5),
        None,
        lambda t: (_step(t).low, _step(t).high, _step(t).gamma) == (0.2, 0.9, 0.5),
    ),
    (
        "CropOnMarkers.* (every option)",
        _pre(
            "CropOnMarkers",
            relativePath="m.png",
            sheetToMarkerWidthRatio=17.5,
            min_matching_threshold=0.2,
            max_matching_variation=0.3,
            marker_rescale_range=[80, 120],
            marker_rescale_steps=5,
            apply_erode_subtract=False,
        ),
        None,
        lambda t: (
            _step(t).width_ratio == 17
            and (_step(t).min_match, _step(t).max_variation) == (0.2, 0.3)
            and _step(t).rescale_range == (80, 120)
            and _step(t).rescale_steps == 5
            and _step(t).erode_subtract is False
        ),
    ),
    (
        "config.dimensions",
        BASE,
        {"dimensions": {"processing_width": 1000, "processing_height": 1400, "display_width": 9}},
        lambda t: t.processing_size == (1000, 1400),
    ),
    (
        "config.threshold_params",
        BASE,
        {
            "threshold_params": {
                "MIN_JUMP": 40,
                "MIN_GAP": 20,
                "CONFIDENT_SURPLUS": 9,
                "JUMP_DELTA": 50,
                "GAMMA_LOW": 0.5,
                "PAGE_TYPE_FOR_THRESHOLD": "black",
            }
        },
        lambda t: (
            (t.min_jump, t.min_gap, t.confident_surplus, t.default_threshold) == (40, 20, 9, 100)
        ),
    ),
    (
        "config.alignment_params (auto_align off)",
        BASE,
        {
            "alignment_params": {
                "auto_align": False,
                "match_col": 3,
                "max_steps": 10,
                "stride": 2,
                "thickness": 4,
            }
        },
        lambda t: t.preprocess == [],
    ),
    (
        "config.outputs",
        BASE,
        {
            "outputs": {
                "show_image_level": 2,
                "save_image_level": 3,
                "save_detections": True,
                "filter_out_multimarked_files": False,
            }
        },
        lambda t: t.processing_size == (666, 820),
    ),
]

# (property, template.json, config.json, the issue path that must be named)
REFUSED: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    ("unknown template key", _patch("answers", 1), None, "answers"),
    ("unknown block key", _patch("fieldBlocks.Answers.colour", "red"), None, "colour"),
    (
        "FeatureBasedAlignment",
        _pre("FeatureBasedAlignment", reference="r.jpg"),
        None,
        "preProcessors[0]",
    ),
    ("unknown preprocessor option", _pre("MedianBlur", kSize=3, radius=2), None, "radius"),
    ("even median kernel", _pre("MedianBlur", kSize=4), None, "preProcessors[0].options.kSize"),
    (
        "marker image not sent",
        _pre("CropOnMarkers", relativePath="missing.png"),
        None,
        "relativePath",
    ),
    (
        "marker_rescale_steps too many",
        _pre("CropOnMarkers", relativePath="m.png", marker_rescale_steps=500),
        None,
        "marker_rescale_steps",
    ),
    ("Levels gamma above 1", _pre("Levels", gamma=2), None, "preProcessors[0].options.gamma"),
    ("unknown fieldType", _patch("fieldBlocks.Answers.fieldType", "QTYPE_X"), None, "fieldType"),
    ("outputColumns naming no field", _patch("outputColumns", ["zz"]), None, "outputColumns"),
    (
        "auto_align",
        BASE,
        {"alignment_params": {"auto_align": True}},
        "config.alignment_params.auto_align",
    ),
    (
        "filter_out_multimarked_files",
        BASE,
        {"outputs": {"filter_out_multimarked_files": True}},
        "config.outputs.filter_out_multimarked_files",
    ),
    (
        "PAGE_TYPE_FOR_THRESHOLD grey",
        BASE,
        {"threshold_params": {"PAGE_TYPE_FOR_THRESHOLD": "grey"}},
        "PAGE_TYPE_FOR_THRESHOLD",
    ),
    ("MIN_JUMP out of range", BASE, {"threshold_params": {"MIN_JUMP": 5}}, "MIN_JUMP"),
    ("unknown config key", BASE, {"colours": {}}, "config.colours"),
    ("unknown config section key", BASE, {"dimensions": {"dpi": 300}}, "config.dimensions.dpi"),
]


def _import(raw: dict[str, Any], config: dict[str, Any] | None, **kw: Any) -> Template:
    return import_omrchecker(
        raw, name="t", marker_images={"m.png": MARKER}, config_json=config, **kw
    )


@pytest.mark.parametrize(("prop", "raw", "config", "check"), HONOURED, ids=[r[0] for r in HONOURED])
def test_property_is_honoured(prop: str, raw: dict[str, Any], config: Any, check: Check) -> None:
    assert check(_import(raw, config)), prop


@pytest.mark.parametrize(("prop", "raw", "config", "path"), REFUSED, ids=[r[0] for r in REFUSED])
def test_property_is_refused_by_name(
    prop: str, raw: dict[str, Any], config: Any, path: str
) -> None:
    with pytest.raises(TemplateError) as err:
        _import(raw, config)
    assert any(path in p for p, _ in err.value.issues), (prop, err.value.issues)


def test_the_student_field_is_named_or_found_by_its_label() -> None:
    raw = _patch("customLabels", {"StudentID": ["id1..3"]})
    assert _import(raw, None).student_field == "StudentID"
    assert _import(BASE, None, student_field="id1").student_field == "id1"
    with pytest.raises(TemplateError) as err:
        _import(BASE, None, student_field="Roll")
    assert err.value.issues[0][0] == "student_field"


def test_black_page_type_keeps_a_blank_grey_sheet_blank() -> None:
    """A sparse sheet on dark paper, nothing marked: with the white page's fallback (200)
    every bubble reads marked; with ``black`` (100), as OMRChecker reads it, none."""
    page = np.full((800, 600), 170, np.uint8)
    white = _import(BASE, None)
    black = _import(BASE, {"threshold_params": {"PAGE_TYPE_FOR_THRESHOLD": "black"}})
    assert read_bubbles(page, white).fields["q1"].values == list("ABCD")
    assert all(not f.values for f in read_bubbles(page, black).fields.values())
