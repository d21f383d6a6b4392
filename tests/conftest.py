"""Shared fixtures: the local runtime (embedded Postgres + local SQS/S3 over HTTP), a
migrated database, provisioned queues and buckets, the API client, tenants and workers.

Isolation: every test creates its own tenant(s), and everything is tenant-scoped, so tests
never see each other's rows. Queue tests purge the queues they use.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parent.parent
# Real OMRChecker scans with their templates, keys and reference reading; they live beside
# the project (never copied into it). Tests that need them skip when they are absent.
OMRCHECKER_FIXTURES = Path(
    os.environ.get("OMRCHECKER_FIXTURES", ROOT.parent / "shared" / "fixtures" / "omrchecker")
)

# Fast feedback in tests: short long-polls and visibility timeouts. Set before anything
# reads the settings.
TEST_ENV = {
    "ACADEMY_ENV": "test",
    "SQS_WAIT_TIME_SECONDS": "1",
    "SQS_MAX_RECEIVE_COUNT": "3",
    "SQS_VISIBILITY_TIMEOUT_VIDEO": "6",
    "SQS_VISIBILITY_TIMEOUT_AI_LITE": "6",
    "SQS_VISIBILITY_TIMEOUT_AI_BASIC": "6",
    "SQS_VISIBILITY_TIMEOUT_AI_PREMIUM": "6",
    "SQS_VISIBILITY_TIMEOUT_MESSAGING": "6",
    "LOGIN_MAX_FAILURES_PER_ACCOUNT": "5",
    # Argon2 at 64 MiB a hash made every log-in and user of the suite cost ~0.1 s.
    "PASSWORD_HASH_PROFILE": "CHEAPEST",
    "LOGIN_MAX_ATTEMPTS_PER_CLIENT": "100000",
    "LOG_LEVEL": "INFO",
    # Tests read back the queue depths they have just caused.
    "METRICS_QUEUE_REFRESH_SECONDS": "0",
    "ACADEMY_EXTRA_ACTOR_MODULES": "tests.actors",
    # Playback URLs point here; tests serving HLS swap in their own server's port.
    "CDN_HLS_BASE_URL": "http://127.0.0.1:8089/hls",
}
for _k, _v in TEST_ENV.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def runtime() -> Iterator[Any]:
    from ops.runtime import local_runtime

    with local_runtime(purpose="test") as rt:
        yield rt


@pytest_asyncio.fixture(scope="session")
async def database(runtime: Any) -> AsyncIterator[None]:
    from models.db import configure_db
    from ops.commands.migrate import migrate

    configure_db(os.environ["DATABASE_URL"])
    await migrate()
    yield


@pytest.fixture(scope="session")
def provisioned(runtime: Any) -> list[tuple[str, str]]:
    from ops.commands.provision import provision

    return provision()


@pytest.fixture(scope="session")
def broker(provisioned: Any) -> Any:
    from actors.broker import setup_broker

    return setup_broker(worker=False)


@pytest.fixture
def lite_queue(broker: Any) -> Iterator[str]:
    """The ai-lite tier queue, and its DLQ, empty before and after the test."""
    from ops.settings import get_settings
    from tests.sqs_helpers import purge

    queue = get_settings().queue_for("ai-lite")
    purge(queue, f"{queue}-dlq")
    yield queue
    purge(queue, f"{queue}-dlq")


@contextlib.asynccontextmanager
async def following(*subscribers: Any) -> AsyncIterator[None]:
    """The API's one listener for ``subscribers`` (caches, job events), as its lifespan
    runs it (the test app has none), once every subscriber is listening."""
    from api.listening import listening
    from models.db import direct_dsn

    async def up() -> bool:
        return all(s.listening for s in subscribers)

    async with listening(direct_dsn(), subscribers):
        assert await wait_for(up, timeout=10), "the listener did not connect"
        yield


@pytest_asyncio.fixture(scope="session")
async def app(database: None, broker: Any) -> AsyncIterator[Any]:
    """The app, without its lifespan; but with the account-state cache's listener, as a
    running API has it (every request would otherwise look its account up, and the tests
    that count a request's queries would count that too)."""
    from api.app import create_app
    from api.list_cache import ACCOUNT_STATE

    async with following(ACCOUNT_STATE):
        yield create_app(pool=False)


@pytest_asyncio.fixture
async def client(app: Any) -> AsyncIterator[Any]:
    import httpx

    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class TenantCtx:
    id: Any
    slug: str
    owner_email: str
    password: str
    client: Any

    async def login(self, email: str | None = None, password: str | None = None) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/auth/login",
            json={"email": email or self.owner_email, "password": password or self.password},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def headers(
        self, email: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        tokens = await self.login(email, password)
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    async def add_user(self, role: str, password: str = "password-123") -> str:
        from models.tables import User
        from ops.passwords import hash_password

        email = f"{role}-{secrets.token_hex(4)}@example.com"
        await User(
            tenant=self.id, email=email, role=role, name=role, password_hash=hash_password(password)
        ).save()
        return email


@pytest_asyncio.fixture
async def make_tenant(database: None, client: Any) -> Callable[[], Any]:
    from ops.commands.tenants import create_tenant

    async def make() -> TenantCtx:
        slug = f"t-{secrets.token_hex(5)}"
        email = f"owner-{slug}@example.com"
        password = "correct-horse-battery"
        tenant, _, _ = await create_tenant(f"학원 {slug}", email, password, slug=slug)
        return TenantCtx(tenant.id, slug, email, password, client)

    return make


@pytest_asyncio.fixture
async def tenant(make_tenant: Callable[[], Any]) -> TenantCtx:
    return await make_tenant()  # type: ignore[no-any-return]


# --- workers ---------------------------------------------------------------------------


class WorkerProcess:
    """A real ``dramatiq`` worker process consuming the given tiers over HTTP SQS."""

    def __init__(self, tiers: list[str], env: dict[str, str] | None = None, threads: int = 2):
        from ops.commands.worker import queues_for

        queues = [q for tier in tiers for q in queues_for(tier)]
        self.log_path = ROOT / ".data" / f"worker-{os.getpid()}-{secrets.token_hex(3)}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "dramatiq",
            "actors.worker",
            "--processes",
            "1",
            "--threads",
            str(threads),
            "--queues",
            *queues,
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def kill9(self) -> None:
        """SIGKILL the whole process group: the master and its worker process."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                # Only the master: it forwards SIGTERM to its workers, and a second SIGTERM
                # reaching a worker directly turns its graceful stop into a hard kill.
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def start_worker(database: None, provisioned: Any) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        tiers: list[str], env: dict[str, str] | None = None, threads: int = 2
    ) -> WorkerProcess:
        w = WorkerProcess(tiers, env, threads)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


async def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Poll an async predicate until it returns a truthy value (a functional timeout,
    not a timing assertion: it only bounds how long a broken system is waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []


# Set while a test counts: only statements sent from its own context (the test, the requests
# it makes through the in-process client and the tasks they start) are counted. The session's
# listener and any task a previous test left running send statements of their own at any
# moment, and a count that took those in failed now and then on a busy machine.
_COUNTING: contextvars.ContextVar[QueryCounter | None] = contextvars.ContextVar(
    "counting", default=None
)


@pytest.fixture
def count_queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[QueryCounter]:
    """Counts SQL statements sent to Postgres (through the ORM or raw asyncpg) by the test and
    what it calls, so a test can show a list endpoint does not issue one query per row."""
    import asyncpg.connection

    counter = QueryCounter()
    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        original = getattr(asyncpg.connection.Connection, name)

        def wrapper(
            self: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            if _COUNTING.get() is counter:
                counter.count += 1
                counter.statements.append(query)
            return _original(self, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.connection.Connection, name, wrapper)
    token = _COUNTING.set(counter)
    yield counter
    _COUNTING.reset(token)
