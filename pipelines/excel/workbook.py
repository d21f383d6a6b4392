"""Workbooks we write: the error workbook of an import, and export sheets.

Phones and codes are written as text cells, so Excel neither drops a leading 0 nor turns
``010-1234-5678`` into a formula or a date. Dates get a date format.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import polars as pl
import xlsxwriter

XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

Kind = Literal["text", "number", "date", "datetime"]


@dataclass(frozen=True)
class Column:
    header: str
    kind: Kind = "text"
    width: int = 14


def write_sheet(sheet_name: str, columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> bytes:
    """One sheet: a bold, frozen header row with a filter, then ``rows``.

    Written in constant memory (row by row), so a large export costs little RAM.
    """
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"constant_memory": True, "in_memory": True})
    ws = wb.add_worksheet(sheet_name[:31])
    bold = wb.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1})
    date = wb.add_format({"num_format": "yyyy-mm-dd"})
    stamp = wb.add_format({"num_format": "yyyy-mm-dd hh:mm"})
    for j, column in enumerate(columns):
        ws.set_column(j, j, column.width)
        ws.write_string(0, j, column.header, bold)
    ws.freeze_panes(1, 0)
    count = 0
    for i, row in enumerate(rows, start=1):
        count += 1
        for j, (column, value) in enumerate(zip(columns, row, strict=True)):
            if value is None or value == "":
                continue
            if column.kind == "number":
                ws.write_number(i, j, float(value) if isinstance(value, Decimal) else value)
            elif column.kind == "date" and isinstance(value, dt.date):
                ws.write_datetime(i, j, dt.datetime.combine(value, dt.time()), date)
            elif column.kind == "datetime" and isinstance(value, dt.datetime):
                # Excel has no time zones: show the academy's (Korean) wall-clock time.
                local = value.astimezone(_KST).replace(tzinfo=None)
                ws.write_datetime(i, j, local, stamp)
            else:
                ws.write_string(i, j, str(value))
    ws.autofilter(0, 0, max(count, 1), len(columns) - 1)
    wb.close()
    return buf.getvalue()


def error_workbook(
    raw_rows: pl.DataFrame, headers: Sequence[tuple[str, str]], errors: pl.DataFrame
) -> bytes:
    """The rows that have errors, as the file had them, with the bad cells highlighted and
    an ``오류`` column saying what is wrong; ``원본 행`` is the row number in the upload.

    ``raw_rows`` has ``row`` and ``c{i}`` columns (text cells); ``headers[i]`` is the
    ``(letter, header text)`` of ``c{i}``; ``errors`` has ``row``, ``column`` (a header
    text) and ``message``.
    """
    by_header: dict[str, int] = {}
    for j, (_, text) in enumerate(headers):
        by_header.setdefault(text, j)
    grouped: dict[int, list[tuple[str, str]]] = {}
    for row, column, message in errors.select("row", "column", "message").iter_rows():
        grouped.setdefault(int(row), []).append((column, message))
    wanted = raw_rows.filter(pl.col("row").is_in(list(grouped))).sort("row")

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet("오류")
    bold = wb.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1})
    bad = wb.add_format({"bg_color": "#FFC7CE", "font_color": "#9C0006"})
    wrap = wb.add_format({"text_wrap": True, "font_color": "#9C0006"})
    titles = ["원본 행", *[text or letter for letter, text in headers], "오류"]
    for j, title in enumerate(titles):
        ws.write_string(0, j, title, bold)
    ws.set_column(0, 0, 8)
    ws.set_column(1, len(headers), 16)
    ws.set_column(len(headers) + 1, len(headers) + 1, 60)
    ws.freeze_panes(1, 1)
    cells = [f"c{j}" for j in range(len(headers))]
    for i, record in enumerate(wanted.select("row", *cells).iter_rows(), start=1):
        row_number = int(record[0])
        problems = grouped.get(row_number, [])
        flagged = {by_header[c] for c, _ in problems if c in by_header}
        ws.write_number(i, 0, row_number)
        for j, value in enumerate(record[1:]):
            text = "" if value is None else str(value)
            if j in flagged:
                ws.write_string(i, j + 1, text, bad)
            elif text:
                ws.write_string(i, j + 1, text)
        ws.write_string(i, len(headers) + 1, "; ".join(f"{c}: {m}" for c, m in problems), wrap)
    wb.close()
    return buf.getvalue()


def safe_filename(name: str) -> str:
    """A file name without path separators or control characters (Hangul kept)."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in name).strip()
    return cleaned[:120] or "export.xlsx"


def _kst() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Seoul")


_KST = _kst()
