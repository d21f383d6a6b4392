"""Whose X-Forwarded-For counts: only a proxy's listed in FORWARDED_ALLOW_IPS (default:
none). The client address it yields is what the per-client login limit counts, so a client
that could choose it could log in without limit."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ops.runtime import free_port
from ops.settings import get_settings
from tests.conftest import ROOT, wait_for

LOGIN = "/api/v1/auth/login"
LIMIT = 3


def forwarded() -> dict[str, str]:
    """A client address never seen before (the login rows outlive a test run)."""
    return {"X-Forwarded-For": f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"}


def unknown_login() -> dict[str, str]:
    return {"email": f"nobody-{secrets.token_hex(4)}@example.com", "password": "wrong-pass"}


def image_command() -> list[str]:
    """The API image's command (ops/docker/api.Dockerfile), with this interpreter; the
    image sets HOST and PORT in its environment, the caller sets them here."""
    text = (ROOT / "ops" / "docker" / "api.Dockerfile").read_text().replace("\\\n", " ")
    cmd = json.loads(re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)[-1])
    assert cmd[0] == "python"
    return [sys.executable, *cmd[1:]]


@pytest.fixture
def image_api(database: None) -> Iterator[str]:
    """The API started as its image starts it, with a login limit of LIMIT per client."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    env.update(HOST="127.0.0.1", PORT=str(port), LOGIN_MAX_ATTEMPTS_PER_CLIENT=str(LIMIT))
    proc = subprocess.Popen(image_command(), cwd=ROOT, env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_image_ignores_x_forwarded_for_from_an_untrusted_peer(image_api: str) -> None:
    async with httpx.AsyncClient(base_url=image_api, timeout=30) as client:

        async def up() -> bool:
            try:
                return (await client.get("/health")).status_code == 200
            except httpx.HTTPError:
                return False

        assert await wait_for(up, timeout=60), "the API did not start"
        statuses = [
            (await client.post(LOGIN, json=unknown_login(), headers=forwarded())).status_code
            for _ in range(LIMIT + 2)
        ]
    # Every attempt came from this one peer, whatever address it claimed to forward.
    assert statuses[-1] == 429, statuses


@pytest.fixture
def app_behind(monkeypatch: pytest.MonkeyPatch, database: None) -> Iterator[Any]:
    """The app built with FORWARDED_ALLOW_IPS naming the proxy 10.20.30.40."""
    from api.app import create_app

    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.20.30.40")
    monkeypatch.setenv("LOGIN_MAX_ATTEMPTS_PER_CLIENT", str(LIMIT))
    get_settings.cache_clear()
    yield create_app(pool=False)
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_a_trusted_proxy_forwards_the_client_address(app_behind: Any) -> None:
    """Behind the listed proxy, each forwarded client has its own count; a peer that is
    not the proxy is counted as itself, whatever it forwards."""

    def client(peer: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app_behind, client=(peer, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with client("10.20.30.40") as proxy, client("10.20.30.41") as stranger:
        for _ in range(LIMIT + 2):
            r = await proxy.post(LOGIN, json=unknown_login(), headers=forwarded())
            assert r.status_code == 401, r.text
        statuses = [
            (await stranger.post(LOGIN, json=unknown_login(), headers=forwarded())).status_code
            for _ in range(LIMIT + 1)
        ]
    assert statuses[-1] == 429, statuses
