"""Grading: answer keys, score values, standings and exam statistics. Pure functions, no I/O.

Definitions (the API documents and uses exactly these):

* **rank** -- standard competition ranking ("1224"), highest score first: one plus the
  number of scores strictly higher. Equal scores share a rank; the next rank skips.
* **percentile** -- the percentage of the exam's scores *strictly below* this one:
  ``100 * below / count``, in ``[0, 100)``. The lowest score (and a lone score) is 0; tied
  scores share a percentile. It is not a "top x%" figure.
* **standard deviation** -- the *population* standard deviation (divide by N, not N - 1):
  an exam's scores are the whole group being described, not a sample of a larger one.
* **median** -- the middle score, or the mean of the two middle scores.
* **distribution** -- ``bins`` equal-width bins over ``[0, max_score]``; a bin covers
  ``[lower, upper)``, the last one ``[lower, max_score]``.

Answer keys map a question number to its accepted answers, ``{"1": ["3"], "2": ["1", "4"]}``
(several accepted answers per question are allowed). Answers are compared after
``normalize_answer``: Unicode NFKC, so the circled ``①``…``⑳`` and full-width ``１`` are the
digits they show, and whitespace is collapsed. Case is kept (``"CO"`` and ``"Co"`` differ in a
chemistry short answer).

Per-question weights (배점) are deliberately not part of the key: the key stays
``question -> answers``, and weights, sections and negative marking live in the exam's
separate ``marking`` (``pipelines.omr.score``; default: equal weights), set with
``PUT /api/v1/exams/{id}/omr``.
"""

from __future__ import annotations

import bisect
import statistics
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

MAX_QUESTIONS = 500
MAX_ANSWERS_PER_QUESTION = 20
MAX_ANSWER_LENGTH = 100
# exam.max_score and score.score are numeric(7, 2).
SCORE_PLACES = Decimal("0.01")
MAX_SCORE_VALUE = Decimal("99999.99")
FLOAT_NOISE = Decimal("1e-6")


# --- answer keys -----------------------------------------------------------------------


class InvalidAnswerKey(ValueError):
    """Every problem of an answer key: ``issues`` is ``[(path, message)]``, where ``path`` is
    the question as the caller wrote it (``"3"``, or ``"3[1]"`` for its second answer)."""

    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in issues))
        self.issues = issues


def normalize_answer(answer: str) -> str:
    """One answer in canonical form: NFKC (``"⑤"`` → ``"5"``, ``"３"`` → ``"3"``), then
    whitespace trimmed and collapsed. No hand-written table: Unicode defines the mapping."""
    return " ".join(unicodedata.normalize("NFKC", answer).split())


def _answer_order(answer: str) -> tuple[int, int, str]:
    if answer.isascii() and answer.isdigit():
        return (0, int(answer), answer)
    return (1, 0, answer)


def normalize_answer_key(
    key: Mapping[str, Sequence[str]], question_count: int | None
) -> dict[str, list[str]]:
    """The canonical form of an answer key, or ``InvalidAnswerKey`` listing every problem.

    * Question numbers are NFKC-normalised decimal integers (``"01"`` and ``"①"`` are
      question ``"1"``) within ``1..question_count``; the same question twice is an error.
    * Each question needs 1..``MAX_ANSWERS_PER_QUESTION`` non-empty answers of at most
      ``MAX_ANSWER_LENGTH`` characters. Answers equal after normalisation are kept once, and
      sorted (numbers numerically), so equal keys compare equal.
    * Not every question needs an answer (a key may be entered in several steps).
    """
    issues: list[tuple[str, str]] = []
    if question_count is None:
        if key:
            issues.append(("", "needs question_count (the number of questions)"))
        _raise_if(issues)
        return {}
    out: dict[int, list[str]] = {}
    for raw_question, answers in key.items():
        question_text = normalize_answer(raw_question)
        if not (question_text.isascii() and question_text.isdigit()):
            issues.append((raw_question, "a question number must be a positive integer"))
            continue
        number = int(question_text)
        if not 1 <= number <= question_count:
            issues.append((raw_question, f"question {number} is not within 1..{question_count}"))
            continue
        if number in out:
            issues.append((raw_question, f"question {number} is listed twice"))
            continue
        if not answers:
            issues.append((raw_question, "needs at least one accepted answer"))
            continue
        if len(answers) > MAX_ANSWERS_PER_QUESTION:
            issues.append((raw_question, f"at most {MAX_ANSWERS_PER_QUESTION} accepted answers"))
            continue
        accepted: set[str] = set()
        ok = True
        for i, answer in enumerate(answers):
            text = normalize_answer(answer)
            if not text:
                issues.append((f"{raw_question}[{i}]", "an answer must not be empty"))
                ok = False
            elif len(text) > MAX_ANSWER_LENGTH:
                issues.append((f"{raw_question}[{i}]", f"at most {MAX_ANSWER_LENGTH} characters"))
                ok = False
            accepted.add(text)
        if ok:
            out[number] = sorted(accepted, key=_answer_order)
    _raise_if(issues)
    return {str(q): out[q] for q in sorted(out)}


def _raise_if(issues: list[tuple[str, str]]) -> None:
    if issues:
        raise InvalidAnswerKey(issues)


def is_correct(key: Mapping[str, Sequence[str]], question: str, answer: str) -> bool:
    """Whether ``answer`` is accepted for ``question`` of a normalised key."""
    return normalize_answer(answer) in key.get(question, ())


# --- score values ----------------------------------------------------------------------


def to_score(value: Any) -> Decimal:
    """A JSON number (or numeric string) as an exact two-place decimal, or ``ValueError``
    with a message for the client. Floats go through their shortest repr (``85.1`` is
    ``Decimal("85.1")``, not the binary approximation). Meant for non-negative values (scores
    and max scores): anything beyond numeric(7, 2) either way is refused."""
    try:
        number = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ValueError("must be a number") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number > MAX_SCORE_VALUE:
        raise ValueError(f"must be at most {MAX_SCORE_VALUE}")
    if number < -MAX_SCORE_VALUE:
        raise ValueError("must not be negative")
    quantized = number.quantize(SCORE_PLACES)
    # A float computed by a client carries binary noise (0.57 arrives as 0.5700000000000001):
    # within FLOAT_NOISE of two places, it is that value; a real third place is 0.001 away.
    off = abs(quantized - number)
    if off and not (isinstance(value, float) and off < FLOAT_NOISE):
        raise ValueError("at most two decimal places")
    return quantized + 0  # + 0 turns -0.00 into 0.00


def check_score(value: Any, max_score: Decimal) -> Decimal:
    """A score for an exam out of ``max_score``: ``0 <= score <= max_score``, two places."""
    score = to_score(value)
    if score < 0:
        raise ValueError("must not be negative")
    if score > max_score:
        raise ValueError(f"must be at most the exam's max_score ({max_score})")
    return score


def score_text(score: Decimal) -> str:
    """The canonical text of a stored score (``85`` → ``"85.00"``), as Postgres prints a
    numeric(7, 2): the form used in event dedupe keys."""
    return str(to_score(score))


# --- standings and statistics ----------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    rank: int  # competition rank, 1 = highest
    below: int  # scores strictly below
    count: int  # scores in the exam
    percentile: float  # 100 * below / count


def percentile(below: int, count: int) -> float:
    """Share of the scores strictly below, in percent (0 when there are no scores)."""
    return 100 * below / count if count else 0.0


def rank_scores(scores: Sequence[Decimal | float | int]) -> list[Standing]:
    """The standing of every score, in the order given (see the module's definitions)."""
    ordered = sorted(Decimal(str(s)) for s in scores)
    n = len(ordered)
    out = []
    for s in scores:
        value = Decimal(str(s))
        below = bisect.bisect_left(ordered, value)
        above = n - bisect.bisect_right(ordered, value)
        out.append(Standing(rank=above + 1, below=below, count=n, percentile=percentile(below, n)))
    return out


@dataclass(frozen=True)
class Bin:
    lower: Decimal
    upper: Decimal
    count: int


@dataclass(frozen=True)
class ScoreStats:
    count: int
    mean: Decimal | None
    median: Decimal | None
    stdev: Decimal | None  # population
    min: Decimal | None
    max: Decimal | None
    distribution: list[Bin]


def distribution(scores: Sequence[Decimal], max_score: Decimal, bins: int = 10) -> list[Bin]:
    """Counts in ``bins`` equal-width bins over ``[0, max_score]``, computed exactly in
    decimal (no float edge effects): a bin is ``[lower, upper)``, the last ``[lower, max]``.
    A score outside the range (max_score lowered by hand in the database) is clamped."""
    if bins < 1 or max_score <= 0:
        raise ValueError("bins must be >= 1 and max_score > 0")
    counts = [0] * bins
    for s in scores:
        index = int((Decimal(s) * bins / max_score).to_integral_value(rounding=ROUND_FLOOR))
        counts[min(max(index, 0), bins - 1)] += 1
    return [
        Bin(lower=max_score * i / bins, upper=max_score * (i + 1) / bins, count=counts[i])
        for i in range(bins)
    ]


def score_stats(
    scores: Sequence[Decimal | float | int], max_score: Decimal, bins: int = 10
) -> ScoreStats:
    """Count, mean, median, population standard deviation, min, max and distribution.

    Computed in exact decimal arithmetic (``statistics`` keeps ``Decimal`` inputs decimal).
    With no scores every figure but the (all-zero) distribution is ``None``; with one score
    the standard deviation is 0.
    """
    values = [Decimal(str(s)) for s in scores]
    dist = distribution(values, Decimal(max_score), bins)
    if not values:
        return ScoreStats(0, None, None, None, None, None, dist)
    return ScoreStats(
        count=len(values),
        mean=statistics.mean(values),
        median=statistics.median(values),
        stdev=statistics.pstdev(values),
        min=min(values),
        max=max(values),
        distribution=dist,
    )
