"""The input limits as the schema states them."""

from __future__ import annotations

import datetime as dt
import re

from models.limits import DAY_PATTERN, EARLIEST_DATE, LATEST_DATE


def test_the_day_pattern_is_exactly_the_days_decode_day_takes() -> None:
    pattern = re.compile(DAY_PATTERN)
    day = dt.date(1899, 12, 1)
    while day <= dt.date(2201, 1, 31):
        text = day.isoformat()
        assert bool(pattern.match(text)) == (EARLIEST_DATE <= day <= LATEST_DATE), text
        day += dt.timedelta(days=1)
    for impossible in ("2023-02-29", "2100-02-29", "2024-04-31", "2024-13-01", "2024-00-10"):
        assert not pattern.match(impossible)
    assert pattern.match("2024-02-29") and pattern.match("2000-02-29")
