"""One apply chunk of the plan as the apply statements take it, and the row errors of what
applying could not do.

The chunk goes to the database as rows for COPY (``records``, ``CHUNK_COLUMNS``) into a
temporary table, which a handful of set-based statements read (``models.imports``). What
they insert depends on what the database holds when the chunk runs (a student typed in by
hand meanwhile is not duplicated), so some of the cutting waits for the ids the student
insert returns.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.excel.common import LABELS
from pipelines.korean import initials

# With three chunks in flight, 2,500 rows a chunk cost Postgres less per row than 5,000
# (and 10,000 far more); 1,250 did no better.
CHUNK_ROWS = 2_500

RELATIONS = {
    "어머니": "mother", "엄마": "mother", "모": "mother", "mother": "mother",
    "아버지": "father", "아빠": "father", "부": "father", "father": "father",
    "할머니": "grandparent", "할아버지": "grandparent",
}  # fmt: skip

# The temporary table's columns, in ``ChunkRows.records`` order.
CHUNK_COLUMNS = (
    "row", "verdict", "student_id", "name", "initials", "phone", "school", "grade",
    "grade_raw", "guardian_name", "relation", "guardian_phone", "enrolments",
)  # fmt: skip


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


Pair = tuple[int, uuid.UUID, uuid.UUID]  # (row, student, lecture)


@dataclass(frozen=True)
class ChunkRows:
    """One chunk of the plan (``PLAN_SCHEMA``)."""

    size: int
    columns: dict[str, list[Any]]
    # (row, student, lecture) for every lecture of every row, in file order.
    pairs: list[Pair]
    # The students the chunk creates (ids chosen by the plan), with their rows.
    new: dict[uuid.UUID, int]

    @classmethod
    def of(cls, chunk: pl.DataFrame) -> ChunkRows:
        c = chunk.drop("lecture_ids").to_dict(as_series=False)
        ids = [uuid.UUID(s) for s in c["student_id"]]
        # The pairs come flat out of polars (a list column to Python lists costs more than
        # the rest of the chunk), and a lecture's id is parsed once.
        flat = chunk.select("row", "lecture_ids").with_row_index("i").explode("lecture_ids")
        flat = flat.drop_nulls("lecture_ids")
        lectures = {s: uuid.UUID(s) for s in flat["lecture_ids"].unique().to_list()}
        pairs = [
            (row, ids[i], lectures[lecture])
            for i, row, lecture in zip(
                flat["i"].to_list(),
                flat["row"].to_list(),
                flat["lecture_ids"].to_list(),
                strict=True,
            )
        ]
        new = {
            sid: row
            for sid, row, verdict in zip(ids, c["row"], c["verdict"], strict=True)
            if verdict == "create"
        }
        return cls(chunk.height, c | {"student_id": ids}, pairs, new)

    def asked(self) -> Counter[uuid.UUID]:
        """Per new student, the lectures its rows ask for: the enrolment count it is
        written with (corrected once seats are decided, where one was refused)."""
        return Counter(s for s, _ in {(s, lecture) for _, s, lecture in self.pairs
                                      if s in self.new})  # fmt: skip

    @property
    def updates(self) -> bool:
        """Whether any row of the chunk updates a known student."""
        return "update" in self.columns["verdict"]

    def records(self, enrolments: Counter[uuid.UUID]) -> list[tuple[Any, ...]]:
        """The rows for COPY (``CHUNK_COLUMNS``); ``enrolments`` counts the enrolments each
        new student is expected to get (``asked``), so the student is written once with
        its read model right."""
        c = self.columns
        parts = [guardian_parts(g or "") for g in c["guardian_name"]]
        return [
            (row, verdict, sid, name, initials(name), phone, school, grade or "",
             grade_raw or "", gname, relation, gphone, enrolments.get(sid, 0))
            for row, verdict, sid, name, phone, school, grade, grade_raw, gphone, (gname, relation)
            in zip(c["row"], c["verdict"], c["student_id"], c["name"], c["phone"], c["school"],
                   c["grade"], c["grade_raw"], c["guardian_phone"], parts, strict=True)
        ]  # fmt: skip

    def skipped(self, created: Collection[uuid.UUID]) -> list[dict[str, Any]]:
        """Row errors of the new students that were not inserted: someone with this name
        and guardian phone appeared while importing."""
        return [
            row_error(row, "name", "added_meanwhile", "a student with this name and guardian "
                      "phone was added while importing: left as it is")
            for sid, row in self.new.items()
            if sid not in created
        ]  # fmt: skip


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
