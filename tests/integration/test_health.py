"""``GET /health`` up and down, RFC 9457 problems (every field error listed), and the
request id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.bola import assert_problem


async def test_health_up(client: Any) -> None:
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"] == "connected"
    assert body["broker"] == "connected"
    assert body["storage"] == "connected"
    assert set(body["latency_ms"]) == {"database", "broker", "storage"}


async def test_health_reports_the_database_going_down(client: Any) -> None:
    """A second, separate embedded Postgres: up -> 200, stopped -> 503. The session's
    database is never touched, and the engine is pointed back at it whatever happens."""
    from models.db import configure_db
    from ops.runtime import DATA_DIR, start_postgres

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    pg_dir = Path(tempfile.mkdtemp(prefix="pg-health-", dir=DATA_DIR))
    server: Any = None
    try:
        # start_postgres blocks (and runs its own event loop): keep it off this loop.
        url, server = await asyncio.to_thread(start_postgres, pg_dir / "data")
        assert url != os.environ["DATABASE_URL"]
        configure_db(url)

        up = await client.get("/health")
        assert up.status_code == 200, up.text
        assert up.json()["database"] == "connected"

        await asyncio.to_thread(server.stop)

        down = await client.get("/health")
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["database"] == "disconnected"
        assert body["status"] == "error"
        assert body["broker"] == "connected" and body["storage"] == "connected"
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(server.stop)
        configure_db(os.environ["DATABASE_URL"])
        shutil.rmtree(pg_dir, ignore_errors=True)

    back = await client.get("/health")
    assert back.status_code == 200, back.text
    assert back.json()["database"] == "connected"


# --- problems --------------------------------------------------------------------------


async def test_validation_problem_lists_every_field_error(client: Any) -> None:
    r = await client.post("/api/v1/auth/login", json={})
    assert_problem(r, 422, "/problems/validation")
    body = r.json()
    assert body["instance"] == "/api/v1/auth/login"
    fields = sorted(e["field"] for e in body["errors"])
    assert fields == ["email", "password"], body
    assert all(e["source"] == "body" and e["message"] for e in body["errors"]), body


async def test_validation_problem_lists_wrong_types_and_unknown_fields(client: Any) -> None:
    r = await client.post(
        "/api/v1/auth/login", json={"email": 1, "password": ["x"], "tenant": 5, "extra": True}
    )
    assert_problem(r, 422, "/problems/validation")
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(errors) == {"email", "password", "tenant", "extra"}, errors
    assert "str" in errors["email"]


async def test_validation_problem_for_one_field(client: Any) -> None:
    r = await client.post("/api/v1/auth/login", json={"email": "a@example.com"})
    assert_problem(r, 422, "/problems/validation")
    assert [e["field"] for e in r.json()["errors"]] == ["password"]


async def test_body_that_is_not_an_object_is_a_problem(client: Any) -> None:
    r = await client.post("/api/v1/auth/login", json=["email", "password"])
    assert_problem(r, 422, "/problems/validation")
    assert r.json()["errors"], r.json()


async def test_malformed_json_is_400_problem(client: Any) -> None:
    r = await client.post(
        "/api/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "/problems/bad-request")


async def test_unknown_route_is_404_problem(client: Any) -> None:
    r = await client.get("/api/v1/no-such-thing")
    assert_problem(r, 404, "/problems/not-found")
    assert r.json()["instance"] == "/api/v1/no-such-thing"


async def test_wrong_method_is_405_problem(client: Any) -> None:
    r = await client.delete("/health")
    assert_problem(r, 405, "/problems/method-not-allowed")


# --- request id ------------------------------------------------------------------------


async def test_response_carries_a_request_id(client: Any) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_incoming_request_id_is_echoed(client: Any, tenant: Any) -> None:
    r = await client.get("/health", headers={"X-Request-ID": "req-abc-123"})
    assert r.headers["x-request-id"] == "req-abc-123"

    # In problems too: header and body carry the same id.
    problem = await client.get(
        f"/api/v1/jobs/{uuid.uuid4()}",
        headers={**await tenant.headers(), "X-Request-ID": "req-404-1"},
    )
    assert_problem(problem, 404, "/problems/not-found")
    assert problem.headers["x-request-id"] == "req-404-1"
    assert problem.json()["request_id"] == "req-404-1"


@pytest.mark.parametrize(("method", "path"), [("GET", "/no-such-route"), ("DELETE", "/health")])
async def test_router_problems_carry_the_request_id(client: Any, method: str, path: str) -> None:
    r = await client.request(method, path, headers={"X-Request-ID": "req-router-1"})
    assert r.status_code in (404, 405)
    assert r.headers.get("x-request-id") == "req-router-1"
    assert r.json().get("request_id") == "req-router-1"


async def test_unsafe_request_id_is_replaced(client: Any) -> None:
    r = await client.get("/health", headers={"X-Request-ID": "bad id\r\nX-Evil: 1"})
    assert r.headers["x-request-id"]
    assert r.headers["x-request-id"] != "bad id\r\nX-Evil: 1"
    assert r.headers["x-request-id"].isalnum()
