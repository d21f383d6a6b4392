"""Keyset pages: every list of the system, one way.

A list is ordered by a sort key whose last column is unique (usually the id), so a page
ends exactly where the next one starts, however rows are added meanwhile. The cursor is
the sort key of the last row of the page, base64url JSON: opaque to the client; a garbled
or foreign cursor is a 422 field error, not a 500.

``Params`` collects the ``$n`` arguments of a statement as its text is built;
``Keyset`` knows a list's sort key; ``keyset_page`` runs the page's statement and
returns a ``Page`` of Structs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from models.db import as_struct
from models.errors import field_error
from models.limits import Day, decode_day, has_control_characters
from models.scope import TenantScope

T = TypeVar("T")

WRONG_LIST = "not a cursor for this list and sort order"


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    limit: int
    next_cursor: str | None = None


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps(list(values), default=str, ensure_ascii=False, separators=(",", ":"))
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
        raise field_error("cursor", WRONG_LIST)
    return values


# How a cursor value is read back; a value of the wrong kind is the cursor's field error.


def as_text(value: Any) -> str:
    if not isinstance(value, str) or has_control_characters(value):
        raise ValueError(value)
    return value


def as_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(value)
    return value


def as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))


def as_date(value: Any) -> dt.date:
    return decode_day(Day, str(value))


def as_datetime(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value))


Kind = Callable[[Any], Any]


def decode_cursor_as(cursor: str | None, *kinds: Kind) -> tuple[Any, ...] | None:
    """``decode_cursor`` with each value converted by its kind (``as_text``, ...)."""
    values = decode_cursor(cursor, len(kinds))
    if values is None:
        return None
    try:
        return tuple(kind(value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError):
        raise field_error("cursor", WRONG_LIST) from None


class Params:
    """The arguments of one statement, numbered as its text is built. ``$1`` is the
    tenant (``TenantScope`` supplies it), so the first argument added here is ``$2``."""

    def __init__(self, *initial: Any, first: int = 2) -> None:
        self.values: list[Any] = []
        self._first = first
        for value in initial:
            self(value)

    def __call__(self, value: Any) -> str:
        """Add ``value``; returns its placeholder."""
        self.values.append(value)
        return f"${len(self.values) + self._first - 1}"


@dataclass(frozen=True)
class Keyset:
    """A list's sort key: SQL expressions (the last unique), the row fields that hold their
    values, how a cursor value is read back, and the direction."""

    columns: tuple[str, ...]
    fields: tuple[str, ...]
    kinds: tuple[Kind, ...]
    descending: bool = False

    def after(self, cursor: str | None, params: Params) -> str | None:
        """The condition "after the cursor's row" (None on the first page)."""
        values = decode_cursor_as(cursor, *self.kinds)
        if values is None:
            return None
        op = "<" if self.descending else ">"
        left = ", ".join(self.columns)
        right = ", ".join(params(v) for v in values)
        return f"({left}) {op} ({right})"

    @property
    def order_by(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        return ", ".join(f"{c} {direction}" for c in self.columns)

    def cursor_of(self, row: Any) -> str:
        return encode_cursor([row[f] for f in self.fields])


def keyset(*pairs: tuple[str, Kind], descending: bool = False) -> Keyset:
    """``keyset(("l.title", as_text), ("l.id", as_uuid))``: each column with the kind of
    its values; a column's row field is its name after the table alias."""
    columns = tuple(column for column, _ in pairs)
    fields = tuple(column.rsplit(".", 1)[-1] for column in columns)
    return Keyset(columns, fields, tuple(kind for _, kind in pairs), descending)


def page_from(rows: Sequence[Any], limit: int, key: Keyset, type_: type[T]) -> Page[T]:
    """The page of ``rows`` fetched with ``LIMIT limit + 1``: the first ``limit`` as
    ``type_``, and a cursor when the extra row shows there is more."""
    kept = rows[:limit]
    next_cursor = key.cursor_of(kept[-1]) if len(rows) > limit else None
    return Page(items=[as_struct(type_, r) for r in kept], limit=limit, next_cursor=next_cursor)


async def keyset_page(
    scope: TenantScope,
    type_: type[T],
    *,
    select: str,
    where: Sequence[str],
    params: Params,
    key: Keyset,
    cursor: str | None,
    limit: int,
    group_by: str = "",
) -> Page[T]:
    """One page of ``select`` (everything up to ``WHERE``), filtered by ``where`` (whose
    ``$n`` come from ``params``; ``$1`` is the tenant), after ``cursor`` in ``key``'s
    order. One statement per page."""
    conditions = list(where)
    after = key.after(cursor, params)
    if after is not None:
        conditions.append(after)
    sql = (
        f"{select} WHERE {' AND '.join(conditions)} {group_by} "
        f"ORDER BY {key.order_by} LIMIT {params(limit + 1)}"
    )
    rows = await scope.fetch(sql, *params.values)
    return page_from(rows, limit, key, type_)
