"""Messy enrollment workbooks, as academies really send them: a merged title row and a
note above the header, Hangul header aliases, phones typed as numbers (leading 0 lost),
``+82`` and dotted spellings, full-width characters, stray spaces, blank rows, duplicates.

``messy_rows`` makes the cells and says what each row should become; ``write_xlsx`` /
``write_csv`` lay them out. Phones come from ``tests.factories.unique_mobile`` (always
valid numbers).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import xlsxwriter

from tests.factories import korean_name, unique_mobile

# Header variants, all of which the import must recognise.
HEADER_VARIANTS: list[dict[str, str]] = [
    {"name": "이름", "phone": "연락처", "guardian_phone": "보호자 연락처", "school": "학교",
     "grade": "학년", "lecture": "반", "guardian_name": "보호자"},
    {"name": "성명", "phone": "학생 연락처", "guardian_phone": "학부모 연락처", "school": "학교명",
     "grade": "학년", "lecture": "강의", "guardian_name": "학부모"},
    {"name": "학생명", "phone": "학생연락처", "guardian_phone": "부모님 연락처", "school": "학교",
     "grade": "학 년", "lecture": "강의코드", "guardian_name": "보호자명"},
]  # fmt: skip
FIELDS = ("name", "phone", "guardian_phone", "guardian_name", "school", "grade", "lecture")


def spell_phone(canonical: str, style: int) -> Any:
    """``010-1234-5678`` as people type it: 0 as is, 1 a number that lost its 0, 2 ``+82``,
    3 dotted, 4 bare digits, 5 full-width digits."""
    digits = canonical.replace("-", "")
    if style == 1:
        return int(digits)  # 1012345678 in a numeric cell
    if style == 2:
        return f"+82 {digits[1:3]}-{digits[3:7]}-{digits[7:]}"
    if style == 3:
        return canonical.replace("-", ".")
    if style == 4:
        return digits
    if style == 5:
        return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in canonical)
    return canonical


@dataclass
class MessyRow:
    cells: dict[str, Any]  # field -> cell value as written
    # What the import should make of it: the canonical values (None for an error row).
    expect: dict[str, Any] | None = None
    error_field: str | None = None  # the field the error points at
    warning_field: str | None = None  # the field warned about (the row is imported)


@dataclass
class MessySheet:
    rows: list[MessyRow]
    headers: dict[str, str]
    blank_after: set[int] = field(default_factory=set)  # blank rows after these indexes


def student_cells(
    *, name: str | None = None, lecture: str = "", style: int = 0, grade: str = "중2"
) -> MessyRow:
    name = name or korean_name()
    phone, guardian = unique_mobile(), unique_mobile()
    cells = {
        "name": name,
        "phone": spell_phone(phone, style),
        "guardian_phone": spell_phone(guardian, (style + 1) % 6),
        "guardian_name": "어머니",
        "school": "한빛중학교",
        "grade": grade,
        "lecture": lecture,
    }
    expect = {
        "name": name,
        "phone": phone,
        "guardian_phone": guardian,
        "school": "한빛중학교",
        "grade": grade,
    }
    return MessyRow(cells, expect)


def messy_rows(count: int, *, lecture: str = "", seed: int = 7) -> MessySheet:
    """``count`` valid students in every phone spelling, plus, among them: a name with
    full-width letters and stray spaces, and blank rows. No errors, no duplicates; add
    those with ``with_problems``."""
    rnd = random.Random(seed)
    rows = [student_cells(lecture=lecture, style=i % 6) for i in range(count)]
    if rows:
        # Full-width space inside and spaces around: cleaned to "김 하나".
        rows[0].cells["name"] = "  김\u3000하나 "
        assert rows[0].expect is not None
        rows[0].expect["name"] = "김 하나"
        rows[0].cells["school"] = "한빛중학교\u3000"
    blank_after = {rnd.randrange(count) for _ in range(max(1, count // 10))} if count else set()
    return MessySheet(rows, HEADER_VARIANTS[seed % len(HEADER_VARIANTS)], blank_after)


def with_problems(sheet: MessySheet) -> MessySheet:
    """Adds one of each bad row: no name, a bad guardian phone, a bad student phone (a
    warning: the student is imported without it), no guardian phone, and an exact repeat
    of the first row (a duplicate)."""
    bad_phone = student_cells()
    bad_phone.cells["guardian_phone"] = "010-12"
    no_name = student_cells()
    no_name.cells["name"] = "   "
    bad_student_phone = student_cells()
    bad_student_phone.cells["phone"] = "전화없음"
    no_guardian = student_cells()
    no_guardian.cells["guardian_phone"] = None
    extra = [
        MessyRow(no_name.cells, None, "name"),
        MessyRow(bad_phone.cells, None, "guardian_phone"),
        MessyRow(
            bad_student_phone.cells,
            dict(bad_student_phone.expect or {}, phone=None),
            warning_field="phone",
        ),
        MessyRow(no_guardian.cells, None, "guardian_phone"),
    ]
    if sheet.rows:
        extra.append(MessyRow(dict(sheet.rows[0].cells), None, "duplicate"))
    return MessySheet([*sheet.rows, *extra], sheet.headers, sheet.blank_after)


def write_xlsx(sheet: MessySheet, *, title: bool = True, extra_column: bool = True) -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("수강생")
    fields = [f for f in FIELDS if f in sheet.headers]
    headers = [sheet.headers[f] for f in fields] + (["비고"] if extra_column else [])
    r = 0
    if title:
        ws.merge_range(0, 0, 0, len(headers) - 1, "2026학년도 봄학기 수강생 명단")
        ws.write(1, 0, "작성: 교무실")
        r = 3  # row 3 (index 2) stays empty
    ws.write_row(r, 0, headers)
    r += 1
    for i, row in enumerate(sheet.rows):
        values = [row.cells.get(f) for f in fields] + (["메모"] if extra_column else [])
        for j, value in enumerate(values):
            if value is not None:
                ws.write(r, j, value)
        r += 1
        if i in sheet.blank_after:
            r += 1
    wb.close()
    return buf.getvalue()


def write_xls(sheet: MessySheet) -> bytes:
    """The legacy .xls format (BIFF8, as old office PCs still save), with a title row."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("수강생")
    fields = [f for f in FIELDS if f in sheet.headers]
    ws.write_merge(0, 0, 0, len(fields) - 1, "2026학년도 수강생 명단")
    for j, f in enumerate(fields):
        ws.write(2, j, sheet.headers[f])
    r = 3
    for i, row in enumerate(sheet.rows):
        for j, f in enumerate(fields):
            if row.cells.get(f) is not None:
                ws.write(r, j, row.cells[f])
        r += 1
        if i in sheet.blank_after:
            r += 1
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def encrypted_workbook() -> bytes:
    """What a password-protected .xlsx looks like from outside: an OLE2 compound file whose
    directory names an ``EncryptedPackage`` stream (MS-OFFCRYPTO). Not a valid container
    beyond that, which is all a reader gets to see without the password."""
    header = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)
    directory = "EncryptedInfo".encode("utf-16-le").ljust(128, b"\0")
    directory += "EncryptedPackage".encode("utf-16-le").ljust(128, b"\0")
    return header + directory + bytes(4096)


def write_csv(sheet: MessySheet, *, encoding: str = "utf-8-sig") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    fields = [f for f in FIELDS if f in sheet.headers]
    writer.writerow([sheet.headers[f] for f in fields])
    for row in sheet.rows:
        writer.writerow(["" if row.cells.get(f) is None else row.cells[f] for f in fields])
    return out.getvalue().encode(encoding)


def large_xlsx(count: int, *, lecture: str = "", path: str | None = None) -> bytes | None:
    """``count`` rows in the usual layout, written in constant memory (for benchmarks).
    Every phone is a valid mobile; half the student phones are numeric cells."""
    target: Any = path if path is not None else io.BytesIO()
    wb = xlsxwriter.Workbook(target, {"constant_memory": True, "in_memory": path is None})
    ws = wb.add_worksheet("수강생")
    ws.write_row(0, 0, ["2026 수강생 명단"])
    ws.write_row(2, 0, ["이름", "학생 연락처", "학부모 연락처", "학교", "학년", "반"])
    for i in range(count):
        n = 20_000_000 + i
        student = f"010{2000 + (n // 10000) % 3000:04d}{n % 10000:04d}"
        guardian = f"010{5000 + (i // 10000) % 900:04d}{i % 10000:04d}"
        ws.write_row(
            3 + i,
            0,
            [
                korean_name(i) + str(i),
                int(student) if i % 2 else student,
                f"{guardian[:3]}-{guardian[3:7]}-{guardian[7:]}",
                "한빛중학교",
                f"중{1 + i % 3}",
                lecture,
            ],
        )
    wb.close()
    return None if path is not None else target.getvalue()


def read_back(data: bytes) -> list[list[Any]]:
    """Every row of the first sheet of an xlsx, as values (for comparing exports)."""
    import fastexcel

    sheet = fastexcel.read_excel(data).load_sheet(0, header_row=None, dtypes="string")
    return [list(r) for r in sheet.to_polars().iter_rows()]


def expected_students(sheet: MessySheet) -> list[dict[str, Any]]:
    return [r.expect for r in sheet.rows if r.expect is not None]


def cells_of(rows: Iterable[MessyRow], fields: Sequence[str]) -> list[list[Any]]:
    return [[r.cells.get(f) for f in fields] for r in rows]


# --- rosters laid out cell by cell ----------------------------------------------------------

Merge = tuple[int, int, int, int, str]  # first row, first col, last row, last col, text


def grid_xlsx(rows: Sequence[Sequence[Any]], *, merges: Sequence[Merge] = ()) -> bytes:
    """An xlsx whose first sheet holds ``rows`` from A1 (None: no cell), with merged cells
    written over them, and a formatted but empty stretch below (as offices leave)."""
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("명단")
    for first_row, first_col, last_row, last_col, text in merges:
        ws.merge_range(first_row, first_col, last_row, last_col, text)
    merged = {(r, c) for r0, c0, r1, c1, _ in merges for r in range(r0, r1 + 1)
              for c in range(c0, c1 + 1)}  # fmt: skip
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is not None and (i, j) not in merged:
                ws.write(i, j, value)
    shaded = wb.add_format({"bg_color": "#FFF2CC", "border": 1})
    for i in range(len(rows), len(rows) + 5):
        for j in range(max((len(r) for r in rows), default=1)):
            ws.write_blank(i, j, None, shaded)
    wb.close()
    return buf.getvalue()


def grid_xls(rows: Sequence[Sequence[Any]], *, merges: Sequence[Merge] = ()) -> bytes:
    """``grid_xlsx`` in the legacy .xls format."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    ws = book.add_sheet("명단")
    merged = set()
    for r0, c0, r1, c1, text in merges:
        ws.write_merge(r0, r1, c0, c1, text)
        merged |= {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if value is not None and (i, j) not in merged:
                ws.write(i, j, value)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def grid_text(
    rows: Sequence[Sequence[Any]], *, encoding: str = "utf-8", delimiter: str = ","
) -> bytes:
    """``rows`` as CSV (or tab-separated) text in ``encoding`` (``utf-16`` writes a BOM,
    as Excel's "유니코드 텍스트" does)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode(encoding)
