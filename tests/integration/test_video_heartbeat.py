"""The watch heartbeat's cost and its concurrency: what one heartbeat sends to Postgres once
playback has opened the student's watch row, and concurrent heartbeats of one student."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import asyncpg

from models.scope import TenantScope
from models.tables import Video
from models.video_watch import open_watch
from tests.factories import create_student
from tests.factories.accounts import family_headers
from tests.factories.lectures import create_lecture, enrol


@contextlib.contextmanager
def statements_sent() -> Iterator[list[str]]:
    """Every statement asyncpg sends meanwhile, BEGIN and COMMIT included (each one is a
    round trip to the database; prepared statements are cached, so a warm one is one)."""
    sent: list[str] = []
    do_execute, execute = asyncpg.Connection._do_execute, asyncpg.Connection.execute

    async def counted_do_execute(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(query)
        return await do_execute(self, query, *args, **kwargs)

    async def counted_execute(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not args:  # with arguments it goes through _do_execute
            sent.append(query)
        return await execute(self, query, *args, **kwargs)

    asyncpg.Connection._do_execute = counted_do_execute  # type: ignore[method-assign]
    asyncpg.Connection.execute = counted_execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        asyncpg.Connection._do_execute = do_execute  # type: ignore[method-assign]
        asyncpg.Connection.execute = execute  # type: ignore[method-assign]


async def _watching(tenant, *, proctored=False):  # type: ignore[no-untyped-def]
    """A READY 100 s video and an enrolled student whose playback has been opened."""
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    student = await create_student(tenant, headers)
    await enrol(tenant, lecture["id"], student["id"], headers)
    video = Video(
        tenant=tenant.id,
        lecture=lecture["id"],
        title="1강",
        proctored=proctored,
        status="READY",
        duration_seconds=100.0,
        raw_key="raw/x",
    )
    await video.save()
    await open_watch(TenantScope(tenant.id), video.id, uuid.UUID(student["id"]))
    sh = await family_headers(tenant, "student", student_id=student["id"])
    return f"/api/v1/videos/{video.id}/progress", sh


async def test_a_heartbeat_is_one_read_and_one_write(tenant):
    url, sh = await _watching(tenant)
    # The first one warms the caches (prepared statements, the account's state).
    first = await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    assert first.status_code == 200, first.text
    with statements_sent() as sent:
        r = await tenant.client.post(url, json={"position": 20, "played": [[10, 20]]}, headers=sh)
    assert r.status_code == 200 and r.json()["intervals"] == [[0, 20]]
    # No BEGIN/COMMIT, no separate video, enrollment, insert or lock statements.
    assert len(sent) == 2, sent


async def test_concurrent_heartbeats_of_one_student_all_count(tenant):
    url, sh = await _watching(tenant)
    beats = [{"position": i * 10 + 5, "played": [[i * 10, i * 10 + 5]]} for i in range(8)]
    answers = await asyncio.gather(
        *(tenant.client.post(url, json=beat, headers=sh) for beat in beats)
    )
    assert [a.status_code for a in answers] == [200] * 8
    last = await tenant.client.post(url, json={"position": 95, "played": []}, headers=sh)
    assert last.json()["intervals"] == [[i * 10, i * 10 + 5] for i in range(8)]
    assert last.json()["watched_seconds"] == 40


async def test_concurrent_proctored_heartbeats_are_decided_one_after_another(tenant):
    url, sh = await _watching(tenant, proctored=True)
    # The same seq from two tabs at once: one is recorded, the other refused as a replay.
    beat = {"position": 1, "played": [[0, 1]], "seq": 1}
    answers = await asyncio.gather(*(tenant.client.post(url, json=beat, headers=sh) for _ in "ab"))
    assert sorted(a.status_code for a in answers) == [200, 409]
