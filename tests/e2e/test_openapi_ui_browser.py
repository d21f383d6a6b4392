"""A person opens the API docs: headless Chromium loads ``/schema`` from a running API server
and the page lists every operation of the OpenAPI document, shows no error panel, and offers
"Authorize" for the bearer token. The page and its assets come from the server alone (nothing
else is reachable here). The screenshot is kept in the test's temporary folder."""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser

import httpx
import pytest

from tests import chromium
from tests.benchmarks.server import api_server

pytestmark = [pytest.mark.usefixtures("provisioned"), pytest.mark.slow]

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Swagger UI's error panel, and the notice it shows instead of a document it cannot read.
ERROR_CLASSES = frozenset({"errors-wrapper", "version-pragma"})


class SwaggerPage(HTMLParser):
    """What the rendered page shows: its operations (method, path), error panels, and
    whether there is an "Authorize" button."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: set[tuple[str, str]] = set()
        self.errors: list[str] = []
        self.authorize = False
        self._method: str | None = None
        self._error_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        classes = set((attr.get("class") or "").split())
        if "opblock-summary-method" in classes:
            self._method = ""
        if "opblock-summary-path" in classes and self._method:
            self.operations.add((self._method, attr.get("data-path") or ""))
        if classes & ERROR_CLASSES:
            self.errors.append("")
            self._error_depth = 1
        elif self._error_depth:
            self._error_depth += 1
        if tag == "button" and "authorize" in classes:
            self.authorize = True

    def handle_endtag(self, tag: str) -> None:
        if self._error_depth:
            self._error_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._method == "":
            self._method = data.strip().upper()
        if self._error_depth:
            self.errors[-1] += data


def operations_of(spec: dict[str, object]) -> set[tuple[str, str]]:
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return {(m.upper(), path) for path, item in paths.items() for m in item if m in HTTP_METHODS}


async def test_the_docs_page_lists_every_operation_with_authorize(tenant, tmp_path):
    browser = chromium.require()
    screenshot = tmp_path / "schema.png"
    async with api_server(tenant) as server:
        async with httpx.AsyncClient(base_url=server.base) as client:
            spec = (await client.get("/schema/openapi.json")).json()
        dom = await asyncio.to_thread(chromium.render, browser, f"{server.base}/schema", screenshot)
    page = SwaggerPage()
    page.feed(dom)
    seen = f"(screenshot: {screenshot})"

    assert not page.errors, f"the page shows an error panel: {page.errors} {seen}"
    assert ("GET", "/api/v1/students") in page.operations, seen
    assert ("POST", "/api/v1/enrollments/excel") in page.operations, seen
    assert page.operations == operations_of(spec), seen
    assert page.authorize, f'no "Authorize" button {seen}'
