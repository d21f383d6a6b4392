"""The embedded Postgres comes back after ``kill -9`` of its postmaster.

Killed, the postmaster is re-parented to PID 1; a container's PID 1 may never reap it, and
a zombie answers ``kill(pid, 0)``, so its lock files look held. The runtime must start a new
server rather than wait on (or connect to) the dead one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time

import asyncpg

from ops.runtime import DATA_DIR, pid_alive, start_postgres
from tests.dev_stack import descendants


def _kill9(pid: int) -> list[int]:
    everything = [pid, *descendants(pid)]
    for p in everything:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in everything)
    return everything


def test_postgres_starts_again_after_its_postmaster_was_killed() -> None:
    data = DATA_DIR / f"pg-killed-{os.getpid()}"
    server: object | None = None
    try:
        _, server = start_postgres(data)
        postmaster = int((data / "postmaster.pid").read_text().splitlines()[0])
        _kill9(postmaster)
        assert (data / "postmaster.pid").exists()  # left behind, naming the dead server

        # A new `just dev` is a new process; here pgserver's per-process handle must go.
        type(server)._instances.pop(data.resolve(), None)  # type: ignore[attr-defined]
        url, server = start_postgres(data)

        async def ask() -> int:
            conn = await asyncpg.connect(url)
            try:
                return int(await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        assert asyncio.run(ask()) == 1
        assert int((data / "postmaster.pid").read_text().splitlines()[0]) != postmaster
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()  # type: ignore[attr-defined]
        shutil.rmtree(data, ignore_errors=True)
