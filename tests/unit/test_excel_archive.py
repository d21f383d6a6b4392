"""An uploaded workbook is held to what it unpacks to before anything parses it."""

from __future__ import annotations

import dataclasses
import tracemalloc
import zlib

import pytest

from pipelines.excel.archive import ArchiveLimits, check_archive
from pipelines.excel.common import ImportFailure
from pipelines.excel.detect import detect_type
from pipelines.excel.read import read_sheet
from tests.factories.bombs import (
    Member,
    huge_cell_xlsx,
    many_rows_xlsx,
    member,
    package,
    repeated,
)
from tests.factories.workbooks import messy_rows, write_xlsx

LIMITS = ArchiveLimits.from_settings()


def refused(data: bytes, limits: ArchiveLimits = LIMITS) -> ImportFailure:
    with pytest.raises(ImportFailure) as caught:
        check_archive(data, limits)
    return caught.value


def test_a_gigabyte_cell_in_a_megabyte_is_refused_without_unpacking_it() -> None:
    bomb = huge_cell_xlsx()  # 1.1 GB of "A" in one cell
    assert len(bomb) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        failure = refused(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failure.code == "file_too_large_uncompressed"
    assert "1,100.0 MiB" in str(failure) and "256.0 MiB" in str(failure)
    assert peak < 16 * 1024 * 1024
    # The import says the same, before fastexcel sees the file.
    with pytest.raises(ImportFailure) as caught:
        read_sheet(bomb, detect_type(bomb), max_rows=200_000)
    assert caught.value.code == "file_too_large_uncompressed"


def test_twenty_million_rows_are_refused() -> None:
    failure = refused(many_rows_xlsx(20_000_000))
    assert failure.code == "file_too_large_uncompressed"


def test_a_directory_that_lies_about_sizes_is_caught_while_inflating() -> None:
    # The directory claims 10 kB and the matching checksum of 10 kB: only the inflated
    # stream tells, and it is stopped within its first slices.
    sheet = repeated("xl/worksheets/sheet1.xml", b"<x>", b"A", 1100 * 1024 * 1024, b"</x>")
    forged = Member(sheet.name, sheet.deflated, zlib.crc32(b"<x>" + b"A" * 9_997), 0, 10_000)
    tracemalloc.start()
    try:
        failure = refused(package(forged))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert failure.code == "archive_bomb"
    assert peak < 16 * 1024 * 1024
    # Within the ratio, but not the size it declares.
    small = repeated("xl/worksheets/sheet1.xml", b"<x>", b"AB", 20_000, b"</x>")
    failure = refused(package(Member(small.name, small.deflated, small.crc, 0, 100)))
    assert failure.code == "corrupt_file" and "says 100" in str(failure)


def test_compression_ratio_member_size_shared_strings_and_cell_length() -> None:
    # 20 MiB of one character: within every size limit, but no sheet compresses 1000:1.
    assert refused(huge_cell_xlsx(20 * 1024 * 1024)).code == "archive_bomb"
    tight = dataclasses.replace(LIMITS, member_bytes=1024 * 1024, ratio=10_000.0)
    failure = refused(huge_cell_xlsx(2 * 1024 * 1024), tight)
    assert failure.code == "file_too_large_uncompressed" and "sheet1.xml" in str(failure)

    strings = member("xl/sharedStrings.xml", b"<sst>" + b"<si><t>x</t></si>" * 100_000 + b"</sst>")
    few = dataclasses.replace(LIMITS, shared_strings_bytes=1024 * 1024)
    sheet = member("xl/worksheets/sheet1.xml", b"<worksheet/>")
    assert "shared strings" in str(refused(package(sheet, strings), few))

    # A cell of 200 kB (over the 128 KiB default) in a sheet of 200 kB.
    failure = refused(huge_cell_xlsx(200 * 1024))
    assert failure.code == "cell_too_long" and "131,072" in str(failure)
    check_archive(huge_cell_xlsx(100 * 1024), LIMITS)  # within it


def test_real_workbooks_pass() -> None:
    data = write_xlsx(messy_rows(2_000))
    check_archive(data, LIMITS)
    assert read_sheet(data, "xlsx", max_rows=200_000).frame.height == 2_000
    check_archive(b"not a zip at all", LIMITS)  # the reader says what it is


@pytest.mark.parametrize("size", [1_000, 1_500_000, 3 * 1024 * 1024 + 17])
def test_cell_length_is_exact_within_and_across_slices(size: int) -> None:
    # The run from "<t" to "</t>" is the cell's text plus "t>".
    data = huge_cell_xlsx(size)
    exact = dataclasses.replace(LIMITS, cell_bytes=size + 2, ratio=1e9)
    check_archive(data, exact)
    assert refused(data, dataclasses.replace(exact, cell_bytes=size + 1)).code == "cell_too_long"
