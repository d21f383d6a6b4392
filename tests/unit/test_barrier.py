"""The freshness barrier's bookkeeping, over a listener that records what it is asked to
send (the real round trip is in tests/integration/test_student_list_cache.py)."""

from __future__ import annotations

import asyncio
from typing import cast

from api.listening import Barrier
from models.notifications import Listener


class _Listener:
    """Sends nothing: the test plays Postgres and delivers the notifications."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()
        self.fail = False

    async def notify(self, channel: str, payload: str, within: float) -> None:
        self.sent.append(payload)
        await self.release.wait()
        self.release.clear()
        if self.fail:
            raise ConnectionError("gone")


def _connected(barrier: Barrier) -> _Listener:
    fake = _Listener()
    barrier.connected(cast(Listener, fake))
    return fake


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_that_arrive_meanwhile_share_the_next_barrier() -> None:
    barrier = Barrier(gather=0)
    fake = _connected(barrier)
    first = asyncio.create_task(barrier.wait())
    await _settle()
    assert fake.sent == ["1"]
    # These arrive after barrier 1 was sent: 1 cannot vouch for them, the next one can.
    later = [asyncio.create_task(barrier.wait()) for _ in range(5)]
    await _settle()
    barrier.notified("1")
    await _settle()
    assert first.done() and first.result() is True
    assert not any(t.done() for t in later)
    fake.release.set()  # barrier 1's statement returns; barrier 2 goes out for all five
    await _settle()
    assert fake.sent == ["1", "2"]
    barrier.notified("2")
    fake.release.set()
    assert await asyncio.gather(*later) == [True] * 5
    assert fake.sent == ["1", "2"]


async def test_no_listener_or_a_lost_one_means_not_known() -> None:
    barrier = Barrier(gather=0)
    assert await barrier.wait() is False  # never connected
    fake = _connected(barrier)
    waiting = asyncio.create_task(barrier.wait())
    await _settle()
    barrier.disconnected()
    assert await waiting is False
    # A failed send answers False too, rather than leaving its waiters to time out.
    fake = _connected(barrier)
    fake.fail = True
    waiting = asyncio.create_task(barrier.wait())
    await _settle()
    fake.release.set()
    assert await waiting is False


async def test_a_barrier_that_never_comes_back_times_out_as_not_known() -> None:
    barrier = Barrier(gather=0)
    fake = _connected(barrier)
    assert await barrier.wait(within=0.05) is False
    fake.release.set()
    await _settle()
