"""What a page's answers give: its score against the exam's key, what a teacher must look
at, a teacher's corrections, and the header and verdicts drawn on the annotated sheet."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from pipelines.grading import normalize_answer
from pipelines.omr.score import ScoreResult, parse_marking, score_sheet
from pipelines.omr.sheet import SheetReading
from pipelines.omr.template import Template


class ExamKey(Protocol):
    """What scoring needs of an exam (``models.omr_pages.BatchExam`` has it)."""

    @property
    def answer_key(self) -> Mapping[str, Sequence[str]] | None: ...

    @property
    def marking(self) -> Any: ...

    @property
    def question_count(self) -> int | None: ...

    @property
    def max_score(self) -> Decimal: ...


@dataclass
class Grading:
    """What scoring a page's answers gives, ready to store."""

    answers: dict[str, str]
    result: ScoreResult | None
    results_json: list[dict[str, Any]] | None


def grade(answers: dict[str, str], exam: ExamKey) -> Grading:
    """Score ``answers`` with the exam's key and marking (no key: nothing to score)."""
    key = exam.answer_key
    if not key:
        return Grading(answers, None, None)
    marking = parse_marking(exam.marking, exam.question_count) if exam.marking else None
    result = score_sheet(answers, key, marking, Decimal(exam.max_score))
    results = [
        {
            "question": q.question,
            "marked": q.marked,
            "accepted": list(q.accepted),
            "verdict": q.verdict,
            "points": str(q.points),
        }
        for q in result.questions
    ]
    return Grading(answers, result, results)


def exam_questions(reading: SheetReading, exam: ExamKey) -> set[str]:
    """Narrow the reading to the exam's questions: its ``question_count``, else the
    questions of its key, else every question of the card. Returns the card's fields left
    out, which the annotated sheet does not draw."""
    count = exam.question_count or max((int(q) for q in exam.answer_key or {}), default=0)
    return reading.keep_questions(count) if count else set()


def key_from_sheet(answers: Mapping[str, str]) -> dict[str, list[str]]:
    """An answer key read from a key sheet: each marked question's marks (a question
    left blank on the key sheet is not keyed)."""
    return {q: [normalize_answer(a)] for q, a in answers.items() if a}


# The number was settled by OCR (printed digits read with confidence, or agreeing with
# unsure bubbles); the enrolment match then decides.
SETTLED_ID = frozenset({"id_from_ocr", "id_confirmed_by_ocr"})


def review_items(reading: SheetReading, student_problem: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    if student_problem:
        items.append(
            {"kind": "student", "reason": student_problem, "student_number": reading.student_number}
        )
    elif reading.student_flags and not SETTLED_ID & set(reading.student_flags):
        items.append(
            {
                "kind": "student",
                "reason": ",".join(reading.student_flags),
                "student_number": reading.student_number,
            }
        )
    for q, flags in reading.question_flags().items():
        items.append(
            {
                "kind": "question",
                "question": q,
                "flags": flags,
                "read": reading.answers.get(q, ""),
                "confidence": round(reading.question_confidence(q), 3),
            }
        )
    return items


def correct_answers(
    answers: Mapping[str, str], corrections: Mapping[str, str]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The answers with a teacher's corrections applied (question numbers and answers in
    canonical form: ``"⑤"`` is ``"5"``), and a field error for each correction naming a
    question the sheet does not have."""
    corrected = dict(answers)
    errors: list[dict[str, Any]] = []
    for q, a in corrections.items():
        number = normalize_answer(q)
        if not number.isdigit() or str(int(number)) not in corrected:
            errors.append({"field": f"answers.{q}", "message": "not a question of this sheet"})
            continue
        corrected[str(int(number))] = normalize_answer(a)
    return corrected, errors


def header(
    grading: Grading, reading: SheetReading, student: uuid.UUID | None, key_sheet: bool = False
) -> str:
    """The line written at the top of the annotated sheet."""
    number = reading.student_number or "?"
    if key_sheet:
        return f"No. {number}: the answer key of this batch ({len(reading.answers)} questions)"
    who = "matched" if student else "NOT MATCHED"
    if grading.result is None:
        return f"No. {number} ({who}) - no answer key"
    r = grading.result
    return f"No. {number} ({who})  score {r.total}  correct {r.correct}/{len(r.questions)}"


def verdicts(template: Template, grading: Grading) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Question field -> (verdict, accepted answers), as ``annotate`` draws them."""
    if grading.result is None:
        return {}
    fields = {str(i + 1): q for i, q in enumerate(template.questions)}
    return {
        fields[q.question]: (q.verdict, q.accepted)
        for q in grading.result.questions
        if q.question in fields
    }
