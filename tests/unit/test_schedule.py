"""``pipelines.schedule``: slot checks, dated occurrences and (re)generation plans."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from pipelines.schedule import (
    Occurrence,
    Slot,
    count_occurrences,
    format_hhmm,
    occurrences,
    parse_hhmm,
    parse_schedule,
    plan_generation,
)

D = dt.date
T = dt.time
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def slot(weekday: int, start: str, end: str) -> Slot:
    return Slot(weekday, parse_hhmm(start), parse_hhmm(end))


# --- times and slots ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("00:00", T(0, 0)), ("09:05", T(9, 5)), ("23:59", T(23, 59)), ("16:30", T(16, 30))],
)
def test_parse_hhmm(text: str, expected: dt.time) -> None:
    assert parse_hhmm(text) == expected
    assert format_hhmm(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "9:30",
        "24:00",
        "12:60",
        "09:30:00",
        "0930",
        "",
        " 09:30",
        "09:30 ",
        "ab:cd",
        "１２:００",
        "0９:30",
        "09:30\n",
    ],
)
def test_parse_hhmm_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hhmm(text)


def test_a_valid_schedule_parses_in_order() -> None:
    slots, errors = parse_schedule([(MON, "16:00", "17:30"), (WED, "16:00", "17:30")])
    assert errors == []
    assert slots == [slot(MON, "16:00", "17:30"), slot(WED, "16:00", "17:30")]
    assert str(slots[0]) == "Mon 16:00-17:30"


def test_every_problem_is_reported() -> None:
    _, errors = parse_schedule(
        [
            (7, "9:00", "10:00"),  # weekday and start
            (MON, "10:00", "10:00"),  # empty
            (MON, "11:00", "10:00"),  # backwards
            (-1, "10:00", "25:00"),  # weekday and end
            (True, "10:00", "11:00"),  # a bool is not a weekday
        ]
    )
    assert [(e.path, e.message) for e in errors] == [
        ("[0].weekday", "must be 0 (Mon) to 6 (Sun)"),
        ("[0].start", 'must be a time "HH:MM" between 00:00 and 23:59'),
        ("[1].end", "must be after start"),
        ("[2].end", "must be after start"),
        ("[3].weekday", "must be 0 (Mon) to 6 (Sun)"),
        ("[3].end", 'must be a time "HH:MM" between 00:00 and 23:59'),
        ("[4].weekday", "must be 0 (Mon) to 6 (Sun)"),
    ]


def test_overlaps_on_one_weekday_are_refused_touching_is_fine() -> None:
    slots, errors = parse_schedule(
        [
            (MON, "10:00", "11:00"),
            (MON, "11:00", "12:00"),  # touches the first: fine
            (TUE, "10:30", "11:30"),  # another day: fine
            (MON, "10:30", "10:45"),  # inside the first
            (MON, "11:59", "13:00"),  # overlaps the second
            (MON, "10:00", "11:00"),  # the first again
        ]
    )
    assert [(e.path, e.message) for e in errors] == [
        ("[3]", "overlaps [0] (Mon 10:00-11:00)"),
        ("[4]", "overlaps [1] (Mon 11:00-12:00)"),
        ("[5]", "overlaps [0] (Mon 10:00-11:00)"),
    ]
    assert len(slots) == 6  # the slots themselves are well-formed


def test_an_empty_schedule_is_valid() -> None:
    assert parse_schedule([]) == ([], [])


# --- occurrences ----------------------------------------------------------------------


def test_occurrences_are_in_session_order_with_inclusive_ends() -> None:
    slots = [slot(WED, "16:00", "17:00"), slot(MON, "18:00", "19:00"), slot(MON, "16:00", "17:00")]
    # 2026-03-02 is a Monday, 2026-03-11 a Wednesday: both ends included.
    got = occurrences(slots, D(2026, 3, 2), D(2026, 3, 11))
    assert [(o.date, format_hhmm(o.start)) for o in got] == [
        (D(2026, 3, 2), "16:00"),
        (D(2026, 3, 2), "18:00"),
        (D(2026, 3, 4), "16:00"),
        (D(2026, 3, 9), "16:00"),
        (D(2026, 3, 9), "18:00"),
        (D(2026, 3, 11), "16:00"),
    ]
    assert all(o.date.weekday() in (MON, WED) for o in got)
    assert got[0].end == T(17, 0)


def test_empty_and_backwards_ranges() -> None:
    slots = [slot(MON, "10:00", "11:00")]
    assert occurrences(slots, D(2026, 3, 10), D(2026, 3, 1)) == []  # end before start
    assert count_occurrences(slots, D(2026, 3, 10), D(2026, 3, 1)) == 0
    assert occurrences(slots, D(2026, 3, 3), D(2026, 3, 8)) == []  # Tue..Sun: no Monday
    assert occurrences([], D(2026, 1, 1), D(2026, 12, 31)) == []
    one_day = occurrences(slots, D(2026, 3, 2), D(2026, 3, 2))
    assert one_day == [Occurrence(D(2026, 3, 2), T(10, 0), T(11, 0))]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (D(2026, 3, 1), D(2026, 4, 5)),  # US DST starts 2026-03-08
        (D(2026, 3, 22), D(2026, 4, 5)),  # EU DST starts 2026-03-29
        (D(2026, 10, 18), D(2026, 11, 8)),  # EU and US DST end
    ],
)
def test_dates_step_by_whole_weeks_across_dst(start: dt.date, end: dt.date) -> None:
    """Plain dates and wall-clock times: a DST change moves nothing."""
    got = occurrences([slot(SUN, "02:30", "03:30")], start, end)
    assert len(got) >= 3
    assert all((b.date - a.date).days == 7 for a, b in itertools.pairwise(got))
    assert {(o.start, o.end) for o in got} == {(T(2, 30), T(3, 30))}
    assert all(o.date.weekday() == SUN for o in got)


def test_leap_day_and_year_end() -> None:
    got = occurrences([slot(TUE, "09:00", "10:00")], D(2028, 2, 22), D(2028, 3, 7))
    assert [o.date for o in got] == [D(2028, 2, 22), D(2028, 2, 29), D(2028, 3, 7)]
    got = occurrences([slot(THU, "09:00", "10:00")], D(2026, 12, 24), D(2027, 1, 7))
    assert [o.date for o in got] == [D(2026, 12, 24), D(2026, 12, 31), D(2027, 1, 7)]


def test_count_matches_the_occurrences() -> None:
    slots = [slot(d, "10:00", "11:00") for d in (MON, THU, SUN)]
    start = D(2026, 1, 1)
    for days in range(0, 60):
        for offset in range(7):
            a = start + dt.timedelta(days=offset)
            b = a + dt.timedelta(days=days)
            assert count_occurrences(slots, a, b) == len(occurrences(slots, a, b)), (a, b)


# --- generation plans -----------------------------------------------------------------


def _wanted() -> list[Occurrence]:
    return occurrences(
        [slot(MON, "16:00", "17:00"), slot(WED, "16:00", "17:00")], D(2026, 3, 2), D(2026, 3, 15)
    )


def test_first_generation_numbers_from_one_in_order() -> None:
    plan = plan_generation(_wanted(), set(), 1)
    assert plan.existing == 0
    assert [seq for seq, _ in plan.create] == [1, 2, 3, 4]
    assert [o.date for _, o in plan.create] == [
        D(2026, 3, 2),
        D(2026, 3, 4),
        D(2026, 3, 9),
        D(2026, 3, 11),
    ]


def test_regeneration_creates_nothing_twice() -> None:
    wanted = _wanted()
    plan = plan_generation(wanted, {(o.date, o.start) for o in wanted}, 5)
    assert plan.create == [] and plan.existing == 4


def test_regeneration_fills_gaps_after_the_highest_number() -> None:
    wanted = _wanted()
    # Sessions 1 and 3 exist (and a hand-added one took number 7); 2 and 4 are missing.
    have = {(wanted[0].date, wanted[0].start), (wanted[2].date, wanted[2].start)}
    plan = plan_generation(wanted, have, 8)
    assert plan.existing == 2
    assert [(seq, o.date) for seq, o in plan.create] == [(8, D(2026, 3, 4)), (9, D(2026, 3, 11))]


def test_only_date_and_start_time_match() -> None:
    wanted = _wanted()
    first = wanted[0]
    # A session on the date but without a time, or at another time, is not this occurrence.
    assert len(plan_generation(wanted, {(first.date, None)}, 2).create) == 4
    assert len(plan_generation(wanted, {(first.date, T(9, 0))}, 2).create) == 4
    # Another end time still matches: the session was edited, not replaced.
    assert plan_generation(wanted, {(first.date, first.start)}, 2).existing == 1
