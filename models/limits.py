"""What the system accepts as input, written once: text lengths, the characters text may
hold, and the range of calendar dates.

Postgres refuses NUL in text (asyncpg raises ``CharacterNotInRepertoireError``) and the
other C0 controls only corrupt exports and messages, so text holding them is a field error
before it reaches a statement. Dates far outside an academy's life overflow the date
arithmetic (``9999-12-31`` plus a day) or the conversion to a KST timestamp
(``0001-01-01``), so a date is a field error outside ``EARLIEST_DATE..LATEST_DATE``.

Request Structs type their free text with these aliases (``Name``, ``Text``, ...) and their dates
with ``Day``; the API decodes ``Day`` with ``decode_day`` and checks every decoded string
with ``control_character_errors`` (``api.hygiene``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import msgspec

# Each length is that of the column the text is stored in (models/tables), so a text
# that passes here also fits there.
SHORT_MAX = 16  # 학년 (grade), channels, statuses
PHONE_MAX = 20  # a phone number as typed, before it is normalised
CODE_MAX = 32  # lecture codes, answer-key ids, provider names
KEY_MAX = 64  # template codes, Kakao ids, academy slugs
NAME_MAX = 100  # people, schools, subjects, labels
TITLE_MAX = 200  # titles, topics, file names, e-mail addresses
TEXT_MAX = 5_000  # memos, notes, message bodies: a page of text, not a document
SECRET_MAX = 1_024  # passwords, API keys, tokens: not a way to make the server hash megabytes

Short = Annotated[str, msgspec.Meta(max_length=SHORT_MAX)]
Phone = Annotated[str, msgspec.Meta(max_length=PHONE_MAX)]
Code = Annotated[str, msgspec.Meta(max_length=CODE_MAX)]
Key = Annotated[str, msgspec.Meta(max_length=KEY_MAX)]
Name = Annotated[str, msgspec.Meta(max_length=NAME_MAX)]
Title = Annotated[str, msgspec.Meta(max_length=TITLE_MAX)]
Text = Annotated[str, msgspec.Meta(max_length=TEXT_MAX)]
Secret = Annotated[str, msgspec.Meta(max_length=SECRET_MAX)]

# C0 controls but tab, newline and carriage return.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
CONTROL_MESSAGE = "must not contain NUL or other control characters"
_CONTROLS = CONTROL_CHARACTERS.pattern[1:-1]

# Text that must say something: one character that is neither whitespace nor a control
# (the handlers clean text by collapsing whitespace; what is left must not be empty).
NON_BLANK = rf"^[^{_CONTROLS}]*[^\s{_CONTROLS}][^{_CONTROLS}]*$"
NON_BLANK_MESSAGE = "must not be empty"

# A time of day, "HH:MM" from 00:00 to 23:59 (``pipelines.schedule.parse_hhmm``); ""
# where the field may be cleared.
HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# What ``base64.b64decode(..., validate=True)`` accepts: the alphabet, padded to fours.
BASE64 = r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
HH_MM_OR_EMPTY = r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$"
HH_MM_MESSAGE = 'must be a time "HH:MM" between 00:00 and 23:59'

# An e-mail address as the API takes it: something with an "@" (the mail it is sent
# decides the rest).
EMAIL = rf"^[^{_CONTROLS}]*@[^{_CONTROLS}]*$"

# The student number that marks a scanned sheet as the answer key.
KEY_ID = r"^[0-9]{1,32}$"

# A message template's code.
TEMPLATE_CODE = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# What a client reads when a pattern refuses its text (not the regular expression).
PATTERN_MESSAGES = {
    NON_BLANK: NON_BLANK_MESSAGE,
    HH_MM: HH_MM_MESSAGE,
    HH_MM_OR_EMPTY: HH_MM_MESSAGE,
    EMAIL: "not an e-mail address",
    KEY_ID: "1..32 digits",
    TEMPLATE_CODE: "lowercase letters, digits, '.', '_', '-'",
}

RequiredName = Annotated[str, msgspec.Meta(max_length=NAME_MAX, pattern=NON_BLANK)]
RequiredTitle = Annotated[str, msgspec.Meta(max_length=TITLE_MAX, pattern=NON_BLANK)]
RequiredText = Annotated[str, msgspec.Meta(max_length=TEXT_MAX, pattern=NON_BLANK)]
Base64Text = Annotated[str, msgspec.Meta(pattern=BASE64)]
RequiredSecret = Annotated[str, msgspec.Meta(max_length=SECRET_MAX, pattern=NON_BLANK)]
TimeOfDay = Annotated[str, msgspec.Meta(pattern=HH_MM)]
TimeOfDayOrEmpty = Annotated[str, msgspec.Meta(pattern=HH_MM_OR_EMPTY)]

EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2200, 12, 31)
# A ``Day`` as a schema can state it, exactly (JSON Schema has no date bounds): a year
# 1900..2200, a day its month has, February 29 in leap years only.
_YEAR = r"19[0-9]{2}|2[01][0-9]{2}|2200"
_LEAP_YEAR = (
    r"19(?:0[48]|[2468][048]|[13579][26])|20(?:[02468][048]|[13579][26])"
    r"|21(?:0[48]|[2468][048]|[13579][26])"
)
_MONTH_DAY = (
    r"(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8])"
)
DAY_PATTERN = rf"^(?:(?:{_YEAR})-(?:{_MONTH_DAY})|(?:{_LEAP_YEAR})-02-29)$"


class Day(dt.date):
    """A calendar date between ``EARLIEST_DATE`` and ``LATEST_DATE`` (ISO ``YYYY-MM-DD``).

    A subclass, not an alias: msgspec decodes its own ``date`` without a hook, and this
    type's decoding (``decode_day``) is where the range is checked."""


def decode_day(type_: type, value: Any) -> Day:
    """A ``Day`` from an ISO string or a date; ``ValueError`` names what is wrong."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("Invalid date: expected YYYY-MM-DD") from None
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValueError("Invalid date: expected YYYY-MM-DD")
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise ValueError(f"must be between {EARLIEST_DATE} and {LATEST_DATE}")
    return Day(value.year, value.month, value.day)


def encode_day(value: Any) -> Any:
    """msgspec ``enc_hook``: a ``Day`` is encoded as the date it is (msgspec encodes only
    ``date`` itself; Litestar's responses already find the date encoder)."""
    if isinstance(value, dt.date):
        return value.isoformat()
    raise NotImplementedError(type(value))


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None


def control_character_errors(value: Any, field: str, source: str) -> list[dict[str, Any]]:
    """A field error for every string in ``value`` (walked through lists and objects, keys
    included) holding a control character; ``field`` is the path so far."""
    if isinstance(value, str):
        return [_error(field, source)] if has_control_characters(value) else []
    errors: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{field}.{key}" if field else str(key)
            if isinstance(key, str) and has_control_characters(key):
                errors.append(_error(path, source))
            errors.extend(control_character_errors(item, path, source))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            errors.extend(control_character_errors(item, f"{field}[{i}]", source))
    return errors


def _error(field: str, source: str) -> dict[str, Any]:
    return {"field": field or "body", "message": CONTROL_MESSAGE, "source": source}
