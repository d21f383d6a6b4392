"""Names shared by the import steps: the fields, their header aliases, and failures."""

from __future__ import annotations

import unicodedata


class ImportFailure(Exception):
    """The whole file is unusable (corrupt, no header, no rows, too big). The message is
    shown to the academy as the job's error, so it says what to fix."""


# field -> the headers academies write for it (compared after ``header_key``).
ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("이름", "성명", "학생명", "학생이름", "학생 이름", "원생명", "name"),
    "phone": (
        "연락처",
        "학생 연락처",
        "학생연락처",
        "학생 전화번호",
        "학생 휴대폰",
        "휴대폰",
        "핸드폰",
        "전화번호",
        "phone",
    ),
    "guardian_phone": (
        "보호자 연락처",
        "학부모 연락처",
        "부모님 연락처",
        "부모 연락처",
        "보호자 전화번호",
        "학부모 전화번호",
        "부모님 전화번호",
        "보호자 휴대폰",
        "학부모 휴대폰",
        "guardian_phone",
    ),
    "guardian_name": (
        "보호자",
        "보호자명",
        "보호자 이름",
        "학부모",
        "학부모명",
        "학부모 이름",
        "guardian_name",
    ),
    "school": ("학교", "학교명", "school"),
    "grade": ("학년", "grade"),
    "lecture": ("반", "강의", "강의명", "강의 코드", "강의코드", "수강반", "반명", "lecture"),
}

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
MAX_LENGTH: dict[str, int] = {"name": 100, "guardian_name": 100, "school": 100, "grade": 16}


def header_key(text: str) -> str:
    """A header as compared: NFKC, no whitespace, no ``*``/``:`` marks, lower case."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(ch for ch in folded if not ch.isspace() and ch not in "*:：").lower()


ALIAS_TO_FIELD: dict[str, str] = {
    header_key(alias): field for field, aliases in ALIASES.items() for alias in aliases
}
