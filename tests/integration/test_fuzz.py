"""Schemathesis over the whole OpenAPI document, as the owner of an academy, against the
API as a real server: whatever it sends -- NUL bytes, huge numbers, dates in year 9999,
wrong types -- no operation answers 5xx.

Short here (a few examples per operation); ``just fuzz`` runs every phase for minutes:
``ACADEMY_FUZZ_EXAMPLES`` examples per operation, ``ACADEMY_FUZZ_SECONDS`` at most,
``ACADEMY_FUZZ_PHASES`` (default ``fuzzing``). A failure prints the request that got the
5xx and a curl line to replay it.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tests.benchmarks.server import api_server

EXAMPLES = os.environ.get("ACADEMY_FUZZ_EXAMPLES", "3")
SECONDS = os.environ.get("ACADEMY_FUZZ_SECONDS", "45")
PHASES = os.environ.get("ACADEMY_FUZZ_PHASES", "fuzzing")
CHECKS = os.environ.get("ACADEMY_FUZZ_CHECKS", "not_a_server_error")
# A regular expression: only the paths it matches (to replay one area while fixing it).
PATHS = os.environ.get("ACADEMY_FUZZ_PATHS", "")
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


async def test_no_operation_answers_a_server_error(tenant: Any) -> None:
    async with api_server(tenant, start_timeout=120) as server:
        proc = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "run", f"{server.base}/schema/openapi.json",
            "--header", f"Authorization: Bearer {server.token}",
            "--checks", CHECKS,
            "--phases", PHASES,
            "--max-examples", EXAMPLES,
            "--max-time", SECONDS,
            "--workers", "1",
            "--request-timeout", "30",
            "--continue-on-failure",
            "--no-color",
            "--generation-database", ":memory:",
            # The owner logging itself out would leave the rest of the run unauthenticated.
            "--exclude-path", "/api/v1/auth/logout",
            # Nor may it deactivate itself or reset its own password (ids it reads in lists).
            "--exclude-path-regex", r"^/api/v1/users/\{user_id\}",
            *(("--include-path-regex", PATHS) if PATHS else ()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
    report = out.decode(errors="replace")
    print(report)
    assert proc.returncode == 0, report[-20_000:]
