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


async def _clock(tenant, url: str, *, back: float = 0.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds the watch's real-time clock lags now, after moving it ``back`` seconds (as
    if that much more time had passed)."""
    video = uuid.UUID(url.split("/")[-2])
    lag = await TenantScope(tenant.id).value(
        """UPDATE video_watch SET last_heartbeat_at = last_heartbeat_at - make_interval(secs => $3)
           WHERE tenant = $1 AND video = $2
           RETURNING EXTRACT(EPOCH FROM now() - last_heartbeat_at)::float8""",
        video,
        back,
    )
    return float(lag)


async def test_a_heartbeat_handled_late_does_not_make_the_next_one_too_fast(tenant):
    url, sh = await _watching(tenant, proctored=True)
    # Beat 1 sent 10 s after playback opened, but handled 3 s late (queued on a busy host).
    await _clock(tenant, url, back=13)
    r = await tenant.client.post(
        url, json={"position": 10, "played": [[0, 10]], "seq": 1}, headers=sh
    )
    assert r.status_code == 200, r.text
    # The clock moved by the 10 s credited, not to the moment the beat was handled ...
    assert 2 < await _clock(tenant, url) < 5
    # ... so beat 2, sent on time 10 s after beat 1 (7 s after it was handled), is accepted.
    await _clock(tenant, url, back=7)
    r = await tenant.client.post(
        url, json={"position": 20, "played": [[10, 20]], "seq": 2}, headers=sh
    )
    assert r.status_code == 200, r.text
    # Time not played is banked for 10 s at most: after an hour's pause the clock is
    # 10 s behind, and a beat claiming a minute of playback is refused.
    await _clock(tenant, url, back=3600)
    r = await tenant.client.post(
        url, json={"position": 25, "played": [[20, 25]], "seq": 3}, headers=sh
    )
    assert r.status_code == 200, r.text
    assert 9 < await _clock(tenant, url) < 12
    r = await tenant.client.post(
        url, json={"position": 85, "played": [[25, 85]], "seq": 4}, headers=sh
    )
    assert r.status_code == 409, r.text
