"""What a check locks (``models.attendance``, the lock rule): the session's row, and not the
enrollment rows of its students, which other sessions' checks of the same students and
enrolment writes need too. Each test holds a lock in a transaction of its own and watches
whether the API's check waits on it (``pg_blocking_pids``), so nothing depends on timing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from models.db import ensure_configured
from tests.conftest import wait_for
from tests.factories.attendance import check_many, create_class, pattern_for


async def _check_or_wait(
    tenant: Any, holder: asyncpg.Connection, session: Any, statuses: dict[Any, str]
) -> bool:
    """Start a bulk check while ``holder`` keeps its transaction open; True if the check
    finished, False if it waits on a lock ``holder`` holds (it finishes once ``holder``
    lets go)."""
    headers = await tenant.headers()
    task = asyncio.create_task(check_many(tenant, session, statuses, headers))
    holder_pid = holder.get_server_pid()

    # Watched from a connection of its own: within a transaction pg_stat_activity is a
    # snapshot taken at its first use.
    watcher = await asyncpg.connect(ensure_configured().config["dsn"])

    async def settled() -> bool:
        blocked = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            holder_pid,
        )
        return task.done() or blocked > 0

    try:
        assert await wait_for(settled, timeout=60, interval=0.05)
    finally:
        await watcher.close()
    finished = task.done()
    await holder.execute("ROLLBACK")
    await task
    return finished


async def test_a_check_does_not_wait_on_its_students_enrollment_rows(tenant: Any) -> None:
    """A check runs while another transaction holds the lecture's enrollment rows (as an
    enrolment write, a drop, or a check of another session of the lecture did before)."""
    k = await create_class(tenant, students=5, sessions=2)
    holder = await asyncpg.connect(ensure_configured().config["dsn"])
    try:
        await holder.execute("BEGIN")
        await holder.fetch(
            "SELECT id FROM enrollment WHERE lecture = $1 FOR NO KEY UPDATE", k.lecture
        )
        assert await _check_or_wait(tenant, holder, k.sessions[1], pattern_for(k.students))
    finally:
        await holder.close()


async def test_checks_of_one_session_wait_for_each_other(tenant: Any) -> None:
    """The session's row is what serialises checks of one session: a check waits while
    another transaction holds it."""
    k = await create_class(tenant, students=5, sessions=2)
    holder = await asyncpg.connect(ensure_configured().config["dsn"])
    try:
        await holder.execute("BEGIN")
        await holder.fetch(
            "SELECT id FROM lecture_session WHERE id = $1 FOR NO KEY UPDATE", k.sessions[0]
        )
        assert not await _check_or_wait(tenant, holder, k.sessions[0], pattern_for(k.students))
    finally:
        await holder.close()
