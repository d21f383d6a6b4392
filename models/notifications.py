"""Postgres notifications: a connection of its own that LISTENs on one channel.

It stays outside the pool (it is held for as long as the listener runs) and is never
used for queries but ``ping``, which proves the socket still carries notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

Callback = Callable[[Any, int, str, str], None]


class Listener:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, dsn: str, channel: str, callback: Callback) -> Listener:
        """Connect and LISTEN: ``callback(conn, pid, channel, payload)`` per notification."""
        conn = await asyncpg.connect(dsn)
        try:
            await conn.add_listener(channel, callback)
        except BaseException:
            await cls(conn).close()
            raise
        return cls(conn)

    async def ping(self, within: float) -> None:
        """One round trip, or TimeoutError after ``within`` seconds."""
        await asyncio.wait_for(self._conn.fetchval("SELECT 1"), within)

    async def close(self) -> None:
        """Close, never raising; shielded so a cancelled caller still closes it."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._conn.close(timeout=2))
