"""Tenant scope: the one place the tenant filter is applied.

Handlers never write ``Table.tenant == ...`` themselves; they ask a ``TenantScope`` for
their queries. A row of another tenant is simply not found (the API answers 404, never 403,
so ids of other academies cannot be probed).

Within an academy, a teacher sees and changes only the lectures they teach and what
belongs to them (sessions, attendance, exams, scores, scans, videos); owners, admins and
staff see all. That rule is here too: a scope made for a teacher carries ``teacher_id``,
``check_own`` refuses another lecture's resource with the same 404 an unknown id gets, and
``own_lectures`` narrows a list.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
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

    def __init__(self, table: type[Table] | str, row_id: Any) -> None:
        name = table if isinstance(table, str) else table._meta.tablename
        super().__init__(f"{name} {row_id} not found")
        self.table = table
        self.row_id = row_id


def parse_id(table: type[Table], raw: Any) -> uuid.UUID:
    """An id from a path as a UUID. A malformed id is the same 404 an unknown id gets (a
    422 would tell the two apart)."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise NotFoundInTenant(table, raw) from None


def _teacher_of(table: str, joins: str = "") -> str:
    return (
        f"SELECT l.teacher FROM {table} r {joins} JOIN lecture l ON l.id = r.lecture "
        "WHERE r.tenant = $1 AND r.id = $2"
    )


# A lecture's resources by the path parameter that addresses them: their table, and how
# one id reaches its lecture's teacher.
LECTURE_RESOURCES: dict[str, tuple[str, str]] = {
    "lecture_id": ("lecture", "SELECT teacher FROM lecture WHERE tenant = $1 AND id = $2"),
    "session_id": ("lecture_session", _teacher_of("lecture_session")),
    "exam_id": ("exam", _teacher_of("exam")),
    "video_id": ("video", _teacher_of("video")),
    "batch_id": (
        "omr_batch",
        "SELECT l.teacher FROM omr_batch b JOIN exam r ON r.id = b.exam "
        "JOIN lecture l ON l.id = r.lecture WHERE b.tenant = $1 AND b.id = $2",
    ),
    "page_id": (
        "omr_page",
        "SELECT l.teacher FROM omr_page p JOIN omr_batch b ON b.id = p.batch "
        "JOIN exam r ON r.id = b.exam JOIN lecture l ON l.id = r.lecture "
        "WHERE p.tenant = $1 AND p.id = $2",
    ),
}


class TenantScope:
    def __init__(self, tenant_id: uuid.UUID | str, teacher_id: uuid.UUID | None = None) -> None:
        self.tenant_id = uuid.UUID(str(tenant_id))
        # Set when the caller is a teacher: only the lectures they teach are theirs.
        self.teacher_id = teacher_id

    async def check_own(self, param: str, raw_id: Any) -> None:
        """A teacher's scope: ``NotFoundInTenant`` unless the resource a path parameter
        ``param`` (a key of ``LECTURE_RESOURCES``) names belongs to a lecture they teach.
        One indexed look-up for a teacher; nothing for anyone else or another parameter."""
        if self.teacher_id is None or param not in LECTURE_RESOURCES:
            return
        table, sql = LECTURE_RESOURCES[param]
        try:
            key = uuid.UUID(str(raw_id))
        except ValueError:
            raise NotFoundInTenant(table, raw_id) from None
        if await self.value(sql, key) != self.teacher_id:
            raise NotFoundInTenant(table, raw_id)

    def own_lectures(self, column: str, arg: Callable[[Any], str]) -> str:
        """A condition keeping rows whose lecture (``column``) this scope may see: always
        true but for a teacher. ``arg`` adds a statement argument, returning its
        placeholder (``models.pages.Params``)."""
        if self.teacher_id is None:
            return "true"
        return (
            f"{column} IN (SELECT id FROM lecture WHERE tenant = $1 "
            f"AND teacher = {arg(self.teacher_id)})"
        )

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
