"""The watch heartbeat's cost and its concurrency: what one heartbeat sends to Postgres once
playback has opened the student's watch row, concurrent heartbeats of one student, and the
heartbeats of open videos written behind (``api.watch``): what is stored when, what
another process storing the same row meanwhile does, and what a crash loses."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import asyncpg

from api import watch
from models.scope import TenantScope
from models.tables import Video
from models.video_watch import open_watch
from tests.conftest import wait_for
from tests.factories import create_student
from tests.factories.accounts import family_headers
from tests.factories.lectures import create_lecture, enrol


def watch_statements(sent: list[str]) -> list[str]:
    """The statements of ``sent`` about watch rows (not the process's listener's own)."""
    return [q for q in sent if "video_watch" in q]


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


async def _stored(tenant, url: str) -> dict:  # type: ignore[no-untyped-def]
    """The student's watch row as stored (the one student watching the video)."""
    row = await TenantScope(tenant.id).fetchrow(
        """SELECT intervals, position, heartbeats, rejected_heartbeats, completed, completed_at,
                  last_seq
           FROM video_watch WHERE tenant = $1 AND video = $2""",
        uuid.UUID(url.split("/")[-2]),
    )
    assert row is not None
    return dict(row)


async def test_a_first_heartbeat_is_one_read_and_one_write(tenant):
    url, sh = await _watching(tenant)
    # The account's state warmed by another request (the heartbeat's own reads are counted).
    assert (await tenant.client.get("/api/v1/auth/me", headers=sh)).status_code == 200
    with statements_sent() as sent:
        r = await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    assert r.status_code == 200, r.text
    # No BEGIN/COMMIT, no separate video, enrollment, insert or lock statements.
    assert len(sent) == 2, sent
    assert (await _stored(tenant, url))["heartbeats"] == 1


async def test_the_next_heartbeats_of_an_open_video_are_stored_together_by_the_flush(tenant):
    url, sh = await _watching(tenant)
    other_url, other = await _watching(tenant)
    await watch.flush()  # what earlier tests left behind
    for u, h in ((url, sh), (other_url, other)):
        r = await tenant.client.post(u, json={"position": 10, "played": [[0, 10]]}, headers=h)
        assert r.status_code == 200, r.text
    with statements_sent() as sent:
        for u, h in ((url, sh), (other_url, other)):
            r = await tenant.client.post(u, json={"position": 20, "played": [[10, 20]]}, headers=h)
            assert r.status_code == 200 and r.json()["intervals"] == [[0, 20]], r.text
    assert watch_statements(sent) == []  # answered from the process's memory
    assert (await _stored(tenant, url))["intervals"] == [[0, 10]]
    with statements_sent() as sent:
        await watch.flush()
    assert len(watch_statements(sent)) == 1, sent  # both students' rows in one statement
    for u in (url, other_url):
        row = await _stored(tenant, u)
        assert row["intervals"] == [[0, 20]] and row["heartbeats"] == 2 and row["position"] == 20
    # A heartbeat after a flush continues from what was stored, and is flushed in turn.
    r = await tenant.client.post(url, json={"position": 35, "played": [[30, 35]]}, headers=sh)
    assert r.json()["intervals"] == [[0, 20], [30, 35]]
    with statements_sent() as sent:
        await watch.flush()
    assert len(watch_statements(sent)) == 1, sent  # no row had changed: none read again
    row = await _stored(tenant, url)
    assert row["intervals"] == [[0, 20], [30, 35]] and row["heartbeats"] == 3


async def test_a_completion_is_stored_before_it_is_answered(tenant):
    url, sh = await _watching(tenant)
    await tenant.client.post(url, json={"position": 50, "played": [[0, 50]]}, headers=sh)
    r = await tenant.client.post(url, json={"position": 60, "played": [[50, 60]]}, headers=sh)
    assert not r.json()["completed"]
    r = await tenant.client.post(url, json={"position": 95, "played": [[60, 95]]}, headers=sh)
    assert r.json()["completed"] and r.json()["completed_at"], r.text
    # Stored with the heartbeats before it, though no flush has run.
    row = await _stored(tenant, url)
    assert row["completed"] and row["completed_at"] is not None
    assert row["intervals"] == [[0, 95]] and row["heartbeats"] == 3


async def test_a_crash_loses_only_the_heartbeats_since_the_last_flush(tenant):
    url, sh = await _watching(tenant)
    for i in range(3):
        beat = {"position": i * 10 + 10, "played": [[i * 10, i * 10 + 10]]}
        assert (await tenant.client.post(url, json=beat, headers=sh)).status_code == 200
    await watch.flush()
    beat = {"position": 40, "played": [[30, 40]]}
    assert (await tenant.client.post(url, json=beat, headers=sh)).json()["intervals"] == [[0, 40]]
    watch.VIEWINGS.clear()  # the process is gone, its memory with it
    row = await _stored(tenant, url)
    assert row["intervals"] == [[0, 30]] and row["heartbeats"] == 3
    # The player's next heartbeat (to any process) continues from what was stored.
    r = await tenant.client.post(url, json={"position": 50, "played": [[40, 50]]}, headers=sh)
    assert r.json()["intervals"] == [[0, 30], [40, 50]]
    assert (await _stored(tenant, url))["heartbeats"] == 4


async def test_a_row_another_process_stored_meanwhile_keeps_both_processes_intervals(tenant):
    url, sh = await _watching(tenant)
    await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    await tenant.client.post(url, json={"position": 20, "played": [[10, 20]]}, headers=sh)
    # Another process, serving the same viewer, stores 50-60 s (its own heartbeat).
    await TenantScope(tenant.id).execute(
        """UPDATE video_watch SET intervals = '[[0, 10], [50, 60]]', heartbeats = heartbeats + 1
           WHERE tenant = $1 AND video = $2""",
        uuid.UUID(url.split("/")[-2]),
    )
    await watch.flush()
    row = await _stored(tenant, url)
    assert row["intervals"] == [[0, 20], [50, 60]] and row["heartbeats"] == 3
    r = await tenant.client.post(url, json={"position": 70, "played": [[60, 70]]}, headers=sh)
    assert r.json()["intervals"] == [[0, 20], [50, 70]]


async def test_a_student_who_left_the_lecture_records_nothing_more(tenant):
    url, sh = await _watching(tenant)
    await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    await tenant.client.post(url, json={"position": 20, "played": [[10, 20]]}, headers=sh)
    await TenantScope(tenant.id).execute(
        "UPDATE enrollment SET status = 'dropped' WHERE tenant = $1 AND lecture = "
        "(SELECT lecture FROM video WHERE tenant = $1 AND id = $2)",
        uuid.UUID(url.split("/")[-2]),
    )
    await watch.flush()
    assert (await _stored(tenant, url))["intervals"] == [[0, 10]]
    r = await tenant.client.post(url, json={"position": 30, "played": [[20, 30]]}, headers=sh)
    assert r.status_code == 403, r.text


async def test_a_proctored_heartbeat_is_decided_on_what_another_process_stored(tenant):
    url, sh = await _watching(tenant, proctored=True)
    await _clock(tenant, url, back=10)
    r = await tenant.client.post(
        url, json={"position": 5, "played": [[0, 5]], "seq": 1}, headers=sh
    )
    assert r.status_code == 200, r.text
    assert (await _stored(tenant, url))["last_seq"] == 1  # written through, not behind
    # Another process accepted heartbeat 2; this one's memory still says 1.
    await TenantScope(tenant.id).execute(
        "UPDATE video_watch SET last_seq = 2 WHERE tenant = $1 AND video = $2",
        uuid.UUID(url.split("/")[-2]),
    )
    await _clock(tenant, url, back=10)
    beat = {"position": 10, "played": [[5, 10]], "seq": 2}
    r = await tenant.client.post(url, json=beat, headers=sh)
    assert r.status_code == 409 and r.json()["type"] == "/problems/heartbeat-out-of-order"
    row = await _stored(tenant, url)
    assert row["rejected_heartbeats"] == 1 and row["intervals"] == [[0, 5]]


async def test_the_flusher_stores_heartbeats_on_its_own_and_once_more_when_it_stops(tenant):
    url, sh = await _watching(tenant)
    await tenant.client.post(url, json={"position": 10, "played": [[0, 10]]}, headers=sh)
    async with watch.writing_behind():
        await tenant.client.post(url, json={"position": 20, "played": [[10, 20]]}, headers=sh)

        async def flushed() -> bool:
            return (await _stored(tenant, url))["heartbeats"] == 2

        assert await wait_for(flushed, timeout=10)
        await tenant.client.post(url, json={"position": 30, "played": [[20, 30]]}, headers=sh)
    row = await _stored(tenant, url)
    assert row["intervals"] == [[0, 30]] and row["heartbeats"] == 3


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
