"""Debian's Chromium, headless: how our browser checks find and start it.

``just check-playback`` (``tests/playback/check_playback.py``) and the browser tests use it.
No browser is downloaded: without the ``chromium`` package these checks skip (or, under
``CI``, fail: ``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser")
MISSING = "needs Chromium: apt-get install chromium (Debian's package; no browser is downloaded)"
CALL_TIMEOUT_SECONDS = 60
WAIT_SECONDS = 60


def find() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def require() -> str:
    """The browser, or a skip saying how to get it; under CI a missing browser fails."""
    browser = find()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI {MISSING}")
        pytest.skip(MISSING)
    return browser


@contextmanager
def profile() -> Iterator[str]:
    """A throwaway user profile, so runs never share cookies, storage or a profile lock."""
    path = tempfile.mkdtemp(prefix="academy-chromium-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def command(browser: str, user_data_dir: str, *flags: str) -> list[str]:
    # --no-sandbox: CI and the dev containers run as root, where Chromium's sandbox refuses
    # to start.
    return [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={user_data_dir}",
        *flags,
    ]


class Page:
    """One tab, driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    Chromium reads requests on its fd 3 and writes answers on its fd 4, as JSON ended by a
    NUL byte), so no port is opened and no client library is needed."""

    def __init__(self, browser: str, user_data_dir: str) -> None:
        to_browser, self._requests = os.pipe()
        self._answers, from_browser = os.pipe()
        # bash puts the pipe ends on Chromium's fds 3 and 4 (dash takes single-digit fds only).
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_browser} 4>&{from_browser}', "bash",
             *command(browser, user_data_dir, "--remote-debugging-pipe",
                      "--window-size=1280,2400", "about:blank")],
            pass_fds=(to_browser, from_browser),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._last_id = 0
        self._session: str | None = None

    def attach(self) -> None:
        """Send what follows to the browser's one tab."""
        tab = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=tab["targetId"], flatten=True)
        self._session = attached["sessionId"]

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the tab once attached) and return its result."""
        self._last_id += 1
        request: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session:
            request["sessionId"] = self._session
        os.write(self._requests, json.dumps(request).encode() + b"\0")
        while True:
            message = json.loads(self._next_message())
            if message.get("id") != self._last_id:
                continue  # an event, or the answer to an earlier command
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return dict(message["result"])

    def _next_message(self) -> bytes:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._answers], [], [], CALL_TIMEOUT_SECONDS)
            chunk = os.read(self._answers, 1 << 16) if ready else b""
            if not chunk:
                raise RuntimeError("chromium stopped answering")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return message

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = WAIT_SECONDS) -> Any:
        """The expression's first truthy value; TimeoutError if it has none within ``timeout``
        (a bound on a hung page, not a speed check)."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never showed: {expression}")
            time.sleep(0.25)
        return value

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._requests)
        os.close(self._answers)


@contextmanager
def open_page(browser: str) -> Iterator[Page]:
    with profile() as user_data_dir:
        page = Page(browser, user_data_dir)
        try:
            page.attach()
            yield page
        finally:
            page.close()
