"""The import pipeline's pure steps: detect, read, validate, plan, and the workbooks."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import openpyxl
import polars as pl
import pytest
import xlsxwriter

from pipelines.excel.common import ImportFailure
from pipelines.excel.detect import ENCRYPTED_STREAM, OLE2_MAGIC, UnsupportedFile, detect_type
from pipelines.excel.plan import build_plan
from pipelines.excel.read import read_sheet
from pipelines.excel.validate import validate
from pipelines.excel.workbook import Column, error_workbook, write_sheet
from tests.factories.workbooks import (
    HEADER_VARIANTS,
    MessySheet,
    encrypted_workbook,
    expected_students,
    messy_rows,
    student_cells,
    with_problems,
    write_csv,
    write_xls,
    write_xlsx,
)

# --- detect --------------------------------------------------------------------------------


def test_type_is_read_from_content_not_name() -> None:
    sheet = messy_rows(2)
    assert detect_type(write_xlsx(sheet)) == "xlsx"
    assert detect_type(write_csv(sheet)) == "csv"
    assert detect_type(write_csv(sheet, encoding="cp949")) == "csv"
    assert detect_type(OLE2_MAGIC + b"\0" * 512) == "xls"
    with pytest.raises(ImportFailure, match="password"):
        detect_type(OLE2_MAGIC + b"\0" * 512 + ENCRYPTED_STREAM)
    with pytest.raises(UnsupportedFile):
        detect_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    with pytest.raises(UnsupportedFile, match="empty"):
        detect_type(b"")


# --- read ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", range(len(HEADER_VARIANTS)))
def test_header_found_below_title_with_any_alias(variant: int) -> None:
    sheet = messy_rows(8, seed=variant)
    assert sheet.headers == HEADER_VARIANTS[variant]
    raw = read_sheet(write_xlsx(sheet), "xlsx", max_rows=100)
    assert raw.header_row == 4  # merged title, a note, an empty row, then the header
    assert set(raw.fields) == {
        "name",
        "phone",
        "guardian_phone",
        "guardian_name",
        "school",
        "grade",
        "lecture",
    }
    assert raw.ignored_columns == ["H (비고)"]
    # Blank rows are skipped; the others keep their Excel row numbers.
    rows = raw.frame["row"].to_list()
    assert len(rows) == 8 and rows[0] == 5
    assert rows[-1] == 5 + 8 - 1 + len(sheet.blank_after)


def test_messy_cells_come_out_clean() -> None:
    sheet = messy_rows(12, seed=1)
    checked = validate(read_sheet(write_xlsx(sheet), "xlsx", max_rows=100))
    assert checked.errors.height == 0
    got = checked.rows.select("name", "phone", "guardian_phone", "school", "grade").to_dicts()
    assert got == expected_students(sheet)


def test_legacy_xls_reads_like_xlsx() -> None:
    sheet = messy_rows(7, seed=4)
    data = write_xls(sheet)
    assert detect_type(data) == "xls"
    checked = validate(read_sheet(data, "xls", max_rows=100))
    assert checked.errors.height == 0
    got = checked.rows.select("name", "phone", "guardian_phone", "school", "grade").to_dicts()
    assert got == expected_students(sheet)


def test_encrypted_workbook_is_named_as_such() -> None:
    data = encrypted_workbook()
    assert detect_type(data[:512], refuse_encrypted=False) == "xls"
    with pytest.raises(ImportFailure, match="protected with a password"):
        detect_type(data)


def test_csv_in_cp949_reads_like_utf8() -> None:
    sheet = messy_rows(5, seed=2)
    for encoding in ("utf-8-sig", "cp949"):
        checked = validate(read_sheet(write_csv(sheet, encoding=encoding), "csv", max_rows=100))
        assert checked.rows["name"].to_list() == [e["name"] for e in expected_students(sheet)]


def test_bad_files_fail_with_a_reason_and_a_code() -> None:
    def code_of(data: bytes, max_rows: int = 100) -> str:
        with pytest.raises(ImportFailure) as failure:
            read_sheet(data, "xlsx", max_rows=max_rows)
        return failure.value.code

    assert code_of(write_xlsx(messy_rows(3))[:400]) == "corrupt_file"
    only_school = MessySheet(messy_rows(3).rows, {"school": "학교", "grade": "학년"})
    assert code_of(write_xlsx(only_school)) == "no_header"
    assert code_of(write_xlsx(messy_rows(0))) == "no_data_rows"
    assert code_of(write_xlsx(messy_rows(6)), max_rows=5) == "too_many_rows"


# --- validate ------------------------------------------------------------------------------


def test_every_error_names_row_column_code_and_reason() -> None:
    sheet = with_problems(messy_rows(4, seed=0))
    raw = read_sheet(write_xlsx(sheet, title=False), "xlsx", max_rows=100)
    checked = validate(raw)
    header = HEADER_VARIANTS[0]
    # Without a title the header is row 1; rows 2-5 are good (plus blank rows, if any).
    first_bad = 2 + 4 + len(sheet.blank_after)
    got = [(e["row"] - first_bad, e["column"], e["code"]) for e in checked.errors.to_dicts()]
    assert got == [
        (0, header["name"], "name_missing"),
        (1, header["guardian_phone"], "guardian_phone_invalid"),
        (3, header["guardian_phone"], "guardian_phone_missing"),
    ]
    # The bad student phone costs the row nothing but its phone: a warning.
    assert [
        (w["row"] - first_bad, w["column"], w["reason"]) for w in checked.warnings.to_dicts()
    ] == [(2, header["phone"], "student_phone_invalid")]
    # The repeat of the first row (same class) is a duplicate of it, not an error.
    assert checked.duplicates.to_dicts() == [{"row": first_bad + 4, "duplicate_of_row": 2}]
    assert checked.rows.height == 5 and checked.total_rows == 9


def test_one_row_per_enrolment_is_merged_and_conflicts_are_errors() -> None:
    base = student_cells(lecture="A1")
    again = student_cells(lecture="B2")
    again.cells = dict(base.cells, lecture="B2")
    conflict = student_cells()
    conflict.cells = dict(base.cells, school="다른학교", lecture="C3")
    sheet = MessySheet([base, again, conflict], HEADER_VARIANTS[0])
    checked = validate(read_sheet(write_xlsx(sheet, title=False), "xlsx", max_rows=10))
    assert checked.merged == 1
    assert checked.rows["lectures"].to_list() == [["A1", "B2"]]
    assert checked.errors.select("row", "column", "code").to_dicts() == [
        {"row": 4, "column": "이름", "code": "conflicting_duplicate"}
    ]


# --- plan ----------------------------------------------------------------------------------


def _existing(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "student_id": pl.String,
            "name": pl.String,
            "guardian_phone": pl.String,
            "phone": pl.String,
            "school": pl.String,
            "grade": pl.String,
            "grade_raw": pl.String,
            "deleted": pl.Boolean,
        },
    )


def _plan_inputs() -> tuple[pl.DataFrame, list[dict[str, object]]]:
    sheet = messy_rows(6, lecture="A1", seed=0)
    rows = validate(read_sheet(write_xlsx(sheet), "xlsx", max_rows=100)).rows
    return rows, rows.to_dicts()


def test_plan_verdicts() -> None:
    rows, r = _plan_inputs()
    existing = _existing(
        [
            # row 0: same details -> unchanged
            {"student_id": "s0", "name": r[0]["name"], "guardian_phone": r[0]["guardian_phone"],
             "phone": r[0]["phone"], "school": r[0]["school"], "grade": r[0]["grade"],
             "grade_raw": r[0]["grade_raw"], "deleted": False},
            # row 1: another grade -> update
            {"student_id": "s1", "name": r[1]["name"], "guardian_phone": r[1]["guardian_phone"],
             "phone": r[1]["phone"], "school": r[1]["school"], "grade": "중1",
             "grade_raw": "중1", "deleted": False},
            # row 2: only a deleted match -> error, no twin
            {"student_id": "s2", "name": r[2]["name"], "guardian_phone": r[2]["guardian_phone"],
             "phone": None, "school": "", "grade": "", "deleted": True},
            # row 3: two live matches -> error
            {"student_id": "s3", "name": r[3]["name"], "guardian_phone": r[3]["guardian_phone"],
             "phone": None, "school": "", "grade": "", "deleted": False},
            {"student_id": "s3b", "name": r[3]["name"], "guardian_phone": r[3]["guardian_phone"],
             "phone": None, "school": "", "grade": "", "deleted": False},
        ]
    )  # fmt: skip
    lectures = pl.DataFrame(
        [{"lecture_id": "L1", "code": "a1", "title": "수학", "status": "open", "capacity": None,
          "active": 0}]
    )  # fmt: skip
    active = pl.DataFrame({"student_id": ["s0"], "lecture_id": ["L1"]})
    plan = build_plan(rows, existing, active, lectures, mode="upsert", target_lecture_ids=[])
    verdicts = dict(zip(plan.rows["row"], plan.rows["verdict"], strict=True))
    assert [verdicts.get(x["row"]) for x in r] == [
        "unchanged", "update", None, None, "create", "create",
    ]  # fmt: skip
    assert [e["row"] for e in plan.errors.to_dicts()] == [r[2]["row"], r[3]["row"]]
    assert "deleted student" in plan.errors["message"][0]
    # s0 is already in L1: only the others are new enrolments (codes match case-insensitively).
    assert plan.enrolments == 3
    ids = plan.rows.filter(pl.col("verdict") == "create")["student_id"].to_list()
    assert all(uuid.UUID(i) for i in ids) and len(set(ids)) == 2

    insert = build_plan(rows, existing, active, lectures, mode="insert", target_lecture_ids=[])
    assert insert.count("update") == 0 and insert.count("unchanged") == 2


def test_plan_lectures_unknown_closed_and_full() -> None:
    rows, _ = _plan_inputs()
    lectures = pl.DataFrame(
        [{"lecture_id": "L1", "code": "A1", "title": "수학", "status": "open", "capacity": 4,
          "active": 2}]
    )  # fmt: skip
    plan = build_plan(rows, _existing([]), pl.DataFrame(), lectures, mode="upsert",
                      target_lecture_ids=[])  # fmt: skip
    # Two seats: the first two rows get them, in file order; the rest are told why not.
    assert plan.enrolments == 2
    assert plan.rows["lecture_ids"].to_list()[:3] == [["L1"], ["L1"], []]
    assert plan.errors["message"].to_list() == ["lecture 수학 is full (4 seats): not enrolled"] * 4
    assert plan.count("create") == 6  # full lectures do not stop the students

    closed = lectures.with_columns(pl.lit("closed").alias("status"))
    plan = build_plan(rows, _existing([]), pl.DataFrame(), closed, mode="upsert",
                      target_lecture_ids=[])  # fmt: skip
    assert plan.rows.height == 0 and set(plan.errors["message"]) == {"lecture 수학 is closed"}

    plan = build_plan(rows, _existing([]), pl.DataFrame(), lectures.clear(), mode="upsert",
                      target_lecture_ids=[])  # fmt: skip
    assert set(plan.errors["message"]) == {"no lecture with the code or title A1"}


# --- workbooks -----------------------------------------------------------------------------


def test_error_workbook_highlights_bad_cells() -> None:
    sheet = with_problems(messy_rows(2, seed=0))
    raw = read_sheet(write_xlsx(sheet, title=False), "xlsx", max_rows=100)
    checked = validate(raw)
    book = openpyxl.load_workbook(
        io.BytesIO(error_workbook(raw.frame, raw.headers, checked.errors))
    )
    ws = book.active
    assert ws is not None
    header = [c.value for c in ws[1]]
    assert header[0] == "원본 행" and header[-1] == "오류" and header[1] == "이름"
    body = list(ws.iter_rows(min_row=2))
    assert [int(row[0].value) for row in body] == checked.errors["row"].to_list()
    name_cell = body[0][1 + header.index("이름") - 1]
    assert name_cell.fill.fgColor.rgb.endswith("FFC7CE")  # the empty name is highlighted
    assert body[0][-1].value.startswith("이름: required")
    phone_col = header.index("보호자 연락처")
    assert body[1][phone_col].value == "010-12"  # the original text, not a number
    assert body[1][phone_col].fill.fgColor.rgb.endswith("FFC7CE")


def test_export_sheet_keeps_phones_as_text_and_formats_dates() -> None:
    data = write_sheet(
        "학생",
        [Column("이름"), Column("연락처"), Column("생년월일", "date"), Column("점수", "number")],
        [("김민수", "010-0123-4567", dt.date(2012, 3, 4), 95.5)],
    )
    ws = openpyxl.load_workbook(io.BytesIO(data)).active
    assert ws is not None
    assert [c.value for c in ws[1]] == ["이름", "연락처", "생년월일", "점수"]
    row = ws[2]
    assert row[1].value == "010-0123-4567" and row[1].data_type == "s"
    assert row[2].value == dt.datetime(2012, 3, 4) and row[2].number_format == "yyyy-mm-dd"
    assert row[3].value == 95.5


def test_numeric_title_cells_do_not_break_header_search() -> None:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet()
    ws.write_row(0, 0, [2026, 3.5, True])
    ws.write_row(1, 0, ["성명", "부모님 연락처"])
    ws.write_row(2, 0, ["김민수", 1023456789])
    wb.close()
    checked = validate(read_sheet(buf.getvalue(), "xlsx", max_rows=10))
    assert checked.rows.select("row", "name", "guardian_phone").to_dicts() == [
        {"row": 3, "name": "김민수", "guardian_phone": "010-2345-6789"}
    ]
