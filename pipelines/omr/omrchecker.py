"""OMRChecker's ``template.json`` and ``config.json`` imported as our ``Template``.

The contract: every property of OMRChecker's template and config schemas is either
honoured with OMRChecker's meaning or refused with an issue that names it (a 422 at the
API). Nothing is skipped silently: a sheet read without its alignment or with another
threshold would be read wrong. Properties OMRChecker itself only uses to show or save
pictures (``display_*``, ``outputs.show_image_level`` ...) change nothing when reading, so
they are accepted; so are the ones it reads only while ``auto_align`` is on (``GAMMA_LOW``,
``match_col`` ...) and ``JUMP_DELTA``, which feeds a threshold it computes but never uses.
Refused: ``FeatureBasedAlignment``, ``alignment_params.auto_align: true`` and
``outputs.filter_out_multimarked_files: true`` (here a multiply marked answer always goes
to review).

The student-number field is named by the importer's caller; by default it is the first
custom label (else field) whose name starts with ``roll`` or contains ``id``
(``Roll``, ``StudentID``, ``student_id``), case-insensitively.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.omr.template import (
    Block,
    Step,
    Template,
    TemplateError,
    check_template,
    expand_labels,
    natural_key,
)

Issues = list[tuple[str, str]]

# OMRChecker's built-in field types: bubble values and direction.
FIELD_TYPES: dict[str, tuple[list[str], str]] = {
    "QTYPE_INT": ([str(i) for i in range(10)], "vertical"),
    "QTYPE_INT_FROM_1": ([*(str(i) for i in range(1, 10)), "0"], "vertical"),
    "QTYPE_MCQ4": (["A", "B", "C", "D"], "horizontal"),
    "QTYPE_MCQ5": (["A", "B", "C", "D", "E"], "horizontal"),
    "QTYPE_MCQ4_RTL": (["D", "C", "B", "A"], "horizontal"),
    "QTYPE_MCQ5_RTL": (["E", "D", "C", "B", "A"], "horizontal"),
}
MCQ_TYPES = {t for t in FIELD_TYPES if t.startswith("QTYPE_MCQ")}
# OMRChecker's fallback thresholds when a page shows no clear jump, by page type.
PAGE_THRESHOLDS = {"white": 200.0, "black": 100.0}
# A field that is a question although its block is not a built-in MCQ type: q7, Q7, 7.
_QUESTION_LABEL = re.compile(r"^[qQ]?\d+$")

TEMPLATE_KEYS = {
    "bubbleDimensions",
    "pageDimensions",
    "preProcessors",
    "fieldBlocks",
    "customLabels",
    "outputColumns",
    "emptyValue",
}
BLOCK_KEYS = {
    "bubbleDimensions",
    "bubblesGap",
    "bubbleValues",
    "direction",
    "emptyValue",
    "fieldLabels",
    "labelsGap",
    "origin",
    "fieldType",
}
PREPROCESSOR_OPTIONS: dict[str, set[str]] = {
    "CropOnMarkers": {
        "apply_erode_subtract",
        "marker_rescale_range",
        "marker_rescale_steps",
        "max_matching_variation",
        "min_matching_threshold",
        "relativePath",
        "sheetToMarkerWidthRatio",
    },
    "CropPage": {"morphKernel"},
    "GaussianBlur": {"kSize", "sigmaX"},
    "MedianBlur": {"kSize"},
    "Levels": {"low", "high", "gamma"},
}
CONFIG_KEYS: dict[str, set[str]] = {
    "dimensions": {"display_height", "display_width", "processing_height", "processing_width"},
    "threshold_params": {
        "GAMMA_LOW",
        "MIN_GAP",
        "MIN_JUMP",
        "CONFIDENT_SURPLUS",
        "JUMP_DELTA",
        "PAGE_TYPE_FOR_THRESHOLD",
    },
    "alignment_params": {"auto_align", "match_col", "max_steps", "stride", "thickness"},
    "outputs": {
        "show_image_level",
        "save_image_level",
        "save_detections",
        "filter_out_multimarked_files",
    },
}


def import_omrchecker(
    template_json: bytes | str | Mapping[str, Any],
    *,
    name: str,
    marker_images: Mapping[str, bytes] | None = None,
    config_json: bytes | str | Mapping[str, Any] | None = None,
    student_field: str | None = None,
) -> Template:
    """Our template from an OMRChecker ``template.json`` (and its ``config.json``).
    ``marker_images`` maps a ``CropOnMarkers`` ``relativePath`` to the image's bytes;
    ``student_field`` names the student-number label (default: see the module). Every
    problem is listed in one ``TemplateError``; config issues are under ``config.``."""
    try:
        raw, config = _decode(template_json, config_json)
        issues: Issues = []
        template = _template(raw, config, name, marker_images or {}, student_field, issues)
    except TemplateError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise TemplateError([("", f"not an OMRChecker template: {exc!r}")]) from None
    if issues or template is None:
        raise TemplateError(issues or [("", "not an OMRChecker template")])
    check_template(template)
    return template


def _decode(
    template_json: bytes | str | Mapping[str, Any],
    config_json: bytes | str | Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        raw = (
            dict(template_json) if isinstance(template_json, Mapping) else json.loads(template_json)
        )
        config = (
            {}
            if config_json is None
            else dict(config_json)
            if isinstance(config_json, Mapping)
            else json.loads(config_json)
        )
    except (ValueError, TypeError) as exc:
        raise TemplateError([("", f"not valid JSON: {exc}")]) from None
    if not isinstance(raw, dict):
        raise TemplateError([("", "template.json must be an object")])
    if not isinstance(config, dict):
        raise TemplateError([("config", "config.json must be an object")])
    return raw, config


def _unknown(where: str, got: Mapping[str, Any], known: set[str], issues: Issues) -> None:
    for key in got:
        if key not in known:
            path = f"{where}.{key}" if where else key
            issues.append((path, f"unknown property {key!r}: not part of OMRChecker's schema"))


def _pair(value: Any, where: str, issues: Issues, *, minimum: float = 0) -> tuple[float, float]:
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(v >= minimum for v in value)
    ):
        return float(value[0]), float(value[1])
    issues.append((where, f"must be two numbers >= {minimum:g}"))
    return (0.0, 0.0)


def _number(
    options: Mapping[str, Any], key: str, where: str, default: float, issues: Issues
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        issues.append((f"{where}.{key}", "must be a number"))
        return default
    return float(value)


def _template(
    raw: dict[str, Any],
    config: dict[str, Any],
    name: str,
    markers: Mapping[str, bytes],
    student_field: str | None,
    issues: Issues,
) -> Template | None:
    _unknown("", raw, TEMPLATE_KEYS, issues)
    for key in ("pageDimensions", "fieldBlocks"):
        if key not in raw:
            issues.append((key, "required"))
    page = _pair(raw.get("pageDimensions", [100, 100]), "pageDimensions", issues, minimum=1)
    bubble = _pair(raw.get("bubbleDimensions", [30, 30]), "bubbleDimensions", issues, minimum=1)
    empty = raw.get("emptyValue", "")
    if not isinstance(empty, str):
        issues.append(("emptyValue", "must be a string"))
    blocks, questions = _field_blocks(raw.get("fieldBlocks"), bubble, str(empty), issues)
    groups = _custom_labels(raw.get("customLabels") or {}, issues)
    labels = [label for b in blocks for label in b.labels]
    _output_columns(raw.get("outputColumns", []), set(labels) | set(groups), issues)
    # A question spread over several columns (an integer answer) is a group named like q5.
    questions.extend(g for g in groups if _QUESTION_LABEL.match(g))
    grouped = {m for members in groups.values() for m in members}
    questions = [q for q in dict.fromkeys(questions) if q in groups or q not in grouped]
    questions.sort(key=natural_key)
    steps = _preprocessors(raw.get("preProcessors", []), markers, issues)
    settings = _config(config, issues)
    student = _student_field(student_field, groups, labels, issues)
    if issues:
        return None
    return Template(
        name=name,
        page=(int(page[0]), int(page[1])),
        blocks=blocks,
        questions=[q for q in questions if q != student],
        groups=groups,
        student_field=student,
        preprocess=steps,
        **settings,
    )


def _student_field(
    wanted: str | None, groups: dict[str, list[str]], labels: list[str], issues: Issues
) -> str | None:
    names = [*groups, *(label for label in labels if label not in groups)]
    if wanted is not None:
        if wanted not in names:
            issues.append(("student_field", f"no custom label or field is named {wanted!r}"))
        return wanted
    return next((n for n in names if _is_id(n)), None)


def _is_id(label: str) -> bool:
    low = label.lower()
    return low.startswith("roll") or "id" in low


def _field_blocks(
    spec: Any, bubble: tuple[float, float], empty: str, issues: Issues
) -> tuple[list[Block], list[str]]:
    """The ``fieldBlocks`` as blocks, and the fields that are questions: those of the
    multiple-choice types and those labelled like a question number (``q7``, ``7``)."""
    if not isinstance(spec, dict):
        if spec is not None:
            issues.append(("fieldBlocks", "must be an object"))
        return [], []
    blocks: list[Block] = []
    questions: list[str] = []
    seen: set[str] = set()
    for block_name, block_spec in spec.items():
        block = _field_block(f"fieldBlocks.{block_name}", block_spec, bubble, empty, issues)
        if block is None:
            continue
        overlap = seen.intersection(block.labels)
        if overlap:
            issues.append(
                (
                    f"fieldBlocks.{block_name}.fieldLabels",
                    f"labels defined twice: {sorted(overlap)}",
                )
            )
        seen.update(block.labels)
        blocks.append(block)
        mcq = block_spec.get("fieldType") in MCQ_TYPES
        questions.extend(x for x in block.labels if mcq or _QUESTION_LABEL.match(x))
    return blocks, questions


def _field_block(
    where: str, spec: Any, bubble: tuple[float, float], empty: str, issues: Issues
) -> Block | None:
    if not isinstance(spec, dict):
        issues.append((where, "must be an object"))
        return None
    count = len(issues)
    _unknown(where, spec, BLOCK_KEYS, issues)
    for key in ("origin", "bubblesGap", "labelsGap", "fieldLabels"):
        if key not in spec:
            issues.append((f"{where}.{key}", "required"))
    field_type = spec.get("fieldType")
    values, direction = spec.get("bubbleValues"), spec.get("direction")
    if field_type is not None:
        if field_type not in FIELD_TYPES:
            issues.append((f"{where}.fieldType", f"unknown field type {field_type!r}"))
            return None
        values = FIELD_TYPES[field_type][0] if values is None else values
        direction = FIELD_TYPES[field_type][1] if direction is None else direction
    elif values is None or direction is None:
        issues.append((where, "needs fieldType, or bubbleValues and direction"))
        return None
    if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
        issues.append((f"{where}.bubbleValues", "must be a list of strings"))
    if direction not in ("horizontal", "vertical"):
        issues.append((f"{where}.direction", "must be horizontal or vertical"))
    try:
        labels = expand_labels([str(x) for x in spec.get("fieldLabels", [])])
    except TemplateError as exc:
        issues.extend((f"{where}.{p}", m) for p, m in exc.issues)
        labels = []
    origin = _pair(spec.get("origin"), f"{where}.origin", issues)
    size = _pair(spec.get("bubbleDimensions", list(bubble)), f"{where}.bubbleDimensions", issues)
    gaps = [_number(spec, k, where, 0, issues) for k in ("bubblesGap", "labelsGap")]
    block_empty = spec.get("emptyValue", empty)
    if not isinstance(block_empty, str):
        issues.append((f"{where}.emptyValue", "must be a string"))
    if len(issues) > count:
        return None
    return Block(
        name=where.removeprefix("fieldBlocks."),
        origin=origin,
        labels=labels,
        values=list(values),
        direction="vertical" if direction == "vertical" else "horizontal",
        bubble_gap=gaps[0],
        label_gap=gaps[1],
        bubble_size=size,
        empty_value=str(block_empty),
    )


def _custom_labels(spec: Any, issues: Issues) -> dict[str, list[str]]:
    if not isinstance(spec, dict):
        issues.append(("customLabels", "must be an object"))
        return {}
    groups: dict[str, list[str]] = {}
    for group, members in spec.items():
        try:
            groups[str(group)] = expand_labels([str(m) for m in members])
        except TemplateError as exc:
            issues.extend((f"customLabels.{group}", m) for _, m in exc.issues)
    return groups


def _output_columns(spec: Any, known: set[str], issues: Issues) -> None:
    """``outputColumns`` orders OMRChecker's CSV; here answers are keyed by name, so the
    order changes nothing, but a column naming no field is refused as OMRChecker does."""
    try:
        columns = expand_labels([str(c) for c in spec])
    except TemplateError as exc:
        issues.extend(("outputColumns", m) for _, m in exc.issues)
        return
    missing = [c for c in columns if c not in known]
    if missing:
        issues.append(("outputColumns", f"columns naming no field: {missing}"))


def _preprocessors(spec: Any, markers: Mapping[str, bytes], issues: Issues) -> list[Step]:
    if not isinstance(spec, list):
        issues.append(("preProcessors", "must be a list"))
        return []
    steps: list[Step] = []
    for i, pp in enumerate(spec):
        where = f"preProcessors[{i}]"
        pname = pp.get("name") if isinstance(pp, dict) else None
        options = pp.get("options", {}) if isinstance(pp, dict) else {}
        if pname not in PREPROCESSOR_OPTIONS:
            issues.append((where, f"unsupported preprocessor {pname!r}"))
            continue
        if not isinstance(options, dict):
            issues.append((f"{where}.options", "must be an object"))
            continue
        count = len(issues)
        _unknown(f"{where}.options", options, PREPROCESSOR_OPTIONS[pname], issues)
        step = _STEP_BUILDERS[pname](f"{where}.options", options, markers, issues)
        if step is not None and len(issues) == count:
            steps.append(step)
    return steps


def _ksize(options: Mapping[str, Any], where: str, default: int, issues: Issues) -> int:
    k = options.get("kSize", default)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
        issues.append((f"{where}.kSize", "must be an odd positive integer"))
        return default
    return k


def _gaussian(
    where: str, options: dict[str, Any], _: Mapping[str, bytes], issues: Issues
) -> Step | None:
    k = _pair(options.get("kSize", [3, 3]), f"{where}.kSize", issues, minimum=1)
    if any(int(v) != v or int(v) % 2 == 0 for v in k):
        issues.append((f"{where}.kSize", "must be odd positive integers"))
    # OMRChecker truncates sigmaX to an integer.
    sigma = int(_number(options, "sigmaX", where, 0, issues))
    return Step(op="blur", ksize=(int(k[0]), int(k[1])), sigma_x=sigma)


def _median(
    where: str, options: dict[str, Any], _: Mapping[str, bytes], issues: Issues
) -> Step | None:
    return Step(op="median_blur", ksize=(_ksize(options, where, 5, issues),) * 2)


def _levels(
    where: str, options: dict[str, Any], _: Mapping[str, bytes], issues: Issues
) -> Step | None:
    low, high, gamma = (
        _number(options, k, where, d, issues) for k, d in (("low", 0), ("high", 1), ("gamma", 1))
    )
    for key, value in (("low", low), ("high", high), ("gamma", gamma)):
        if not 0 <= value <= 1:
            issues.append((f"{where}.{key}", "must be within 0..1"))
    if gamma == 0:
        issues.append((f"{where}.gamma", "must be above 0"))
    return Step(op="levels", low=low, high=high, gamma=gamma)


def _crop_page(
    where: str, options: dict[str, Any], _: Mapping[str, bytes], issues: Issues
) -> Step | None:
    k = _pair(options.get("morphKernel", [10, 10]), f"{where}.morphKernel", issues, minimum=1)
    return Step(op="crop_page", morph_kernel=(int(k[0]), int(k[1])))


def _crop_on_markers(
    where: str, options: dict[str, Any], markers: Mapping[str, bytes], issues: Issues
) -> Step | None:
    path = options.get("relativePath")
    if not isinstance(path, str):
        issues.append((f"{where}.relativePath", "required: the marker image's file name"))
        return None
    image = markers.get(path)
    if image is None:
        issues.append((f"{where}.relativePath", f"needs the marker image {path!r}"))
        return None
    low, high = _pair(
        options.get("marker_rescale_range", [35, 100]), f"{where}.marker_rescale_range", issues
    )
    steps = int(_number(options, "marker_rescale_steps", where, 10, issues))
    # OMRChecker's descent per step is an integer number of percent; zero would never end.
    if steps < 1 or int(high) - int(low) < steps:
        issues.append(
            (f"{where}.marker_rescale_steps", "must be 1..(the range's high - low) percent")
        )
    erode = options.get("apply_erode_subtract", True)
    if not isinstance(erode, bool):
        issues.append((f"{where}.apply_erode_subtract", "must be true or false"))
    ratio = options.get("sheetToMarkerWidthRatio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, int | float)):
        issues.append((f"{where}.sheetToMarkerWidthRatio", "must be a number"))
        ratio = None
    if ratio is not None and int(ratio) < 1:
        issues.append((f"{where}.sheetToMarkerWidthRatio", "must be at least 1"))
    return Step(
        op="crop_markers",
        marker_png=base64.b64encode(image).decode(),
        # OMRChecker truncates the ratio to an integer before dividing.
        width_ratio=float(int(ratio)) if ratio is not None else None,
        min_match=_number(options, "min_matching_threshold", where, 0.3, issues),
        max_variation=_number(options, "max_matching_variation", where, 0.41, issues),
        rescale_range=(int(low), int(high)),
        rescale_steps=steps,
        erode_subtract=bool(erode),
    )


_STEP_BUILDERS: dict[
    str, Callable[[str, dict[str, Any], Mapping[str, bytes], Issues], Step | None]
] = {
    "GaussianBlur": _gaussian,
    "MedianBlur": _median,
    "Levels": _levels,
    "CropPage": _crop_page,
    "CropOnMarkers": _crop_on_markers,
}


def _int_in(
    section: Mapping[str, Any], key: str, default: int, bounds: tuple[int, int]
) -> tuple[int, str | None]:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        return default, "must be an integer"
    if not bounds[0] <= value <= bounds[1]:
        return default, f"must be within {bounds[0]}..{bounds[1]}"
    return value, None


def _config(config: dict[str, Any], issues: Issues) -> dict[str, Any]:
    """The settings of ``config.json`` that change a reading, as ``Template`` fields."""
    _unknown("config", config, set(CONFIG_KEYS), issues)
    sections: dict[str, dict[str, Any]] = {}
    for name, keys in CONFIG_KEYS.items():
        section = config.get(name, {})
        if not isinstance(section, dict):
            issues.append((f"config.{name}", "must be an object"))
            section = {}
        _unknown(f"config.{name}", section, keys, issues)
        sections[name] = section
    out: dict[str, Any] = {}
    checks = {
        ("dimensions", "processing_width"): (666, (10, 10000)),
        ("dimensions", "processing_height"): (820, (10, 10000)),
        ("dimensions", "display_width"): (1640, (1, 100000)),
        ("dimensions", "display_height"): (2480, (1, 100000)),
        ("threshold_params", "MIN_JUMP"): (25, (10, 100)),
        ("threshold_params", "MIN_GAP"): (30, (10, 100)),
        ("threshold_params", "CONFIDENT_SURPLUS"): (5, (0, 20)),
        ("threshold_params", "JUMP_DELTA"): (30, (10, 100)),
        ("alignment_params", "match_col"): (5, (0, 10)),
        ("alignment_params", "max_steps"): (20, (1, 100)),
        ("alignment_params", "stride"): (1, (1, 10)),
        ("alignment_params", "thickness"): (3, (1, 10)),
        ("outputs", "show_image_level"): (0, (0, 6)),
        ("outputs", "save_image_level"): (0, (0, 6)),
    }
    values: dict[str, int] = {}
    for (section, key), (default, bounds) in checks.items():
        value, problem = _int_in(sections[section], key, default, bounds)
        if problem:
            issues.append((f"config.{section}.{key}", problem))
        values[key] = value
    threshold = sections["threshold_params"]
    gamma = threshold.get("GAMMA_LOW", 0.7)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 <= gamma <= 1:
        issues.append(("config.threshold_params.GAMMA_LOW", "must be a number within 0..1"))
    page_type = threshold.get("PAGE_TYPE_FOR_THRESHOLD", "white")
    if page_type not in PAGE_THRESHOLDS:
        issues.append(("config.threshold_params.PAGE_TYPE_FOR_THRESHOLD", "white or black"))
        page_type = "white"
    for section, key, refusal in (
        ("alignment_params", "auto_align", "is not supported: align with a preprocessor"),
        (
            "outputs",
            "filter_out_multimarked_files",
            "is not supported: a multiply marked answer always goes to review",
        ),
        ("outputs", "save_detections", ""),
    ):
        flag = sections[section].get(key, key == "save_detections")
        if not isinstance(flag, bool):
            issues.append((f"config.{section}.{key}", "must be true or false"))
        elif flag and refusal:
            issues.append((f"config.{section}.{key}", f"true {refusal}"))
    out["processing_size"] = (values["processing_width"], values["processing_height"])
    out["min_jump"] = float(values["MIN_JUMP"])
    out["min_gap"] = float(values["MIN_GAP"])
    out["confident_surplus"] = float(values["CONFIDENT_SURPLUS"])
    out["default_threshold"] = PAGE_THRESHOLDS[page_type]
    return out
