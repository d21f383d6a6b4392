"""asyncpg's connection pool with its waiters served in the order they came.

asyncpg hands out connections through an ``asyncio.LifoQueue``. A released connection
wakes the first waiter, but until that waiter runs, any task that asks meanwhile takes the
connection, and the woken waiter goes back to the end of the line. With more requests in
flight than connections (64 clients, 10 connections) some requests lost their turn again
and again (the proctored heartbeat at 64 clients: p50 25 ms, p90 58 ms, p99 117 ms; in
order, 29 / 36 / 56 ms). In front of the pool, a semaphore of the pool's size (asyncio's is
first-come, first-served, and hands a released slot straight to the next waiter) decides
who goes next; the pool behind it always has a connection free for whoever passes.

Only the acquire/release paths are wrapped; everything else is the pool's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from types import TracebackType
from typing import Any

import asyncpg


class FairPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._turns = asyncio.Semaphore(pool.get_max_size())

    def acquire(self) -> _Acquire:
        """Like ``asyncpg.Pool.acquire`` (awaited, or an ``async with``), without its
        timeout: nothing here asks for one."""
        return _Acquire(self)

    async def _acquire(self) -> asyncpg.Connection:
        await self._turns.acquire()
        try:
            return await self._pool.acquire()
        except BaseException:
            self._turns.release()
            raise

    async def release(self, connection: asyncpg.Connection) -> None:
        try:
            await self._pool.release(connection)
        finally:
            self._turns.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _Acquire:
    __slots__ = ("_connection", "_fair")

    def __init__(self, fair: FairPool) -> None:
        self._fair = fair
        self._connection: asyncpg.Connection | None = None

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._fair._acquire().__await__()

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._fair._acquire()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        await self._fair.release(connection)
