"""Verdicts for validated rows against what the academy already has.

A row is matched to existing students by name + guardian phone, soft-deleted students
included:

* one live student: ``update`` if the file brings a different phone, school or grade (in
  ``upsert`` mode), else ``unchanged``. Empty cells never erase what is stored;
* several live students: an error (the academy has duplicates to fix first);
* only a deleted student: an error. The row must not create a twin of someone who was
  deleted; restoring them is the academy's decision;
* nobody: ``create``, with the new student's id chosen here, so applying the plan twice
  cannot create two students.

Enrolments: each row's lectures (the job's target lectures, or the file's lecture column,
by code or exact title) minus those the student is already active in. A closed or unknown
lecture is a row error; a lecture without room for every new student enrols rows in file
order and reports the rest (``allocate_seats``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from pipelines.excel.common import LABELS
from pipelines.excel.text import clean
from pipelines.excel.validate import ERROR_SCHEMA, empty_errors

Mode = Literal["insert", "upsert"]

EXISTING_SCHEMA = pl.Schema(
    {
        "student_id": pl.String(),
        "name": pl.String(),
        "guardian_phone": pl.String(),
        "phone": pl.String(),
        "school": pl.String(),
        "grade": pl.String(),
        "grade_raw": pl.String(),
        "deleted": pl.Boolean(),
    }
)
ACTIVE_SCHEMA = pl.Schema({"student_id": pl.String(), "lecture_id": pl.String()})
LECTURE_SCHEMA = pl.Schema(
    {
        "lecture_id": pl.String(),
        "code": pl.String(),
        "title": pl.String(),
        "status": pl.String(),
        "capacity": pl.Int64(),
        "active": pl.Int64(),
    }
)
PLAN_SCHEMA = pl.Schema(
    {
        "row": pl.Int32(),
        "verdict": pl.String(),
        "student_id": pl.String(),
        "name": pl.String(),
        "phone": pl.String(),
        "school": pl.String(),
        "grade": pl.String(),
        "grade_raw": pl.String(),
        "guardian_name": pl.String(),
        "guardian_phone": pl.String(),
        "lecture_ids": pl.List(pl.String()),
    }
)


@dataclass
class Plan:
    rows: pl.DataFrame  # PLAN_SCHEMA: create / update / unchanged rows, in file order
    errors: pl.DataFrame  # ERROR_SCHEMA

    def count(self, verdict: str) -> int:
        return int(self.rows.filter(pl.col("verdict") == verdict).height)

    @property
    def enrolments(self) -> int:
        return int(self.rows["lecture_ids"].list.len().sum() or 0)


def build_plan(
    rows: pl.DataFrame,
    existing: pl.DataFrame,
    active: pl.DataFrame,
    lectures: pl.DataFrame,
    *,
    mode: Mode,
    target_lecture_ids: list[str],
    name_header: str = LABELS["name"],
    lecture_header: str = LABELS["lecture"],
) -> Plan:
    existing = _shaped(existing, EXISTING_SCHEMA)
    lectures = _shaped(lectures, LECTURE_SCHEMA)
    active = _shaped(active, ACTIVE_SCHEMA)
    joined, errors = _match_students(rows, existing, name_header)
    joined = _with_verdicts(joined, mode)
    joined, wanted, lecture_errors = _wanted_lectures(
        joined, lectures, target_lecture_ids, lecture_header
    )
    allowed, full = _seated(joined, wanted, active, lectures, lecture_header)
    new_lectures = allowed.group_by("row").agg(pl.col("lecture_id").alias("lecture_ids"))
    plan = (
        joined.join(new_lectures, on="row", how="left")
        .with_columns(pl.col("lecture_ids").fill_null(pl.lit([], pl.List(pl.String))))
        .sort("row")
        .select(list(PLAN_SCHEMA))
        .cast(PLAN_SCHEMA)
    )
    all_errors = pl.concat(
        [e.cast(ERROR_SCHEMA) for e in [*errors, *lecture_errors, full] if e.height]
        or [empty_errors()]
    ).sort("row", maintain_order=True)
    return Plan(plan, all_errors)


def _match_students(
    rows: pl.DataFrame, existing: pl.DataFrame, name_header: str
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """The rows that match one live student or nobody, with the live match's id and stored
    details (``match_id``, ``old_*``, ``live``), and the errors of the others."""
    key = ["name", "guardian_phone"]
    matches = rows.select("row", *key).join(existing, on=key, how="inner")
    per_row = matches.group_by("row").agg(
        (~pl.col("deleted")).sum().alias("live"),
        pl.col("deleted").sum().alias("dead"),
        pl.col("student_id").filter(~pl.col("deleted")).first().alias("match_id"),
        pl.col("phone").filter(~pl.col("deleted")).first().alias("old_phone"),
        pl.col("school").filter(~pl.col("deleted")).first().alias("old_school"),
        pl.col("grade").filter(~pl.col("deleted")).first().alias("old_grade"),
        pl.col("grade_raw").filter(~pl.col("deleted")).first().alias("old_grade_raw"),
    )
    joined = rows.join(per_row, on="row", how="left").with_columns(
        pl.col("live").fill_null(0), pl.col("dead").fill_null(0)
    )
    errors = [
        joined.filter(pl.col("live") > 1).select(
            "row",
            pl.lit(name_header).alias("column"),
            pl.lit("ambiguous_match").alias("code"),
            pl.format(
                "{} students with this name and guardian phone already exist: merge them first",
                pl.col("live"),
            ).alias("message"),
        ),
        joined.filter((pl.col("live") == 0) & (pl.col("dead") > 0)).select(
            "row",
            pl.lit(name_header).alias("column"),
            pl.lit("matches_deleted_student").alias("code"),
            pl.lit(
                "matches a deleted student (same name and guardian phone): restore them "
                "first, or tell them apart by name"
            ).alias("message"),
        ),
    ]
    joined = joined.filter((pl.col("live") == 1) | ((pl.col("live") == 0) & (pl.col("dead") == 0)))
    return joined, errors


def _with_verdicts(joined: pl.DataFrame, mode: Mode) -> pl.DataFrame:
    """Each row's verdict, and its ``student_id``: the match's, or a new id for a create."""

    def differs(new: str, old: str) -> pl.Expr:
        return (
            pl.col(new).is_not_null()
            & (pl.col(new) != "")
            & (pl.col(old).is_null() | (pl.col(new) != pl.col(old)))
        )

    changed = (
        differs("phone", "old_phone")
        | differs("school", "old_school")
        | differs("grade", "old_grade")
        | differs("grade_raw", "old_grade_raw")
    )
    verdict = (
        pl.when(pl.col("live") == 0)
        .then(pl.lit("create"))
        .when(changed & pl.lit(mode == "upsert"))
        .then(pl.lit("update"))
        .otherwise(pl.lit("unchanged"))
    )
    creates = int(joined.filter(pl.col("live") == 0).height)
    new_ids = pl.Series("new_id", [str(uuid.uuid4()) for _ in range(creates)], dtype=pl.String)
    joined = joined.with_columns(verdict.alias("verdict")).sort("row")
    joined = joined.with_columns(
        pl.when(pl.col("verdict") == "create")
        .then(pl.col("verdict").eq("create").cum_sum().cast(pl.Int64) - 1)
        .otherwise(None)
        .alias("_new_index")
    )
    id_table = pl.DataFrame({"_new_index": pl.int_range(0, creates, eager=True), "new_id": new_ids})
    return joined.join(id_table, on="_new_index", how="left").with_columns(
        pl.coalesce("match_id", "new_id").alias("student_id")
    )


def _wanted_lectures(
    joined: pl.DataFrame,
    lectures: pl.DataFrame,
    target_lecture_ids: list[str],
    lecture_header: str,
) -> tuple[pl.DataFrame, pl.DataFrame, list[pl.DataFrame]]:
    """(row, lecture) pairs each row asks for: the job's target lectures, or the file's
    lecture column. A row naming an unknown or closed lecture is left out, with an error."""
    if target_lecture_ids:
        wanted = joined.select("row", pl.lit(target_lecture_ids).alias("_ref")).explode("_ref")
        by = "lecture_id"
        wanted = wanted.rename({"_ref": "lecture_id"}).join(lectures, on="lecture_id", how="left")
    else:
        wanted = joined.select("row", pl.col("lectures").alias("_ref")).explode("_ref")
        wanted = wanted.drop_nulls("_ref")
        by = "_ref"
        wanted = _resolve(wanted, lectures)
    errors = [
        wanted.filter(pl.col("title").is_null()).select(
            "row",
            pl.lit(lecture_header).alias("column"),
            pl.lit("lecture_unknown").alias("code"),
            pl.format("no lecture with the code or title {}", pl.col(by)).alias("message"),
        ),
        wanted.filter(pl.col("status") == "closed").select(
            "row",
            pl.lit(lecture_header).alias("column"),
            pl.lit("lecture_closed").alias("code"),
            pl.format("lecture {} is closed", pl.col("title")).alias("message"),
        ),
    ]
    lecture_errors = pl.concat(errors).cast(ERROR_SCHEMA)
    joined = joined.filter(~pl.col("row").is_in(lecture_errors["row"].implode()))
    wanted = wanted.filter(pl.col("row").is_in(joined["row"].implode()))
    return joined, wanted, errors


def _seated(
    joined: pl.DataFrame,
    wanted: pl.DataFrame,
    active: pl.DataFrame,
    lectures: pl.DataFrame,
    lecture_header: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The (row, student_id, lecture_id) enrolments to make (not those already active),
    within each lecture's free seats, and the errors of those left without one."""
    pairs = (
        wanted.join(joined.select("row", "student_id"), on="row")
        .select("row", "student_id", "lecture_id")
        .unique(["row", "lecture_id"], maintain_order=True)
        .join(active, on=["student_id", "lecture_id"], how="anti")
    )
    remaining = {
        lecture_id: (None if capacity is None else max(0, capacity - taken))
        for lecture_id, capacity, taken in lectures.select(
            "lecture_id", "capacity", "active"
        ).iter_rows()
    }
    allowed, full = allocate_seats(pairs, remaining)
    titles = dict(zip(lectures["lecture_id"], lectures["title"], strict=True))
    capacities = dict(zip(lectures["lecture_id"], lectures["capacity"], strict=True))
    return allowed, full_errors(full, titles, capacities, lecture_header)


def frame_of(records: Sequence[object], schema: pl.Schema) -> pl.DataFrame:
    """Query lines (one attribute per column of ``schema``) as a frame."""
    return pl.DataFrame(
        {name: [getattr(r, name) for r in records] for name in schema}, schema=schema
    )


def _shaped(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """``frame`` in ``schema`` (an empty frame without columns gets them)."""
    return frame.cast(schema) if frame.width else pl.DataFrame(schema=schema)


def _resolve(wanted: pl.DataFrame, lectures: pl.DataFrame) -> pl.DataFrame:
    """Match each reference by code (case-insensitive), else by exact title when exactly
    one lecture has it."""
    by_code = lectures.filter(pl.col("code").is_not_null()).with_columns(
        pl.col("code").str.to_uppercase().alias("_key")
    )
    titles = lectures.with_columns(clean(pl.col("title")).alias("_key"))
    unique_titles = titles.filter(pl.col("_key").count().over("_key") == 1)
    keyed = wanted.with_columns(pl.col("_ref").str.to_uppercase().alias("_key"))
    hit_code = keyed.join(by_code, on="_key", how="left").drop("_key")
    found = hit_code.filter(pl.col("lecture_id").is_not_null())
    missing = hit_code.filter(pl.col("lecture_id").is_null()).select("row", "_ref")
    by_title = missing.join(unique_titles, left_on="_ref", right_on="_key", how="left").select(
        found.columns
    )
    return pl.concat([found.select(found.columns), by_title]).sort("row", maintain_order=True)


def allocate_seats(
    pairs: pl.DataFrame, remaining: dict[str, int | None]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split (row, lecture_id) enrolments into those that fit and those that do not:
    each lecture takes rows in file order until its free seats (None: unlimited) run out."""
    if pairs.height == 0:
        return pairs, pairs
    seats = pl.DataFrame(
        {
            "lecture_id": list(remaining),
            "_free": [-1 if v is None else v for v in remaining.values()],
        },
        schema={"lecture_id": pl.String, "_free": pl.Int64},
    )
    ranked = (
        pairs.sort("row")
        .with_columns(pl.int_range(pl.len()).over("lecture_id").alias("_n"))
        .join(seats, on="lecture_id", how="left")
        .with_columns(pl.col("_free").fill_null(-1))
    )
    fits = (pl.col("_free") < 0) | (pl.col("_n") < pl.col("_free"))
    return (
        ranked.filter(fits).select(pairs.columns),
        ranked.filter(~fits).select(pairs.columns),
    )


def full_errors(
    full: pl.DataFrame,
    titles: dict[str, str],
    capacities: dict[str, int | None],
    lecture_header: str,
) -> pl.DataFrame:
    if full.height == 0:
        return empty_errors()
    return pl.DataFrame(
        {
            "row": full["row"].to_list(),
            "column": [lecture_header] * full.height,
            "code": ["lecture_full"] * full.height,
            "message": [
                f"lecture {titles.get(lid, lid)} is full ({capacities.get(lid)} seats): not enrolled"
                for lid in full["lecture_id"].to_list()
            ],
        },
        schema=ERROR_SCHEMA,
    )
