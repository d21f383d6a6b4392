"""The Postgres engine, transactions with after-commit hooks, typed queries and bulk COPY.

``transaction()`` is the only way code here opens a transaction. Work registered with
``on_commit()`` inside it (typically: sending a queue message) runs only after the
COMMIT succeeded, and is dropped on rollback -- the "enqueue after commit" rule.

Every connection decodes ``json``/``jsonb`` into Python values and encodes Python values
into them (JSON text passes through as it is), so no query decodes JSON by hand. Rows come
back as msgspec Structs through ``rows()``/``row()`` (one ``msgspec.convert`` each).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import msgspec
from piccolo.engine.postgres import PostgresEngine

from models.limits import encode_day
from models.pool import FairPool
from ops.settings import get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def _encode_json(value: Any) -> str:
    # Piccolo and some statements hand over JSON text already; anything else is encoded.
    return (
        value
        if isinstance(value, str)
        else msgspec.json.encode(value, enc_hook=encode_day).decode()
    )


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per connection: JSON in and out as Python values."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=_encode_json,
            decoder=msgspec.json.decode,
            schema="pg_catalog",
            format="text",
        )


class Engine(PostgresEngine):
    """Piccolo's engine, with ``init_connection`` on every connection it opens (pooled or
    not), so the ORM and hand-written SQL see JSON the same way."""

    async def start_connection_pool(self, **kwargs: Any) -> None:
        kwargs.setdefault("init", init_connection)
        await super().start_connection_pool(**kwargs)
        # Waiters in arrival order (models/pool.py); the ORM and our SQL alike go through it.
        # (A second start keeps the running pool, already wrapped.)
        if not isinstance(self.pool, FairPool):
            self.pool = FairPool(self.pool)

    async def get_new_connection(self) -> asyncpg.Connection:
        conn = await super().get_new_connection()
        await init_connection(conn)
        return conn


# Configured by configure_db(): the DSN is only known at run time (the embedded
# Postgres picks its socket path when it starts).
DB = Engine(config={}, extensions=())

ANALYZE_AFTER_ROWS = 1_000

AfterCommit = Callable[[], Awaitable[Any]]
_pending: contextvars.ContextVar[list[AfterCommit] | None] = contextvars.ContextVar(
    "academy_after_commit", default=None
)


def configure_db(dsn: str | None = None, *, pooled: bool | None = None) -> PostgresEngine:
    """Point the engine at ``dsn`` (default: the settings' DATABASE_URL). ``pooled``
    (default: the settings' DATABASE_POOLED) means ``dsn`` is a transaction-mode pooler."""
    settings = get_settings()
    url = dsn or settings.database_url
    if not url:
        raise RuntimeError(
            "DATABASE_URL is not set: run through `just` (which starts an embedded Postgres) "
            "or export DATABASE_URL"
        )
    DB.config = {"dsn": url}
    if settings.database_pooled if pooled is None else pooled:
        # Behind transaction pooling the next statement may run on another server
        # connection, where a named prepared statement does not exist (PgBouncer before
        # 1.21 does not track them). Unnamed ones are parsed and run in one go.
        DB.config["statement_cache_size"] = 0
    return DB


def direct_dsn() -> str:
    """Where session state may live (LISTEN, migrations): DATABASE_DIRECT_URL when set,
    else the engine's own DSN unless that is a pooler ("" then: there is none)."""
    settings = get_settings()
    if settings.database_direct_url or settings.database_pooled:
        return settings.database_direct_url
    return str(ensure_configured().config["dsn"])


def ensure_configured() -> PostgresEngine:
    if not DB.config.get("dsn"):
        configure_db()
    return DB


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset`` hook that does nothing.

    asyncpg's default reset costs a round trip on every release (unlisten, close cursors,
    RESET ALL, advisory unlock). Nothing here leaves session state behind: advisory locks
    are transaction-scoped, nothing LISTENs, and no SET outlives its transaction -- which
    is also what lets every pooled statement run behind a transaction-mode pooler.
    """


async def start_pool(max_size: int = 10) -> None:
    ensure_configured()
    await DB.start_connection_pool(min_size=1, max_size=max_size, reset=_keep_session)


async def close_pool() -> None:
    if DB.pool is not None:
        await DB.close_connection_pool()


@contextlib.asynccontextmanager
async def transaction() -> AsyncIterator[None]:
    """A transaction whose ``on_commit`` callbacks run after COMMIT, or never.

    Nested calls join the outer transaction and its buffer.
    """
    if _pending.get() is not None:
        yield
        return
    buffer: list[AfterCommit] = []
    token = _pending.set(buffer)
    try:
        async with ensure_configured().transaction():
            yield
    except BaseException:
        buffer.clear()
        raise
    finally:
        _pending.reset(token)
    for callback in buffer:
        await callback()


async def on_commit(callback: AfterCommit) -> None:
    """Run ``callback`` after the current transaction commits (now, if there is none)."""
    buffer = _pending.get()
    if buffer is None:
        await callback()
    else:
        buffer.append(callback)


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[asyncpg.Connection]:
    """A raw asyncpg connection: the current transaction's, a pooled one, or a new one.

    For hot paths where building the query through the ORM costs more than running it.
    """
    engine = ensure_configured()
    current = engine.current_transaction.get()
    if current is not None:
        yield current.connection
    elif engine.pool is not None:
        async with engine.pool.acquire() as conn:
            yield conn
    else:
        conn = await engine.get_new_connection()
        try:
            yield conn
        finally:
            await conn.close()


def as_struct(type_: type[T], record: Any) -> T:
    """One row as ``type_``: the single row-to-Struct conversion of the query layer.
    Columns the Struct does not declare are ignored."""
    return msgspec.convert(dict(record), type_)


async def rows(type_: type[T], sql: str, *args: Any) -> list[T]:
    """Every row of ``sql`` as ``type_`` (for statements that are not tenant-scoped:
    workers addressing a row by its id; tenant-scoped reads go through ``TenantScope``)."""
    async with connection() as conn:
        return [as_struct(type_, r) for r in await conn.fetch(sql, *args)]


async def row(type_: type[T], sql: str, *args: Any) -> T | None:
    async with connection() as conn:
        found = await conn.fetchrow(sql, *args)
    return None if found is None else as_struct(type_, found)


async def value(sql: str, *args: Any) -> Any:
    async with connection() as conn:
        return await conn.fetchval(sql, *args)


async def execute(sql: str, *args: Any) -> str:
    async with connection() as conn:
        return str(await conn.execute(sql, *args))


async def run_exclusively(name: str, work: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """``work()`` in a transaction that holds the advisory lock ``name``, unless another
    session holds it. Returns (ran, what ``work`` returned)."""
    async with transaction():
        async with connection() as conn:
            got = await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", name)
        if not got:
            return False, None
        return True, await work()


async def run_exclusively_forever(
    name: str, interval: float, work: Callable[[], Awaitable[Any]]
) -> None:
    """Every ``interval`` seconds, ``run_exclusively(name, work)``: with several processes
    running the same rounds, one does each round and the others skip it. A failing round
    is logged and the next one comes anyway."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run_exclusively(name, work)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", name)


def in_transaction() -> bool:
    return _pending.get() is not None


async def copy_records(table: str, columns: Sequence[str], records: Sequence[Sequence[Any]]) -> int:
    """Bulk-insert with COPY (about 10x chunked INSERTs, and no 32,767-parameter limit)."""
    conn: asyncpg.Connection = await asyncpg.connect(**ensure_configured().config)
    try:
        # One transaction: behind a transaction pooler the column lookup, the COPY and the
        # ANALYZE then share a server connection.
        async with conn.transaction():
            await conn.copy_records_to_table(table, records=list(records), columns=list(columns))
            if len(records) >= ANALYZE_AFTER_ROWS:
                # Until autovacuum gets to it the planner thinks the table is tiny, and the
                # first queries after a big load pick seq scans (seen: 2 ms -> 280 ms).
                await conn.execute(f'ANALYZE "{table}"')
    finally:
        await conn.close()
    return len(records)
