"""Postgres notifications: a connection of its own that LISTENs on its channels.

Not a pooled connection: a LISTEN belongs to its session, and a pooled connection is lent
to other work between uses. Postgres delivers a notification only after the notifying
transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

CLOSE_SECONDS = 2.0


class Listener:
    """An open LISTEN connection on one or more channels; each channel's handler is called
    (on the event loop) with each of its notifications' payload."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        # One statement at a time on the connection: the keep-alive ping and a barrier
        # (``notify``) may be asked for at once.
        self._busy = asyncio.Lock()

    @classmethod
    async def open(cls, dsn: str, handlers: Mapping[str, Callable[[str], None]]) -> Listener:
        def notified(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            handlers[channel](payload)

        conn = await asyncpg.connect(dsn)
        try:
            # A barrier (``notify``) is a transaction of its own, with a transaction id and
            # a commit record: it need not wait for the WAL to reach the disk, nothing of it
            # has to survive a crash.
            await conn.execute("SET synchronous_commit = off")
            for channel in handlers:
                await conn.add_listener(channel, notified)
        except BaseException:
            await cls(conn).close()
            raise
        return cls(conn)

    async def ping(self, within: float) -> None:
        """A round trip in ``within`` seconds, or an error: a half-open socket would
        silently stop notifications."""
        async with self._busy:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), within)

    async def notify(self, channel: str, payload: str, within: float) -> None:
        """Commit a notification from this very session. Postgres delivers notifications
        in commit order, so when it comes back every notification committed before this
        call has been handled (``api.listening.Barrier``)."""
        async with self._busy:
            await asyncio.wait_for(
                self._conn.execute("SELECT pg_notify($1, $2)", channel, payload), within
            )

    async def close(self) -> None:
        """Close, ignoring errors (the connection may already be gone); a cancelled caller
        does not interrupt the close."""
        with contextlib.suppress(Exception):
            await asyncio.shield(self._conn.close(timeout=CLOSE_SECONDS))
