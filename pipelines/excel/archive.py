"""What an .xlsx unpacks to, checked before anything parses it.

An .xlsx is a ZIP package: a 1 MB upload can hold a sheet of a gigabyte (one cell of a
repeated character, or millions of rows), and the reader builds all of it in memory. So
the package is refused first when its central directory promises too much (in total, in
one member, in the shared strings, or at a ratio no workbook reaches), then every member
is inflated from its own bytes as a stream, in slices, and counted against the same
limits (a directory that lies about sizes is caught there, and so is a size that differs
from the one declared), and in the parts that hold cell text (the sheets and the shared
strings) no run of bytes between two tags may exceed the cell limit. The check holds one
slice at a time, whatever the package holds.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ops.settings import Settings, get_settings
from pipelines.excel.common import ImportFailure

SLICE_BYTES = 1024 * 1024
# Smaller members are not held to the ratio: a few kilobytes of repeated XML compress
# beyond any ratio and cost nothing.
RATIO_FLOOR_BYTES = 1024 * 1024
SHARED_STRINGS = "xl/sharedStrings.xml"


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what a package may unpack to (``EXCEL_MAX_*`` settings)."""

    total_bytes: int
    member_bytes: int
    shared_strings_bytes: int
    cell_bytes: int
    ratio: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ArchiveLimits:
        s = settings or get_settings()
        return cls(
            total_bytes=s.excel_max_uncompressed_bytes,
            member_bytes=s.excel_max_member_bytes,
            shared_strings_bytes=s.excel_max_shared_strings_bytes,
            cell_bytes=s.excel_max_cell_bytes,
            ratio=s.excel_max_compression_ratio,
        )


def check_archive(data: bytes, limits: ArchiveLimits) -> None:
    """Raise ``ImportFailure`` when the package would unpack beyond ``limits``:
    ``file_too_large_uncompressed`` (sizes), ``archive_bomb`` (compression ratio),
    ``cell_too_long`` (cell text) or ``corrupt_file`` (a member that does not match its
    declared size). A file that is no ZIP at all passes: the reader says what it is."""
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        return
    with package:
        members = package.infolist()
    _check_declared(members, limits)
    total = 0
    for info in members:
        total += _scan_member(data, info, limits)
        if total > limits.total_bytes:
            raise _too_large(f"the workbook unpacks to over {_mib(total)}", limits.total_bytes)


def _check_declared(members: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    total = sum(info.file_size for info in members)
    if total > limits.total_bytes:
        raise _too_large(f"the workbook unpacks to {_mib(total)}", limits.total_bytes)
    for info in members:
        _check_size(info.filename, info.file_size, limits)
        if info.file_size >= RATIO_FLOOR_BYTES and info.file_size > limits.ratio * max(
            info.compress_size, 1
        ):
            raise _bomb(info.filename, info.file_size / max(info.compress_size, 1), limits)


def _bomb(name: str, ratio: float, limits: ArchiveLimits) -> ImportFailure:
    return ImportFailure(
        "archive_bomb",
        f"the workbook is not a spreadsheet Excel writes: its part {name!r} expands "
        f"{ratio:,.0f} times (at most {limits.ratio:,.0f}), as a decompression bomb does",
    )


def _check_size(name: str, size: int, limits: ArchiveLimits) -> None:
    if size > limits.member_bytes:
        raise _too_large(f"its part {name!r} unpacks to {_mib(size)}", limits.member_bytes)
    if name == SHARED_STRINGS and size > limits.shared_strings_bytes:
        raise _too_large(f"its shared strings unpack to {_mib(size)}", limits.shared_strings_bytes)


def _scan_member(data: bytes, info: zipfile.ZipInfo, limits: ArchiveLimits) -> int:
    """Inflate one member slice by slice, trusting none of its declared sizes, and return
    what it unpacked to. In a text part, track the longest run of bytes between two ``<``
    (a cell's text, or a tag with its attributes)."""
    text = info.filename == SHARED_STRINGS or info.filename.startswith("xl/worksheets/")
    run = 0  # bytes since the last "<", carried across slices
    size = 0
    for piece, consumed in _inflate(data, info):
        size += len(piece)
        _check_size(info.filename, size, limits)
        if size >= RATIO_FLOOR_BYTES and size > limits.ratio * max(consumed, 1):
            raise _bomb(info.filename, size / max(consumed, 1), limits)
        if not text:
            continue
        run = _runs(piece, run, info.filename, limits)
    if size != info.file_size:
        raise ImportFailure(
            "corrupt_file",
            f"the workbook's part {info.filename!r} unpacks to {size:,} bytes but says "
            f"{info.file_size:,}: the file is damaged or forged",
        )
    return size


def _inflate(data: bytes, info: zipfile.ZipInfo) -> Iterator[tuple[bytes, int]]:
    """(slice, compressed bytes consumed so far) of a stored or deflated member, read from
    its local header on; every slice is at most ``SLICE_BYTES``."""
    if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ImportFailure(
            "corrupt_file",
            f"the workbook's part {info.filename!r} is encrypted or compressed in a way "
            "Excel does not write: the file is damaged or not a workbook",
        )
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    begin = info.header_offset + 30 + name_length + extra_length
    raw = memoryview(data)[begin : begin + info.compress_size]
    if info.compress_type == zipfile.ZIP_STORED:
        for at in range(0, len(raw), SLICE_BYTES):
            yield bytes(raw[at : at + SLICE_BYTES]), at + SLICE_BYTES
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    fed = 0
    for at in range(0, len(raw), SLICE_BYTES):
        pending = bytes(raw[at : at + SLICE_BYTES])
        fed += len(pending)
        while pending and not inflater.eof:
            try:
                piece = inflater.decompress(pending, SLICE_BYTES)
            except zlib.error as exc:
                raise ImportFailure(
                    "corrupt_file",
                    f"the workbook's part {info.filename!r} is damaged ({exc})",
                ) from None
            pending = inflater.unconsumed_tail
            yield piece, fed - len(pending)
        if inflater.eof:
            return


def _runs(piece: bytes, run: int, name: str, limits: ArchiveLimits) -> int:
    """Raise if ``piece`` (after ``run`` bytes without a ``<``) holds a run of more than
    ``limits.cell_bytes`` bytes without one; return the run it ends with. From each ``<``
    it jumps to the last ``<`` within the limit: none there is a run too long, and two
    jumps always advance by the limit, so a slice costs a few C-speed searches."""
    first = piece.find(b"<")
    if first < 0:
        _check_run(run + len(piece), name, limits)
        return run + len(piece)
    _check_run(run + first, name, limits)
    at, limit = first, limits.cell_bytes
    while len(piece) - at - 1 > limit:
        at = piece.rfind(b"<", at + 1, at + limit + 2)
        if at < 0:
            _check_run(limit + 1, name, limits)
    return len(piece) - piece.rfind(b"<") - 1


def _check_run(run: int, name: str, limits: ArchiveLimits) -> None:
    if run > limits.cell_bytes:
        raise ImportFailure(
            "cell_too_long",
            f"the workbook's part {name!r} holds a cell (or tag) of more than "
            f"{_mib(run)}; at most {limits.cell_bytes:,} bytes are read in one cell",
        )


def _too_large(what: str, limit: int) -> ImportFailure:
    return ImportFailure(
        "file_too_large_uncompressed",
        f"the workbook is too large once unpacked: {what}, over the limit of {_mib(limit)}. "
        "Split it into several files or remove what the roster does not need",
    )


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MiB" if size >= 1024 * 1024 else f"{size:,} bytes"
