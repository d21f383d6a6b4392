"""CORS for the single-page apps served from another origin (``CORS_ALLOWED_ORIGINS``):
preflights from an allowed and a disallowed origin, the headers of actual answers (errors
included, so an SPA can read a problem), and none of it when the setting is empty."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from ops.settings import get_settings

STAFF_APP = "https://staff.academy.example"
PARENT_APP = "https://parents.academy.example"
ELSEWHERE = "https://evil.example"


@pytest_asyncio.fixture
async def cors_client(
    monkeypatch: pytest.MonkeyPatch, database: None, broker: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built with both SPAs' origins allowed (same database)."""
    from api.app import create_app

    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", f"{STAFF_APP}, {PARENT_APP}")
    monkeypatch.setenv("CORS_MAX_AGE_SECONDS", "3600")
    get_settings.cache_clear()
    try:
        app = create_app(pool=False)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _preflight(origin: str, method: str = "GET") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, x-request-id",
    }


def _listed(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


async def test_preflight_from_an_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    for origin, method in ((STAFF_APP, "GET"), (PARENT_APP, "PATCH")):
        r = await cors_client.options("/api/v1/students", headers=_preflight(origin, method))
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == origin
        assert "origin" in _listed(r.headers.get("vary"))
        assert r.headers["access-control-max-age"] == "3600"
        assert {"authorization", "content-type", "x-request-id"} <= _listed(
            r.headers.get("access-control-allow-headers")
        )
        assert method.lower() in _listed(r.headers.get("access-control-allow-methods"))
        # Bearer tokens, not cookies: no credentials unless asked for.
        assert "access-control-allow-credentials" not in r.headers


async def test_preflight_from_a_disallowed_origin(cors_client: httpx.AsyncClient) -> None:
    r = await cors_client.options("/api/v1/students", headers=_preflight(ELSEWHERE))
    assert r.status_code == 400, r.text
    assert "access-control-allow-origin" not in r.headers


async def test_actual_answers_carry_the_headers_an_spa_reads(
    cors_client: httpx.AsyncClient, tenant: Any
) -> None:
    headers = {**await tenant.headers(), "Origin": STAFF_APP, "X-Request-ID": "spa-req-1"}
    r = await cors_client.get("/api/v1/students", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == STAFF_APP
    assert r.headers["x-request-id"] == "spa-req-1"
    assert "x-request-id" in _listed(r.headers.get("access-control-expose-headers"))

    # A refused call still lets the page read its problem+json.
    r = await cors_client.get("/api/v1/students", headers={"Origin": PARENT_APP})
    assert r.status_code == 401, r.text
    assert r.headers["access-control-allow-origin"] == PARENT_APP
    assert r.headers["content-type"].startswith("application/problem+json")

    r = await cors_client.get("/api/v1/students", headers={**headers, "Origin": ELSEWHERE})
    assert "access-control-allow-origin" not in r.headers


async def test_no_cors_when_no_origin_is_configured(client: httpx.AsyncClient) -> None:
    """The default: same origin only, a preflight from anywhere is not answered with CORS."""
    r = await client.options("/api/v1/students", headers=_preflight(STAFF_APP))
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/health", headers={"Origin": STAFF_APP})
    assert "access-control-allow-origin" not in r.headers
