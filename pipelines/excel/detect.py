"""What an uploaded file is, decided by its first bytes."""

from __future__ import annotations

import codecs
from typing import Literal

from pipelines.excel.common import ImportFailure

FileType = Literal["xlsx", "xls", "csv"]

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A password-protected .xlsx is an OLE2 container holding this stream (MS-OFFCRYPTO).
ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")
# Excel's "유니코드 텍스트" export is UTF-16 with a byte order mark (and so full of NULs).
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class UnsupportedFile(ImportFailure):
    """Not an Excel workbook or a text (CSV) file."""


def detect_type(head: bytes, *, refuse_encrypted: bool = True) -> FileType:
    """``xlsx`` (a ZIP package), ``xls`` (an OLE2 compound file) or ``csv`` (text).

    ``head`` is the start of the file, or all of it: a password-protected workbook is only
    recognised when its directory (often near the end) is included. Raises
    ``UnsupportedFile`` for an empty or binary file, and ``ImportFailure`` (``encrypted``)
    for a password-protected workbook, which cannot be read without its password (unless
    ``refuse_encrypted`` is false: the API only sorts files by type, and the worker says
    why a workbook cannot be read). Text in an encoding the import does not read is a
    ``csv`` here: the reader says so (``unsupported_encoding``) rather than "not a file".
    """
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    if head.startswith(OLE2_MAGIC):
        if refuse_encrypted and ENCRYPTED_STREAM in head:
            raise ImportFailure(
                "encrypted",
                "the workbook is protected with a password: save it without one and upload again",
            )
        return "xls"
    if not head.strip():
        raise UnsupportedFile("empty_file", "the file is empty")
    if head.startswith(UTF16_BOMS) or b"\x00" not in head:
        return "csv"
    raise UnsupportedFile(
        "not_a_spreadsheet", "not an Excel workbook (.xlsx, .xls) or a CSV/text file"
    )
