"""Clean and check every row of a ``RawSheet``, column-wise (Polars), and find duplicates.

Output: the valid rows (``ROW_SCHEMA``); the row errors (``ERROR_SCHEMA``: row, column
header as the file writes it, stable ``code``, message), whose rows are left out whole;
the warnings (``WARNING_SCHEMA``: row, column, ``reason``), whose rows are imported
without the cell warned about; and the duplicates (``DUPLICATE_SCHEMA``).

* A student-phone problem never costs the row: a landline or ``070`` is the warning
  ``student_phone_not_mobile``, anything else not a mobile is ``student_phone_invalid``,
  a placeholder is simply no number. The guardian phone is how students are matched and
  messaged: ``guardian_phone_missing``, ``guardian_phone_not_mobile`` and
  ``guardian_phone_invalid`` are row errors.
* Identity is (name, guardian phone), among valid rows only. A later row of the same
  student in a class an earlier row already named is a duplicate of the first row that
  named it; a row naming a new class is a second enrolment (merged into the first row).
  A repeat with a different school, grade or phone is an error: which one is right?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from pipelines.excel.common import LABELS, MAX_LENGTH
from pipelines.excel.grade import grades
from pipelines.excel.phones import classify_phones
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
        "grade_raw": pl.String(),
        "lectures": pl.List(pl.String()),
    }
)
ERROR_SCHEMA = pl.Schema(
    {"row": pl.Int32(), "column": pl.String(), "code": pl.String(), "message": pl.String()}
)
WARNING_SCHEMA = pl.Schema({"row": pl.Int32(), "column": pl.String(), "reason": pl.String()})
DUPLICATE_SCHEMA = pl.Schema({"row": pl.Int32(), "duplicate_of_row": pl.Int32()})
TEXT_FIELDS = ("name", "guardian_name", "school", "grade_raw")
# What a student is, for "is this repeat the same person with the same details".
DETAILS = ("phone", "school", "grade", "guardian_name")
GUARDIAN_PHONE_ERRORS = {
    "missing": ("guardian_phone_missing", "required: students are matched by name and "
                "guardian phone, and messages go to it"),
    "not_mobile": ("guardian_phone_not_mobile", "a landline or 070 number: messages go "
                   "to a mobile (010)"),
    "invalid": ("guardian_phone_invalid", "not a mobile number (010 and 8 digits)"),
}  # fmt: skip
STUDENT_PHONE_WARNINGS = {
    "not_mobile": "student_phone_not_mobile",
    "invalid": "student_phone_invalid",
}


@dataclass
class Validated:
    rows: pl.DataFrame  # ROW_SCHEMA, one per student to apply
    errors: pl.DataFrame  # ERROR_SCHEMA
    warnings: pl.DataFrame  # WARNING_SCHEMA
    duplicates: pl.DataFrame  # DUPLICATE_SCHEMA
    total_rows: int  # data rows in the file
    merged: int  # rows folded into an earlier row of the same student (another class)


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERROR_SCHEMA)


def validate(sheet: RawSheet) -> Validated:
    out = _cleaned(sheet)
    errors = _cell_errors(out, sheet)
    warnings = _phone_warnings(out, sheet)
    bad_rows = errors["row"].unique()
    valid = out.filter(~pl.col("row").is_in(bad_rows.implode())).with_columns(
        pl.when(pl.col("_phone_problem").is_null()).then(pl.col("phone")).alias("phone")
    )
    valid, duplicate_errors, duplicates, merged = _fold_duplicates(
        valid.select(list(ROW_SCHEMA)), sheet
    )
    errors = (
        pl.concat([errors, duplicate_errors]).cast(ERROR_SCHEMA).sort("row", maintain_order=True)
    )
    return Validated(
        valid.cast(ROW_SCHEMA), errors, warnings, duplicates, sheet.frame.height, merged
    )


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
    into names, phones normalised (their problems in ``_phone_problem`` and
    ``_guardian_phone_problem``), the grade derived."""
    frame = sheet.frame
    sources = dict(sheet.fields)
    if "grade" in sources:
        sources["grade_raw"] = sources.pop("grade")
    cols: list[pl.Expr] = [pl.col("row")]
    for name in TEXT_FIELDS:
        source = sources.get(name)
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
    # The cell is kept as written, within the column's width.
    out = frame.select(cols).with_columns(pl.col("grade_raw").str.slice(0, 100))

    phone_source = sheet.fields.get("phone")
    student = classify_phones(
        frame[phone_source] if phone_source else pl.Series([None] * frame.height, dtype=pl.String)
    )
    guardian = classify_phones(frame[sheet.fields["guardian_phone"]])
    return out.with_columns(
        grades(out["grade_raw"], out["school"]).alias("grade"),
        student["phone"].alias("phone"),
        student["problem"].alias("_phone_problem"),
        guardian["phone"].alias("guardian_phone"),
        guardian["problem"].alias("_guardian_phone_problem"),
    )


def _column(sheet: RawSheet, field: str) -> str:
    return sheet.header_of(field) if field in sheet.fields else LABELS[field]


def _cell_errors(out: pl.DataFrame, sheet: RawSheet) -> pl.DataFrame:
    """One error per failed check of a cell: required fields, the guardian phone, lengths."""
    problem = pl.col("_guardian_phone_problem")
    checks: list[tuple[str, pl.Expr, str, str]] = [
        ("name", pl.col("name") == "", "name_missing", "required: the student's name is empty")
    ]
    checks += [
        ("guardian_phone", problem == kind, code, message)
        for kind, (code, message) in GUARDIAN_PHONE_ERRORS.items()
    ]
    checks += [
        (name, pl.col(name).str.len_chars() > limit, "too_long",
         f"too long: at most {limit} characters")
        for name, limit in MAX_LENGTH.items()
    ]  # fmt: skip
    return pl.concat(
        [
            out.filter(mask).select(
                pl.col("row"),
                pl.lit(_column(sheet, field)).alias("column"),
                pl.lit(code).alias("code"),
                pl.lit(message).alias("message"),
            )
            for field, mask, code, message in checks
        ]
    ).cast(ERROR_SCHEMA)


def _phone_warnings(out: pl.DataFrame, sheet: RawSheet) -> pl.DataFrame:
    """The student phones left out (rows with errors are not warned about)."""
    reason = pl.col("_phone_problem").replace_strict(
        STUDENT_PHONE_WARNINGS, default=None, return_dtype=pl.String
    )
    return (
        out.filter(pl.col("_guardian_phone_problem").is_null() & (pl.col("name") != ""))
        .select("row", pl.lit(_column(sheet, "phone")).alias("column"), reason.alias("reason"))
        .drop_nulls("reason")
        .cast(WARNING_SCHEMA)
    )


def _fold_duplicates(
    rows: pl.DataFrame, sheet: RawSheet
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int]:
    """(rows to apply, conflict errors, duplicates, rows merged into an earlier one)."""
    key = ["name", "guardian_phone"]
    no_duplicates = pl.DataFrame(schema=DUPLICATE_SCHEMA)
    if not rows.select(pl.struct(key).is_duplicated().any()).item():
        return rows, empty_errors(), no_duplicates, 0  # the usual case
    rows = rows.sort("row").with_columns(
        pl.col("row").min().over(key).alias("_first"),
        *[pl.col(c).fill_null("").alias(f"_{c}") for c in DETAILS],
    )
    # A detail conflicts when both rows give it and they differ (a blank adds nothing).
    conflicts = [
        (pl.col(f"_{c}") != "")
        & (pl.col(f"_{c}").first().over(key, order_by="row") != "")
        & (pl.col(f"_{c}") != pl.col(f"_{c}").first().over(key, order_by="row"))
        for c in DETAILS
    ]
    rows = rows.with_columns(pl.any_horizontal(conflicts).alias("_conflict"))
    conflicting = rows.filter(pl.col("_conflict"))
    conflict_errors = conflicting.select(
        "row",
        pl.lit(sheet.header_of("name")).alias("column"),
        pl.lit("conflicting_duplicate").alias("code"),
        pl.format(
            "same student as row {} (same name and guardian phone) with a different phone, "
            "school, grade or guardian name: keep one version",
            pl.col("_first"),
        ).alias("message"),
    ).cast(ERROR_SCHEMA)
    rows = rows.filter(~pl.col("_conflict"))
    # Each (student, class) pair's first row; no class at all is a class of its own.
    classes = (
        rows.select(
            "row", "_first",
            pl.when(pl.col("lectures").list.len() == 0).then(pl.lit([""])).otherwise(
                pl.col("lectures")).alias("_class"),
        )
        .explode("_class")
        .with_columns(pl.col("row").min().over("_first", "_class").alias("_class_first"))
    )  # fmt: skip
    per_row = classes.group_by("row", maintain_order=True).agg(
        (pl.col("row") == pl.col("_class_first")).any().alias("_adds"),
        pl.col("_class_first").first().alias("duplicate_of_row"),
    )
    duplicates = per_row.filter(~pl.col("_adds")).select("row", "duplicate_of_row").sort("row")
    adding = rows.join(per_row.filter(pl.col("_adds")), on="row", how="semi")
    merged_rows = adding.filter(pl.col("row") != pl.col("_first"))
    firsts = adding.filter(pl.col("row") == pl.col("_first"))
    extra = (
        merged_rows.select("_first", "lectures")
        .explode("lectures")
        .drop_nulls("lectures")
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
    return (
        firsts.select(list(ROW_SCHEMA)),
        conflict_errors,
        duplicates.cast(DUPLICATE_SCHEMA),
        merged_rows.height,
    )
