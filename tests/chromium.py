"""Debian's Chromium, headless: how our browser checks find and start it.

``just check-playback`` (``tests/playback/check_playback.py``) and the browser tests use it.
No browser is downloaded: without the ``chromium`` package these checks skip (or, under
``CI``, fail: ``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")
MISSING = "needs Chromium: apt-get install chromium (Debian's package; no browser is downloaded)"
RENDER_TIMEOUT_SECONDS = 120


def find() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def require() -> str:
    """The browser, or a skip saying how to get it; under CI a missing browser fails."""
    import pytest

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


def render(browser: str, url: str, screenshot: Path, *, settle_ms: int = 10_000) -> str:
    """Load ``url``, let its scripts run for ``settle_ms`` of the page's virtual time (which
    also waits for its pending requests), save a screenshot and return the page's DOM."""
    with profile() as user_data_dir:
        done = subprocess.run(
            command(
                browser,
                user_data_dir,
                f"--virtual-time-budget={settle_ms}",
                "--window-size=1280,2400",
                f"--screenshot={screenshot}",
                "--dump-dom",
                url,
            ),
            capture_output=True,
            text=True,
            timeout=RENDER_TIMEOUT_SECONDS,
        )
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout
