"""The student list's page cache: served without a query while nothing changed, and dropped
by the database's notifications, whoever wrote."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from api.list_cache import FRESHNESS, STUDENT_LIST, PageCache
from tests.conftest import following, wait_for
from tests.factories import create_student

BASE = "/api/v1/students"


@pytest.fixture
async def listening() -> AsyncIterator[PageCache]:
    """The API's listener, as its lifespan runs it (the test app has no lifespan)."""
    async with following(STUDENT_LIST, FRESHNESS):
        yield STUDENT_LIST


async def _names(tenant, headers) -> list[str]:
    r = await tenant.client.get(f"{BASE}?limit=50", headers=headers)
    assert r.status_code == 200, r.text
    return [s["name"] for s in r.json()["items"]]


async def test_a_repeated_page_costs_no_query(tenant, listening, count_queries):
    h = await tenant.headers()
    await create_student(tenant, h, name="가나다")
    first = await tenant.client.get(f"{BASE}?limit=50", headers=h)
    before = count_queries.count
    second = await tenant.client.get(f"{BASE}?limit=50", headers=h)
    assert second.status_code == 200 and second.content == first.content
    # Only the freshness barrier, on the listening connection: no query reads a table.
    assert set(count_queries.statements[before:]) == {"SELECT pg_notify($1, $2)"}
    # Another query string is another page.
    mark = count_queries.count
    other = await tenant.client.get(f"{BASE}?limit=10", headers=h)
    assert other.status_code == 200
    assert any("pg_notify" not in q for q in count_queries.statements[mark:])


async def test_own_write_is_read_back_at_once(tenant, listening):
    h = await tenant.headers()
    student = await create_student(tenant, h, name="이전이름")
    assert "이전이름" in await _names(tenant, h)
    r = await tenant.client.patch(f"{BASE}/{student['id']}", json={"name": "새이름"}, headers=h)
    assert r.status_code == 200, r.text
    # No waiting: the barrier hears the write's notification before a cached page is used.
    names = await _names(tenant, h)
    assert "새이름" in names and "이전이름" not in names


async def test_another_writers_commit_reaches_the_cache(tenant, listening):
    h = await tenant.headers()
    student = await create_student(tenant, h, name="바깥전")
    assert "바깥전" in await _names(tenant, h)
    # A worker or another API process: its own connection, its own transaction.
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE student SET name = '바깥후' WHERE id = $1", uuid.UUID(student["id"])
            )
    finally:
        await conn.close()

    async def renamed() -> bool:
        return "바깥후" in await _names(tenant, h)

    assert await wait_for(renamed, timeout=10)


async def test_a_commit_elsewhere_is_never_answered_from_the_page_before(tenant, listening):
    # No waiting for the notification: a commit made before the request arrived is known
    # when it is answered (the barrier), every time.
    h = await tenant.headers()
    student = await create_student(tenant, h, name="처음이름")
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        for round_ in range(20):
            await _names(tenant, h)  # the page is cached
            name = f"바뀐이름{round_}"
            await conn.execute(
                "UPDATE student SET name = $2 WHERE id = $1", uuid.UUID(student["id"]), name
            )
            assert name in await _names(tenant, h), f"stale page in round {round_}"
    finally:
        await conn.close()


async def test_guardian_change_through_the_read_model_invalidates(tenant, listening):
    h = await tenant.headers()
    student = await create_student(tenant, h, name="보호자변경", guardians=[])
    r = await tenant.client.get(f"{BASE}?q=보호자변경", headers=h)
    assert r.json()["items"][0]["guardians"] == []
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        async with conn.transaction():
            gid = await conn.fetchval(
                "INSERT INTO guardian (id, tenant, name, phone) VALUES ($1, $2, '엄마', '010-4999-0001') "
                "RETURNING id",
                uuid.uuid4(),
                tenant.id,
            )
            await conn.execute(
                "INSERT INTO student_guardian (id, tenant, student, guardian, relation, is_primary) "
                "VALUES ($1, $2, $3, $4, 'mother', true)",
                uuid.uuid4(),
                tenant.id,
                uuid.UUID(student["id"]),
                gid,
            )
    finally:
        await conn.close()

    async def has_guardian() -> bool:
        r = await tenant.client.get(f"{BASE}?q=보호자변경", headers=h)
        return bool(r.json()["items"][0]["guardians"])

    assert await wait_for(has_guardian, timeout=10)


async def test_tenants_never_share_pages(make_tenant, listening):
    a, b = await make_tenant(), await make_tenant()
    ha, hb = await a.headers(), await b.headers()
    await create_student(a, ha, name="에이학생")
    await create_student(b, hb, name="비학생")
    for _ in range(2):  # the second round is served from the cache
        assert await _names(a, ha) == ["에이학생"]
        assert await _names(b, hb) == ["비학생"]


async def test_without_a_listener_nothing_is_cached(tenant, count_queries):
    assert not STUDENT_LIST.listening
    h = await tenant.headers()
    await _names(tenant, h)
    before = count_queries.count
    await _names(tenant, h)
    assert count_queries.count > before


def test_a_page_read_across_a_change_is_not_kept():
    cache = PageCache("test")
    cache.listening = True
    tenant = uuid.uuid4()
    stamp = cache.stamp(tenant)
    cache.invalidate(tenant)  # a commit notified while the page was being read
    cache.put(tenant, "k", stamp, b"old")
    assert cache.get(tenant, "k") is None
    cache.put(tenant, "k", cache.stamp(tenant), b"new")
    assert cache.get(tenant, "k") == b"new"
    cache.reset()  # a reconnect: whatever was cached may have missed notifications
    assert cache.get(tenant, "k") is None


def test_the_cache_is_bounded():
    cache = PageCache("test", max_entries=3)
    cache.listening = True
    tenant = uuid.uuid4()
    for i in range(5):
        cache.put(tenant, i, cache.stamp(tenant), b"x")
    assert [cache.get(tenant, i) for i in range(5)] == [None, None, b"x", b"x", b"x"]


async def test_concurrent_misses_share_one_load():
    cache = PageCache("test")
    cache.listening = True
    tenant = uuid.uuid4()
    calls = 0
    release = asyncio.Event()

    async def load() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"page"

    waiters = [asyncio.create_task(cache.fetch(tenant, "k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [b"page"] * 20
    assert calls == 1
    # A change since that load: the next reader loads again rather than reuse it.
    cache.invalidate(tenant)
    assert await cache.fetch(tenant, "k", load) == b"page" and calls == 2


async def test_a_failed_load_fails_its_waiters_and_is_not_kept():
    cache = PageCache("test")
    cache.listening = True
    tenant = uuid.uuid4()

    async def broken() -> bytes:
        await asyncio.sleep(0)
        raise RuntimeError("database down")

    results = await asyncio.gather(
        *(cache.fetch(tenant, "k", broken) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert cache.get(tenant, "k") is None


async def test_a_write_the_list_does_not_show_keeps_the_page(tenant, listening, count_queries):
    # Heartbeats and attendance checks are the hottest writes; they must not empty the
    # office's cached list every time (only the database's notifications drop pages).
    h = await tenant.headers()
    await create_student(tenant, h, name="그대로")
    first = await tenant.client.get(f"{BASE}?limit=50", headers=h)
    r = await tenant.client.post(
        "/api/v1/lectures", json={"title": "국어 1반", "subject": "국어"}, headers=h
    )
    assert r.status_code == 201, r.text
    before = count_queries.count
    second = await tenant.client.get(f"{BASE}?limit=50", headers=h)
    assert second.status_code == 200 and second.content == first.content
    assert set(count_queries.statements[before:]) == {"SELECT pg_notify($1, $2)"}
