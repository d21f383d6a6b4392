"""Live job progress as Server-Sent Events: what ``GET /api/v1/jobs/{id}/events`` streams.

The job row is the truth. A trigger NOTIFYs ``job_progress`` with the job's id when its
status, stage or progress changes (migration ``2026-12-03T10:40``); the process's one
listener (``api/listening.py``) wakes the streams following that job, and each re-reads the
row through its caller's tenant scope. Bursts fold: a stream woken ten times while reading
reads once more, and always shows the latest state.

Without a listener (not yet up, or reconnecting) a stream reads the row every
``FALLBACK_POLL_SECONDS`` instead, so progress still arrives, only later.

Events (``data`` is JSON):

- ``status``, ``stage``, ``progress``: ``{"id", "status", "stage", "progress"}``, each when
  that field changed (the first event of a stream is ``status``: where the job stands);
- ``done`` or ``failed``: the whole job (as ``GET /api/v1/jobs/{id}``), then the stream ends;
- a ``: heartbeat`` comment after ``heartbeat`` seconds without an event, so proxies and
  browsers keep an idle stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import msgspec
from litestar.response import ServerSentEventMessage

from models.jobs import Job, get_job
from models.notifications import Listener
from models.scope import NotFoundInTenant, TenantScope
from models.tables import JobStatus

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 2.0
FINISHED = (JobStatus.done.value, JobStatus.failed.value)


class JobEvents:
    """Which streams follow which job, woken by ``job_progress`` notifications."""

    channel = "job_progress"

    def __init__(self) -> None:
        self._following: dict[uuid.UUID, set[asyncio.Event]] = {}
        self.listening = False

    @contextlib.contextmanager
    def follow(self, job_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the job may have changed, for as long as the block runs."""
        changed = asyncio.Event()
        self._following.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._following.get(job_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._following[job_id]

    def notified(self, payload: str) -> None:
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", self.channel, payload)
            return
        for changed in self._following.get(job_id, ()):
            changed.set()

    def connected(self, listener: Listener) -> None:
        # Notifications may have been missed while disconnected: every stream re-reads.
        self.listening = True
        for waiting in self._following.values():
            for changed in waiting:
                changed.set()

    def disconnected(self) -> None:
        self.listening = False


# The API process's streams; api/app.py runs its listener.
JOB_EVENTS = JobEvents()


class Progress(msgspec.Struct):
    id: uuid.UUID
    status: str
    stage: str
    progress: int


_encode = msgspec.json.Encoder().encode


def _message(event: str, body: object) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=_encode(body).decode(), event=event)


def _changes(job: Job, shown: Job | None) -> list[ServerSentEventMessage]:
    """The events that take a client from ``shown`` (None: nothing yet) to ``job``."""
    if job.status in FINISHED:
        return [_message(job.status.lower(), job)]
    now = Progress(job.id, job.status, job.stage, job.progress)
    if shown is None:
        return [_message("status", now)]  # where the job stands, all three fields in it
    return [
        _message(field, now)
        for field in ("status", "stage", "progress")
        if getattr(shown, field) != getattr(job, field)
    ]


async def stream(
    scope: TenantScope, job_id: uuid.UUID, *, heartbeat: float, hub: JobEvents = JOB_EVENTS
) -> AsyncIterator[ServerSentEventMessage]:
    """A job's events until it is DONE or FAILED (or no longer exists)."""
    with hub.follow(job_id) as changed:
        shown: Job | None = None
        quiet_since = time.monotonic()
        while True:
            # Followed before read: a change committed meanwhile still wakes us.
            changed.clear()
            try:
                job = await get_job(scope, job_id)
            except NotFoundInTenant:
                return
            for message in _changes(job, shown):
                yield message
                quiet_since = time.monotonic()
            if job.status in FINISHED:
                return
            shown = job
            while True:
                wait = heartbeat - (time.monotonic() - quiet_since)
                if not hub.listening:
                    wait = min(wait, FALLBACK_POLL_SECONDS)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(wait, 0))
                if time.monotonic() - quiet_since >= heartbeat:
                    yield ServerSentEventMessage(data=None, comment="heartbeat")
                    quiet_since = time.monotonic()
                if changed.is_set() or not hub.listening:
                    break
