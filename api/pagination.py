"""Cursor pagination: opaque cursors over a stable, unique sort key.

A cursor is the sort key of the last row of the previous page, base64url-encoded JSON. The
client treats it as opaque; a tampered or stale cursor is a 422 field error, not a 500.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from api.errors import field_error

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    limit: int
    next_cursor: str | None = None


def page_of(
    rows: Sequence[R],
    limit: int,
    cursor_of: Callable[[R], list[Any]],
    convert: Callable[[R], Any] | None = None,
) -> Page[Any]:
    """The page of ``rows`` fetched with ``LIMIT limit + 1``: the first ``limit`` (through
    ``convert``), and a cursor made by ``cursor_of`` from the last kept row when the extra
    one shows there is more."""
    kept = rows[:limit]
    next_cursor = encode_cursor(cursor_of(kept[-1])) if len(rows) > limit else None
    items = [convert(r) for r in kept] if convert is not None else list(kept)
    return Page(items=items, limit=limit, next_cursor=next_cursor)


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, default=str, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise field_error("cursor", "not a cursor this API issued") from None
    if not isinstance(values, list) or len(values) != arity:
        raise field_error("cursor", "not a cursor for this list and sort order")
    return values


def as_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def as_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(value)
    return value


def as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def as_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(str(value))


def as_datetime(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value))


def decode_cursor_as(cursor: str | None, *kinds: Callable[[Any], Any]) -> tuple[Any, ...] | None:
    """``decode_cursor`` with each value converted (``as_text``, ``as_uuid``, ``as_date``...);
    a value of the wrong kind is the same 422 field error as a garbled cursor."""
    values = decode_cursor(cursor, len(kinds))
    if values is None:
        return None
    try:
        return tuple(kind(value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError):
        raise field_error("cursor", "not a cursor for this list and sort order") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit
