"""One LISTEN connection per API process, shared by everything in it that follows Postgres
notifications: the list caches (``api/list_cache.py``) and live job progress
(``api/job_events.py``). However many clients follow a job, the process holds one
connection; notifications fan out to subscribers in memory.

A subscriber names its channel and is told when the connection comes up (after a gap,
notifications may have been missed: it must assume anything changed) and when it goes
down (it must not trust that silence means nothing changed).

``Barrier`` closes the last gap: a notification reaches this process a moment after its
transaction commits, so a write answered by another process (or a job reported done by a
worker) could still be unknown here when the next request arrives. Waiting on the barrier
first makes sure it is known.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol

from models.notifications import Listener

log = logging.getLogger(__name__)

PING_EVERY_SECONDS = 5.0


class Subscriber(Protocol):
    channel: str

    def notified(self, payload: str) -> None: ...

    def connected(self, listener: Listener) -> None: ...

    def disconnected(self) -> None: ...


def _fan_out(subscribers: Sequence[Subscriber]) -> dict[str, Callable[[str], None]]:
    by_channel: dict[str, list[Subscriber]] = {}
    for subscriber in subscribers:
        by_channel.setdefault(subscriber.channel, []).append(subscriber)

    def handler(found: list[Subscriber]) -> Callable[[str], None]:
        def notified(payload: str) -> None:
            for subscriber in found:
                subscriber.notified(payload)

        return notified

    return {channel: handler(found) for channel, found in by_channel.items()}


async def listen(
    dsn: str, subscribers: Sequence[Subscriber], ping_every: float = PING_EVERY_SECONDS
) -> None:
    """Keep one LISTEN connection open for ``subscribers`` until cancelled, reconnecting
    with backoff; a ping every ``ping_every`` seconds finds a half-open socket."""
    channels = ", ".join(sorted({s.channel for s in subscribers}))
    delay = 0.5
    while True:
        listener: Listener | None = None
        try:
            listener = await Listener.open(dsn, _fan_out(subscribers))
            for subscriber in subscribers:
                subscriber.connected(listener)
            delay = 0.5
            while True:
                await asyncio.sleep(ping_every)
                await listener.ping(ping_every)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listener on %s lost (%s); retrying in %.1fs", channels, exc, delay)
        finally:
            # Only a listener that came up tells the subscribers it is gone: one cancelled
            # while still connecting (an app stopped as it started) must not turn off the
            # caches another listener of the process keeps.
            if listener is not None:
                for subscriber in subscribers:
                    subscriber.disconnected()
                await listener.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """``work`` as a task for the block's lifetime (the app's), cancelled and awaited at
    its end."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def listening(
    dsn: str, subscribers: Sequence[Subscriber]
) -> contextlib.AbstractAsyncContextManager[None]:
    """Run the process's listener for ``subscribers`` for the lifetime of the app."""
    return running(listen(dsn, subscribers), "listener")


BARRIER_SECONDS = 2.0
BARRIER_GATHER_SECONDS = 0.002


class Barrier:
    """Waits until every notification committed before the wait began has been handled.

    Postgres delivers notifications in commit order. The barrier commits one of its own on
    a channel only this process listens to, from the listening session; when it comes
    back, everything committed earlier has come back before it. Waiters are batched: all
    who arrive while one barrier is on its way share the next one, so under load there is
    one round trip in flight per process, not one per request.
    """

    def __init__(self, gather: float = BARRIER_GATHER_SECONDS) -> None:
        self.gather = gather
        self.channel = f"academy_barrier_{uuid.uuid4().hex}"
        self._listener: Listener | None = None
        self._sent = 0  # serial of the last barrier committed (or being committed)
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._sender: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def wait(self, within: float = BARRIER_SECONDS) -> bool:
        """True once every notification committed before this call has been handled;
        False when that cannot be known (no listener, it went away meanwhile, or the
        barrier did not come back within ``within`` seconds)."""
        if self._listener is None:
            return False
        # A serial not yet sent: its notification is committed after this moment.
        serial = self._sent + 1
        future = self._waiting.get(serial)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._waiting[serial] = loop.create_future()
            loop.call_later(within, self._expire, serial)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())
        # Shielded: a waiter that goes away must not cancel the others' barrier.
        return await asyncio.shield(future)

    async def _send(self) -> None:
        while self._listener is not None and self._sent + 1 in self._waiting:
            # A moment first: requests arriving meanwhile join this barrier rather than the
            # next, so under load one serves many (64 clients: 4% of the cached list's
            # throughput with 2 ms, 12% with none).
            await asyncio.sleep(self.gather)
            self._sent += 1
            try:
                await self._listener.notify(self.channel, str(self._sent), BARRIER_SECONDS)
            except Exception as exc:  # the listener's own ping finds and reopens a dead one
                log.warning("barrier notification failed: %s", exc)
                self._settle(self._sent + 1, False)
                return

    def _expire(self, serial: int) -> None:
        future = self._waiting.pop(serial, None)
        if future is not None and not future.done():
            future.set_result(False)

    def _settle(self, upto: int, result: bool) -> None:
        for serial in [s for s in self._waiting if s <= upto]:
            future = self._waiting.pop(serial)
            if not future.done():
                future.set_result(result)

    def notified(self, payload: str) -> None:
        self._settle(int(payload), True)

    def connected(self, listener: Listener) -> None:
        self._listener = listener

    def disconnected(self) -> None:
        self._listener = None
        self._settle(self._sent + 1, False)
