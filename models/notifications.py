"""Postgres notifications: a connection of its own that LISTENs on one channel.

Not a pooled connection: a LISTEN belongs to its session, and a pooled connection is lent
to other work between uses. Postgres delivers a notification only after the notifying
transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

CLOSE_SECONDS = 2.0


class Listener:
    """An open LISTEN connection; ``on_payload`` is called (on the event loop) with each
    notification's payload."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, dsn: str, channel: str, on_payload: Callable[[str], None]) -> Listener:
        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            on_payload(payload)

        conn = await asyncpg.connect(dsn)
        try:
            await conn.add_listener(channel, notified)
        except BaseException:
            await cls(conn).close()
            raise
        return cls(conn)

    async def ping(self, within: float) -> None:
        """A round trip in ``within`` seconds, or an error: a half-open socket would
        silently stop notifications."""
        await asyncio.wait_for(self._conn.fetchval("SELECT 1"), within)

    async def close(self) -> None:
        """Close, ignoring errors (the connection may already be gone); a cancelled caller
        does not interrupt the close."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._conn.close(timeout=CLOSE_SECONDS))
