"""Schemathesis over the whole OpenAPI document, as the owner of an academy, against the
API as a real server: whatever it sends -- NUL bytes, huge numbers, dates in year 9999,
wrong types -- no operation answers 5xx, and every answer is one the document lists, with
the body and headers it describes; a request the schema refuses is refused.

Every check runs, ``positive_data_acceptance`` (a request the schema allows is not refused)
included. Some refusals of such requests are for rules no schema can state -- an opaque
cursor that is not one of the API's own, rules between fields (an end before its start),
ids of rows that do not exist, a phone number's validity, an uploaded file's content. Each
operation lists those in its 422 answer (``x-unstated-rules``), and ``fuzz_hooks.py`` lets a
415 or 422 pass only for a listed rule (``schemathesis.toml`` hands those statuses to it).

Short here (a few examples per operation); ``just fuzz`` runs every phase for minutes:
``ACADEMY_FUZZ_EXAMPLES`` examples per operation, ``ACADEMY_FUZZ_SECONDS`` at most,
``ACADEMY_FUZZ_PHASES`` (default ``fuzzing``), ``ACADEMY_FUZZ_CHECKS`` (default ``all``).
A failure prints the request and a curl line to replay it.

The suite draws from one fixed seed (``ACADEMY_FUZZ_SEED``, default 1), so a run that fails
fails again on the same commit, and a failure is the commit's, not the draw's. ``just fuzz``
draws a new seed each time (it sets the variable empty) to find what the fixed draw misses.
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
CHECKS = os.environ.get("ACADEMY_FUZZ_CHECKS", "all")
EXCLUDE_CHECKS = os.environ.get("ACADEMY_FUZZ_EXCLUDE_CHECKS", "")
# A regular expression: only the paths it matches (to replay one area while fixing it).
PATHS = os.environ.get("ACADEMY_FUZZ_PATHS", "")
SEED = os.environ.get("ACADEMY_FUZZ_SEED", "1")
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
HERE = Path(__file__).parent
ROOT = HERE.parent.parent


async def test_the_api_answers_as_its_schema_says(tenant: Any) -> None:
    async with api_server(tenant, start_timeout=120) as server:
        proc = await asyncio.create_subprocess_exec(
            SCHEMATHESIS, "--config-file", str(HERE / "schemathesis.toml"),
            "run", f"{server.base}/schema/openapi.json",
            "--header", f"Authorization: Bearer {server.token}",
            "--checks", CHECKS,
            *(("--exclude-checks", EXCLUDE_CHECKS) if EXCLUDE_CHECKS else ()),
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
            *(("--seed", SEED) if SEED else ()),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks",
                 "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        out, _ = await proc.communicate()
    report = out.decode(errors="replace")
    print(report)
    assert proc.returncode == 0, report[-20_000:]
