"""The API server's command line, one place for ``just dev`` and the benchmarks.

``API_PROCESSES`` (default 1) runs that many API processes on the one port (uvicorn's
``--workers``: the socket is bound once and the kernel hands connections to whichever
process accepts first). Nothing an API process keeps in memory may be the only copy of a
fact: login limits live in Postgres, and the in-process caches follow Postgres's
notifications with a freshness barrier (``api.list_cache``), so any process may answer
any request.
"""

from __future__ import annotations

import sys


def command(port: int, processes: int, *, access_log: bool = True) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(processes),
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
        *(() if access_log else ("--no-access-log",)),
        "--no-proxy-headers",
        # Open job event streams would otherwise hold a stop until their jobs end.
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip
