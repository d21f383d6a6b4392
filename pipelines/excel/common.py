"""Names shared by the import steps: the fields, how headers name them, and failures."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

FailureCode = Literal[
    "empty_file",
    "not_a_spreadsheet",
    "corrupt_file",
    "encrypted",
    "no_header",
    "no_data_rows",
    "missing_required_column",
    "too_many_rows",
    "unsupported_encoding",
    "file_too_large_uncompressed",
    "archive_bomb",
    "cell_too_long",
]


class ImportFailure(Exception):
    """The whole file is unusable. ``code`` is stable (clients branch on it); the message
    is shown to the academy as the job's error, so it says what to fix. ``column`` names
    the missing field of ``missing_required_column``."""

    def __init__(self, code: FailureCode, message: str, *, column: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.column = column


# Headers compared exactly (after ``header_key``) for the fields that are not phones.
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("이름", "성명", "학생명", "학생이름", "원생명", "원생이름", "name"),
    "guardian_name": (
        "보호자", "보호자명", "보호자이름", "보호자성함", "학부모", "학부모명", "학부모이름",
        "학부모성함", "guardian_name",
    ),
    "school": ("학교", "학교명", "school"),
    "grade": ("학년", "grade"),
    "lecture": (
        "반", "반명", "강의", "강의명", "강의코드", "수강반", "수업", "수업명", "강좌", "강좌명",
        "lecture",
    ),
}  # fmt: skip
# Phone headers are recognised by family: a phone word, plus a parent word for the
# guardian's (``어머니 H.P``, ``보호자연락처``), or nothing / 학생 for the student's.
PHONE_WORDS = ("전화번호", "휴대전화", "휴대폰", "핸드폰", "연락처", "전화", "hp", "phone")
PARENT_WORDS = ("부모님", "보호자", "학부모", "어머니", "아버지", "부모", "guardian", "모", "부")
STUDENT_WORDS = ("학생본인", "학생", "본인", "student")

# Korean labels of the fields, for messages and the error workbook.
LABELS: dict[str, str] = {
    "name": "이름",
    "phone": "연락처",
    "guardian_phone": "보호자 연락처",
    "guardian_name": "보호자",
    "school": "학교",
    "grade": "학년",
    "lecture": "반/강의",
}

# Column widths the database allows (Varchar lengths of student, guardian).
MAX_LENGTH: dict[str, int] = {"name": 100, "guardian_name": 100, "school": 100}

_MARKS = re.compile(r"[\s.*:：·]")
_PUNCTUATION = re.compile(r"[^\w]")


def header_key(text: str) -> str:
    """A header as compared: NFKC, lower case, without whitespace (newlines included),
    dots and ``*``/``:`` marks (``H.P`` is ``hp``, ``성 명`` is ``성명``)."""
    return _MARKS.sub("", unicodedata.normalize("NFKC", text)).lower()


ALIAS_TO_FIELD: dict[str, str] = {
    header_key(alias): field for field, aliases in ALIASES.items() for alias in aliases
}


def field_of(header: str) -> str | None:
    """The import field a header names, or None."""
    key = header_key(header)
    if not key:
        return None
    exact = ALIAS_TO_FIELD.get(key)
    if exact is not None:
        return exact
    phone_word = next((w for w in PHONE_WORDS if w in key), None)
    if phone_word is None:
        return None
    rest = _PUNCTUATION.sub("", key.replace(phone_word, "", 1)).replace("_", "")
    if any(w in rest for w in PARENT_WORDS):
        return "guardian_phone"
    for word in STUDENT_WORDS:
        rest = rest.replace(word, "")
    return "phone" if rest in ("", "번호") else None
