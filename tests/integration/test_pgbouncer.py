"""The API and a worker behind PgBouncer in transaction pooling mode (Debian's 1.18, which
has no protocol-level prepared statements): every transaction may run on another server
connection, so anything relying on session state would fail here.

The module starts its own pooler in front of the session's Postgres (or uses the session's
own under ``ACADEMY_PGBOUNCER=1``), points the engine at it, and checks on the pooler's
admin console that the traffic really went through it. Outside CI it skips without Debian's
``pgbouncer`` package; in CI (``CI`` set, ``.ci/run`` installs it) that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from models.db import DB, configure_db, direct_dsn
from models.notifications import Listener
from ops.pgbouncer import admin_port, admin_show, pgbouncer_binary
from ops.runtime import pgbouncer
from ops.settings import get_settings
from tests.conftest import ROOT, WorkerProcess, wait_for
from tests.dev_stack import CLEARED
from tests.factories import bulk_students, create_student
from tests.factories.attendance import check_many, create_sessions
from tests.factories.lectures import create_lecture, enrollments_url
from tests.factories.workbooks import messy_rows, write_xlsx

pytestmark = pytest.mark.usefixtures("broker")


@dataclass
class Pooler:
    url: str
    direct: str

    def stats(self) -> dict[str, int]:
        """The pooler's running totals for the database (transactions, queries); it has
        none before its first client."""
        name = self.url.rsplit("/", 1)[1]
        rows = [r for r in admin_show(admin_port(self.url), "STATS") if r["database"] == name]
        return {
            "xacts": sum(int(r["total_xact_count"]) for r in rows),
            "queries": sum(int(r["total_query_count"]) for r in rows),
        }


@pytest.fixture(scope="module")
def pooler_url(runtime: Any) -> Iterator[tuple[str, str]]:
    settings = get_settings()
    if settings.database_pooled:
        yield settings.database_url, settings.database_direct_url
        return
    if pgbouncer_binary() is None:
        # Outside CI a missing tool skips; in CI (which installs it) it is a failure.
        reason = "needs Debian's pgbouncer: apt-get install pgbouncer"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with pgbouncer(settings.database_url) as url:
        yield url, settings.database_url


@pytest_asyncio.fixture
async def pooled(database: None, pooler_url: tuple[str, str]) -> AsyncIterator[Pooler]:
    """The engine (the API's and the factories' queries) on the pooler for the test."""
    kept = DB.config
    configure_db(pooler_url[0], pooled=True)
    try:
        yield Pooler(*pooler_url)
    finally:
        DB.config = kept


def test_the_pooler_runs_in_transaction_mode(pooled: Pooler) -> None:
    port = admin_port(pooled.url)
    config = {c["key"]: c["value"] for c in admin_show(port, "CONFIG")}
    overrides = {d["name"]: d["pool_mode"] for d in admin_show(port, "DATABASES")}
    assert config["pool_mode"] == "transaction", config
    assert overrides[pooled.url.rsplit("/", 1)[1]] in ("", "transaction"), overrides


async def test_api_calls_go_through_the_pooler(tenant: Any, pooled: Pooler) -> None:
    before = pooled.stats()
    h = await tenant.headers()
    lecture = await create_lecture(tenant, h, capacity=40)
    student = await create_student(tenant, h)
    # COPY through the pooler (the factory bulk-loads this way).
    others = await bulk_students(tenant.id, 30)
    # Concurrent requests spread over several server connections: a named prepared
    # statement parsed on one would be missing on another.
    enrolled = await asyncio.gather(
        *(
            tenant.client.post(enrollments_url(lecture), json={"student_id": str(sid)}, headers=h)
            for sid in [uuid.UUID(student["id"]), *others]
        )
    )
    assert sorted(r.status_code for r in enrolled) == [201] * 31, [r.text for r in enrolled]
    sessions, _ = await create_sessions(tenant, uuid.UUID(lecture["id"]), 1)
    statuses = {sid: ("present" if i % 3 else "late") for i, sid in enumerate(others)}
    await asyncio.gather(
        check_many(tenant, sessions[0], statuses, h),
        *(tenant.client.get("/api/v1/students?limit=20", headers=h) for _ in range(8)),
    )
    found = await tenant.client.get("/api/v1/students", params={"q": student["name"]}, headers=h)
    assert student["id"] in [s["id"] for s in found.json()["items"]], found.text
    sheet = await tenant.client.get(f"/api/v1/sessions/{sessions[0]}/attendance", headers=h)
    assert sheet.status_code == 200, sheet.text

    after = pooled.stats()
    # Over 40 requests, several statements each (about 400 statements in 60 transactions
    # today): a bypass would leave next to nothing, a leaner query layer still plenty.
    assert after["queries"] - before["queries"] >= 50, (before, after)
    assert after["xacts"] - before["xacts"] >= 20, (before, after)


async def test_a_write_through_the_pooler_notifies_the_direct_listener(
    tenant: Any, pooled: Pooler
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await Listener.open(pooled.direct, {"student_list": heard.put_nowait})
    try:
        await create_student(tenant)
        payload = await asyncio.wait_for(heard.get(), 10)
    finally:
        await listener.close()
    assert payload == str(tenant.id)


@pytest.mark.usefixtures("lite_queue")
async def test_an_excel_import_runs_end_to_end_through_the_pooler(
    tenant: Any, pooled: Pooler
) -> None:
    worker = WorkerProcess(
        ["ai-lite"], env={"DATABASE_URL": pooled.url, "DATABASE_DIRECT_URL": pooled.direct}
    )
    try:
        await create_lecture(tenant, code="PGB-A", capacity=50)
        r = await tenant.client.post(
            "/api/v1/enrollments/excel",
            files={"file": ("명단.xlsx", write_xlsx(messy_rows(12, lecture="pgb-a", seed=3)))},
            headers=await tenant.headers(),
        )
        assert r.status_code == 202, r.text
        job_id = uuid.UUID(r.json()["job_id"])
        # From here only the worker uses the pooler: this test watches on the direct URL.
        before = pooled.stats()
        direct = await asyncpg.connect(pooled.direct)
        try:

            async def finished() -> Any:
                row = await direct.fetchrow(
                    "SELECT status, (result->>'enrolled')::int AS enrolled FROM job WHERE id = $1",
                    job_id,
                )
                return row if row["status"] in ("DONE", "FAILED") else None

            row = await wait_for(finished, timeout=90)
        finally:
            await direct.close()
        assert row, f"the import did not finish:\n{worker.output()[-4000:]}"
        assert row["status"] == "DONE", worker.output()[-4000:]
        assert row["enrolled"] == 12, row
        after = pooled.stats()
        assert after["xacts"] - before["xacts"] >= 5, (before, after)
    finally:
        worker.stop()


@pytest.mark.parametrize("cache", [100, 0])
async def test_named_prepared_statements_break_behind_the_pooler(
    pooled: Pooler, cache: int
) -> None:
    """Why the statement cache is off behind a pooler: a statement prepared on one server
    connection is missing on the next one the pooler lends."""
    a = await asyncpg.connect(pooled.url, statement_cache_size=cache)
    b = await asyncpg.connect(pooled.url)
    try:
        assert await a.fetchval("SELECT $1::int", 1) == 1
        async with b.transaction():
            # ``b`` now holds the server connection ``a`` prepared its statement on.
            await b.execute("SELECT 1")
            if cache:
                with pytest.raises(asyncpg.InvalidSQLStatementNameError):
                    await a.fetchval("SELECT $1::int", 2)
            else:
                assert await a.fetchval("SELECT $1::int", 2) == 2
    finally:
        await a.close()
        await b.close()


def test_the_runtime_pooler_goes_when_its_owner_is_killed(pooler_url: tuple[str, str]) -> None:
    """``ACADEMY_PGBOUNCER=1``: the runtime fronts its Postgres with PgBouncer, and its
    watchdog stops both when the owner is SIGKILLed."""
    env = {k: v for k, v in os.environ.items() if k not in (*CLEARED, "DATABASE_DIRECT_URL")}
    show = "import os, time; print(os.environ['DATABASE_URL'], flush=True); time.sleep(600)"
    runtime = [sys.executable, "-m", "ops.runtime", "run", "--purpose", "test", "--"]
    owner = subprocess.Popen(
        [*runtime, sys.executable, "-c", show],
        cwd=ROOT,
        env={**env, "ACADEMY_PGBOUNCER": "1", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert owner.stdout is not None
        url = owner.stdout.readline().decode().strip()
        port = admin_port(url)
        assert url.startswith("postgresql://") and admin_show(port, "VERSION")
    finally:
        os.killpg(owner.pid, signal.SIGKILL)
        owner.wait(10)

    def answers() -> bool:
        try:
            admin_show(port, "VERSION")
        except OSError:
            return False
        return True

    deadline = time.monotonic() + 30
    while answers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not answers(), "PgBouncer outlived its SIGKILLed owner"


def test_behind_a_pooler_without_a_direct_url_nothing_listens(
    database: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LISTEN through the pooler would be lost silently, and a list cache trusting it
    would serve stale pages: with no direct URL the API runs no listener (caches off)."""
    monkeypatch.setenv("DATABASE_POOLED", "true")
    monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert direct_dsn() == ""
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert direct_dsn() == (os.environ.get("DATABASE_DIRECT_URL") or DB.config["dsn"])
