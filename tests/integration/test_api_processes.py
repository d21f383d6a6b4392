"""Several API processes over one database: a write answered by one is never served stale
by another, however soon the next request comes; and ``API_PROCESSES`` runs several on one
port."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.server import Server, api_server
from tests.conftest import wait_for

ROUNDS = 25


async def _names(client: httpx.AsyncClient, server: Server) -> list[str]:
    r = await client.get(f"{server.base}/api/v1/students?limit=100", headers=server.headers)
    assert r.status_code == 200, r.text
    return [s["name"] for s in r.json()["items"]]


async def _writes_reach_the_readers(a: Server, b: Server) -> None:
    """Create through ``a``, rename through ``a``, read through ``b`` straight after each
    answer, with ``b``'s page cached before every write."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            f"{a.base}/api/v1/students",
            json={"name": "프로세스0", "guardians": [{"phone": "010-5555-0101"}]},
            headers=a.headers,
        )
        assert r.status_code == 201, r.text
        student = r.json()["id"]
        assert "프로세스0" in await _names(client, b)
        for round_ in range(1, ROUNDS + 1):
            assert await _names(client, b)  # b serves (and caches) the current page
            name = f"프로세스{round_}"
            r = await client.patch(
                f"{a.base}/api/v1/students/{student}", json={"name": name}, headers=a.headers
            )
            assert r.status_code == 200, r.text
            assert name in await _names(client, b), f"stale page from the other process, {round_}"


async def test_a_write_through_one_process_is_read_at_once_through_another(tenant: Any) -> None:
    async with api_server(tenant) as a, api_server(tenant) as b:
        await _writes_reach_the_readers(a, b)


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and "python" in fields.get("Name", ""):
            found.append(int(status.parent.name))
    return found


async def test_api_processes_share_one_port(tenant: Any) -> None:
    async with api_server(tenant, processes=2) as server:
        assert server.process is not None

        async def two_serving() -> bool:
            # uvicorn's supervisor starts one child per process (and a resource tracker).
            return len(_children(server.process.pid)) >= 2  # type: ignore[union-attr]

        assert await wait_for(two_serving, timeout=30), "fewer than two API processes"
        # Whichever process takes each request, writes and reads agree.
        await _writes_reach_the_readers(server, server)
