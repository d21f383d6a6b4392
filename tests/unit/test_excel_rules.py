"""The import's rules, one realistic roster each (README, "Excel"): what becomes a
student, a row error, a warning or a duplicate, and the code a bad file fails with."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import polars as pl
import pytest

from pipelines.excel.common import ImportFailure, field_of
from pipelines.excel.detect import detect_type
from pipelines.excel.grade import grade_of
from pipelines.excel.phones import classify_phones
from pipelines.excel.read import read_sheet
from pipelines.excel.validate import Validated, validate
from tests.factories.workbooks import encrypted_workbook, grid_text, grid_xls, grid_xlsx

HEADER = ["번호", "이름", "학생 연락처", "보호자 연락처", "학교", "학년", "반", "비고"]


def checked(data: bytes, max_rows: int = 1000) -> Validated:
    return validate(read_sheet(data, detect_type(data), max_rows=max_rows))


def students(v: Validated) -> list[tuple[Any, ...]]:
    return [
        (r["row"], r["name"], r["phone"], r["guardian_phone"])
        for r in v.rows.select("row", "name", "phone", "guardian_phone").to_dicts()
    ]


def errors(v: Validated) -> list[tuple[int, str, str]]:
    return [(e["row"], e["column"], e["code"]) for e in v.errors.to_dicts()]


def warnings(v: Validated) -> list[tuple[int, str, str]]:
    return [(w["row"], w["column"], w["reason"]) for w in v.warnings.to_dicts()]


def failure(data: bytes, max_rows: int = 1000) -> ImportFailure:
    with pytest.raises(ImportFailure) as caught:
        read_sheet(data, detect_type(data), max_rows=max_rows)
    return caught.value


# --- 1, 2, 3: phones -----------------------------------------------------------------------


def test_student_phone_problems_are_warnings_and_the_student_is_imported() -> None:
    roster = [
        ["2026 봄학기 수강생"],
        HEADER,
        [1, "김민수", "02-555-1234", "010-1111-2222", "대치중", "2", "A반", None],
        [2, "이서연", "031)123-4567", "010-1111-3333", "대치중", "2", "A반", None],
        [3, "박지훈", "070-8888-1234", "010-1111-4444", "대치중", "2", "A반", None],
        [4, "최유나", "010-12", "010-1111-5555", "대치중", "2", "A반", "번호 모름"],
        [5, "정하늘", "엄마폰", "010-1111-6666", "대치중", "2", "A반", None],
        [6, "한지민", "없음", "010-1111-7777", "대치중", "2", "A반", None],
        [7, "오세훈", "010-2222-1111", "010-1111-8888", "대치중", "2", "A반", None],
    ]
    v = checked(grid_xlsx(roster))
    assert errors(v) == []
    assert students(v) == [
        (3, "김민수", None, "010-1111-2222"),
        (4, "이서연", None, "010-1111-3333"),
        (5, "박지훈", None, "010-1111-4444"),
        (6, "최유나", None, "010-1111-5555"),
        (7, "정하늘", None, "010-1111-6666"),
        (8, "한지민", None, "010-1111-7777"),  # a placeholder: no number, no message
        (9, "오세훈", "010-2222-1111", "010-1111-8888"),
    ]
    assert warnings(v) == [
        (3, "학생 연락처", "student_phone_not_mobile"),
        (4, "학생 연락처", "student_phone_not_mobile"),
        (5, "학생 연락처", "student_phone_not_mobile"),
        (6, "학생 연락처", "student_phone_invalid"),
        (7, "학생 연락처", "student_phone_invalid"),
    ]


def test_placeholders_mean_no_number_in_any_phone_column() -> None:
    blanks = ["없음", "-", "x", "X", "--", "－", "ｘ", "   ", "\u00a0", None]
    roster = [HEADER] + [
        [i, f"학생{i}", student, f"010-3000-{i:04d}", "", "", "", None]
        for i, student in enumerate(blanks, start=1)
    ] + [
        [20 + i, f"보호자없음{i}", f"010-4000-{i:04d}", guardian, "", "", "", None]
        for i, guardian in enumerate(blanks[:-3], start=1)
    ]  # fmt: skip
    v = checked(grid_xlsx(roster))
    assert warnings(v) == []
    assert [r[2] for r in students(v)] == [None] * len(blanks)
    assert errors(v) == [
        (row, "보호자 연락처", "guardian_phone_missing")
        for row in range(2 + len(blanks), 2 + len(blanks) + len(blanks) - 3)
    ]


def test_guardian_phones_go_to_mobiles_and_010_is_normalised_from_any_spelling() -> None:
    spellings = {
        "０１０－２３４５－６７８９": "010-2345-6789",  # full-width
        "+82 10-2345-6780": "010-2345-6780",
        "+82-010-2345-6781": "010-2345-6781",
        "82 10 2345 6782": "010-2345-6782",
        1023456783: "010-2345-6783",  # a number cell: the leading 0 is lost
        "010.2345.6784": "010-2345-6784",
        "(010) 2345-6785": "010-2345-6785",
        "010\u00a02345\u00a06786": "010-2345-6786",  # NBSP
        "010-23456-787": "010-2345-6787",
        "01023456788": "010-2345-6788",
        "010-5978-1234": "010-5978-1234",  # outside libphonenumber's table: accepted
    }
    landlines = ["02-555-1234", "031-123-4567", "070-1234-5678", "(064)712-3456", 212345678]
    invalid = ["010-1234-567", "011-234-5678", "전화 안 받음"]
    cells = [*spellings, *landlines, *invalid]
    roster = [HEADER] + [
        [i, f"원생{i}", None, phone, "", "", "", None] for i, phone in enumerate(cells, start=1)
    ]
    v = checked(grid_xlsx(roster))
    assert [r[3] for r in students(v)] == list(spellings.values())
    first_bad = 2 + len(spellings)
    assert errors(v) == [
        (first_bad + i, "보호자 연락처", "guardian_phone_not_mobile") for i in range(5)
    ] + [(first_bad + 5 + i, "보호자 연락처", "guardian_phone_invalid") for i in range(3)]


def test_phone_classes() -> None:
    got = classify_phones(
        pl.Series(["010-5999-0000", "+82 10 1234 5678", "02 1234 5678", "1588-1234", "없음", None])
    ).to_dicts()
    assert got == [
        {"phone": "010-5999-0000", "problem": None},
        {"phone": "010-1234-5678", "problem": None},
        {"phone": None, "problem": "not_mobile"},
        {"phone": None, "problem": "not_mobile"},
        {"phone": None, "problem": "missing"},
        {"phone": None, "problem": "missing"},
    ]


# --- 4: what a data row is -----------------------------------------------------------------


def test_rows_without_a_name_or_phone_are_not_data() -> None:
    roster = [
        HEADER,
        [1, "김민수", None, "010-5000-0001", None, None, None, None],
        [2],  # numbered in advance, never filled
        [3, None, None, None, None, None, None, "3월 신규 예정"],
        [4, None, None, "-", None, None, "A반", None],  # a dash and a class: a template
        [5, None, "010-5000-0099", None, None, None, None, None],  # a phone: data
        [None, "이서연", None, None, None, None, None, None],  # a name: data
    ]
    v = checked(grid_xlsx(roster))
    assert students(v) == [(2, "김민수", None, "010-5000-0001")]
    assert errors(v) == [
        (6, "이름", "name_missing"),
        (6, "보호자 연락처", "guardian_phone_missing"),
        (7, "보호자 연락처", "guardian_phone_missing"),
    ]
    assert v.total_rows == 3


def test_header_and_no_data_rows_fails_no_data_rows() -> None:
    roster = [HEADER, [1], [2], [3, None, None, None, None, None, None, "메모"]]
    assert failure(grid_xlsx(roster)).code == "no_data_rows"


# --- 5, 6: headers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("보호자\n연락처", "guardian_phone"), ("학부모 H.P", "guardian_phone"),
        ("어머니HP", "guardian_phone"), ("모 핸드폰", "guardian_phone"),
        ("부 전화", "guardian_phone"), ("부모님 휴대폰 번호", "guardian_phone"),
        ("아버지 전화번호", "guardian_phone"), ("보호자연락처(필수)", "guardian_phone"),
        ("연락처", "phone"), ("학생 H.P", "phone"), ("H.P", "phone"), ("휴대폰", "phone"),
        ("학생\n전화번호", "phone"), ("핸드폰", "phone"),
        ("성 명", "name"), ("학생명", "name"), ("원생명", "name"), ("학생 이름", "name"),
        ("반", "lecture"), ("수강반", "lecture"), ("수업", "lecture"), ("강좌", "lecture"),
        ("집 전화", None), ("비고", None), ("No.", None),
    ],
)  # fmt: skip
def test_headers_are_read_by_family(header: str, field: str | None) -> None:
    assert field_of(header) == field


def test_a_roster_with_office_headers() -> None:
    roster = [
        ["No.", "원생명", "학생 H.P", "어머니\nH.P", "학교명", "학 년", "강좌"],
        [1, "김민수", "010-6000-0001", "010-6100-0001", "대치중", "2", "A반"],
    ]
    raw = read_sheet(grid_xlsx(roster), "xlsx", max_rows=10)
    assert raw.fields == {
        "name": "c1", "phone": "c2", "guardian_phone": "c3", "school": "c4", "grade": "c5",
        "lecture": "c6",
    }  # fmt: skip


@pytest.mark.parametrize("writer", [grid_xlsx, grid_xls])
def test_two_row_header_under_a_merged_parent(writer: Any) -> None:
    roster = [
        ["2026 여름특강 명단"],
        [],
        ["번호", "이름", "연락처", None, "학교", "반"],
        [None, None, "학생", "보호자", None, None],
        [1, "김민수", "010-7000-0001", "010-7100-0001", "대치중", "A반"],
        [2, "이서연", "02-555-0000", "010-7100-0002", "대치중", "A반"],
    ]
    merges = [(2, 0, 3, 0, "번호"), (2, 1, 3, 1, "이름"), (2, 2, 2, 3, "연락처"),
              (2, 4, 3, 4, "학교"), (2, 5, 3, 5, "반")]  # fmt: skip
    v = checked(writer(roster, merges=merges))
    assert students(v) == [
        (5, "김민수", "010-7000-0001", "010-7100-0001"),
        (6, "이서연", None, "010-7100-0002"),
    ]
    assert warnings(v) == [(6, "학생 연락처", "student_phone_not_mobile")]


def test_two_row_header_in_a_csv() -> None:
    roster = [
        ["이름", "연락처", "", "학교"],
        ["", "학생", "보호자", ""],
        ["김민수", "010-7200-0001", "010-7300-0001", "대치중"],
    ]
    v = checked(grid_text(roster))
    assert students(v) == [(3, "김민수", "010-7200-0001", "010-7300-0001")]


# --- 7: whole-file failures ----------------------------------------------------------------


def test_whole_file_failures_have_stable_codes() -> None:
    roster = [HEADER, [1, "김민수", None, "010-8000-0001", None, None, None, None]]
    good = grid_xlsx(roster)
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as package:
        package.writestr("word/document.xml", "<w:document/>")

    def code(data: bytes, max_rows: int = 1000) -> tuple[str, str | None]:
        with pytest.raises(ImportFailure) as caught:
            read_sheet(data, detect_type(data), max_rows=max_rows)
        return caught.value.code, caught.value.column

    for empty in (b"", b"  \r\n"):
        with pytest.raises(ImportFailure) as caught:
            detect_type(empty)
        assert caught.value.code == "empty_file"
    with pytest.raises(ImportFailure) as caught:
        detect_type(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    assert caught.value.code == "not_a_spreadsheet"
    assert code(docx.getvalue()) == ("not_a_spreadsheet", None)
    assert code(good[: len(good) // 2]) == ("corrupt_file", None)
    assert code(encrypted_workbook()) == ("encrypted", None)
    assert code(grid_xlsx([["2026 명단"], ["작성자", "교무실"]])) == ("no_header", None)
    assert code(grid_xlsx([HEADER, [1]])) == ("no_data_rows", None)
    no_guardian = [["이름", "학생 연락처", "학교"], ["김민수", "010-8000-0002", "대치중"]]
    assert code(grid_xlsx(no_guardian)) == ("missing_required_column", "guardian_phone")
    no_name = [["보호자 연락처", "학교"], ["010-8000-0003", "대치중"]]
    assert code(grid_xlsx(no_name)) == ("missing_required_column", "name")
    assert code(grid_xlsx([*roster, [2, "이서연", None, "010-8000-0004"]]), 1) == (
        "too_many_rows",
        None,
    )
    japanese = grid_text(
        [["名前", "保護者電話"], ["山田太郎", "090-1234-5678"]], encoding="shift_jis"
    )
    assert code(japanese) == ("unsupported_encoding", None)


# --- 8: encodings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("utf-8", ","), ("utf-8-sig", ","), ("cp949", ","), ("utf-16", "\t")],
)
def test_text_rosters_in_every_encoding_read_alike(encoding: str, delimiter: str) -> None:
    roster = [
        ["이름", "학생 연락처", "보호자 연락처", "학교", "학년"],
        ["김민수", "010-9000-0001", "010-9100-0001", "대치중학교", "2"],
        ["똠양꿍", "", "010-9100-0002", "휘문고", "고1"],
    ]
    data = grid_text(roster, encoding=encoding, delimiter=delimiter)
    assert detect_type(data) == "csv"
    v = checked(data)
    assert students(v) == [
        (2, "김민수", "010-9000-0001", "010-9100-0001"),
        (3, "똠양꿍", None, "010-9100-0002"),
    ]
    assert v.rows["grade"].to_list() == ["중2", "고1"]


# --- 9: grade ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "school", "grade"),
    [
        ("2학년", "대치중", "중2"), ("2학년", "대치중학교", "중2"), ("중학교 2학년", "", "중2"),
        ("2", "서울중", "중2"), ("2.0", "서울 중학교", "중2"), ("고등학교 1학년", "", "고1"),
        ("중2", "", "중2"), ("초6", "", "초6"), ("3학년", "한빛초등학교", "초3"),
        ("1", "휘문고", "고1"), ("예비고1", "대치중", None), ("2학년", "", None),
        ("4학년", "대치중", None), ("재수", "", None), ("", "대치중", None),
    ],
)  # fmt: skip
def test_grade_is_derived_where_it_can_be(cell: str, school: str, grade: str | None) -> None:
    assert grade_of(cell, school) == grade


def test_grade_raw_keeps_the_cell() -> None:
    roster = [
        ["이름", "보호자 연락처", "학교", "학년"],
        ["김민수", "010-9200-0001", "대치중", 2],
        ["이서연", "010-9200-0002", "휘문고등학교", "고등학교 1학년"],
        ["박지훈", "010-9200-0003", "대치중", "예비고1"],
    ]
    got = checked(grid_xlsx(roster)).rows.select("grade", "grade_raw").rows()
    assert got == [("중2", "2"), ("고1", "고등학교 1학년"), (None, "예비고1")]


# --- 10: identity and duplicates -----------------------------------------------------------


def test_duplicates_by_class_and_error_rows_never_take_part() -> None:
    roster = [
        HEADER,
        [1, "김민수", None, "02-123-4567", "대치중", "2", "A반", None],  # error: landline
        [2, "김민수", None, "010-9300-0001", "대치중", "2", "A반", None],
        [3, "김민수", None, "010.9300.0001", "대치중", "2", "A반", "again"],  # duplicate of 3
        [4, "김민수", None, "010-9300-0001", "대치중", "2", "B반", None],  # second enrolment
        [5, "김민수", None, "010-9300-0001", "", "", "B반", None],  # duplicate of 5
        [6, "김민수", None, "010-9300-0002", "대치중", "2", "A반", None],  # another student
        [7, "이서연", None, "010-9300-0003", "", "", "", None],
        [8, "이서연", None, "010-9300-0003", "", "", "", None],  # no class: duplicate of 8
    ]
    v = checked(grid_xlsx(roster))
    assert errors(v) == [(2, "보호자 연락처", "guardian_phone_not_mobile")]
    assert v.duplicates.rows() == [(4, 3), (6, 5), (9, 8)]
    assert v.rows.select("row", "guardian_phone", "lectures").rows() == [
        (3, "010-9300-0001", ["A반", "B반"]),
        (7, "010-9300-0002", ["A반"]),
        (8, "010-9300-0003", []),
    ]
    assert v.merged == 1
