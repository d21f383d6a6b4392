"""Attendance rules without the database: which checks change anything, what the audit log
keeps of a check, the outbox event a change calls for, and attendance rates.

The rules themselves (a re-submit is a no-op, an omitted note keeps the current one, a
note-only edit keeps the check's time, one event per student, session and status) are
documented in ``api.attendance``; the functions here apply them to checks already read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

EVENT_STATUSES = frozenset({"absent", "late"})


class StoredCheck(Protocol):
    """A check as stored (``models.attendance.StoredCheck``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def student_id(self) -> uuid.UUID: ...
    @property
    def status(self) -> str: ...
    @property
    def note(self) -> str: ...
    @property
    def checked_at(self) -> dt.datetime: ...
    @property
    def checked_by(self) -> uuid.UUID | None: ...


class SessionLike(Protocol):
    """A check's session (``models.attendance.SessionRef``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def lecture_id(self) -> uuid.UUID: ...
    @property
    def date(self) -> dt.date: ...


@dataclass(frozen=True)
class Wanted:
    """A validated check: ``note`` None keeps the current note, ``checked_at`` None means
    "now if the status changes"."""

    student_id: uuid.UUID
    status: str
    note: str | None
    checked_at: dt.datetime | None


class Write(NamedTuple):
    """A check to upsert: the note resolved, ``checked_at`` None for "now"."""

    student_id: uuid.UUID
    status: str
    note: str
    checked_at: dt.datetime | None


@dataclass(frozen=True)
class Change:
    attendance_id: uuid.UUID
    student_id: uuid.UUID
    status: str
    note: str
    before: dict[str, Any] | None
    after: dict[str, Any]

    @property
    def action(self) -> str:
        return "create" if self.before is None else "update"


def plan_writes(wanted: Sequence[Wanted], current: Mapping[uuid.UUID, StoredCheck]) -> list[Write]:
    """The checks of ``wanted`` that change something, given the ``current`` checks (by
    student). A re-submit is left out: nothing to write, audit or announce."""
    writes: list[Write] = []
    for w in wanted:
        cur = current.get(w.student_id)
        note = w.note if w.note is not None else (cur.note if cur is not None else "")
        if (
            cur is not None
            and cur.status == w.status
            and cur.note == note
            and (w.checked_at is None or w.checked_at == cur.checked_at)
        ):
            continue
        checked_at = w.checked_at
        if checked_at is None and cur is not None and cur.status == w.status:
            checked_at = cur.checked_at  # a note-only edit keeps the check's time
        writes.append(Write(w.student_id, w.status, note, checked_at))
    return writes


def snapshot(session_id: uuid.UUID, check: StoredCheck) -> dict[str, Any]:
    """What the audit log keeps of a check (JSON-ready, the same for single and bulk)."""
    return {
        "session_id": str(session_id),
        "student_id": str(check.student_id),
        "status": check.status,
        "note": check.note,
        "checked_at": check.checked_at.isoformat(),
        "checked_by": str(check.checked_by) if check.checked_by else None,
    }


def changes_of(
    session_id: uuid.UUID,
    writes: Sequence[Write],
    current: Mapping[uuid.UUID, StoredCheck],
    written: Mapping[uuid.UUID, StoredCheck],
) -> list[Change]:
    """The changes ``writes`` made, in their order: the check before (None: a new one) and
    after, as the audit log keeps them."""
    changes = []
    for w in writes:
        row = written[w.student_id]
        cur = current.get(w.student_id)
        changes.append(
            Change(
                attendance_id=row.id,
                student_id=w.student_id,
                status=row.status,
                note=row.note,
                before=snapshot(session_id, cur) if cur is not None else None,
                after=snapshot(session_id, row),
            )
        )
    return changes


def event_of(session: SessionLike, change: Change) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, dedupe_key, payload) of the outbox event a change calls for, if any."""
    if change.status not in EVENT_STATUSES:
        return None
    if change.before is not None and change.before["status"] == change.status:
        return None  # a note edit: the event (if any) was recorded with the status change
    return (
        f"attendance.{change.status}",
        f"attendance.{change.status}:{session.id}:{change.student_id}",
        {
            "session_id": str(session.id),
            "student_id": str(change.student_id),
            "lecture_id": str(session.lecture_id),
            "date": session.date.isoformat(),
            "status": change.status,
            "note": change.note,
        },
    )


def rate(present: int, late: int, checked: int) -> float | None:
    """Share of the checked sessions attended (present or late), to four places; None when
    nothing was checked."""
    return round((present + late) / checked, 4) if checked else None
