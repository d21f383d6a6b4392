"""Tenant scope: the one place the tenant filter is applied.

Handlers never write ``Table.tenant == ...`` themselves; they ask a ``TenantScope`` for
their queries. A row of another tenant is simply not found (the API answers 404, never 403,
so ids of other academies cannot be probed).
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

import asyncpg
from piccolo.columns import Column
from piccolo.columns.combination import Combinable
from piccolo.query import Objects, Select
from piccolo.query.methods.delete import Delete
from piccolo.query.methods.update import Update
from piccolo.table import Table

from models.db import as_struct, connection

T = TypeVar("T", bound=Table)
R = TypeVar("R")

_TENANT_PARAM = re.compile(r"\$1(?!\d)")


class NotFoundInTenant(LookupError):
    """The row does not exist in this tenant (whether or not it exists elsewhere)."""

    def __init__(self, table: type[Table], row_id: Any) -> None:
        super().__init__(f"{table._meta.tablename} {row_id} not found")
        self.table = table
        self.row_id = row_id


def parse_id(table: type[Table], raw: Any) -> uuid.UUID:
    """An id from a path as a UUID. A malformed id is the same 404 an unknown id gets (a
    422 would tell the two apart)."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise NotFoundInTenant(table, raw) from None


class TenantScope:
    def __init__(self, tenant_id: uuid.UUID | str) -> None:
        self.tenant_id = uuid.UUID(str(tenant_id))

    def _where(self, table: type[Table]) -> Combinable:
        column: Column | None = getattr(table, "tenant", None)
        if column is None:
            raise TypeError(f"{table.__name__} has no tenant column; it cannot be tenant-scoped")
        return column == self.tenant_id

    def select(self, table: type[T], *columns: Any) -> Select:
        return table.select(*columns).where(self._where(table))

    def objects(self, table: type[T]) -> Objects[T]:
        return table.objects().where(self._where(table))

    def update(self, table: type[T], values: dict[Any, Any]) -> Update:
        return table.update(values).where(self._where(table))

    def delete(self, table: type[T]) -> Delete:
        return table.delete().where(self._where(table))

    async def get(self, table: type[T], row_id: Any) -> dict[str, Any]:
        """One row as a dict, or ``NotFoundInTenant``."""
        key = parse_id(table, row_id)
        row = await self.select(table).where(table._meta.primary_key == key).first()
        if row is None:
            raise NotFoundInTenant(table, row_id)
        return dict(row)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run SQL in which ``$1`` is this tenant (the scope supplies it).

        The SQL must filter by ``$1``; a statement that does not mention it is refused, so
        a query cannot forget the tenant. The query layer's own building block: what it
        hands out are Structs (``rows``/``row``).
        """
        if not _TENANT_PARAM.search(sql):
            raise ValueError("tenant-scoped SQL must filter by $1 (the tenant)")
        async with connection() as conn:
            return list(await conn.fetch(sql, self.tenant_id, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def rows(self, type_: type[R], sql: str, *args: Any) -> list[R]:
        """``fetch``, each row as ``type_``."""
        return [as_struct(type_, r) for r in await self.fetch(sql, *args)]

    async def row(self, type_: type[R], sql: str, *args: Any) -> R | None:
        found = await self.fetchrow(sql, *args)
        return None if found is None else as_struct(type_, found)

    async def one(self, type_: type[R], table: type[Table], sql: str, row_id: Any, *args: Any) -> R:
        """The row of ``sql`` whose ``$2`` is ``row_id`` (an id of ``table``) as ``type_``:
        the by-id read of every resource. A malformed id, an id of another academy and an
        unknown id are the same ``NotFoundInTenant`` (a 404)."""
        found = await self.row(type_, sql, parse_id(table, row_id), *args)
        if found is None:
            raise NotFoundInTenant(table, row_id)
        return found

    async def value(self, sql: str, *args: Any) -> Any:
        """The first column of the first row (None when there is no row)."""
        found = await self.fetchrow(sql, *args)
        return None if found is None else found[0]

    async def values(self, sql: str, *args: Any) -> list[Any]:
        """The first column of every row."""
        return [r[0] for r in await self.fetch(sql, *args)]

    async def execute(self, sql: str, *args: Any) -> None:
        await self.fetch(sql, *args)

    def new(self, table: type[T], **values: Any) -> T:
        """An unsaved row of this tenant."""
        return table(tenant=self.tenant_id, **values)
