"""Videos: the query layer (watching them is ``models.video_watch``).

The API side (tenant-scoped): a video as its uploader sees it (with its pipeline's
progress), its upload and its deletion. The worker side (a video addressed by its id): the
pipeline's step record on the video row (``step_done``; ``step_trying``/``step_attempts``
count the attempts of the step being tried), its end (READY or FAILED), the raw-source
cleanup, and the reminders of videos not watched by their due date.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from models import db
from models.db import connection, transaction
from models.enrollments import ACTIVE
from models.errors import field_error
from models.events import events_from
from models.lectures import lecture_exists
from models.pages import Page, Params, as_datetime, as_uuid, keyset, keyset_page
from models.scope import NotFoundInTenant, TenantScope
from models.tables import Video as VideoTable

R = TypeVar("R")

# --- records ---------------------------------------------------------------------------


class Rendition(msgspec.Struct):
    name: str
    width: int
    height: int
    video_bitrate: int


class Video(msgspec.Struct):
    id: uuid.UUID
    lecture_id: uuid.UUID
    session_id: uuid.UUID | None
    title: str
    proctored: bool
    due_date: dt.date | None
    status: str
    error: str | None
    error_code: str | None
    filename: str
    size_bytes: int
    job_id: uuid.UUID | None
    progress: int
    stage: str
    duration_seconds: float | None
    width: int | None
    height: int | None
    rungs: list[Rendition]
    created_at: dt.datetime
    ready_at: dt.datetime | None


class StoredVideo(msgspec.Struct):
    """Where a video's files are, and how far its upload got."""

    id: uuid.UUID
    tenant: uuid.UUID
    status: str
    error: str | None
    job: uuid.UUID | None
    raw_key: str
    upload_id: str | None
    hls_prefix: str | None
    raw_deleted_at: dt.datetime | None


class VideoWork(msgspec.Struct):
    """The video row as a pipeline step claims it. ``probe`` and ``rungs`` are the probe
    step's findings (``pipelines.video`` reads them back)."""

    id: uuid.UUID
    tenant: uuid.UUID
    raw_key: str
    size_bytes: int
    probe: dict[str, Any] | None
    rungs: list[dict[str, Any]]
    step_done: str
    step_attempts: int
    duration_seconds: float | None
    poster_key: str | None


class StepOutput(msgspec.Struct):
    """What a step found that the video row keeps (None: unchanged)."""

    probe: dict[str, Any] | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    rungs: list[dict[str, Any]] | None = None
    hls_prefix: str | None = None
    poster_key: str | None = None


class RawSource(msgspec.Struct):
    id: uuid.UUID
    raw_key: str


# --- a video as its uploader sees it -------------------------------------------------------

# The pipeline's progress and stage come from the video's job (a READY video is 100%).
VIDEO_SELECT = """
    SELECT v.id, v.lecture AS lecture_id, v.session AS session_id, v.title, v.proctored,
           v.due_date, v.status, v.error, v.error_code, v.filename, v.size_bytes, v.job AS job_id,
           CASE WHEN v.status = 'READY' THEN 100 WHEN j.id IS NULL THEN 0
                ELSE j.progress END AS progress,
           CASE WHEN j.id IS NULL THEN lower(v.status) ELSE j.stage END AS stage,
           v.duration_seconds, v.width, v.height, v.rungs, v.created_at, v.ready_at
    FROM video v LEFT JOIN job j ON j.id = v.job AND j.tenant = v.tenant
"""
NEWEST_FIRST = keyset(("v.created_at", as_datetime), ("v.id", as_uuid), descending=True)
EDITABLE = ("title", "proctored", "due_date")


async def find_video(
    scope: TenantScope, type_: type[R], video_id: Any, select: str = "SELECT * FROM video v"
) -> R:
    """One video of this academy as ``type_``, or the usual 404."""
    return await scope.one(
        type_, VideoTable, f"{select} WHERE v.tenant = $1 AND v.id = $2", video_id
    )


async def get_video(scope: TenantScope, video_id: Any) -> Video:
    return await find_video(scope, Video, video_id, VIDEO_SELECT)


async def list_videos(
    scope: TenantScope, *, lecture_id: uuid.UUID | None, cursor: str | None, limit: int
) -> Page[Video]:
    """Newest first; every video of the academy (that the scope may see), or those of one
    lecture."""
    params = Params()
    where = ["v.tenant = $1"]
    if lecture_id is not None:
        where.append(f"v.lecture = {params(lecture_id)}")
    where.append(scope.own_lectures("v.lecture", params))
    return await keyset_page(
        scope,
        Video,
        select=VIDEO_SELECT,
        where=where,
        params=params,
        key=NEWEST_FIRST,
        cursor=cursor,
        limit=limit,
    )


async def resolve_lecture(
    scope: TenantScope, lecture_id: uuid.UUID | None, session_id: uuid.UUID | None
) -> uuid.UUID:
    """The lecture a new video belongs to: ``lecture_id``, or the session's (which must
    then agree with ``lecture_id`` when both are given). Field errors name what is wrong."""
    if session_id is not None:
        of_session = await scope.value(
            "SELECT lecture FROM lecture_session WHERE tenant = $1 AND id = $2", session_id
        )
        if of_session is None:
            raise field_error("session_id", "no such session in this academy")
        if lecture_id is not None and lecture_id != of_session:
            raise field_error("session_id", "the session belongs to another lecture")
        lecture_id = of_session
    assert lecture_id is not None  # the request names one or the other
    try:
        await scope.check_own("lecture_id", lecture_id)
        return await lecture_exists(scope, lecture_id)
    except NotFoundInTenant:
        raise field_error("lecture_id", "no such lecture in this academy") from None


async def create_video(
    scope: TenantScope,
    *,
    video_id: uuid.UUID,
    lecture_id: uuid.UUID,
    session_id: uuid.UUID | None,
    title: str,
    proctored: bool,
    due_date: dt.date | None,
    filename: str,
    content_type: str,
    size_bytes: int,
    raw_key: str,
    upload_id: str | None,
    created_by: uuid.UUID | None,
) -> Video:
    """A new UPLOADING video; a session's video becomes this one."""
    async with transaction():
        await scope.execute(
            """INSERT INTO video (tenant, id, lecture, session, title, proctored, due_date,
                                  filename, content_type, size_bytes, raw_key, upload_id,
                                  created_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            video_id,
            lecture_id,
            session_id,
            title,
            proctored,
            due_date,
            filename,
            content_type,
            size_bytes,
            raw_key,
            upload_id,
            created_by,
        )
        if session_id is not None:
            await scope.execute(
                "UPDATE lecture_session SET video_id = $2 WHERE tenant = $1 AND id = $3",
                video_id,
                session_id,
            )
    return await get_video(scope, video_id)


async def update_video(
    scope: TenantScope, video_id: uuid.UUID, changes: Mapping[str, Any]
) -> Video:
    """Set the ``EDITABLE`` columns named in ``changes`` (others are ignored)."""
    params = Params(video_id)
    sets = [f"{column} = {params(changes[column])}" for column in EDITABLE if column in changes]
    if sets:
        await scope.execute(
            f"UPDATE video SET {', '.join(sets)}, updated_at = now() WHERE tenant = $1 AND id = $2",
            *params.values,
        )
    return await get_video(scope, video_id)


# --- upload and lifecycle ------------------------------------------------------------------


async def stored_video(scope: TenantScope, video_id: Any) -> StoredVideo:
    return await find_video(scope, StoredVideo, video_id)


async def reject_upload(scope: TenantScope, video_id: uuid.UUID, reason: str, code: str) -> None:
    await scope.execute(
        "UPDATE video SET status = 'FAILED', error = $3, error_code = $4 "
        "WHERE tenant = $1 AND id = $2",
        video_id,
        reason,
        code,
    )


async def start_processing(scope: TenantScope, video_id: uuid.UUID, size_bytes: int) -> bool:
    """UPLOADING -> PROCESSING with the size actually received. False when the upload was
    already confirmed (by a concurrent or repeated request)."""
    claimed = await scope.value(
        """UPDATE video SET status = 'PROCESSING', size_bytes = $3, updated_at = now()
           WHERE tenant = $1 AND id = $2 AND status = 'UPLOADING' RETURNING id""",
        video_id,
        size_bytes,
    )
    return claimed is not None


async def attach_job(scope: TenantScope, video_id: uuid.UUID, job_id: uuid.UUID) -> None:
    await scope.execute("UPDATE video SET job = $3 WHERE tenant = $1 AND id = $2", video_id, job_id)


async def delete_video(scope: TenantScope, video_id: uuid.UUID) -> None:
    """The row goes; a session that showed it shows none."""
    async with transaction():
        await scope.execute(
            "UPDATE lecture_session SET video_id = NULL WHERE tenant = $1 AND video_id = $2",
            video_id,
        )
        await scope.execute("DELETE FROM video WHERE tenant = $1 AND id = $2", video_id)


# --- the pipeline's record (workers) -------------------------------------------------------


async def claim_step(video_id: Any, step: str) -> VideoWork | None:
    """Count this attempt of ``step`` on a PROCESSING video (None: the video is gone,
    FAILED or READY)."""
    return await db.row(
        VideoWork,
        """
        UPDATE video SET
            step_attempts = CASE WHEN step_trying = $2 THEN step_attempts + 1 ELSE 1 END,
            step_trying = $2, updated_at = now()
        WHERE id = $1 AND status = 'PROCESSING'
        RETURNING *
        """,
        uuid.UUID(str(video_id)),
        step,
    )


async def record_step(video_id: Any, step: str, output: StepOutput | None = None) -> bool:
    """``step`` done, with what it found. False when the video is no longer processing
    (deleted, or FAILED meanwhile): nothing was recorded."""
    out = output or StepOutput()
    status = await db.execute(
        """
        UPDATE video SET step_done = $2, updated_at = now(),
            probe = COALESCE($3, probe), duration_seconds = COALESCE($4, duration_seconds),
            width = COALESCE($5, width), height = COALESCE($6, height),
            rungs = COALESCE($7, rungs), hls_prefix = COALESCE($8, hls_prefix),
            poster_key = COALESCE($9, poster_key)
        WHERE id = $1 AND status = 'PROCESSING'
        """,
        uuid.UUID(str(video_id)),
        step,
        out.probe,
        out.duration_seconds,
        out.width,
        out.height,
        out.rungs,
        out.hls_prefix,
        out.poster_key,
    )
    return status != "UPDATE 0"


async def fail_video(video_id: Any, reason: str, code: str) -> None:
    """FAILED with ``reason`` and its stable ``code``, unless the video is already READY."""
    await db.execute(
        """
        UPDATE video SET status = 'FAILED', error = $2, error_code = $3, updated_at = now()
        WHERE id = $1 AND status <> 'READY'
        """,
        uuid.UUID(str(video_id)),
        reason[:2000],
        code,
    )


async def finish_video(video_id: Any) -> None:
    """READY: the last step is done."""
    await db.execute(
        """
        UPDATE video SET status = 'READY', step_done = 'finalise', error = NULL, error_code = NULL,
               ready_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'PROCESSING'
        """,
        uuid.UUID(str(video_id)),
    )


# --- raw sources ---------------------------------------------------------------------------


async def sources_ready_before(cutoff: dt.datetime, limit: int) -> list[RawSource]:
    """Videos READY since before ``cutoff`` whose source is still stored."""
    return await db.rows(
        RawSource,
        """
        SELECT id, raw_key FROM video
        WHERE status = 'READY' AND raw_deleted_at IS NULL AND ready_at <= $1
        LIMIT $2
        """,
        cutoff,
        limit,
    )


async def mark_raw_deleted(video_id: uuid.UUID) -> None:
    await db.execute("UPDATE video SET raw_deleted_at = now() WHERE id = $1", video_id)


# --- reminders -----------------------------------------------------------------------------


async def emit_due_reminders(today: dt.date, *, look_back_days: int = 7) -> int:
    """Record one ``video.unwatched`` outbox event per enrolled student who has not
    completed a READY video whose due date has passed (within ``look_back_days``, so a
    due date set long ago does not wake up on the day reminders are switched on).

    Safe to repeat: the dedupe key (video, student) makes each reminder happen once."""
    async with connection() as conn:
        emitted = await conn.fetch(
            events_from(
                f"""FROM video v
                JOIN enrollment e ON e.tenant = v.tenant AND e.lecture = v.lecture
                JOIN student s ON s.id = e.student
                LEFT JOIN video_watch w ON w.video = v.id AND w.student = e.student
                WHERE v.status = 'READY' AND v.due_date < $1 AND v.due_date >= $1 - $2::int
                  AND {ACTIVE} AND (w.id IS NULL OR NOT w.completed)""",
                tenant="v.tenant",
                kind="'video.unwatched'",
                dedupe_key="'video.unwatched:' || v.id || ':' || e.student",
                payload="""jsonb_build_object('video_id', v.id, 'student_id', e.student,
                                      'title', v.title, 'due_date', v.due_date)""",
            )
            + " RETURNING 1",
            today,
            look_back_days,
        )
    return len(emitted)
