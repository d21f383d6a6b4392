"""Clean and check every row of a ``RawSheet``, column-wise (Polars), and find duplicates.

Output: the valid rows as ``ROW_SCHEMA``, and every problem as ``ERROR_SCHEMA`` (row,
column header as the file writes it, message). A row with any error is left out of the
valid rows: nothing of it is applied.

Duplicates inside the file are rows with the same name and guardian phone. A later row
that only adds a lecture (one row per enrollment is a common layout) is merged into the
first; any other repeat is an error pointing at the first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.excel.common import LABELS, MAX_LENGTH
from pipelines.excel.phones import normalize_phones
from pipelines.excel.read import RawSheet
from pipelines.excel.text import clean, needs_nfkc

ROW_SCHEMA = pl.Schema(
    {
        "row": pl.Int32(),
        "name": pl.String(),
        "phone": pl.String(),
        "guardian_name": pl.String(),
        "guardian_phone": pl.String(),
        "school": pl.String(),
        "grade": pl.String(),
        "lectures": pl.List(pl.String()),
    }
)
ERROR_SCHEMA = pl.Schema(
    {
        "row": pl.Int32(),
        "column": pl.String(),
        "message": pl.String(),
    }
)
TEXT_FIELDS = ("name", "guardian_name", "school", "grade")
# What a student is, for "is this repeat the same person with the same details".
DETAILS = ("phone", "school", "grade", "guardian_name")


@dataclass
class Validated:
    rows: pl.DataFrame  # ROW_SCHEMA, one per student to apply
    errors: pl.DataFrame  # ERROR_SCHEMA
    total_rows: int  # data rows in the file (blank rows not counted)
    merged: int  # rows folded into an earlier row of the same student


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERROR_SCHEMA)


def validate(sheet: RawSheet) -> Validated:
    out = _cleaned(sheet)
    errors = _cell_errors(out, sheet)
    bad_rows = errors["row"].unique()
    valid = out.filter(~pl.col("row").is_in(bad_rows.implode())).select(list(ROW_SCHEMA))
    valid, duplicate_errors, merged = _fold_duplicates(valid, sheet)
    errors = (
        pl.concat([errors, duplicate_errors]).cast(ERROR_SCHEMA).sort("row", maintain_order=True)
    )
    return Validated(valid.cast(ROW_SCHEMA), errors, sheet.frame.height, merged)


def combined_errors(parts: list[pl.DataFrame], apply_errors: list[dict[str, Any]]) -> pl.DataFrame:
    """Every error of an import (validation, matching, applying), in row order."""
    if apply_errors:
        parts = [*parts, pl.DataFrame(apply_errors, schema=ERROR_SCHEMA)]
    frames = [p.cast(ERROR_SCHEMA) for p in parts if p.height]
    if not frames:
        return empty_errors()
    return pl.concat(frames).sort("row", maintain_order=True)


def _cleaned(sheet: RawSheet) -> pl.DataFrame:
    """The fields of every row, cleaned: text trimmed and normalised, the lecture cell split
    into names, phones normalised (a phone's problem in ``_phone_error`` and
    ``_guardian_phone_error``)."""
    frame = sheet.frame
    cols: list[pl.Expr] = [pl.col("row")]
    for name in TEXT_FIELDS:
        source = sheet.fields.get(name)
        value = (
            clean(pl.col(source), nfkc=needs_nfkc(frame[source])).fill_null("")
            if source
            else pl.lit("")
        )
        cols.append(value.alias(name))
    lecture_source = sheet.fields.get("lecture")
    if lecture_source:
        # "A반, B반" / "A반/B반" / "A반;B반": one cell may name several lectures.
        cols.append(
            clean(pl.col(lecture_source), nfkc=needs_nfkc(frame[lecture_source]))
            .fill_null("")
            .str.replace_all(r"\s*[,/;]\s*", ",")
            .str.split(",")
            .list.eval(pl.element().filter(pl.element() != ""))
            .alias("lectures")
        )
    else:
        cols.append(pl.lit([], dtype=pl.List(pl.String)).alias("lectures"))
    out = frame.select(cols)

    phone_source = sheet.fields.get("phone")
    student_phones = (
        normalize_phones(frame[phone_source])
        if phone_source
        else pl.DataFrame(
            {"phone": [None] * frame.height, "error": [None] * frame.height},
            schema={"phone": pl.String, "error": pl.String},
        )
    )
    guardian_phones = normalize_phones(frame[sheet.fields["guardian_phone"]])
    return out.with_columns(
        student_phones["phone"].alias("phone"),
        student_phones["error"].alias("_phone_error"),
        guardian_phones["phone"].alias("guardian_phone"),
        guardian_phones["error"].alias("_guardian_phone_error"),
    )


def _cell_errors(out: pl.DataFrame, sheet: RawSheet) -> pl.DataFrame:
    """One error per failed check of a cell: required fields, phones, lengths."""
    checks: list[tuple[str, pl.Expr, pl.Expr]] = [
        ("name", pl.col("name") == "", pl.lit("required: the student's name is empty")),
        (
            "guardian_phone",
            pl.col("guardian_phone").is_null() & pl.col("_guardian_phone_error").is_null(),
            pl.lit("required: students are matched by name and guardian phone"),
        ),
        (
            "guardian_phone",
            pl.col("_guardian_phone_error").is_not_null(),
            pl.col("_guardian_phone_error"),
        ),
        ("phone", pl.col("_phone_error").is_not_null(), pl.col("_phone_error")),
    ]
    for name, limit in MAX_LENGTH.items():
        checks.append(
            (
                name,
                pl.col(name).str.len_chars() > limit,
                pl.lit(f"too long: at most {limit} characters"),
            )
        )
    return pl.concat(
        [
            out.filter(mask).select(
                pl.col("row"),
                pl.lit(sheet.header_of(field) if field in sheet.fields else LABELS[field]).alias(
                    "column"
                ),
                message.cast(pl.String).alias("message"),
            )
            for field, mask, message in checks
        ]
    )


def _fold_duplicates(rows: pl.DataFrame, sheet: RawSheet) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    key = ["name", "guardian_phone"]
    if not rows.select(pl.struct(key).is_duplicated().any()).item():
        return rows, empty_errors(), 0  # the usual case, without the window functions below
    rows = rows.sort("row").with_columns(
        pl.col("row").min().over(key).alias("_first"),
        pl.concat_str([pl.col(c).fill_null("") for c in DETAILS], separator="\x1f").alias("_sig"),
    )
    rows = rows.with_columns(
        pl.col("_sig").first().over(key, order_by="row").alias("_first_sig"),
        # Lectures already named by an earlier row of the same student.
        pl.col("lectures").list.sort().list.join("\x1f").alias("_lect"),
    )
    repeats = rows.filter(pl.col("row") != pl.col("_first"))
    if repeats.height == 0:
        return rows.select(list(ROW_SCHEMA)), empty_errors(), 0

    name_header = sheet.header_of("name")
    lecture_header = sheet.header_of("lecture")
    seen_lectures = (
        rows.select("row", "_first", pl.col("lectures").alias("_l"))
        .explode("_l")
        .drop_nulls("_l")
        .with_columns(pl.col("row").min().over("_first", "_l").alias("_l_first"))
    )
    # A repeat adds something only if it names a lecture no earlier row of it named.
    adds = (
        seen_lectures.filter(pl.col("row") == pl.col("_l_first"))
        .filter(pl.col("row") != pl.col("_first"))
        .select("row")
        .unique()
    )
    conflicting = repeats.filter(pl.col("_sig") != pl.col("_first_sig"))
    same = repeats.filter(pl.col("_sig") == pl.col("_first_sig"))
    merged_rows = same.join(adds, on="row", how="semi")
    pure_repeats = same.join(adds, on="row", how="anti")

    errors = pl.concat(
        [
            conflicting.select(
                "row",
                pl.lit(name_header).alias("column"),
                pl.format(
                    "same student as row {} (same name and guardian phone) with different "
                    "details: keep one row per student",
                    pl.col("_first"),
                ).alias("message"),
            ),
            pure_repeats.select(
                "row",
                pl.lit(name_header if "lecture" not in sheet.fields else lecture_header).alias(
                    "column"
                ),
                pl.format("repeats row {}", pl.col("_first")).alias("message"),
            ),
        ]
    ).cast(ERROR_SCHEMA)
    # Lectures of merged rows join their first row's.
    firsts = rows.filter(pl.col("row") == pl.col("_first"))
    extra = (
        merged_rows.select("_first", "lectures")
        .explode("lectures")
        .group_by("_first")
        .agg(pl.col("lectures").alias("_extra"))
    )
    firsts = firsts.join(extra, on="_first", how="left").with_columns(
        pl.concat_list(
            [pl.col("lectures"), pl.col("_extra").fill_null(pl.lit([], pl.List(pl.String)))]
        )
        .list.unique(maintain_order=True)
        .alias("lectures")
    )
    return firsts.select(list(ROW_SCHEMA)), errors, merged_rows.height
