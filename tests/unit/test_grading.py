"""The pure grading functions: answer keys, score values, standings and statistics."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest

from pipelines.grading import (
    InvalidAnswerKey,
    check_score,
    distribution,
    is_correct,
    normalize_answer,
    normalize_answer_key,
    percentile,
    rank_scores,
    score_stats,
    score_text,
    to_score,
)

D = Decimal

# --- answers and keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("circled", "plain"), [("①", "1"), ("②", "2"), ("③", "3"), ("④", "4"), ("⑤", "5")]
)
def test_circled_digits_are_the_plain_digits(circled: str, plain: str) -> None:
    assert normalize_answer(circled) == normalize_answer(plain) == plain


def test_answer_normalisation_is_nfkc_and_whitespace() -> None:
    assert normalize_answer("３") == "3"  # full-width
    assert normalize_answer("⑩") == "10"
    assert normalize_answer("  x =  ３ ") == "x = 3"
    assert normalize_answer("CO") != normalize_answer("Co")  # case is kept


def test_key_is_normalised_deduplicated_and_sorted() -> None:
    key = normalize_answer_key(
        {"10": ["②"], "2": ["④", "1", "4", " ① "], "①": ["⑤"], "03": ["３"]}, 10
    )
    assert key == {"1": ["5"], "2": ["1", "4"], "3": ["3"], "10": ["2"]}
    assert list(key) == ["1", "2", "3", "10"]
    # The same key written with circled digits or plain digits is the same key.
    assert normalize_answer_key({"1": ["⑤"]}, 5) == normalize_answer_key({"1": ["5"]}, 5)


def test_partial_keys_and_text_answers_are_fine() -> None:
    assert normalize_answer_key({"3": ["x=2", "2"]}, 5) == {"3": ["2", "x=2"]}
    assert normalize_answer_key({}, 5) == {}
    assert normalize_answer_key({}, None) == {}


def test_every_key_problem_is_listed() -> None:
    with pytest.raises(InvalidAnswerKey) as info:
        normalize_answer_key(
            {
                "0": ["1"],  # out of range
                "6": ["1"],  # out of range
                "a": ["1"],  # not a number
                "-1": ["1"],  # not a positive integer
                "1": ["1"],
                "01": ["2"],  # question 1 again
                "2": [],  # no answers
                "3": ["1", " "],  # an empty answer
                "4": ["x" * 101],  # too long
                "5": [str(i) for i in range(21)],  # too many
            },
            5,
        )
    paths = [path for path, _ in info.value.issues]
    assert paths == ["0", "6", "a", "-1", "01", "2", "3[1]", "4[0]", "5"]


def test_a_key_needs_a_question_count() -> None:
    with pytest.raises(InvalidAnswerKey) as info:
        normalize_answer_key({"1": ["3"]}, None)
    assert info.value.issues == [("", "needs question_count (the number of questions)")]


def test_is_correct_compares_normalised_answers() -> None:
    key = normalize_answer_key({"1": ["③"], "2": ["1", "4"]}, 2)
    assert is_correct(key, "1", "3") and is_correct(key, "1", "③")
    assert is_correct(key, "2", "④") and not is_correct(key, "2", "2")
    assert not is_correct(key, "3", "1")


# --- score values ----------------------------------------------------------------------


def test_score_values() -> None:
    assert to_score(85.1) == D("85.10") and str(to_score(85.1)) == "85.10"
    assert to_score(85) == D("85.00")
    assert to_score("0.5") == D("0.50")
    assert str(to_score(-0.0)) == "0.00"
    assert to_score(57 * 0.01) == D("0.57") and to_score(0.1 + 0.2) == D("0.30")
    with pytest.raises(ValueError, match="two decimal places"):
        to_score(0.571)
    assert score_text(D(85)) == "85.00" and score_text(D("92.5")) == "92.50"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (85.123, "at most two decimal places"),
        (-1, "must not be negative"),
        (100.01, "must be at most the exam's max_score (100)"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        ("abc", "must be a number"),
        (10**9, "must be at most 99999.99"),
    ],
)
def test_bad_scores(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_score(value, D(100))
    assert str(info.value) == message


def test_score_bounds_are_inclusive() -> None:
    assert check_score(0, D(100)) == 0
    assert check_score(100, D(100)) == 100
    assert check_score(29.5, D("29.50")) == D("29.50")


# --- standings -------------------------------------------------------------------------


def test_competition_rank_and_percentile_with_ties() -> None:
    standings = rank_scores([80, 90, 70, 80])  # the input order is kept
    assert [s.rank for s in standings] == [2, 1, 4, 2]
    assert [s.below for s in standings] == [1, 3, 0, 1]
    assert [s.percentile for s in standings] == [25.0, 75.0, 0.0, 25.0]
    assert {s.count for s in standings} == {4}


def test_rank_edge_cases() -> None:
    assert rank_scores([]) == []
    (only,) = rank_scores([55])
    assert (only.rank, only.below, only.percentile) == (1, 0, 0.0)
    assert [s.rank for s in rank_scores([50, 50, 50])] == [1, 1, 1]
    assert [s.percentile for s in rank_scores([50, 50, 50])] == [0.0, 0.0, 0.0]
    assert [s.rank for s in rank_scores([D("99.99"), D("100.00"), 100])] == [3, 1, 1]


def test_percentile_definition() -> None:
    assert percentile(0, 0) == 0.0
    assert percentile(1, 3) == 100 / 3
    assert percentile(2, 4) == 50.0


# --- statistics ------------------------------------------------------------------------


def test_stats_known_values() -> None:
    st = score_stats([2, 4, 4, 4, 5, 5, 7, 9], D(10), bins=5)
    assert st.count == 8
    assert st.mean == 5 and st.median == D("4.5") and st.stdev == 2  # population
    assert st.min == 2 and st.max == 9
    assert [(b.lower, b.upper, b.count) for b in st.distribution] == [
        (0, 2, 0),
        (2, 4, 1),
        (4, 6, 5),
        (6, 8, 1),
        (8, 10, 1),
    ]


def test_stats_odd_count_median_and_ties() -> None:
    st = score_stats([D("70.5"), 90, 80, 80, 60], D(100))
    assert st.median == 80 and st.mean == D("76.1")
    assert st.min == D("60") and st.max == 90


def test_stats_one_score_and_no_scores() -> None:
    one = score_stats([73], D(100))
    assert (one.count, one.mean, one.median, one.stdev, one.min, one.max) == (1, 73, 73, 0, 73, 73)
    assert sum(b.count for b in one.distribution) == 1 and one.distribution[7].count == 1
    none = score_stats([], D(100))
    assert (none.count, none.mean, none.median, none.stdev, none.min, none.max) == (
        0,
        None,
        None,
        None,
        None,
        None,
    )
    assert [b.count for b in none.distribution] == [0] * 10


def test_stdev_is_the_population_one() -> None:
    rng = random.Random(7)
    values = [D(rng.randint(0, 10000)) / 100 for _ in range(200)]
    floats = [float(v) for v in values]
    mean = sum(floats) / len(floats)
    expected = math.sqrt(sum((x - mean) ** 2 for x in floats) / len(floats))
    st = score_stats(values, D(100))
    assert math.isclose(float(st.stdev or 0), expected, rel_tol=1e-12)
    assert math.isclose(float(st.mean or 0), mean, rel_tol=1e-12)


def test_distribution_edges() -> None:
    # [0, 10), [10, 20), ... [90, 100]: an edge belongs to the bin above; max to the last.
    bins = distribution([D(0), D("9.99"), D(10), D(90), D(100)], D(100))
    assert [b.count for b in bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    # A max score that does not divide evenly: exact decimal edges.
    bins = distribution([D("2.99"), D(3), D(30)], D(30), 10)
    assert [b.count for b in bins[:2]] == [1, 1] and bins[-1].count == 1
    assert bins[1].lower == 3 and bins[-1].upper == 30
    with pytest.raises(ValueError):
        distribution([], D(100), 0)
