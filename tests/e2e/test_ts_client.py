"""The typed TypeScript client, proven against the running system: ``just client`` installs
the pinned npm packages and generates the types from a real API server's live OpenAPI
document, ``tsc --noEmit`` type-checks ``clients/ts`` against them, and its walkthrough runs
under Node (with an ``ai-lite`` worker for the roster import). A program that reads a field
the schema does not declare does not type-check.

Skips when Node.js or npm is missing; under ``CI`` that fails instead (``.ci/run`` installs
them)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.server import api_server
from tests.conftest import ROOT, WorkerProcess
from tests.factories import unique_mobile
from tests.factories.workbooks import HEADER_VARIANTS, MessySheet, student_cells, write_xlsx

pytestmark = [pytest.mark.usefixtures("provisioned"), pytest.mark.slow]

CLIENT = ROOT / "clients" / "ts"
# The lockfile's tools, as `just client` installed them (npx could fetch a stranger's "tsc").
TSC, TSX = str(CLIENT / "node_modules/.bin/tsc"), str(CLIENT / "node_modules/.bin/tsx")
MISSING = "needs Node.js 20+ and npm (Debian: apt-get install nodejs npm)"
# Bounds on a hung tool, not speed checks: npm ci on a cold cache, the walkthrough's job.
STEP_TIMEOUT_SECONDS = 300
# The walkthrough's student: its guardian's parent account must see exactly this name.
STUDENT_NAME = "김하은"
READS_JOB = """import createClient from "openapi-fetch";
import type { paths } from "./academy.js";
const api = createClient<paths>({ baseUrl: "http://127.0.0.1" });
const { data } = await api.GET("/api/v1/jobs/{job_id}", { params: { path: { job_id: "x" } } });
export const read: unknown = data?.FIELD;
"""


def require_node() -> None:
    """Node and npm, or a skip saying how to get them; under CI, missing ones fail."""
    if shutil.which("node") and shutil.which("npm"):
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI {MISSING}")
    pytest.skip(MISSING)


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``command`` in clients/ts, with this interpreter's tools (``just``, ``python``) first
    on the PATH, as ``uv run`` would put them."""
    tools = str(Path(sys.executable).parent)
    return subprocess.run(
        command,
        cwd=CLIENT,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", **(env or {})},
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_SECONDS,
        check=False,
    )


def succeed(*command: str, env: dict[str, str] | None = None) -> str:
    done = run(*command, env=env)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def generate_types(tenant: Any) -> None:
    """``just client`` against a real API server's live schema."""
    async with api_server(tenant) as server:
        await asyncio.to_thread(succeed, "just", "client", server.base)


async def test_the_typed_client_runs_a_day_against_the_api(
    tenant: Any, lite_queue: str, start_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    require_node()
    roster = tmp_path / "명단.xlsx"
    rows = [student_cells() for _ in range(3)]
    roster.write_bytes(write_xlsx(MessySheet(rows, HEADER_VARIANTS[0])))
    worker = start_worker(["ai-lite"])
    env = {
        "ACADEMY_EMAIL": tenant.owner_email,
        "ACADEMY_PASSWORD": tenant.password,
        "ACADEMY_ROSTER": str(roster),
        "ACADEMY_GUARDIAN_PHONE": unique_mobile(),
    }
    async with api_server(tenant) as server:
        await asyncio.to_thread(succeed, "just", "client", server.base)
        await asyncio.to_thread(succeed, TSC, "--noEmit", "-p", ".")
        env["ACADEMY_API_URL"] = server.base
        walk = await asyncio.to_thread(run, TSX, "src/walkthrough.ts", env=env)
    assert walk.returncode == 0, f"{walk.stdout}\n{walk.stderr}\n{worker.output()[-4000:]}"
    seen = json.loads(walk.stdout.strip().splitlines()[-1])
    assert seen["enrolment"] == "active"
    assert seen["job"]["status"] == "DONE", seen["job"]
    # The student enrolled by hand and the three rows of the roster, all in the lecture.
    assert seen["student"] in seen["enrolled"]
    assert len(set(seen["enrolled"])) == 4
    assert seen["parent_sees"] == [STUDENT_NAME]


async def test_a_field_the_schema_does_not_declare_fails_the_type_check(tenant: Any) -> None:
    require_node()
    await generate_types(tenant)
    program = CLIENT / "generated" / "reads_job.ts"
    check = (TSC, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
             "--moduleResolution", "nodenext", "--types", "node", str(program))  # fmt: skip
    try:
        program.write_text(READS_JOB.replace("FIELD", "progress"))
        await asyncio.to_thread(succeed, *check)
        program.write_text(READS_JOB.replace("FIELD", "eta_seconds"))
        refused = await asyncio.to_thread(run, *check)
    finally:
        program.unlink(missing_ok=True)
    assert refused.returncode != 0
    assert "Property 'eta_seconds' does not exist" in refused.stdout, refused.stdout
