"""A single-page app on another origin, in a real browser: a tiny static page served from a
second 127.0.0.1 port logs in and lists students with ``fetch``; headless Chromium runs it
against a real API server. With the page's origin in ``CORS_ALLOWED_ORIGINS`` the rows
appear (and the page can read ``X-Request-ID``); without it, the browser blocks the calls."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ops.runtime import free_port
from tests import chromium
from tests.benchmarks.server import api_server
from tests.factories import create_student

pytestmark = [pytest.mark.usefixtures("provisioned"), pytest.mark.slow]

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>staff app</title>
<table id="students"><tbody></tbody></table>
<p id="status">loading</p>
<script>
const given = new URLSearchParams(location.hash.slice(1));
const api = given.get("api");
const show = (text) => { document.querySelector("#status").textContent = text; };
(async () => {
  try {
    const login = await fetch(api + "/api/v1/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email: given.get("email"), password: given.get("password") }),
    });
    if (!login.ok) throw new Error("login answered " + login.status);
    const { access_token } = await login.json();
    const listed = await fetch(api + "/api/v1/students?limit=50", {
      headers: { Authorization: "Bearer " + access_token, "X-Request-ID": "spa-list-1" },
    });
    if (!listed.ok) throw new Error("the list answered " + listed.status);
    const rows = document.querySelector("#students tbody");
    for (const student of (await listed.json()).items) {
      const row = rows.insertRow();
      row.className = "student";
      row.insertCell().textContent = student.name;
    }
    show("loaded " + listed.headers.get("X-Request-ID"));
  } catch (error) {
    show("failed: " + error);
  }
})();
</script>
"""
SETTLED = """(t => t !== "loading" && t)(document.querySelector("#status")?.textContent)"""
ROWS = """[...document.querySelectorAll("tr.student td")].map((td) => td.textContent)"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on its own 127.0.0.1 port: another origin than the API."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_page(browser: str, url: str) -> tuple[str, list[str]]:
    """What the page says once it settled, and the student rows it drew."""
    with chromium.open_page(browser) as page:
        page.goto(url)
        status = page.wait_for(SETTLED)
        return str(status), list(page.evaluate(ROWS))


async def _visit(tenant: Any, tmp_path: Path, *, allow_page: bool) -> tuple[str, list[str]]:
    browser = chromium.require()
    (tmp_path / "index.html").write_text(PAGE)
    with static_site(tmp_path) as site:
        env = {"CORS_ALLOWED_ORIGINS": site if allow_page else ""}
        async with api_server(tenant, env) as server:
            login = {"api": server.base, "email": tenant.owner_email, "password": tenant.password}
            url = f"{site}/index.html#{urlencode(login)}"
            return await asyncio.to_thread(run_page, browser, url)


async def test_an_spa_on_another_origin_lists_students(tenant: Any, tmp_path: Path) -> None:
    names = sorted([(await create_student(tenant))["name"] for _ in range(3)])
    status, rows = await _visit(tenant, tmp_path, allow_page=True)
    assert status == "loaded spa-list-1", status
    assert sorted(rows) == names


async def test_without_cors_the_browser_blocks_the_page(tenant: Any, tmp_path: Path) -> None:
    await create_student(tenant)
    status, rows = await _visit(tenant, tmp_path, allow_page=False)
    assert status.startswith("failed: TypeError"), status
    assert rows == []
