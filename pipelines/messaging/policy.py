"""Rules for advertising messages (정보통신망법 제50조): none between 20:50 and 08:00 KST
(the 21:00-08:00 ban, with ten minutes' margin for delivery), and each carries the free
opt-out line (무료수신거부). Informational notices (attendance, grades) are exempt."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")
NIGHT_START = dt.time(20, 50)
NIGHT_END = dt.time(8, 0)
AD_PREFIX = "(광고)"


class AdvertisingBlocked(ValueError):
    def __init__(self, next_allowed: dt.datetime) -> None:
        super().__init__(
            "advertising messages cannot be sent between 20:50 and 08:00 KST; "
            f"next allowed at {next_allowed.isoformat()}"
        )
        self.next_allowed = next_allowed


def utcnow() -> dt.datetime:
    """The clock the night block reads: the API's check and the sender's read this one, so
    a test moves both at once."""
    return dt.datetime.now(dt.UTC)


def is_night(at: dt.datetime) -> bool:
    local = at.astimezone(KST).time()
    return local >= NIGHT_START or local < NIGHT_END


def next_allowed(at: dt.datetime) -> dt.datetime:
    """The first moment at or after ``at`` when advertising may go out (in KST)."""
    local = at.astimezone(KST)
    if not is_night(at):
        return local
    day = local.date() if local.time() < NIGHT_END else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, NIGHT_END, tzinfo=KST)


def check_advertising_time(at: dt.datetime) -> None:
    if is_night(at):
        raise AdvertisingBlocked(next_allowed(at))


def opt_out_line(number: str) -> str:
    return f"무료수신거부 {number}"


def with_advertising_marks(body: str, opt_out_number: str) -> str:
    """``(광고)`` first and the opt-out line last, each added once."""
    text = body if body.lstrip().startswith(AD_PREFIX) else f"{AD_PREFIX} {body}"
    line = opt_out_line(opt_out_number)
    if line not in text:
        text = f"{text}\n{line}"
    return text
