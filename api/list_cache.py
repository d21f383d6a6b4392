"""An in-process cache of encoded list pages, per tenant, that Postgres keeps honest.

The student list is the hottest read in the admin app and changes rarely compared with how
often it is read. A page served from memory costs no database round trip; that is the only
way one process on two cores answers it thousands of times a second.

Correctness rests on three rules:

- **Invalidation comes from the database.** Triggers on the tables behind the list
  ``NOTIFY`` the channel with the tenant id (migration ``2026-11-22T02:50``). Postgres
  delivers a notification only after its transaction commits, to every listening process:
  API processes, and writes made by workers or scripts, all invalidate alike.
- **A page read during a change is not kept.** A reader takes the tenant's stamp before it
  queries and stores the page only if the stamp is unchanged afterwards, so a page that
  may predate a commit notified meanwhile is never cached.
- **One query per miss, not one per waiting request.** When a change drops a page that 64
  connections are reading, the first miss loads it and the others wait for that load
  (keyed by the stamp, so a reader never joins a load older than a change it has seen).
- **No listener, no cache.** While the listening connection is down (or not yet up) every
  request goes to the database. After a reconnect everything cached before is dropped,
  since notifications may have been missed in between. Entries also expire after
  ``max_age`` seconds as a last line of defence.

Read-your-writes, and everyone else's writes too: a notification reaches a process a
moment after the commit, and in that moment a client told "done" by this process, by
another API process or by a job a worker finished could ask this one and be served the
page from before. A cache given a ``barrier`` (``api.listening.Barrier``) waits, before it
answers from memory, until every notification committed before the request arrived has
been handled: one round trip on the listening connection, shared by all requests that
arrive meanwhile, and no query on the pool. So a write needs no invalidation of its own,
and a write that changes nothing the list shows (a video heartbeat, an attendance check)
drops nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from api.listening import Barrier
from models.notifications import Listener

log = logging.getLogger(__name__)

Stamp = tuple[int, int]


class PageCache:
    """Encoded pages keyed by (tenant, query); see the module docstring for the rules."""

    def __init__(
        self,
        channel: str,
        *,
        max_entries: int = 1024,
        max_age: float = 30.0,
        barrier: Barrier | None = None,
    ) -> None:
        self.channel = channel
        self.barrier = barrier
        self.max_entries = max_entries
        self.max_age = max_age
        self._entries: OrderedDict[Hashable, tuple[Stamp, float, bytes]] = OrderedDict()
        self._generations: dict[uuid.UUID, int] = {}
        self._loads: dict[tuple[uuid.UUID, Hashable, Stamp], asyncio.Future[bytes]] = {}
        # Bumped on every (re)connect: stamps from before a gap in listening never match.
        self._epoch = 0
        self.listening = False
        self.hits = 0
        self.misses = 0

    # --- reads and writes of the cache --------------------------------------------------

    def stamp(self, tenant: uuid.UUID) -> Stamp | None:
        """The tenant's current stamp, or None while the cache cannot be trusted."""
        if not self.listening:
            return None
        return (self._epoch, self._generations.get(tenant, 0))

    def get(self, tenant: uuid.UUID, key: Hashable) -> bytes | None:
        stamp = self.stamp(tenant)
        entry = self._entries.get((tenant, key)) if stamp is not None else None
        if entry is None:
            self.misses += 1
            return None
        entry_stamp, expires, body = entry
        if entry_stamp != stamp or expires < time.monotonic():
            del self._entries[(tenant, key)]
            self.misses += 1
            return None
        self._entries.move_to_end((tenant, key))
        self.hits += 1
        return body

    def put(self, tenant: uuid.UUID, key: Hashable, stamp: Stamp | None, body: bytes) -> None:
        """Keep ``body`` if nothing changed for the tenant since ``stamp`` was taken."""
        if stamp is None or stamp != self.stamp(tenant):
            return
        self._entries[(tenant, key)] = (stamp, time.monotonic() + self.max_age, body)
        self._entries.move_to_end((tenant, key))
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def fetch(
        self, tenant: uuid.UUID, key: Hashable, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The cached page, or ``load()``'s, shared with concurrent misses of the same page."""
        # Only a page about to be served from memory waits for the barrier: a load reads
        # the database after the request arrived, which already holds every commit.
        if (
            self.barrier is not None
            and (tenant, key) in self._entries
            and not await self.barrier.wait()
        ):
            return await load()
        body = self.get(tenant, key)
        if body is not None:
            return body
        stamp = self.stamp(tenant)
        if stamp is None:
            return await load()
        flight = (tenant, key, stamp)
        future = self._loads.get(flight)
        if future is None:
            future = asyncio.ensure_future(self._load(flight, load))
            # A load whose waiters all went away must not log "exception never retrieved".
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._loads[flight] = future
        # Shielded: a client that disconnects does not cancel the load the others await.
        return await asyncio.shield(future)

    async def _load(
        self, flight: tuple[uuid.UUID, Hashable, Stamp], load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        tenant, key, stamp = flight
        try:
            body = await load()
            self.put(tenant, key, stamp, body)
            return body
        finally:
            del self._loads[flight]

    def invalidate(self, tenant: uuid.UUID) -> None:
        # Entries of older generations are dropped lazily, when next looked up or evicted.
        self._generations[tenant] = self._generations.get(tenant, 0) + 1

    def reset(self) -> None:
        self._epoch += 1
        self._entries.clear()

    # --- following the database (``api/listening.py``) --------------------------------------

    def notified(self, payload: str) -> None:
        try:
            self.invalidate(uuid.UUID(payload))
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", self.channel, payload)

    def connected(self, listener: Listener) -> None:
        self.reset()
        self.listening = True

    def disconnected(self) -> None:
        self.listening = False


# Shared by the caches that must not lag behind other processes' writes.
FRESHNESS = Barrier()

# The student list's cache; api/students.py reads and fills it, api/app.py runs its listener.
STUDENT_LIST = PageCache("student_list", barrier=FRESHNESS)

# Accounts as every request's token is checked against them (role, active flag, token
# version), keyed by (tenant, user id); api/auth.py reads and fills it. A change of any
# account of a tenant drops the tenant's entries: such changes are rare. No barrier: every
# request would wait a round trip for it, and a change answered by another process is
# known here when its notification arrives, normally within a millisecond. Sized for every
# user one process serves in a busy hour, and kept for 5 minutes: a viewer's heartbeat
# every 10 s would otherwise look the account up again every third beat.
ACCOUNT_STATE = PageCache("account_state", max_entries=65536, max_age=300.0)

CACHES = (STUDENT_LIST, ACCOUNT_STATE)
# What the process's listener follows for the caches.
CACHE_SUBSCRIBERS = (*CACHES, FRESHNESS)
