"""Scopes for looking at what a query would send, without sending it."""

from __future__ import annotations

from typing import Any

from models.scope import TenantScope


class StatementKept(TenantScope):
    """A scope that keeps the statement a query would run (``sql``, ``args`` with the
    tenant first) instead of running it: EXPLAIN it, or look at its text."""

    sql = ""
    args: tuple[Any, ...] = ()

    async def fetch(self, sql: str, *args: Any, **_: Any) -> list[Any]:
        self.sql, self.args = sql, (self.tenant_id, *args)
        return []
