"""The export sheets: their columns, Korean headers and labels, and the parameters each
export job carries.

A sheet is a list of fields; each names the attribute of a query line (``models.exports``)
it shows, and the labels its codes are shown by (a code without a label as it is).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from pipelines.excel.workbook import Column, Kind

STUDENT_STATUS = {"active": "재원", "paused": "휴원", "withdrawn": "퇴원"}
ATTENDANCE_STATUS = {"present": "출석", "late": "지각", "absent": "결석", "excused": "공결"}
ENROLLMENT_SOURCE = {"manual": "직접 등록", "import": "엑셀 일괄 등록"}


@dataclass(frozen=True)
class Field:
    column: Column
    attr: str
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Sheet:
    name: str
    fields: tuple[Field, ...]

    @property
    def columns(self) -> list[Column]:
        return [f.column for f in self.fields]

    def rows(self, lines: Iterable[object]) -> list[tuple[Any, ...]]:
        """Each line's values in column order, codes shown by their labels."""
        return [tuple(_shown(f, getattr(line, f.attr)) for f in self.fields) for line in lines]


def _shown(field: Field, value: Any) -> Any:
    return value if field.labels is None else field.labels.get(value, value)


def _f(
    header: str,
    attr: str,
    kind: Kind = "text",
    width: int = 14,
    labels: Mapping[str, str] | None = None,
) -> Field:
    return Field(Column(header, kind, width), attr, labels)


STUDENTS = Sheet("학생", (
    _f("이름", "name", width=12), _f("연락처", "phone", width=15),
    _f("학교", "school", width=16), _f("학년", "grade", width=8),
    _f("상태", "status", width=8, labels=STUDENT_STATUS),
    _f("생년월일", "birth_date", "date", 12), _f("보호자", "guardian_name", width=10),
    _f("보호자 연락처", "guardian_phone", width=15),
    _f("수강 강의 수", "enrollment_count", "number", 12),
    _f("등록일", "created_at", "datetime", 18),
))  # fmt: skip
ROSTER = Sheet("수강생 명단", (
    _f("강의", "title", width=20), _f("이름", "name", width=12), _f("연락처", "phone", width=15),
    _f("학교", "school", width=16), _f("학년", "grade", width=8),
    _f("보호자 연락처", "guardian_phone", width=15),
    _f("등록 경로", "source", width=14, labels=ENROLLMENT_SOURCE),
    _f("등록일", "enrolled_at", "datetime", 18),
))  # fmt: skip
ATTENDANCE = Sheet("출결", (
    _f("날짜", "date", "date", 12), _f("강의", "title", width=20), _f("회차", "seq", "number", 6),
    _f("이름", "name", width=12), _f("출결", "status", width=8, labels=ATTENDANCE_STATUS),
    _f("메모", "note", width=24), _f("확인 시각", "checked_at", "datetime", 18),
))  # fmt: skip
SCORES = Sheet("성적", (
    _f("시험", "title", width=20), _f("시험일", "date", "date", 12), _f("이름", "name", width=12),
    _f("학교", "school", width=16), _f("학년", "grade", width=8),
    _f("점수", "score", "number", 8), _f("만점", "max_score", "number", 8),
    _f("입력 경로", "source", width=10), _f("수정일", "updated_at", "datetime", 18),
))  # fmt: skip


# --- what each export job carries (its ``params``) ---------------------------------------


class RosterParams(msgspec.Struct):
    lecture_id: uuid.UUID


class AttendanceParams(msgspec.Struct):
    """A date range, optionally of one lecture."""

    date_from: dt.date
    date_to: dt.date
    lecture_id: uuid.UUID | None = None


class ScoresParams(msgspec.Struct):
    exam_id: uuid.UUID
