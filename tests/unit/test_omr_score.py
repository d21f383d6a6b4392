"""Scoring with OMRChecker's marking semantics, and our templates' JSON checks."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from pipelines.omr.card import korean_card
from pipelines.omr.score import (
    InvalidMarking,
    Marking,
    Scheme,
    Section,
    import_omrchecker_evaluation,
    parse_marking,
    score_sheet,
)
from pipelines.omr.template import TemplateError, parse_template, template_json

KEY = {"1": ["3"], "2": ["1", "4"], "3": ["5"], "4": ["2"]}


def test_default_marking_shares_max_score_over_keyed_questions() -> None:
    result = score_sheet({"1": "3", "2": "4", "3": "⑤", "4": ""}, KEY, None, Decimal(100))
    assert [q.verdict for q in result.questions] == ["correct", "correct", "correct", "unmarked"]
    assert result.total == Decimal("75.00") and result.correct == 3


def test_circled_and_plain_digits_are_the_same_answer() -> None:
    key = {"1": ["⑤"], "2": ["２"]}
    result = score_sheet(
        {"1": "5", "2": "②"}, {k: ["5"] if k == "1" else ["2"] for k in key}, None, Decimal(10)
    )
    assert result.total == Decimal("10.00")


def test_negative_marking_with_fractions_is_exact() -> None:
    marking = parse_marking({"default": {"correct": "2", "incorrect": "-2/3", "unmarked": 0}}, 4)
    result = score_sheet({"1": "3", "2": "2", "3": "1", "4": ""}, KEY, marking, None)
    assert result.raw_total == Fraction(2) - Fraction(4, 3)
    assert result.total == Decimal("0.67")


def test_total_is_clamped_to_zero_and_max_score() -> None:
    marking = parse_marking({"default": {"correct": 1, "incorrect": -5}}, 4)
    result = score_sheet({"1": "1", "2": "2", "3": "1", "4": "1"}, KEY, marking, Decimal(10))
    assert result.raw_total == -20 and result.total == Decimal("0.00")
    generous = parse_marking({"default": {"correct": 50}}, 4)
    result = score_sheet({"1": "3", "2": "1", "3": "5", "4": "2"}, KEY, generous, Decimal(100))
    assert result.raw_total == 200 and result.total == Decimal("100.00")


def test_sections_points_and_answer_points() -> None:
    marking = parse_marking(
        {
            "default": {"correct": 1},
            "sections": [{"name": "hard", "questions": ["3", "4"], "correct": 3, "incorrect": -1}],
            "points": {"4": 4},
            "answer_points": {"2": {"1": 2, "④": "3/2"}},
        },
        4,
    )
    assert marking is not None
    result = score_sheet({"1": "3", "2": "4", "3": "1", "4": "2"}, KEY, marking, None)
    assert [q.points for q in result.questions] == [1, Fraction(3, 2), -1, 4]


def test_multiple_marks_are_one_answer() -> None:
    key = {"1": ["B", "C", "BC"], "2": ["A"]}
    result = score_sheet({"1": "BC", "2": "AB"}, key, None, None)
    assert [q.verdict for q in result.questions] == ["correct", "incorrect"]


def test_bad_marking_lists_every_problem() -> None:
    with pytest.raises(InvalidMarking) as err:
        parse_marking(
            {
                "default": {"correct": "x"},
                "sections": [
                    {"name": "a", "questions": ["1", "99"]},
                    {"name": "b", "questions": ["1"]},
                ],
                "points": {"zz": 1},
            },
            10,
        )
    paths = [p for p, _ in err.value.issues]
    assert "marking.default.correct" in paths
    assert "marking.sections[0].questions" in paths
    assert "marking.sections[1]" in paths
    assert "marking.points" in paths


def test_evaluation_import_maps_labels_to_question_numbers() -> None:
    imported = import_omrchecker_evaluation(
        {
            "source_type": "custom",
            "options": {
                "questions_in_order": ["q1..3"],
                "answers_in_order": ["C", ["A", "B"], [["B", 2], ["C", "3/2"]]],
            },
            "marking_schemes": {"DEFAULT": {"correct": "3", "incorrect": "-1", "unmarked": "0"}},
        },
        ["q1", "q2", "q3"],
    )
    assert imported.key == {"1": ["C"], "2": ["A", "B"], "3": ["B", "C"]}
    assert imported.marking.default == Scheme("3", "-1", "0")
    assert imported.marking.answer_points == {"3": {"B": 2, "C": "3/2"}}
    assert isinstance(imported.marking, Marking)
    assert Section  # the sections' type is part of the public marking


def test_template_json_round_trips_and_errors_are_listed() -> None:
    card = korean_card(questions=30)
    again = parse_template(template_json(card))
    assert again == card
    broken = template_json(card)
    broken["page"] = [5, 5]
    broken["questions"] = ["999"]
    broken["blocks"][1]["values"] = ["1", "1"]
    with pytest.raises(TemplateError) as err:
        parse_template(broken)
    paths = [p for p, _ in err.value.issues]
    assert "page" in paths and "questions" in paths and "blocks[1].values" in paths
    with pytest.raises(TemplateError):
        parse_template(b"{not json")


def test_malformed_omrchecker_files_are_template_errors() -> None:
    from pipelines.omr.omrchecker import import_omrchecker

    with pytest.raises(TemplateError):
        import_omrchecker(
            {
                "pageDimensions": [100, 100],
                "fieldBlocks": {
                    "a": {"fieldType": "QTYPE_MCQ4", "origin": ["x", 1], "fieldLabels": ["q1"]}
                },
            },
            name="x",
        )
    with pytest.raises(TemplateError):
        import_omrchecker_evaluation({"options": {"questions_in_order": 5}}, ["q1"])
    with pytest.raises(TemplateError):
        import_omrchecker_evaluation(
            {
                "options": {"questions_in_order": ["q1"], "answers_in_order": ["A"]},
                "marking_schemes": {"S": {"questions": ["q1"], "marking": {"bogus": 1}}},
            },
            ["q1"],
        )
