"""A person uses the API docs: headless Chromium opens ``/schema`` on a running API server.
The page lists every operation of the OpenAPI document with no error panel; then, as a person
would, it logs in with "Try it out" on ``POST /api/v1/auth/login``, pastes the access token
into "Authorize" and tries the student list. The page and its assets come from the API
server alone. A screenshot of the page is left in the test's temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import chromium
from tests.benchmarks.server import api_server

pytestmark = [pytest.mark.usefixtures("provisioned"), pytest.mark.slow]

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
# Swagger UI has drawn the document, or its error panel, or the notice it shows instead of a
# document it cannot read ("Unable to render this definition").
SETTLED = ".opblock, .errors-wrapper, .version-pragma"
SHOWN = """({
  operations: [...document.querySelectorAll(".opblock")].map((b) => [
    b.querySelector(".opblock-summary-method")?.textContent.trim(),
    b.querySelector(".opblock-summary-path")?.dataset.path,
  ]),
  errors: [...document.querySelectorAll(".errors-wrapper, .version-pragma")].map((e) => e.innerText),
  authorize: !!document.querySelector("button.authorize"),
})"""
# What a person clicks and types. Values are set the way typing sets them, so that Swagger
# UI's React inputs take them.
PERSON = """window.person = (() => {
  const until = async (find, what) => {
    for (let i = 0; i < 120; i++) {
      const found = find();
      if (found) return found;
      await new Promise((done) => setTimeout(done, 250));
    }
    throw new Error("never appeared: " + what);
  };
  const type = (field, text) => {
    Object.getOwnPropertyDescriptor(Object.getPrototypeOf(field), "value").set.call(field, text);
    field.dispatchEvent(new Event("input", { bubbles: true }));
  };
  const operation = (method, path) => [...document.querySelectorAll(".opblock-" + method)]
    .find((b) => b.querySelector(".opblock-summary-path")?.dataset.path === path);
  return {
    async authorize(token) {
      document.querySelector("button.authorize").click();
      type(await until(() => document.querySelector(".auth-container input"), "token field"), token);
      document.querySelector(".auth-btn-wrapper .modal-btn.authorize").click();
      (await until(() => document.querySelector(".auth-btn-wrapper .btn-done"), "Close")).click();
    },
    async tryIt(method, path, body) {
      const op = operation(method, path);
      op.querySelector(".opblock-summary-control").click();
      (await until(() => op.querySelector(".try-out__btn"), "Try it out")).click();
      if (body !== undefined) {
        type(await until(() => op.querySelector("textarea.body-param__text"), "request body"), body);
      }
      (await until(() => op.querySelector(".execute"), "Execute")).click();
      const response = await until(() => op.querySelector(".live-responses-table .response"), "response");
      return {
        status: response.querySelector(".response-col_status").textContent.trim(),
        body: response.querySelector(".microlight")?.textContent ?? "",
        curl: op.querySelector(".curl-command")?.textContent ?? "",
      };
    },
  };
})()"""


@dataclass
class Visit:
    shown: dict[str, Any]
    login: dict[str, str] | None = None
    students: dict[str, str] | None = None
    token: str = ""


def use_the_docs(browser: str, url: str, login: dict[str, str], screenshot: Path) -> Visit:
    with chromium.open_page(browser) as page:
        try:
            page.goto(url)
            page.wait_for(f"!!document.querySelector({json.dumps(SETTLED)})")
            visit = Visit(shown=page.evaluate(SHOWN))
            if visit.shown["errors"] or not visit.shown["authorize"]:
                return visit
            page.evaluate(PERSON)
            call = f"person.tryIt('post', '/api/v1/auth/login', {json.dumps(json.dumps(login))})"
            visit.login = page.evaluate(call)
            visit.token = json.loads(visit.login["body"] or "{}").get("access_token", "")
            page.evaluate(f"person.authorize({json.dumps(visit.token)})")
            visit.students = page.evaluate("person.tryIt('get', '/api/v1/students')")
            return visit
        finally:
            with contextlib.suppress(RuntimeError, OSError):
                page.screenshot(screenshot)


def operations_of(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (m.upper(), path) for path, item in spec["paths"].items() for m in item if m in HTTP_METHODS
    }


async def test_a_person_reads_the_docs_logs_in_and_tries_a_call(tenant, tmp_path):
    browser = chromium.require()
    screenshot = tmp_path / "schema.png"
    login = {"email": tenant.owner_email, "password": tenant.password}
    async with api_server(tenant) as server:
        async with httpx.AsyncClient(base_url=server.base) as client:
            spec = (await client.get("/schema/openapi.json")).json()
        url = f"{server.base}/schema"
        visit = await asyncio.to_thread(use_the_docs, browser, url, login, screenshot)
    seen = f"(screenshot: {screenshot})"
    shown = {tuple(op) for op in visit.shown["operations"]}

    assert not visit.shown["errors"], (
        f"the page shows an error panel: {visit.shown['errors']} {seen}"
    )
    assert ("GET", "/api/v1/students") in shown, seen
    assert ("POST", "/api/v1/enrollments/excel") in shown, seen
    assert shown == operations_of(spec), seen
    assert visit.shown["authorize"], f'no "Authorize" button {seen}'

    assert visit.login and visit.login["status"] == "200" and visit.token, (visit.login, seen)
    assert visit.students and visit.students["status"] == "200", (visit.students, seen)
    assert f"Authorization: Bearer {visit.token}" in visit.students["curl"], seen
    assert "items" in json.loads(visit.students["body"]), seen
