"""One apply chunk of the plan, cut into the arrays its statements take, and the row errors
of what applying could not do.

The statements themselves (``models.imports``) are a fixed set per chunk over ``unnest``
arrays; what they insert depends on what the database already holds when the chunk runs,
so some of the cutting waits for the ids the student insert returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.excel.common import LABELS
from pipelines.korean import initials

CHUNK_ROWS = 5_000

RELATIONS = {
    "어머니": "mother", "엄마": "mother", "모": "mother", "mother": "mother",
    "아버지": "father", "아빠": "father", "부": "father", "father": "father",
    "할머니": "grandparent", "할아버지": "grandparent",
}  # fmt: skip


def chunk_bounds(rows: int) -> list[tuple[int, int]]:
    """(start, end) of each apply chunk."""
    return [(start, min(rows, start + CHUNK_ROWS)) for start in range(0, rows, CHUNK_ROWS)]


def guardian_parts(value: str) -> tuple[str, str]:
    """(guardian name, relation): a cell saying 어머니/아버지... is a relation, not a name."""
    relation = RELATIONS.get(value.replace(" ", "").lower())
    return ("", relation) if relation else (value, "guardian")


def row_error(row: int, field: str, code: str, message: str) -> dict[str, Any]:
    """A row error as the import keeps it (``ERROR_SCHEMA``)."""
    return {"row": row, "column": LABELS[field], "code": code, "message": message}


@dataclass(frozen=True)
class NewStudents:
    """The chunk's ``create`` rows, column by column, in file order."""

    rows: list[int]
    ids: list[str]
    names: list[str]
    initials: list[str]
    phones: list[str | None]
    schools: list[str]
    grades: list[str]
    grade_raws: list[str]
    guardian_phones: list[str]
    relations: list[str]


@dataclass(frozen=True)
class Updates:
    """The chunk's ``update`` rows: what the file says of matched students."""

    ids: list[str]
    phones: list[str | None]
    schools: list[str]
    grades: list[str]
    grade_raws: list[str]


@dataclass(frozen=True)
class ChunkRows:
    """One chunk of the plan (``PLAN_SCHEMA``) as the apply statements take it."""

    size: int
    # One guardian per phone, first seen first; a row that names them fills an empty name.
    guardian_names: list[str]
    guardian_phones: list[str]
    creates: NewStudents
    updates: Updates
    # (row, student id, lecture id, is the student new) for every lecture of every row.
    wanted: list[tuple[int, str, str, bool]]

    @classmethod
    def of(cls, chunk: pl.DataFrame) -> ChunkRows:
        c = chunk.to_dict(as_series=False)
        verdicts: list[str] = c["verdict"]
        parts = [guardian_parts(g or "") for g in c["guardian_name"]]
        guardians: dict[str, str] = {}
        for phone, (name, _) in zip(c["guardian_phone"], parts, strict=True):
            if phone not in guardians or (name and not guardians[phone]):
                guardians[phone] = name
        new = [i for i, v in enumerate(verdicts) if v == "create"]
        changed = [i for i, v in enumerate(verdicts) if v == "update"]

        def pick(column: str, at: list[int]) -> list[Any]:
            return [c[column][i] for i in at]

        return cls(
            size=chunk.height,
            guardian_names=list(guardians.values()),
            guardian_phones=list(guardians),
            creates=NewStudents(
                rows=pick("row", new),
                ids=pick("student_id", new),
                names=pick("name", new),
                initials=[initials(n) for n in pick("name", new)],
                phones=pick("phone", new),
                schools=pick("school", new),
                grades=[g or "" for g in pick("grade", new)],
                grade_raws=pick("grade_raw", new),
                guardian_phones=pick("guardian_phone", new),
                relations=[parts[i][1] for i in new],
            ),
            updates=Updates(
                ids=pick("student_id", changed),
                phones=pick("phone", changed),
                schools=pick("school", changed),
                grades=[g or "" for g in pick("grade", changed)],
                grade_raws=pick("grade_raw", changed),
            ),
            wanted=[
                (row, student, lecture, verdict == "create")
                for row, student, verdict, lectures in zip(
                    c["row"], c["student_id"], verdicts, c["lecture_ids"], strict=True
                )
                for lecture in lectures or []
            ],
        )

    def linked(self, created: set[str]) -> tuple[list[str], list[str], list[str]]:
        """(student ids, guardian phones, relations) of the new students really inserted."""
        kept = [i for i, sid in enumerate(self.creates.ids) if sid in created]
        return (
            [self.creates.ids[i] for i in kept],
            [self.creates.guardian_phones[i] for i in kept],
            [self.creates.relations[i] for i in kept],
        )

    def skipped(self, created: set[str]) -> list[dict[str, Any]]:
        """Row errors of the new students that were not inserted: someone with this name
        and guardian phone appeared while importing."""
        return [
            row_error(row, "name", "added_meanwhile", "a student with this name and guardian phone was "
                                   "added while importing: left as it is")
            for row, sid in zip(self.creates.rows, self.creates.ids, strict=True)
            if sid not in created
        ]  # fmt: skip

    def enrolments(self, created: set[str]) -> list[tuple[int, str, str]]:
        """(row, student id, lecture id) to enrol: every lecture of the chunk's rows, but
        not for a new student who was not inserted."""
        return [
            (row, student, lecture)
            for row, student, lecture, is_new in self.wanted
            if not is_new or student in created
        ]


def enrol_error(result: str, lecture: str, capacity: int | None) -> tuple[str, str] | None:
    """The (code, message) of an enrolment that did not happen (``models.enrollments``
    result codes), None when it did or already was."""
    if result in ("no_lecture", "closed"):
        return "lecture_closed", f"lecture {lecture} was closed or deleted while importing"
    if result == "full":
        return "lecture_full", f"lecture {lecture} is full ({capacity} seats): not enrolled"
    if result == "no_student":
        return "student_deleted", "the student was deleted while importing: not enrolled"
    return None
