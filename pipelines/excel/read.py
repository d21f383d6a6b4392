"""Read a workbook or CSV into text cells and find its header row.

Every cell is read as text (fastexcel ``dtypes="string"``): type guessing turns a phone
column into floats (``1012345678.0``) and later text cells into nulls. Rows keep their
Excel numbers so errors point at the row the academy sees.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from typing import Any

import fastexcel
import msgspec
import polars as pl
from xlsxwriter.utility import xl_col_to_name

from pipelines.excel.common import (
    ALIAS_TO_FIELD,
    ALIASES,
    ImportFailure,
    header_key,
)
from pipelines.excel.detect import FileType

# The header may sit below a title, a date line, a note...: look this far down for it.
HEADER_SCAN_ROWS = 30
REQUIRED_FIELDS = ("name", "guardian_phone")


@dataclass
class RawSheet:
    """The data rows of one sheet, every cell as text (or null).

    ``frame`` has ``row`` (the Excel row number) and one column ``c{i}`` per source column;
    ``headers[i]`` is ``(column letter, header text)`` of ``c{i}``; ``fields`` maps an
    import field (``name``, ``guardian_phone``...) to the ``c{i}`` holding it.
    """

    frame: pl.DataFrame
    headers: list[tuple[str, str]]
    fields: dict[str, str]
    header_row: int  # 1-based
    sheet_name: str = ""
    ignored_columns: list[str] = field(default_factory=list)

    def header_of(self, field_name: str) -> str:
        """The header text the file uses for a field (for messages and the workbook)."""
        column = self.fields.get(field_name)
        if column is None:
            return field_name
        return self.headers[int(column[1:])][1]

    def record(self) -> dict[str, Any]:
        """What the import keeps of the sheet besides its cells (``excel_import.headers``),
        so later steps can rebuild it (``from_record``)."""
        kept = SheetRecord(self.headers, self.fields, self.sheet_name, self.ignored_columns)
        return dict(msgspec.to_builtins(kept))

    @classmethod
    def from_record(cls, frame: pl.DataFrame, record: Any, header_row: int | None) -> RawSheet:
        """The sheet whose cells are ``frame`` and whose ``record()`` is ``record``."""
        kept = msgspec.convert(record, SheetRecord)
        return cls(frame, kept.columns, kept.fields, header_row or 1, kept.sheet, kept.ignored)


class SheetRecord(msgspec.Struct):
    """``RawSheet.record()``: the headers, the field map, the sheet's name, and the columns
    the import ignores (shown in the result)."""

    columns: list[tuple[str, str]]
    fields: dict[str, str]
    sheet: str = ""
    ignored: list[str] = []


def read_sheet(data: bytes, file_type: FileType, *, max_rows: int) -> RawSheet:
    """The first sheet with a recognisable header, as a ``RawSheet``.

    Raises ``ImportFailure`` when the file cannot be read, has no header naming at least
    a name column and a guardian phone column, has no data rows, or has more than
    ``max_rows`` data rows.
    """
    if file_type == "csv":
        grids = [("", _csv_grid(data, max_rows))]
    else:
        grids = _excel_grids(data, max_rows)
    problems = []
    for sheet_name, (grid, letters) in grids:
        try:
            return _locate(grid, letters, sheet_name, max_rows)
        except _NoHeader as exc:
            problems.append(str(exc))
    raise ImportFailure(
        "no recognisable header row: the first rows of the sheet must name at least a "
        "student name column (이름 / 성명 / 학생명) and a guardian phone column "
        "(보호자 연락처 / 학부모 연락처 / 부모님 연락처)"
    )


class _NoHeader(Exception):
    pass


def _excel_grids(data: bytes, max_rows: int) -> list[tuple[str, tuple[pl.DataFrame, list[str]]]]:
    try:
        reader = fastexcel.read_excel(data)
        names = reader.sheet_names
    except fastexcel.FastExcelError as exc:
        raise ImportFailure(
            "the file could not be read as an Excel workbook: it is damaged, or protected "
            f"with a password ({_first_line(exc)})"
        ) from None
    grids = []
    for index, name in enumerate(names):
        try:
            # skip_rows=0: keep leading empty rows so row i of the frame is Excel row i+1.
            sheet = reader.load_sheet(
                index,
                header_row=None,
                skip_rows=0,
                dtypes="string",
                n_rows=max_rows + HEADER_SCAN_ROWS + 1,
            )
            if sheet.visible != "visible" and len(names) > 1:
                continue
            frame = sheet.to_polars()
            letters = [xl_col_to_name(c.absolute_index) for c in sheet.available_columns()]
        except fastexcel.FastExcelError as exc:
            raise ImportFailure(
                f"sheet {name!r} could not be read: the file is damaged ({_first_line(exc)})"
            ) from None
        grids.append((name, (frame, letters)))
    return grids


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _csv_grid(data: bytes, max_rows: int) -> tuple[pl.DataFrame, list[str]]:
    text = None
    for encoding in ("utf-8-sig", "cp949"):
        try:
            text = codecs.decode(data, encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        raise ImportFailure("the CSV file is neither UTF-8 nor CP949 (EUC-KR) text")
    try:
        rows = []
        for i, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
            if i > max_rows + HEADER_SCAN_ROWS:
                break
            rows.append(row)
    except csv.Error as exc:
        raise ImportFailure(f"the CSV file is malformed: {exc}") from None
    width = max((len(r) for r in rows), default=0)
    columns = {
        f"__c{j}": [(r[j] if j < len(r) and r[j] != "" else None) for r in rows]
        for j in range(width)
    }
    frame = pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))
    return frame, [xl_col_to_name(j) for j in range(width)]


def _locate(grid: pl.DataFrame, letters: list[str], sheet_name: str, max_rows: int) -> RawSheet:
    source = grid.columns
    header_index = None
    fields: dict[str, str] = {}
    for i, row in enumerate(grid.head(HEADER_SCAN_ROWS).iter_rows()):
        found: dict[str, str] = {}
        for j, cell in enumerate(row):
            if cell is None:
                continue
            name = ALIAS_TO_FIELD.get(header_key(cell))
            if name is not None and name not in found:
                found[name] = f"c{j}"
        if all(f in found for f in REQUIRED_FIELDS):
            header_index, fields = i, found
            break
    if header_index is None:
        raise _NoHeader(sheet_name)

    header_cells = grid.row(header_index)
    headers = [(letters[j], (header_cells[j] or "").strip()) for j in range(len(source))]
    body = grid.slice(header_index + 1).rename({old: f"c{j}" for j, old in enumerate(source)})
    body = body.with_columns(
        pl.int_range(header_index + 2, header_index + 2 + body.height, dtype=pl.Int32).alias("row")
    ).select(["row", *[f"c{j}" for j in range(len(source))]])
    # Blank rows (and rows of only spaces) separate groups in hand-made sheets: not data.
    used = [f"c{j}" for j in range(len(source))]
    blank = pl.all_horizontal(
        [pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in used]
    )
    body = body.filter(~blank)
    if body.height == 0:
        raise ImportFailure(
            f"the sheet has a header (row {header_index + 1}) but no data rows under it"
        )
    if body.height > max_rows:
        raise ImportFailure(
            f"the sheet has more than {max_rows:,} data rows: split it into several files"
        )
    ignored = [
        f"{letter} ({text})" for j, (letter, text) in enumerate(headers)
        if text and f"c{j}" not in fields.values()
    ]  # fmt: skip
    return RawSheet(body, headers, fields, header_index + 1, sheet_name, ignored)


# Every alias, for documentation and the API's description of accepted headers.
ACCEPTED_HEADERS = {field_name: list(aliases) for field_name, aliases in ALIASES.items()}
