"""Scoring a read sheet against the exam's answer key and marking.

The key is the exam's ``answer_key`` (question -> accepted answers, normalised by
``pipelines.grading``: ``"⑤"`` is ``"5"``). The *marking* says what each outcome is worth,
with OMRChecker's ``marking_schemes`` semantics:

* ``default`` -- ``{"correct", "incorrect", "unmarked"}`` points; values are numbers or
  fractions (``"3/2"``, ``"-2/3"``), so negative marking is a negative ``incorrect``;
* ``sections`` -- the same for a list of questions, overriding the default for them;
* ``points`` -- a question's own ``correct`` points (배점), overriding both;
* ``answer_points`` -- points per accepted answer of a question (OMRChecker's
  ``[["B", 2], ["C", "3/2"]]``): a marked answer listed there earns its own points.

With no marking at all every keyed question is worth ``max_score / keyed questions`` and
wrong or blank answers 0 -- the usual 학원 test. Several marked bubbles are one answer
(``"24"``): correct only if the key accepts exactly that. Arithmetic is exact (fractions);
the total is rounded to two places once, at the end.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import msgspec

from pipelines.grading import normalize_answer
from pipelines.omr.template import TemplateError, expand_labels

Number = str | int | float


class Scheme(msgspec.Struct, forbid_unknown_fields=True):
    correct: Number = 1
    incorrect: Number = 0
    unmarked: Number = 0


class Section(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    questions: list[str]
    correct: Number = 1
    incorrect: Number = 0
    unmarked: Number = 0


class Marking(msgspec.Struct, forbid_unknown_fields=True):
    default: Scheme | None = None
    sections: list[Section] = []
    points: dict[str, Number] = {}
    answer_points: dict[str, dict[str, Number]] = {}


class InvalidMarking(ValueError):
    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in issues))
        self.issues = issues


def fraction(value: Number) -> Fraction:
    """``2``, ``"-1"``, ``"3/2"``, ``"-2/3"``, ``0.5`` as an exact fraction."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a fraction like 3/2")
    try:
        if isinstance(value, float):
            return Fraction(str(value))
        return Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{value!r} is not a number or a fraction like 3/2") from None


def parse_marking(data: Mapping[str, Any] | None, question_count: int | None) -> Marking | None:
    """A checked marking (``InvalidMarking`` lists every problem), or ``None``."""
    if data is None:
        return None
    try:
        marking = msgspec.convert(dict(data), Marking)
    except msgspec.ValidationError as exc:
        raise InvalidMarking([("marking", str(exc))]) from None
    issues: list[tuple[str, str]] = []

    def number(path: str, value: Number) -> None:
        try:
            f = fraction(value)
            if abs(f) > 100000:
                issues.append((path, "at most 100000 in size"))
        except ValueError as exc:
            issues.append((path, str(exc)))

    def question(path: str, q: str) -> str | None:
        text = normalize_answer(q)
        if not text.isdigit() or (question_count and not 1 <= int(text) <= question_count):
            issues.append((path, f"{q!r} is not a question of this exam"))
            return None
        return str(int(text))

    if marking.default:
        for k in ("correct", "incorrect", "unmarked"):
            number(f"marking.default.{k}", getattr(marking.default, k))
    seen: dict[str, str] = {}
    for i, s in enumerate(marking.sections):
        for k in ("correct", "incorrect", "unmarked"):
            number(f"marking.sections[{i}].{k}", getattr(s, k))
        clean = []
        for q in s.questions:
            n = question(f"marking.sections[{i}].questions", q)
            if n is None:
                continue
            if n in seen:
                issues.append((f"marking.sections[{i}]", f"question {n} is also in {seen[n]}"))
            seen[n] = s.name
            clean.append(n)
        s.questions = clean
    points: dict[str, Number] = {}
    for q, v in marking.points.items():
        n = question("marking.points", q)
        number(f"marking.points.{q}", v)
        if n:
            points[n] = v
    marking.points = points
    answer_points: dict[str, dict[str, Number]] = {}
    for q, answers in marking.answer_points.items():
        n = question("marking.answer_points", q)
        for a, v in answers.items():
            number(f"marking.answer_points.{q}.{a}", v)
        if n:
            answer_points[n] = {normalize_answer(a): v for a, v in answers.items()}
    marking.answer_points = answer_points
    if issues:
        raise InvalidMarking(issues)
    return marking


@dataclass(frozen=True)
class QuestionResult:
    question: str
    marked: str
    accepted: tuple[str, ...]
    verdict: str  # correct | incorrect | unmarked | unkeyed
    points: Fraction


@dataclass(frozen=True)
class ScoreResult:
    questions: list[QuestionResult]
    raw_total: Fraction  # before clamping to [0, max_score]
    total: Decimal  # two places, within [0, max_score]

    @property
    def correct(self) -> int:
        return sum(1 for q in self.questions if q.verdict == "correct")


def _scheme_for(
    marking: Marking | None, question: str, default_correct: Fraction
) -> tuple[Fraction, Fraction, Fraction]:
    if marking is None:
        return default_correct, Fraction(0), Fraction(0)
    base = marking.default or Scheme(correct=str(default_correct))
    correct, incorrect, unmarked = base.correct, base.incorrect, base.unmarked
    for s in marking.sections:
        if question in s.questions:
            correct, incorrect, unmarked = s.correct, s.incorrect, s.unmarked
            break
    if question in marking.points:
        correct = marking.points[question]
    return fraction(correct), fraction(incorrect), fraction(unmarked)


def score_sheet(
    answers: Mapping[str, str],
    key: Mapping[str, Sequence[str]],
    marking: Marking | None,
    max_score: Decimal | None,
) -> ScoreResult:
    """Score ``answers`` (question -> marked answer, ``""`` for none) against ``key``.

    Questions without a key entry are reported as ``unkeyed`` and score nothing. The total
    is clamped to ``[0, max_score]`` (a score cannot be negative here); ``raw_total`` keeps
    the exact sum, as negative marking may take it below zero.
    """
    keyed = [q for q in key if key[q]]
    default_correct = (
        Fraction(str(max_score)) / len(keyed) if max_score is not None and keyed else Fraction(1)
    )
    results: list[QuestionResult] = []
    total = Fraction(0)
    questions = sorted(set(key) | set(answers), key=lambda q: (len(q), q))
    for q in questions:
        marked = normalize_answer(answers.get(q, ""))
        accepted = tuple(normalize_answer(a) for a in key.get(q, ()))
        correct, incorrect, unmarked = _scheme_for(marking, q, default_correct)
        special = marking.answer_points.get(q, {}) if marking else {}
        if not accepted:
            verdict, points = "unkeyed", Fraction(0)
        elif not marked:
            verdict, points = "unmarked", unmarked
        elif marked in special:
            verdict, points = "correct", fraction(special[marked])
        elif marked in accepted:
            verdict, points = "correct", correct
        else:
            verdict, points = "incorrect", incorrect
        total += points
        results.append(QuestionResult(q, marked, accepted, verdict, points))
    clamped = max(total, Fraction(0))
    if max_score is not None:
        clamped = min(clamped, Fraction(str(max_score)))
    value = (Decimal(clamped.numerator) / Decimal(clamped.denominator)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    return ScoreResult(results, total, value)


# --- OMRChecker evaluation.json ----------------------------------------------------------


@dataclass
class ImportedKey:
    """An OMRChecker answer key in our terms: ``labels[i]`` is question ``i + 1``."""

    labels: list[str]
    key: dict[str, list[str]]
    marking: Marking


def _answer_entries(raw: Any) -> tuple[list[str], dict[str, Number]]:
    """One ``answers_in_order`` item: ``"B"``, ``["A", "C"]`` or
    ``[["B", 2], ["C", "3/2"]]`` -> accepted answers and per-answer points."""
    if isinstance(raw, str):
        return [raw], {}
    if isinstance(raw, list) and raw and all(isinstance(a, list) for a in raw):
        points = {str(a[0]): a[1] for a in raw}
        return list(points), points
    if isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        return list(raw), {}
    raise TemplateError([("answers_in_order", f"unsupported answer {raw!r}")])


def _csv_answer(text: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        return json.loads(text.replace("'", '"'))
    if "," in text:
        return [a.strip() for a in text.split(",")]
    return text


def import_omrchecker_evaluation(
    evaluation: bytes | str | Mapping[str, Any],
    questions: Sequence[str],
    *,
    csv_text: str | None = None,
    key_response: Mapping[str, str] | None = None,
) -> ImportedKey:
    """Our key and marking from an OMRChecker ``evaluation.json``.

    ``questions`` are the template's question fields (its order numbers our questions).
    The answers come from ``answers_in_order`` (``source_type: custom``), from the key CSV
    (``csv_text``), or from a filled key sheet read like any other (``key_response``,
    OMRChecker's ``answer_key_image_path``).
    """
    try:
        return _import_evaluation(evaluation, questions, csv_text, key_response)
    except TemplateError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise TemplateError([("", f"not an OMRChecker evaluation: {exc!r}")]) from None


def _import_evaluation(
    evaluation: bytes | str | Mapping[str, Any],
    questions: Sequence[str],
    csv_text: str | None,
    key_response: Mapping[str, str] | None,
) -> ImportedKey:
    raw = dict(evaluation) if isinstance(evaluation, Mapping) else json.loads(evaluation)
    options = raw.get("options", {})
    by_label: dict[str, Any] = {}
    if "answers_in_order" in options:
        labels = expand_labels(options.get("questions_in_order", []))
        by_label = dict(zip(labels, options["answers_in_order"], strict=False))
    elif csv_text is not None:
        # newline="": the reader itself ends a line at CR, LF or CRLF (a CR from an old
        # Mac export stopped it).
        try:
            for row in csv.reader(io.StringIO(csv_text, newline="")):
                if len(row) >= 2 and row[0].strip():
                    by_label[row[0].strip()] = _csv_answer(",".join(row[1:]))
        except csv.Error as exc:
            raise TemplateError([("answer_key_csv", f"not a CSV: {exc}")]) from None
    elif key_response is not None:
        labels = expand_labels(options.get("questions_in_order", list(questions)))
        by_label = {label: key_response.get(label, "") for label in labels}
    else:
        raise TemplateError(
            [("evaluation", "no answers: needs answers_in_order, a CSV or a key sheet")]
        )
    lower = {q.lower(): q for q in questions}
    order = {q: i + 1 for i, q in enumerate(questions)}
    key: dict[str, list[str]] = {}
    answer_points: dict[str, dict[str, Number]] = {}
    for label, answer in by_label.items():
        field = label if label in order else lower.get(label.lower())
        if field is None:
            raise TemplateError([("evaluation", f"question {label!r} is not in the template")])
        accepted, points = _answer_entries(answer)
        accepted = [a for a in accepted if a]
        if not accepted:
            continue
        number = str(order[field])
        key[number] = accepted
        if points:
            answer_points[number] = points
    schemes = raw.get("marking_schemes", {})
    default = schemes.get("DEFAULT")
    sections = []
    for name, spec in schemes.items():
        if name == "DEFAULT":
            continue
        members = []
        for label in expand_labels(spec.get("questions", [])):
            field = label if label in order else lower.get(label.lower())
            if field is not None:
                members.append(str(order[field]))
        m = spec.get("marking", {})
        sections.append(Section(name=name, questions=members, **{k: m[k] for k in m}))
    marking = Marking(
        default=Scheme(**default) if default else None,
        sections=sections,
        answer_points=answer_points,
    )
    return ImportedKey(list(questions), key, marking)
