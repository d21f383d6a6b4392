"""One LISTEN connection per API process, shared by everything in it that follows Postgres
notifications: the list caches (``api/list_cache.py``) and live job progress
(``api/job_events.py``). However many clients follow a job, the process holds one
connection; notifications fan out to subscribers in memory.

A subscriber names its channel and is told when the connection comes up (after a gap,
notifications may have been missed: it must assume anything changed) and when it goes
down (it must not trust that silence means nothing changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from models.notifications import Listener

log = logging.getLogger(__name__)

PING_EVERY_SECONDS = 5.0


class Subscriber(Protocol):
    channel: str

    def notified(self, payload: str) -> None: ...

    def connected(self) -> None: ...

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
                subscriber.connected()
            delay = 0.5
            while True:
                await asyncio.sleep(ping_every)
                await listener.ping(ping_every)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listener on %s lost (%s); retrying in %.1fs", channels, exc, delay)
        finally:
            for subscriber in subscribers:
                subscriber.disconnected()
            if listener is not None:
                await listener.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


@contextlib.asynccontextmanager
async def listening(dsn: str, subscribers: Sequence[Subscriber]) -> AsyncIterator[None]:
    """Run the process's listener for ``subscribers`` for the lifetime of the app."""
    task = asyncio.create_task(listen(dsn, subscribers))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
