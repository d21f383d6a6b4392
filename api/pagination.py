"""Cursor pagination: opaque cursors over a stable, unique sort key.

A cursor is the sort key of the last row of the previous page, base64url-encoded JSON. The
client treats it as opaque; a tampered or stale cursor is a 422 field error, not a 500.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Generic, TypeVar

import msgspec

from api.errors import field_error

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    limit: int
    next_cursor: str | None = None


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


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise field_error("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit
