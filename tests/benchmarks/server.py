"""The API as a real server for benchmarks and end-to-end tests: uvicorn (uvloop +
httptools), one process unless asked for more (``API_PROCESSES`` of the API itself)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ops.commands.api import command as api_command
from ops.processes import stop_server
from ops.runtime import free_port
from tests.conftest import ROOT, wait_for


@dataclass
class Server:
    base: str
    token: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.asynccontextmanager
async def api_server(
    tenant: Any, env: dict[str, str] | None = None, start_timeout: float = 30, processes: int = 1
) -> AsyncIterator[Server]:
    """Start the API (with ``env`` added to its environment), wait for /health, log in as
    the tenant's owner; stop it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        api_command(port, processes, access_log=False),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", **(env or {})},
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            assert await wait_for(up, timeout=start_timeout), "the API did not start"
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": tenant.owner_email, "password": tenant.password},
            )
            yield Server(base, login.json()["access_token"], proc)
    finally:
        stop_server(proc, 10)
