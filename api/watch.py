"""The watch heartbeat (``POST /api/v1/videos/{id}/progress``), the hottest write: every
viewer, every ~10 s.

Each API process keeps the viewings it serves in memory (``VIEWINGS``): the student's
watch row as this process last stored or read it, with its version (``xmin``). The first
heartbeat of a viewing in a process reads and writes the row (``models.video_watch``);
later ones are decided against the memory:

* **Open videos, written behind.** The heartbeat is decided and answered at once; every
  ``FLUSH_SECONDS`` the latest state of each viewing with new heartbeats is stored, one
  statement per academy. A heartbeat that completes the video is stored before it is
  answered. The union of intervals is the only rule, and it does not depend on order: a
  row another process stored meanwhile (its version changed) is read again and this
  process's intervals are added to it, so no process's progress overwrites another's.
* **Proctored videos, written through.** The sequence number and the real-time clock are
  decided on the row's stored state, and another process may serve the same viewer: each
  heartbeat is one statement that stores the decision only if the row is still the
  version it was decided on (else it is decided again on the row read afresh).

Either write also checks that the video is still ready and the student still enrolled; a
viewing that fails it is forgotten, and its next heartbeat is answered as a first one.

What a crash of an API process (killed, out of memory, host lost) loses: the heartbeats of
open videos it answered since its last flush -- at most ``FLUSH_SECONDS`` of their
intervals, position and count -- unless one completed the video. Never a completion, a
refusal or any heartbeat of a proctored video. A clean stop flushes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

from api.auth import Principal
from api.errors import Problem
from api.listening import running
from models import video_watch
from models.errors import fail_fields
from models.scope import TenantScope
from models.tables import Role, VideoStatus
from models.video_watch import HeartbeatTarget, Watch, WatchLock, WatchUpdate
from ops.settings import get_settings
from pipelines.video.watch import HeartbeatRejected, Interval, apply_heartbeat, clean, union

log = logging.getLogger("api.watch")

# A position or a played interval's bound, in seconds.
Seconds = Annotated[float, msgspec.Meta(ge=0)]
MAX_PLAYED_INTERVALS = 200
# How often the heartbeats of open videos are stored; what a crash can lose of them.
FLUSH_SECONDS = 1.0
# A viewing with no heartbeat for this long is forgotten (a player beats every ~10 s).
IDLE_SECONDS = 60.0


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True):
    """``played``: the intervals ``[start, end]`` (seconds) played since the last report.
    ``seq``: increases with every heartbeat of a viewing (required when proctored)."""

    position: Seconds
    played: Annotated[
        list[tuple[Seconds, Seconds]], msgspec.Meta(max_length=MAX_PLAYED_INTERVALS)
    ] = []
    seq: Annotated[int, msgspec.Meta(ge=0)] | None = None


class WatchProgress(msgspec.Struct):
    video_id: uuid.UUID
    position: float
    intervals: list[tuple[float, float]]
    watched_seconds: float
    coverage_percent: float
    completed: bool
    completed_at: dt.datetime | None
    recorded: bool = True  # False for staff: their previews are not progress


@dataclass(slots=True)
class Viewing:
    """A student's watch row as this process knows it. ``lag``/``stamp``: how far the
    row's real-time clock lagged the database's clock when it was stored, and when
    (``time.monotonic``): the clock's lag now is their sum. ``beats``, ``fresh``,
    ``played``: what the heartbeats answered since the last store added (open videos)."""

    key: tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # academy, student, video
    proctored: bool
    duration: float
    watch: Watch
    stamp: float
    used: float
    beats: int = 0
    fresh: float = 0.0
    seq: int | None = None
    done: bool = False  # a heartbeat completed the video
    storing: asyncio.Event | None = None  # set when the store under way has returned
    played: list[Interval] = field(default_factory=list)


VIEWINGS: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], Viewing] = {}
# One flush at a time (the flusher's, a report's).
_FLUSHING = asyncio.Lock()
# Rows per statement of a flush: the process answers heartbeats between them.
FLUSH_CHUNK = 500


def not_enrolled() -> Problem:
    return Problem(
        403, "you are not enrolled in this video's lecture", type_="/problems/not-enrolled"
    )


def _check_heartbeat(data: Heartbeat) -> None:
    errors: list[dict[str, str]] = []
    # Signs and the number of intervals are the schema's (``Heartbeat``); a number too
    # large for a double arrives as infinity.
    if not math.isfinite(data.position):
        errors.append({"field": "position", "message": "a non-negative number of seconds"})
    for i, (start, end) in enumerate(data.played):
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            errors.append({"field": f"played[{i}]", "message": "needs 0 <= start <= end"})
    fail_fields(errors)


def _advance(
    video: HeartbeatTarget, data: Heartbeat, duration: float, watch: WatchLock
) -> WatchUpdate:
    """A student's heartbeat on their watch row (one the rules refuse: a 409)."""
    try:
        state = apply_heartbeat(
            watch.intervals,
            [(a, b) for a, b in data.played],
            duration=duration,
            completion_ratio=get_settings().video_completion_percent / 100,
            proctored=video.proctored,
            seq=data.seq,
            last_seq=watch.last_seq,
            elapsed_seconds=watch.elapsed if watch.elapsed is not None else 0.0,
        )
    except HeartbeatRejected as exc:
        raise Problem(409, str(exc), type_=f"/problems/heartbeat-{exc.kind}") from None
    return WatchUpdate(
        intervals=state.intervals,
        watched_seconds=state.watched_seconds,
        coverage=state.coverage,
        position=max(0.0, min(duration, data.position)),
        frontier=state.frontier,
        completed=state.completed,
        seq=data.seq,
        fresh=state.fresh,
    )


def _progress(video_id: uuid.UUID, saved: Watch, *, recorded: bool = True) -> WatchProgress:
    return WatchProgress(
        video_id=video_id,
        position=saved.position,
        intervals=saved.intervals,
        watched_seconds=saved.watched_seconds,
        coverage_percent=round(saved.coverage * 100, 2),
        completed=saved.completed,
        completed_at=saved.completed_at,
        recorded=recorded,
    )


def _preview(video: HeartbeatTarget, data: Heartbeat, duration: float) -> WatchProgress:
    """Staff previewing with the player: an open video's first heartbeat, never recorded."""
    open_video = msgspec.structs.replace(video, proctored=False)
    preview = _advance(open_video, data, duration, WatchLock(video.id, [], None, None))
    shown = Watch(
        preview.position, preview.intervals, preview.watched_seconds, preview.coverage,
        completed=False, completed_at=None,
    )  # fmt: skip
    return _progress(video.id, shown, recorded=False)


def _video_key(video_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(video_id)
    except ValueError:  # not a video of this academy: the first beat's 404
        return None


async def heartbeat(
    scope: TenantScope, principal: Principal, video_id: str, data: Heartbeat
) -> WatchProgress:
    """A heartbeat: decided on this process's viewing when it has one, else on the row."""
    student = principal.student_id if principal.role == Role.student else None
    video = _video_key(video_id)
    viewing = None if student is None or video is None else VIEWINGS.get(
        (scope.tenant_id, student, video)
    )  # fmt: skip
    if viewing is not None:
        _check_heartbeat(data)
        viewing.used = time.monotonic()
        beat = _proctored_beat if viewing.proctored else _open_beat
        answered = await beat(scope, viewing, data)
        if answered is not None:
            return answered
    return await _first_beat(scope, principal, student, video_id, data)


async def _first_beat(
    scope: TenantScope,
    principal: Principal,
    student: uuid.UUID | None,
    video_id: str,
    data: Heartbeat,
) -> WatchProgress:
    """The heartbeat decided on the row as read (``heartbeat_target``); the viewing is
    remembered for the next ones. ``student``: None for staff (a preview)."""
    target = await video_watch.heartbeat_target(scope, video_id, student)
    if principal.role == Role.student and not target.enrolled:
        raise not_enrolled()
    if target.status != VideoStatus.ready.value or not target.duration_seconds:
        raise Problem(409, "the video is not ready", type_="/problems/video-not-ready")
    _check_heartbeat(data)
    duration = float(target.duration_seconds)
    if student is None:
        return _preview(target, data, duration)
    saved = await _record(scope, target, student, data, duration)
    return _progress(target.id, saved)


async def _record(
    scope: TenantScope, target: HeartbeatTarget, student: uuid.UUID, data: Heartbeat,
    duration: float, beats: int = 1,
) -> Watch:  # fmt: skip
    """``data`` stored on the row (``record_heartbeat``), and the viewing remembered."""
    key = (scope.tenant_id, student, target.id)
    advance = functools.partial(_advance, target, data, duration)
    saved = await video_watch.record_heartbeat(
        scope, target.id, student, lambda w: msgspec.structs.replace(advance(w), beats=beats),
        seen=target.watch,
    )  # fmt: skip
    known = VIEWINGS.get(key)
    # Concurrent heartbeats of a student finish in any order: the process remembers the
    # latest version stored, and never drops heartbeats it has not stored yet (a version
    # stored since makes their flush add them to it).
    if saved.version is not None and (
        known is None or (not known.beats and known.watch.heartbeats < saved.heartbeats)
    ):
        now = time.monotonic()
        VIEWINGS[key] = Viewing(key, target.proctored, duration, saved, now, now)
    return saved


def _decided(viewing: Viewing, data: Heartbeat) -> WatchUpdate:
    """``_advance`` on what the viewing knows of the row."""
    w = viewing.watch
    assert w.id is not None
    elapsed = w.lag + (time.monotonic() - viewing.stamp)
    video = viewing.key[2]
    target = HeartbeatTarget(
        video, VideoStatus.ready.value, viewing.duration, viewing.proctored, True, None
    )
    return _advance(
        target, data, viewing.duration, WatchLock(w.id, w.intervals, w.last_seq, elapsed)
    )


def _take(viewing: Viewing, update: WatchUpdate, data: Heartbeat) -> None:
    """The viewing's state after ``update``, not yet stored."""
    w = viewing.watch  # the viewing's own: changed in place
    w.position, w.intervals, w.frontier = update.position, update.intervals, update.frontier
    w.watched_seconds, w.coverage = update.watched_seconds, update.coverage
    if update.seq is not None:
        w.last_seq = update.seq
    viewing.beats += 1
    viewing.done = viewing.done or update.completed
    viewing.fresh += update.fresh
    if data.seq is not None:
        viewing.seq = data.seq
    played = clean([(a, b) for a, b in data.played], viewing.duration)
    viewing.played = union(viewing.played + played)


async def _open_beat(scope: TenantScope, viewing: Viewing, data: Heartbeat) -> WatchProgress | None:
    """Decided in memory and written behind; a completion is stored before the answer.
    None when that store found the row changed and the student may no longer record this
    viewing: decide it on the row."""
    update = _decided(viewing, data)
    _take(viewing, update, data)
    if update.completed and not viewing.watch.completed:
        # Not alongside a store of this viewing under way: it holds the row's version.
        while viewing.storing is not None:
            await viewing.storing.wait()
        stored = await _store(scope, [viewing])
        if not stored:  # decided again on the row as it is now (``_merge``)
            again = VIEWINGS.get(viewing.key)
            return None if again is None else _progress(viewing.key[2], again.watch)
    return _progress(viewing.key[2], viewing.watch)


async def _proctored_beat(
    scope: TenantScope, viewing: Viewing, data: Heartbeat
) -> WatchProgress | None:
    """Decided on the viewing and stored only if the row is still that version (and the
    student may still watch the video); None when it is not: decide it on the row."""
    w = viewing.watch
    assert w.id is not None and w.version is not None
    try:
        update = _decided(viewing, data)
    except Problem:
        version = await video_watch.refuse_seen(scope, w.id, w.version)
        if version is None:
            if VIEWINGS.get(viewing.key) is viewing:
                del VIEWINGS[viewing.key]
            return None
        w.version = version
        raise
    saved = await video_watch.store_checked(scope, w.id, w.version, update, proctored=True)
    if saved is None:
        if VIEWINGS.get(viewing.key) is viewing:
            del VIEWINGS[viewing.key]
        return None
    viewing.watch, viewing.stamp = saved, time.monotonic()
    return _progress(viewing.key[2], saved)


def _pending(viewing: Viewing) -> dict[str, object]:
    w = viewing.watch
    return {
        "id": w.id, "version": w.version, "intervals": w.intervals,
        "watched": w.watched_seconds, "coverage": w.coverage, "position": w.position,
        "frontier": w.frontier, "done": viewing.done,
        "seq": viewing.seq, "fresh": viewing.fresh, "beats": viewing.beats,
        "proctored": viewing.proctored,
    }  # fmt: skip


async def _store(scope: TenantScope, viewings: list[Viewing]) -> bool:
    """Store the viewings' new heartbeats (one academy's) in one statement. A viewing whose
    row changed meanwhile is forgotten, and its heartbeats are decided again on the row as
    it is now. Whether every one was stored as decided."""
    rows = [_pending(v) for v in viewings]
    taken = [(v.beats, v.fresh, v.seq, v.played) for v in viewings]
    under_way = asyncio.Event()
    for v in viewings:
        v.beats, v.fresh, v.seq, v.played = 0, 0.0, None, []
        v.storing = under_way
    try:
        stored = {s.id: s for s in await video_watch.store_watches(scope, rows)}
    except BaseException:
        for v, (beats, fresh, seq, played) in zip(viewings, taken, strict=True):
            v.beats += beats
            v.fresh += fresh
            v.seq = v.seq if v.seq is not None else seq
            v.played = union(played + v.played)
        raise
    finally:
        for v in viewings:
            v.storing = None
        under_way.set()
    now = time.monotonic()
    missed: list[tuple[Viewing, int, list[Interval]]] = []
    for v, (beats, _, _, played) in zip(viewings, taken, strict=True):
        s = stored.get(v.watch.id)  # type: ignore[arg-type]
        if s is None:
            if VIEWINGS.get(v.key) is v:
                del VIEWINGS[v.key]
            missed.append((v, beats + v.beats, union(played + v.played)))
            continue
        w = v.watch
        w.version, w.completed, w.completed_at = s.version, s.completed, s.completed_at
        w.lag, w.heartbeats, v.stamp = s.lag, s.heartbeats, now
    for v, beats, played in missed:
        await _merge(scope, v, beats, played)
    return not missed


async def _merge(scope: TenantScope, viewing: Viewing, beats: int, played: list[Interval]) -> None:
    """An open viewing's heartbeats whose row changed since it was read (another process
    stored it, or the video or the enrollment changed): their intervals added to the row
    as it is now, as one heartbeat counting ``beats``. Refused now (the student left, the
    video changed): nothing of them is stored."""
    _, student, video = viewing.key
    data = Heartbeat(position=viewing.watch.position, played=played)
    try:
        target = await video_watch.heartbeat_target(scope, video, student)
        if not target.enrolled or target.status != VideoStatus.ready.value:
            return
        await _record(scope, target, student, data, viewing.duration, beats)
    except (Problem, LookupError):  # refused as things are now (counted), or gone
        log.info("heartbeats of a changed viewing refused", extra={"video": str(video)})


async def flush() -> None:
    """Store every open viewing's new heartbeats (a statement per academy and
    ``FLUSH_CHUNK`` rows), and forget the viewings idle for ``IDLE_SECONDS``."""
    async with _FLUSHING:
        by_academy: dict[uuid.UUID, list[Viewing]] = {}
        idle = time.monotonic() - IDLE_SECONDS
        for key, v in list(VIEWINGS.items()):
            if v.storing is not None:  # a completion being stored
                continue
            if v.beats:
                by_academy.setdefault(key[0], []).append(v)
            elif v.used < idle:
                del VIEWINGS[key]
        for academy, viewings in by_academy.items():
            for i in range(0, len(viewings), FLUSH_CHUNK):
                await _store(TenantScope(academy), viewings[i : i + FLUSH_CHUNK])


@contextlib.asynccontextmanager
async def writing_behind() -> AsyncIterator[None]:
    """The API process's flusher: ``flush`` every ``FLUSH_SECONDS``, and once at the end."""

    async def run() -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await flush()
            except Exception:  # the database away: the heartbeats wait for the next round
                log.exception("storing heartbeats failed")

    try:
        async with running(run(), "heartbeat-flush"):
            yield
    finally:
        await flush()
