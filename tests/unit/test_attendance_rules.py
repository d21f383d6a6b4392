"""The pure attendance rules: what a check changes, its audit snapshot, its event, rates."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pipelines.attendance import Wanted, Write, changes_of, event_of, plan_writes, rate

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=12)
SESSION = uuid.uuid4()
CHECK_ID = uuid.UUID(int=1)
LECTURE = uuid.uuid4()


@dataclass
class Stored:
    student_id: uuid.UUID
    status: str
    note: str
    checked_at: dt.datetime
    checked_by: uuid.UUID | None = None
    id: uuid.UUID = CHECK_ID


@dataclass
class Session:
    id: uuid.UUID
    lecture_id: uuid.UUID
    date: dt.date


def test_a_resubmit_plans_nothing_and_an_omitted_note_keeps_the_current_one() -> None:
    s = uuid.uuid4()
    current = {s: Stored(s, "late", "bus", T0)}
    assert plan_writes([Wanted(s, "late", None, None)], current) == []
    assert plan_writes([Wanted(s, "late", "bus", T0)], current) == []
    assert plan_writes([Wanted(s, "absent", None, None)], current) == [
        Write(s, "absent", "bus", None)
    ]


def test_a_note_only_edit_keeps_the_time_and_a_new_check_starts_with_an_empty_note() -> None:
    s, new = uuid.uuid4(), uuid.uuid4()
    current = {s: Stored(s, "late", "bus", T0)}
    planned = plan_writes(
        [Wanted(s, "late", "train", None), Wanted(new, "present", None, T1)], current
    )
    assert planned == [Write(s, "late", "train", T0), Write(new, "present", "", T1)]


def test_events_only_for_a_change_to_absent_or_late() -> None:
    s = uuid.uuid4()
    session = Session(SESSION, LECTURE, dt.date(2026, 3, 2))
    before = {s: Stored(s, "late", "bus", T0)}
    note_edit = [Write(s, "late", "train", T0)]
    after = {s: Stored(s, "late", "train", T0)}
    (change,) = changes_of(SESSION, note_edit, before, after)
    assert change.action == "update" and change.before is not None
    assert event_of(session, change) is None

    (created,) = changes_of(
        SESSION, [Write(s, "absent", "", None)], {}, {s: Stored(s, "absent", "", T1)}
    )
    assert created.action == "create" and created.before is None
    kind, dedupe_key, payload = event_of(session, created) or ("", "", {})
    assert kind == "attendance.absent"
    assert dedupe_key == f"attendance.absent:{SESSION}:{s}"
    assert payload["lecture_id"] == str(LECTURE) and payload["date"] == "2026-03-02"

    (present,) = changes_of(
        SESSION, [Write(s, "present", "", None)], {}, {s: Stored(s, "present", "", T1)}
    )
    assert event_of(session, present) is None


def test_rate_is_attended_over_checked_and_none_without_checks() -> None:
    assert rate(2, 1, 4) == 0.75
    assert rate(1, 0, 3) == 0.3333
    assert rate(0, 0, 0) is None
