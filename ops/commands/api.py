"""The API server's command line, one place for ``just dev``, the benchmarks, compose and
the API image (``python -m ops.commands.api``: ``HOST``, default 127.0.0.1, and ``PORT``,
default 8000).

``API_PROCESSES`` (default 1) runs that many API processes on the one port (uvicorn's
``--workers``: the socket is bound once and the kernel hands connections to whichever
process accepts first). Nothing an API process keeps in memory may be the only copy of a
fact: login limits live in Postgres, and the in-process caches follow Postgres's
notifications with a freshness barrier (``api.list_cache``), so any process may answer
any request.
"""

from __future__ import annotations

import os
import sys

from ops.settings import get_settings

# Longer than a load balancer's idle timeout (an ALB's is 60 s) and than the players'
# 10 s heartbeat: a server closing an idle connection just as a client reuses it answers
# that request with a reset (a 502 behind the balancer). uvicorn's default is 5 s.
KEEP_ALIVE_SECONDS = 75
# How long the supervisor of several processes waits for one to answer its ping before it
# kills and replaces it. uvicorn's 5 s killed busy, healthy processes (and every request
# they held) on a saturated 2-core host.
WORKER_HEALTHCHECK_SECONDS = 30


def command(
    port: int, processes: int, *, access_log: bool = True, host: str = "127.0.0.1"
) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
        "--host", host, "--port", str(port), "--workers", str(processes),
        "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
        *(() if access_log else ("--no-access-log",)),
        # Forwarded headers are the app's to judge (FORWARDED_ALLOW_IPS, default: no proxy
        # trusted), or any client could choose the address it is limited by.
        "--no-proxy-headers",
        "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
        "--timeout-worker-healthcheck", str(WORKER_HEALTHCHECK_SECONDS),
        # Open job event streams would otherwise hold a stop until their jobs end.
        "--timeout-graceful-shutdown", "5",
    ]  # fmt: skip


def main() -> None:
    """Replace this process with the server (signals reach uvicorn directly)."""
    argv = command(
        int(os.environ.get("PORT", "8000")),
        get_settings().api_processes,
        host=os.environ.get("HOST", "127.0.0.1"),
    )
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
