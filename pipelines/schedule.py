"""Weekly lecture schedules: parsing and checking slots, and turning a schedule plus a date
range into dated sessions (회차).

Pure logic: no database, no web framework. Dates are calendar dates and times are wall-clock
times of the academy (no time zones), so there is no DST arithmetic to get wrong: a Monday
16:00 slot is at 16:00 on every Monday of the range.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # datetime's weekday(): Mon=0

# ASCII digits only (``\d`` would take ``０９``), and fullmatch: ``$`` lets "09:30\n" through.
_HHMM = re.compile(r"(?P<h>[01][0-9]|2[0-3]):(?P<m>[0-5][0-9])")


@dataclass(frozen=True, order=True)
class Slot:
    """One weekly slot: ``weekday`` 0..6 (Mon..Sun), from ``start`` to ``end`` (exclusive)."""

    weekday: int
    start: dt.time
    end: dt.time

    def __str__(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {format_hhmm(self.start)}-{format_hhmm(self.end)}"


@dataclass(frozen=True, order=True)
class Occurrence:
    """One dated occurrence of a slot. Ordering is (date, start, end): session order."""

    date: dt.date
    start: dt.time
    end: dt.time


@dataclass(frozen=True)
class ScheduleError:
    """A problem with one slot. ``path`` is relative to the schedule list: ``[1].end``."""

    path: str
    message: str


def parse_hhmm(text: str) -> dt.time:
    """``"09:30"`` → ``time(9, 30)``. Exactly two-digit hours and minutes, 00:00..23:59;
    anything else is a ``ValueError`` (``"9:30"``, ``"24:00"``, ``"09:30:00"``)."""
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError('must be a time "HH:MM" between 00:00 and 23:59')
    return dt.time(int(match["h"]), int(match["m"]))


def format_hhmm(value: dt.time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def parse_schedule(
    raw: Iterable[tuple[int, str, str]],
) -> tuple[list[Slot], list[ScheduleError]]:
    """Check ``(weekday, "HH:MM", "HH:MM")`` triples; return the slots (in the given order)
    and every problem found, not just the first.

    A slot must end after it starts (so no slot crosses midnight), and two slots of the same
    weekday must not overlap; touching (10:00-11:00, 11:00-12:00) is fine. An overlap is
    reported on the later of the two slots. Slots with their own errors are left out of the
    overlap check and of the returned list.
    """
    slots: list[tuple[int, Slot]] = []
    errors: list[ScheduleError] = []
    for i, (weekday, start_text, end_text) in enumerate(raw):
        ok = True
        if not isinstance(weekday, int) or isinstance(weekday, bool) or not 0 <= weekday <= 6:
            errors.append(ScheduleError(f"[{i}].weekday", "must be 0 (Mon) to 6 (Sun)"))
            ok = False
        start = end = None
        try:
            start = parse_hhmm(start_text)
        except ValueError as exc:
            errors.append(ScheduleError(f"[{i}].start", str(exc)))
            ok = False
        try:
            end = parse_hhmm(end_text)
        except ValueError as exc:
            errors.append(ScheduleError(f"[{i}].end", str(exc)))
            ok = False
        if start is not None and end is not None and end <= start:
            errors.append(ScheduleError(f"[{i}].end", "must be after start"))
            ok = False
        if ok and start is not None and end is not None:
            slots.append((i, Slot(weekday, start, end)))
    for j, (index, slot) in enumerate(slots):
        for other_index, other in slots[:j]:
            if other.weekday == slot.weekday and other.start < slot.end and slot.start < other.end:
                errors.append(ScheduleError(f"[{index}]", f"overlaps [{other_index}] ({other})"))
                break
    return [slot for _, slot in slots], errors


def _first_on_or_after(day: dt.date, weekday: int) -> dt.date:
    return day + dt.timedelta(days=(weekday - day.weekday()) % 7)


def count_occurrences(slots: Iterable[Slot], start: dt.date, end: dt.date) -> int:
    """How many occurrences ``occurrences`` would return, computed without building them
    (so a caller can refuse an absurd range cheaply)."""
    total = 0
    for slot in slots:
        first = _first_on_or_after(start, slot.weekday)
        if first <= end:
            total += (end - first).days // 7 + 1
    return total


def occurrences(slots: Iterable[Slot], start: dt.date, end: dt.date) -> list[Occurrence]:
    """Every occurrence of every slot between ``start`` and ``end``, both inclusive, in
    session order (date, then start time). Empty when ``end`` is before ``start``."""
    out: list[Occurrence] = []
    week = dt.timedelta(days=7)
    for slot in slots:
        day = _first_on_or_after(start, slot.weekday)
        while day <= end:
            out.append(Occurrence(day, slot.start, slot.end))
            day += week
    out.sort()
    return out


@dataclass(frozen=True)
class Plan:
    """What a (re)generation does: ``create`` are (seq, occurrence) pairs to insert;
    ``existing`` counts occurrences that already have a session."""

    create: list[tuple[int, Occurrence]]
    existing: int


def plan_generation(
    wanted: Sequence[Occurrence],
    have: Collection[tuple[dt.date, dt.time | None]],
    next_seq: int,
) -> Plan:
    """Decide which of ``wanted`` to create, given the (date, start time) of the sessions the
    lecture already ``have``s, numbering new ones from ``next_seq`` in session order.

    Existing sessions are never renumbered or removed, so a regeneration after the schedule
    changed appends its new sessions after the highest number in use, even when they fall
    between older dates. A session moved by hand to another date or time no longer matches
    its occurrence, which is then created again: that is the price of matching by
    (date, start time), the only key the sessions carry.
    """
    taken = set(have)
    create: list[tuple[int, Occurrence]] = []
    existing = 0
    seq = next_seq
    for occurrence in sorted(wanted):
        key = (occurrence.date, occurrence.start)
        if key in taken:
            existing += 1
            continue
        taken.add(key)
        create.append((seq, occurrence))
        seq += 1
    return Plan(create=create, existing=existing)
