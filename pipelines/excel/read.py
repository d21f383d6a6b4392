"""Read a workbook or CSV into text cells and find its header row.

Every cell is read as text (fastexcel ``dtypes="string"``): type guessing turns a phone
column into floats (``1012345678.0``) and later text cells into nulls. Rows keep their
Excel numbers so errors point at the row the academy sees.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastexcel
import msgspec
import polars as pl
from xlsxwriter.utility import xl_col_to_name

from pipelines.excel.archive import ArchiveLimits, check_archive
from pipelines.excel.common import LABELS, ImportFailure, field_of
from pipelines.excel.detect import UTF16_BOMS, ZIP_MAGIC, FileType
from pipelines.excel.phones import is_placeholder

# The header may sit below a title, a date line, a note...: look this far down for it.
HEADER_SCAN_ROWS = 30
REQUIRED_FIELDS = ("name", "guardian_phone")
# CP949 text is checked on its start: at least this share of its non-ASCII characters must
# be KS X 1001 Hangul syllables for it to be Korean.
KOREAN_SAMPLE_CHARS = 20_000
KOREAN_SHARE = 0.5


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


def read_sheet(
    data: bytes, file_type: FileType, *, max_rows: int, limits: ArchiveLimits | None = None
) -> RawSheet:
    """The first sheet with a recognisable header, as a ``RawSheet``.

    An .xlsx is first held to ``limits`` (default: the settings' ``EXCEL_MAX_*``) by
    ``archive.check_archive``, so a decompression bomb is refused before it is unpacked.
    Raises ``ImportFailure`` (with its code) when the file is such a bomb, cannot be read,
    has no header naming at least a name column and a guardian phone column, has no data
    rows, or has more than ``max_rows`` data rows.
    """
    if file_type == "csv":
        grids = [("", _csv_grid(data, max_rows))]
    else:
        if file_type == "xlsx":
            check_archive(data, limits or ArchiveLimits.from_settings())
        grids = _excel_grids(data, max_rows)
    best: ImportFailure | None = None
    for sheet_name, (grid, letters) in grids:
        try:
            return _locate(grid, letters, sheet_name, max_rows)
        except _NoHeader as exc:
            if exc.failure.code == "missing_required_column" or best is None:
                best = best if best and best.code == "missing_required_column" else exc.failure
    raise best or _no_header()


class _NoHeader(Exception):
    def __init__(self, failure: ImportFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _no_header() -> ImportFailure:
    return ImportFailure(
        "no_header",
        "no recognisable header row: the first rows of the sheet must name at least a "
        "student name column (이름 / 성명 / 학생명) and a guardian phone column "
        "(보호자 연락처 / 학부모 연락처 / 어머니 H.P ...)",
    )


def _excel_grids(data: bytes, max_rows: int) -> list[tuple[str, tuple[pl.DataFrame, list[str]]]]:
    try:
        reader = fastexcel.read_excel(data)
        names = reader.sheet_names
    except fastexcel.FastExcelError as exc:
        raise _unreadable(data, exc) from None
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
                "corrupt_file",
                f"sheet {name!r} could not be read: the file is damaged ({_first_line(exc)})",
            ) from None
        grids.append((name, (frame, letters)))
    return grids


def _unreadable(data: bytes, exc: BaseException) -> ImportFailure:
    """Why fastexcel could not open the file: a ZIP or OLE2 file that is some other
    document, a password, or damage."""
    reason = _first_line(exc)
    if "password" in reason.lower() or "encrypt" in reason.lower():
        return ImportFailure(
            "encrypted",
            "the workbook is protected with a password: save it without one and upload again",
        )
    if data.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as package:
                names = set(package.namelist())
        except zipfile.BadZipFile:
            names = {"xl/workbook.xml"}  # cut short or damaged: say so below
        if "xl/workbook.xml" not in names:
            return ImportFailure(
                "not_a_spreadsheet",
                "the file is a ZIP package but not an Excel workbook (a Word or other "
                "document?): save the roster as .xlsx, .xls or .csv",
            )
    return ImportFailure(
        "corrupt_file",
        f"the file could not be read as an Excel workbook: it is damaged ({reason})",
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def decode_text(data: bytes) -> str:
    """CSV/text bytes as text: UTF-16 or UTF-8 by their byte order mark, else UTF-8, else
    CP949. CP949 decodes almost any bytes, so text it yields must look Korean (mostly
    KS X 1001 Hangul among the non-ASCII characters): a Shift_JIS file is refused
    (``unsupported_encoding``) instead of read as garbage."""
    if data.startswith(UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise _unsupported_encoding() from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        raise _unsupported_encoding() from None
    if not _looks_korean(text[:KOREAN_SAMPLE_CHARS]):
        raise _unsupported_encoding()
    return text


def _looks_korean(text: str) -> bool:
    foreign = [ch for ch in text if ord(ch) > 0x7F]
    if not foreign:
        return True
    hangul = sum(1 for ch in foreign if "가" <= ch <= "힣" and _in_ks_x_1001(ch))
    return hangul >= KOREAN_SHARE * len(foreign)


def _in_ks_x_1001(ch: str) -> bool:
    # Python's EUC-KR spells syllables outside KS X 1001 as 8-byte make-up sequences.
    try:
        return len(ch.encode("euc_kr")) == 2
    except UnicodeEncodeError:
        return False


def _unsupported_encoding() -> ImportFailure:
    return ImportFailure(
        "unsupported_encoding",
        "the text file is not in an encoding the import reads: save it as CSV UTF-8, "
        "CSV (CP949/EUC-KR) or Excel's Unicode text",
    )


def _csv_grid(data: bytes, max_rows: int) -> tuple[pl.DataFrame, list[str]]:
    text = decode_text(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    # Excel's Unicode text export separates by tabs; a CSV by commas.
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    try:
        rows = []
        for i, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)):
            if i > max_rows + HEADER_SCAN_ROWS:
                break
            rows.append(row)
    except csv.Error as exc:
        raise ImportFailure("corrupt_file", f"the CSV file is malformed: {exc}") from None
    width = max((len(r) for r in rows), default=0)
    columns = {
        f"__c{j}": [(r[j] if j < len(r) and r[j] != "" else None) for r in rows]
        for j in range(width)
    }
    frame = pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.String))
    return frame, [xl_col_to_name(j) for j in range(width)]


def _fields(cells: Sequence[str | None]) -> dict[str, str]:
    """The import fields named by a header row (the first column naming a field wins)."""
    found: dict[str, str] = {}
    for j, cell in enumerate(cells):
        name = field_of(cell) if cell else None
        if name is not None and name not in found:
            found[name] = f"c{j}"
    return found


def two_row_header(top: Sequence[str | None], below: Sequence[str | None]) -> list[str | None]:
    """Two header rows read as one: a merged parent cell (``연락처`` spanning columns, so
    empty after its first) is joined to each sub-header under it (``학생``, ``보호자``)
    as ``학생 연락처``, ``보호자 연락처``; a column without a sub-header keeps its top cell."""
    joined: list[str | None] = []
    parent: str | None = None
    for high, low in zip(top, below, strict=True):
        if high is not None and high.strip():
            parent = high.strip()
        if low is None or not low.strip():
            joined.append(high)
        else:
            joined.append(f"{low.strip()} {parent}" if parent else low)
    return joined


def _find_header(grid: pl.DataFrame) -> tuple[int, int, list[str | None], dict[str, str]]:
    """(header index, header rows, header cells, fields) of the first row, or pair of rows,
    naming the required fields."""
    scanned = list(grid.head(HEADER_SCAN_ROWS + 1).iter_rows())
    best: dict[str, str] = {}
    for i, row in enumerate(scanned[:HEADER_SCAN_ROWS]):
        found = _fields(row)
        span, cells = 1, list(row)
        # Only a row that is a header already can have sub-headers (not a title or a gap).
        if found and not all(f in found for f in REQUIRED_FIELDS) and i + 1 < len(scanned):
            joined = two_row_header(row, scanned[i + 1])
            if len(_fields(joined)) > len(found):
                span, cells, found = 2, joined, _fields(joined)
        if all(f in found for f in REQUIRED_FIELDS):
            return i, span, cells, found
        if len(found) > len(best):
            best = found
    # A row naming two fields, one of them a person's name or phone, was meant as the
    # header: say what it lacks. Anything less is no header at all.
    if len(best) >= 2 and {"name", "phone", "guardian_phone"} & best.keys():
        missing = [f for f in REQUIRED_FIELDS if f not in best]
        raise _NoHeader(
            ImportFailure(
                "missing_required_column",
                "the header has no "
                + " and no ".join(f"{LABELS[f]} column" for f in missing)
                + ": students are matched by name and guardian phone",
                column=missing[0],
            )
        )
    raise _NoHeader(_no_header())


def _locate(grid: pl.DataFrame, letters: list[str], sheet_name: str, max_rows: int) -> RawSheet:
    source = grid.columns
    header_index, span, header_cells, fields = _find_header(grid)
    headers = [(letters[j], (header_cells[j] or "").strip()) for j in range(len(source))]
    first_data = header_index + span
    body = grid.slice(first_data).rename({old: f"c{j}" for j, old in enumerate(source)})
    body = body.with_columns(
        pl.int_range(first_data + 1, first_data + 1 + body.height, dtype=pl.Int32).alias("row")
    ).select(["row", *[f"c{j}" for j in range(len(source))]])
    # A row is data only if it names a student or holds a phone: numbered, noted or
    # formatted rows with nothing else are not rows of the roster.
    holds = [pl.col(fields["name"]).str.strip_chars().fill_null("") != ""]
    holds += [
        ~is_placeholder(pl.col(fields[f])) for f in ("phone", "guardian_phone") if f in fields
    ]
    body = body.filter(pl.any_horizontal(holds))
    if body.height == 0:
        raise ImportFailure(
            "no_data_rows",
            f"the sheet has a header (row {header_index + 1}) but no data rows under it",
        )
    if body.height > max_rows:
        raise ImportFailure(
            "too_many_rows",
            f"the sheet has more than {max_rows:,} data rows: split it into several files",
        )
    ignored = [
        f"{letter} ({text})" for j, (letter, text) in enumerate(headers)
        if text and f"c{j}" not in fields.values()
    ]  # fmt: skip
    return RawSheet(body, headers, fields, header_index + 1, sheet_name, ignored)
