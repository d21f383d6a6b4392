"""Watching videos: who may watch, the watch heartbeat, and the watch report.

The heartbeat is the hottest write of the system (every viewer, every 10 s). A viewing's
first heartbeat in an API process costs two statements and no transaction: one read
(``heartbeat_target``: the video, the student's enrollment and watch row) and one write
that applies only if the row is still the version that was read (``record_heartbeat``).
Anything else -- a row not yet opened by playback, a concurrent heartbeat of the same
student -- takes the locked path: one transaction, the row locked while the heartbeat is
decided. The process then decides the viewing's next heartbeats on what that write
returned (``api.watch``), and stores them with ``store_watches`` (many rows, written
behind) or ``store_checked`` (one, written through), each guarded by the row's version.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from models.db import transaction
from models.enrollments import ACTIVE, enrolled
from models.errors import Problem
from models.pages import Params, as_text, as_uuid, keyset, page_from
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Video as VideoTable
from models.videos import Rendition, find_video
from ops.settings import get_settings
from pipelines.video.watch import REALTIME_CARRY_SECONDS as CARRY

# --- records ---------------------------------------------------------------------------


class Viewable(msgspec.Struct):
    """What playback, the heartbeat and the report need of a video."""

    id: uuid.UUID
    tenant: uuid.UUID
    lecture: uuid.UUID
    status: str
    duration_seconds: float | None
    proctored: bool
    rungs: list[Rendition]


class WatchLock(msgspec.Struct):
    """A student's watch row as one heartbeat decides on it; ``elapsed``: seconds since
    the previous accepted heartbeat (None before the first). ``version``: the row
    version it was read at (its ``xmin``), when it was read without a lock."""

    id: uuid.UUID
    intervals: list[tuple[float, float]]
    last_seq: int | None
    elapsed: float | None
    version: str | None = None


class HeartbeatTarget(msgspec.Struct):
    """What a heartbeat needs, in one read: the video, whether the student may watch it
    (an active enrollment in its lecture), and their watch row unlocked (None while
    playback has not opened it)."""

    id: uuid.UUID
    status: str
    duration_seconds: float | None
    proctored: bool
    enrolled: bool
    watch: WatchLock | None


class WatchUpdate(msgspec.Struct):
    """The state one accepted heartbeat leaves."""

    intervals: list[tuple[float, float]]
    watched_seconds: float
    coverage: float
    position: float
    frontier: float
    completed: bool
    seq: int | None
    fresh: float = 0.0  # newly played seconds: the real-time clock advances by them
    beats: int = 1  # the heartbeats this state sums up (several, written behind)


class Watch(msgspec.Struct):
    """A student's progress on a video, as stored; with what the next heartbeat needs to
    be decided without reading the row again: its ``version`` (``xmin``) and ``lag``, the
    seconds its real-time clock lagged the database's clock when it was stored."""

    position: float
    intervals: list[tuple[float, float]]
    watched_seconds: float
    coverage: float
    completed: bool
    completed_at: dt.datetime | None
    id: uuid.UUID | None = None
    frontier: float = 0.0
    last_seq: int | None = None
    version: str | None = None
    lag: float = 0.0
    heartbeats: int = 0  # grows with every store: the later of two versions has more


class Stored(msgspec.Struct):
    """One watch row a write-behind store wrote: its new version and completion."""

    id: uuid.UUID
    version: str
    completed: bool
    completed_at: dt.datetime | None
    lag: float
    heartbeats: int


class WatchReportRow(msgspec.Struct):
    student_id: uuid.UUID
    student_name: str
    watched_seconds: float
    coverage_percent: float
    completed: bool
    completed_at: dt.datetime | None
    last_watched_at: dt.datetime | None
    heartbeats: int
    rejected_heartbeats: int

    def __post_init__(self) -> None:
        # The statement gives the percentage unrounded; two places is what clients show.
        self.coverage_percent = round(self.coverage_percent, 2)


class WatchReport(msgspec.Struct):
    video_id: uuid.UUID
    duration_seconds: float | None
    completion_percent: float
    student_count: int  # on every page: the whole report's size
    completed_count: int
    students: list[WatchReportRow]  # a page, by name
    limit: int
    next_cursor: str | None


class ReportTotals(msgspec.Struct):
    student_count: int
    completed_count: int


# --- queries ---------------------------------------------------------------------------


async def viewable_video(scope: TenantScope, video_id: Any) -> Viewable:
    return await find_video(scope, Viewable, video_id)


async def heartbeat_target(
    scope: TenantScope, video_id: Any, student_id: uuid.UUID | None
) -> HeartbeatTarget:
    """The video (the usual 404 when it is not this academy's), the student's enrollment
    and watch row, in one statement (no student: neither)."""
    found = await scope.fetchrow(
        f"""SELECT v.id, v.status, v.duration_seconds, v.proctored,
                   {enrolled("$3", "v.lecture")} AS enrolled,
                   w.id AS watch_id, w.intervals, w.last_seq, w.xmin::text AS version,
                   EXTRACT(EPOCH FROM now() - w.last_heartbeat_at) AS elapsed
            FROM video v
            LEFT JOIN video_watch w ON w.video = v.id AND w.student = $3 AND w.tenant = $1
            WHERE v.tenant = $1 AND v.id = $2""",
        parse_id(VideoTable, video_id),
        student_id,
    )
    if found is None:
        raise NotFoundInTenant(VideoTable, video_id)
    watch = None
    if found["watch_id"] is not None:
        watch = WatchLock(
            id=found["watch_id"],
            intervals=[(a, b) for a, b in found["intervals"]],
            last_seq=found["last_seq"],
            elapsed=None if found["elapsed"] is None else float(found["elapsed"]),
            version=found["version"],
        )
    return HeartbeatTarget(
        id=found["id"],
        status=found["status"],
        duration_seconds=found["duration_seconds"],
        proctored=found["proctored"],
        enrolled=found["enrolled"],
        watch=watch,
    )


async def open_watch(scope: TenantScope, video_id: uuid.UUID, student_id: uuid.UUID) -> None:
    """Start the real-time clock of the student's first heartbeat (opening playback)."""
    await scope.execute(
        """INSERT INTO video_watch (tenant, video, student, last_heartbeat_at)
           VALUES ($1, $2, $3, now())
           ON CONFLICT (video, student) DO UPDATE
           SET last_heartbeat_at = COALESCE(video_watch.last_heartbeat_at, now())""",
        video_id,
        student_id,
    )


# A decided heartbeat: the refusal counted, or the new state stored. ``{guard}``: the
# optimistic path's condition that the row is still the version decided on. The real-time
# clock (``last_heartbeat_at``) advances by the playback credited, within ``{carry}``
# seconds of now (``pipelines.video.watch``: the proctored rules). ``_SET`` takes the new
# state's values by position: parameters for one row, or a set's columns.
_REFUSED = """UPDATE video_watch SET rejected_heartbeats = rejected_heartbeats + 1
              WHERE tenant = $1 AND id = $2 {guard} RETURNING xmin::text"""
_SET = """intervals = {0}, watched_seconds = {1}, coverage = {2}, position = {3},
          frontier = {4}, completed = completed OR {5},
          completed_at = CASE WHEN {5} AND completed_at IS NULL THEN now()
                              ELSE completed_at END,
          last_seq = COALESCE({6}, last_seq),
          last_heartbeat_at = GREATEST(now() - make_interval(secs => {carry}),
              LEAST(now(), COALESCE(last_heartbeat_at, now()) + make_interval(secs => {7}))),
          heartbeats = heartbeats + {8}, updated_at = now()"""
_RETURNED = """id, position, intervals, watched_seconds, coverage, completed, completed_at,
               frontier, last_seq, heartbeats, xmin::text AS version,
               EXTRACT(EPOCH FROM now() - last_heartbeat_at)::float8 AS lag"""
_STORED = f"""UPDATE video_watch SET {_SET.format(*(f"${n}" for n in range(3, 12)), carry=CARRY)}
              WHERE tenant = $1 AND id = $2 {{guard}} RETURNING {_RETURNED}"""
# The student may still watch the video as it was when the heartbeat was decided: ready,
# enrolled, and proctored or not (``{proctored}``) as decided. ``{row}``: the watch row.
# A scalar subquery, not EXISTS: Postgres turns an EXISTS into a join over every
# enrollment of the academy (19 ms for one row of a 2,000-student lecture), where this is
# a few index look-ups per row stored.
_ALLOWED = f"""(
    SELECT true FROM video v
    JOIN enrollment e ON e.lecture = v.lecture AND e.tenant = $1
    JOIN student s ON s.id = e.student
    WHERE v.tenant = $1 AND v.id = {{row}}.video AND v.status = 'READY'
      AND v.proctored = {{proctored}} AND e.student = {{row}}.student AND {ACTIVE}
    LIMIT 1) IS NOT NULL"""
# ``_SET``'s values, in its order, as columns of the write-behind's JSON rows, with their
# types.
_PENDING = (("intervals", "jsonb"), ("watched", "float8"), ("coverage", "float8"),
            ("position", "float8"), ("frontier", "float8"), ("done", "bool"), ("seq", "int"),
            ("fresh", "float8"), ("beats", "int"))  # fmt: skip
# Write-behind: the latest state of many rows of one academy (``$2``: a JSON array, ``$3``
# their ids, comma-separated), each stored only if the row is still the version it was
# decided on and ``_ALLOWED``.
_STORED_SET = f"""
    UPDATE video_watch w SET {_SET.format(*(f"u.{c}" for c, _ in _PENDING), carry=CARRY)}
    FROM jsonb_to_recordset($2::jsonb) AS u(
        id uuid, version text, {", ".join(f"{c} {t}" for c, t in _PENDING)}, proctored bool)
    WHERE w.tenant = $1 AND w.id = ANY(string_to_array($3, ',')::uuid[]) AND w.id = u.id
      AND w.xmin::text = u.version
      AND {_ALLOWED.format(row="w", proctored="u.proctored")}
    RETURNING w.id, w.xmin::text AS version, w.completed, w.completed_at, w.heartbeats,
              EXTRACT(EPOCH FROM now() - w.last_heartbeat_at)::float8 AS lag"""
_STORED_CHECKED = _STORED.format(
    guard=f"AND xmin::text = $12 AND {_ALLOWED.format(row='video_watch', proctored='$13')}"
)


async def store_watches(scope: TenantScope, rows: list[dict[str, Any]]) -> list[Stored]:
    """Store the decided states ``rows`` (``_STORED_SET``'s columns) in one statement; the
    rows stored. A row left out changed since it was read (another process stored it, or
    the video or the enrollment changed): its caller decides it again."""
    # The ids again, as text: the rows are found by their key (a join on the JSON's ids
    # alone is planned as a scan of every watch row of the academy).
    return await scope.rows(Stored, _STORED_SET, rows, ",".join(str(r["id"]) for r in rows))


async def store_checked(
    scope: TenantScope, watch_id: uuid.UUID, version: str, update: WatchUpdate, proctored: bool
) -> Watch | None:
    """One decided heartbeat, stored if the row is still ``version`` and ``_ALLOWED``;
    None (nothing stored) if not: its caller decides it again on the row as it is."""
    return await scope.row(Watch, _STORED_CHECKED, watch_id, *_values(update), version, proctored)


async def refuse_seen(scope: TenantScope, watch_id: uuid.UUID, version: str) -> str | None:
    """Count a refused heartbeat on the row if it is still ``version``: its new version,
    or None (nothing counted) if it was not."""
    found = await scope.value(_REFUSED.format(guard="AND xmin::text = $3"), watch_id, version)
    return None if found is None else str(found)


async def record_heartbeat(
    scope: TenantScope,
    video_id: uuid.UUID,
    student_id: uuid.UUID,
    advance: Callable[[WatchLock], WatchUpdate],
    seen: WatchLock | None = None,
) -> Watch:
    """One heartbeat: ``advance`` turns the student's watch row into the new state, and
    that is stored. A heartbeat ``advance`` refuses (a ``Problem``) is counted on the row,
    and the refusal is raised once the count is stored.

    ``seen``: the row as read without a lock (``heartbeat_target``). Then the decision is
    stored only if the row is still that version -- one statement, no transaction; if
    another heartbeat got there first, it is decided again on the locked row, so
    concurrent heartbeats of a student are decided one after another as before."""
    if seen is not None and seen.version is not None:
        saved = await _record_seen(scope, seen, advance)
        if saved is not None:
            return saved
    return await _record_locked(scope, video_id, student_id, advance)


async def _record_seen(
    scope: TenantScope, seen: WatchLock, advance: Callable[[WatchLock], WatchUpdate]
) -> Watch | None:
    """The heartbeat decided on ``seen`` and stored if the row has not changed since it
    was read; None (nothing stored) if it has."""
    assert seen.version is not None
    try:
        update = advance(seen)
    except Problem:
        if await refuse_seen(scope, seen.id, seen.version) is None:
            return None
        raise
    return await scope.row(
        Watch, _STORED.format(guard="AND xmin::text = $12"), seen.id, *_values(update),
        seen.version,
    )  # fmt: skip


async def _record_locked(
    scope: TenantScope,
    video_id: uuid.UUID,
    student_id: uuid.UUID,
    advance: Callable[[WatchLock], WatchUpdate],
) -> Watch:
    """The heartbeat in one transaction, on the row locked (and created if playback never
    opened it)."""
    refused: Problem | None = None
    saved: Watch | None = None
    async with transaction():
        await scope.execute(
            """INSERT INTO video_watch (tenant, video, student) VALUES ($1, $2, $3)
               ON CONFLICT (video, student) DO NOTHING""",
            video_id,
            student_id,
        )
        watch = await scope.row(
            WatchLock,
            """SELECT *, EXTRACT(EPOCH FROM now() - last_heartbeat_at) AS elapsed
               FROM video_watch WHERE tenant = $1 AND video = $2 AND student = $3
               FOR UPDATE""",
            video_id,
            student_id,
        )
        assert watch is not None
        try:
            update = advance(watch)
        except Problem as exc:
            refused = exc
            await scope.execute(_REFUSED.format(guard=""), watch.id)
        else:
            saved = await scope.row(Watch, _STORED.format(guard=""), watch.id, *_values(update))
    if refused is not None:
        raise refused
    assert saved is not None
    return saved


def _values(update: WatchUpdate) -> tuple[Any, ...]:
    """``_STORED``'s arguments $3 to $11."""
    return (
        update.intervals,
        update.watched_seconds,
        update.coverage,
        update.position,
        update.frontier,
        update.completed,
        update.seq,
        update.fresh,
        update.beats,
    )


def _audience(video: str, lecture: str) -> str:
    """The report's students: active enrollments in the lecture, plus anyone who watched
    and has left since (``video``/``lecture``: their placeholders)."""
    return f"""
        FROM student s
        LEFT JOIN video_watch w ON w.student = s.id AND w.video = {video}
        WHERE s.tenant = $1 AND s.deleted_at IS NULL AND (
            w.id IS NOT NULL OR EXISTS (
                SELECT 1 FROM enrollment e WHERE e.student = s.id AND e.lecture = {lecture}
                                             AND {ACTIVE}))
    """


BY_NAME = keyset(("s.name", as_text), ("s.id", as_uuid))


async def watch_report(
    scope: TenantScope, video_id: Any, *, cursor: str | None, limit: int
) -> WatchReport:
    """A page of the video's audience by name, with the whole report's totals."""
    params = Params()
    after = BY_NAME.after(cursor, params)  # a foreign cursor is refused before the video is
    video = await viewable_video(scope, video_id)
    audience = _audience(params(video.id), params(video.lecture))
    rows = await scope.fetch(
        f"""SELECT s.id, s.name, s.id AS student_id, s.name AS student_name,
                   COALESCE(w.watched_seconds, 0) AS watched_seconds,
                   COALESCE(w.coverage, 0) * 100 AS coverage_percent,
                   COALESCE(w.completed, false) AS completed, w.completed_at,
                   CASE WHEN COALESCE(w.heartbeats, 0) <> 0 THEN w.updated_at
                   END AS last_watched_at,
                   COALESCE(w.heartbeats, 0) AS heartbeats,
                   COALESCE(w.rejected_heartbeats, 0) AS rejected_heartbeats
            {audience} {"" if after is None else f"AND {after}"}
            ORDER BY {BY_NAME.order_by} LIMIT {params(limit + 1)}""",
        *params.values,
    )
    totals = await scope.row(
        ReportTotals,
        f"""SELECT count(*) AS student_count, count(*) FILTER (WHERE w.completed)
                   AS completed_count {_audience("$2", "$3")}""",
        video.id,
        video.lecture,
    )
    page = page_from(rows, limit, BY_NAME, WatchReportRow)
    return WatchReport(
        video_id=video.id,
        duration_seconds=video.duration_seconds,
        completion_percent=get_settings().video_completion_percent,
        student_count=totals.student_count if totals else 0,
        completed_count=totals.completed_count if totals else 0,
        students=page.items,
        limit=limit,
        next_cursor=page.next_cursor,
    )
