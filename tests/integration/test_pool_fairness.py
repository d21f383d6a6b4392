"""The connection pool serves its waiters in the order they came (models/pool.py)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import asyncpg

from models.db import Engine
from models.pool import FairPool

SIZE, TASKS, ROUNDS = 3, 24, 15


async def _overtaken(pool: Any) -> int:
    """The most connections any one task was given while another task waited for one.

    Served in order, a task that had its turn queues behind everyone already waiting, so
    nobody can be given a connection twice while somebody waits."""
    granted: list[int] = []
    worst = 0

    async def task(me: int) -> None:
        nonlocal worst
        for _ in range(ROUNDS):
            asked = len(granted)
            async with pool.acquire() as conn:
                others = Counter(who for who in granted[asked:] if who != me)
                worst = max(worst, max(others.values(), default=0))
                granted.append(me)
                await conn.execute("SELECT 1")

    await asyncio.gather(*(task(n) for n in range(TASKS)))
    assert len(granted) == TASKS * ROUNDS
    return worst


async def test_waiters_get_connections_in_the_order_they_asked(database: None) -> None:
    raw = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=SIZE, max_size=SIZE)
    try:
        assert await _overtaken(FairPool(raw)) <= 1
    finally:
        await raw.close()


async def test_the_engines_pool_is_the_fair_one(database: None) -> None:
    # An engine of its own: the app's shared one may be serving other tests.
    engine = Engine(config={"dsn": os.environ["DATABASE_URL"]}, extensions=())
    await engine.start_connection_pool(min_size=SIZE, max_size=SIZE)
    try:
        assert isinstance(engine.pool, FairPool)
        assert await _overtaken(engine.pool) <= 1
        async with engine.transaction():  # the ORM's own acquire and release
            assert [tuple(r) for r in await engine.run_ddl("SELECT 1")] == [(1,)]
    finally:
        await engine.close_connection_pool()
