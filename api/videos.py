"""Lecture videos: direct upload, the HLS pipeline, signed playback and watch progress.

* ``POST /api/v1/videos`` creates the video (of a lecture, or of one of its sessions) and
  returns where the client uploads the source straight to ``R2_VIDEO_BUCKET``: one
  presigned PUT, or presigned multipart part URLs for files above
  ``VIDEO_MULTIPART_THRESHOLD_BYTES``.
* ``POST /api/v1/videos/{id}/complete`` checks the object is there and within
  ``VIDEO_MAX_UPLOAD_BYTES`` (completing a multipart upload first), then starts the
  pipeline (``actors.video``) after the commit. Repeating it is harmless.
* ``GET /api/v1/videos/{id}/playback``: a signed master playlist URL on
  ``CDN_HLS_BASE_URL`` (1 h token for the whole video's path prefix), for staff, or for a
  student with an active enrollment in the video's lecture.
* ``POST /api/v1/videos/{id}/progress``: a student's heartbeat (see
  ``pipelines.video.watch``; staff previews are answered but not recorded); ``GET /api/v1/videos/{id}/watch-report``: every enrolled
  student's progress, for staff.
* ``DELETE /api/v1/videos/{id}`` removes the row, its HLS prefix and its source.

Roles: staff create, read and report; the office (owner, admin, staff) and teachers
delete. Students play and report progress; parents have no access here.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from actors.jobs import fail_job, submit
from actors.video import delete_video_objects, hls_prefix, raw_key, video_probe
from api.auth import STAFF_ROLES, Principal, require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit
from models.db import transaction
from models.pages import Page, as_datetime, as_text, as_uuid, decode_cursor_as, page_of
from models.scope import TenantScope
from models.tables import Job as JobRow
from models.tables import Lecture as LectureRow
from models.tables import LectureSession as SessionRow
from models.tables import Role, VideoStatus
from models.tables import Video as VideoRow
from ops import storage
from ops.settings import get_settings
from pipelines.korean import clean_text
from pipelines.video.signing import DEFAULT_TTL_SECONDS, sign_url
from pipelines.video.watch import HeartbeatRejected, apply_heartbeat

require_viewer = require_roles(*STAFF_ROLES, Role.student)

ALLOWED_CONTENT_TYPES = frozenset(
    {
        "video/mp4",
        "video/quicktime",
        "video/x-matroska",
        "video/webm",
        "video/x-msvideo",
        "video/mpeg",
        "video/mp2t",
        "application/octet-stream",
    }
)
MAX_PARTS = 10_000  # S3's limit on parts of one multipart upload
UPLOAD_URL_TTL = 6 * 3600  # a lecture upload over a slow line takes hours
MAX_PLAYED_INTERVALS = 200


# --- schemas ---------------------------------------------------------------------------


class VideoCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Give ``lecture_id``, or ``session_id`` (its lecture is implied), or both."""

    title: str
    filename: str
    size_bytes: int
    content_type: str = "video/mp4"
    lecture_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    proctored: bool = False  # PROCTORED_CLASS: no credit for seeking ahead
    due_date: dt.date | None = (
        None  # after it, guardians of students who have not watched are reminded
    )


class VideoUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: str | msgspec.UnsetType = msgspec.UNSET
    proctored: bool | msgspec.UnsetType = msgspec.UNSET
    due_date: dt.date | msgspec.UnsetType | None = msgspec.UNSET


class UploadPart(msgspec.Struct):
    part_number: int
    url: str


class UploadTarget(msgspec.Struct):
    """``PUT``: send the whole file to ``url`` (with ``headers``). ``MULTIPART``: send
    ``part_size``-byte parts to each part's URL, keep each answer's ETag, and pass them
    to ``/complete``."""

    method: str
    expires_in: int
    url: str | None = None
    headers: dict[str, str] = {}
    upload_id: str | None = None
    part_size: int | None = None
    parts: list[UploadPart] = []


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


class VideoCreated(msgspec.Struct):
    video: Video
    upload: UploadTarget


class CompletedPart(msgspec.Struct, forbid_unknown_fields=True):
    part_number: int
    etag: str


class UploadComplete(msgspec.Struct, forbid_unknown_fields=True):
    parts: list[CompletedPart] = []  # multipart uploads only


class Playback(msgspec.Struct):
    master_url: str
    poster_url: str
    thumbnails_url: str
    expires_at: dt.datetime
    duration_seconds: float | None
    rungs: list[Rendition]
    proctored: bool


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True):
    """``played``: the intervals ``[start, end]`` (seconds) played since the last report.
    ``seq``: increases with every heartbeat of a viewing (required when proctored)."""

    position: float
    played: list[tuple[float, float]] = []
    seq: int | None = None


class WatchProgress(msgspec.Struct):
    video_id: uuid.UUID
    position: float
    intervals: list[tuple[float, float]]
    watched_seconds: float
    coverage_percent: float
    completed: bool
    completed_at: dt.datetime | None
    recorded: bool = True  # False for staff: their previews are not progress


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


class WatchReport(msgspec.Struct):
    video_id: uuid.UUID
    duration_seconds: float | None
    completion_percent: float
    student_count: int  # on every page: the whole report's size
    completed_count: int
    students: list[WatchReportRow]  # a page, by name
    limit: int
    next_cursor: str | None


# --- helpers ---------------------------------------------------------------------------


def _rendition(r: dict[str, Any]) -> Rendition:
    return Rendition(r["name"], r["width"], r["height"], r["video_bitrate"])


def _to_video(row: dict[str, Any], job: dict[str, Any] | None) -> Video:
    rungs = row["rungs"]
    if isinstance(rungs, str):
        rungs = json.loads(rungs)
    status = row["status"]
    progress = 100 if status == VideoStatus.ready.value else int(job["progress"]) if job else 0
    stage = job["stage"] if job else ("uploading" if status == "UPLOADING" else status.lower())
    return Video(
        id=row["id"],
        lecture_id=row["lecture"],
        session_id=row["session"],
        title=row["title"],
        proctored=row["proctored"],
        due_date=row["due_date"],
        status=status,
        error=row["error"],
        filename=row["filename"],
        size_bytes=row["size_bytes"],
        job_id=row["job"],
        progress=progress,
        stage=stage,
        duration_seconds=row["duration_seconds"],
        width=row["width"],
        height=row["height"],
        rungs=[_rendition(r) for r in rungs or []],
        created_at=row["created_at"],
        ready_at=row["ready_at"],
    )


async def _job_of(scope: TenantScope, row: dict[str, Any]) -> dict[str, Any] | None:
    if not row["job"]:
        return None
    return await (
        scope.select(JobRow, JobRow.progress, JobRow.stage).where(JobRow.id == row["job"]).first()
    )


async def _enrolled(scope: TenantScope, lecture_id: uuid.UUID, student_id: uuid.UUID) -> bool:
    row = await scope.fetchrow(
        """SELECT 1 FROM enrollment e JOIN student s ON s.id = e.student
           WHERE e.tenant = $1 AND e.lecture = $2 AND e.student = $3
             AND e.status = 'active' AND s.deleted_at IS NULL""",
        lecture_id,
        student_id,
    )
    return row is not None


async def _visible_video(scope: TenantScope, principal: Principal, video_id: str) -> dict[str, Any]:
    """The video, if the caller may watch it: staff always; a student only when enrolled
    (another academy's id, or a malformed one, is the usual 404)."""
    video = await scope.get(VideoRow, video_id)
    if principal.role == Role.student and (
        principal.student_id is None
        or not await _enrolled(scope, video["lecture"], principal.student_id)
    ):
        raise Problem(
            403,
            "you are not enrolled in this video's lecture",
            type_="/problems/not-enrolled",
        )
    return video


def _check_create(data: VideoCreate) -> list[dict[str, str]]:
    s = get_settings()
    errors: list[dict[str, str]] = []
    if not clean_text(data.title):
        errors.append({"field": "title", "message": "must not be empty"})
    if len(data.title) > 200:
        errors.append({"field": "title", "message": "at most 200 characters"})
    if not data.filename.strip() or len(data.filename) > 255:
        errors.append({"field": "filename", "message": "1 to 255 characters"})
    if data.content_type not in ALLOWED_CONTENT_TYPES:
        errors.append(
            {"field": "content_type", "message": f"one of {sorted(ALLOWED_CONTENT_TYPES)}"}
        )
    if data.size_bytes <= 0:
        errors.append({"field": "size_bytes", "message": "must be positive"})
    elif data.size_bytes > s.video_max_upload_bytes:
        errors.append(
            {
                "field": "size_bytes",
                "message": f"at most {s.video_max_upload_bytes} bytes",
            }
        )
    if data.lecture_id is None and data.session_id is None:
        errors.append({"field": "lecture_id", "message": "give lecture_id or session_id"})
    return errors


def _upload_target(bucket: str, key: str, size: int, content_type: str) -> UploadTarget:
    s = get_settings()
    client = storage.client()
    if size <= s.video_multipart_threshold_bytes:
        url = storage.presigned_put(bucket, key, UPLOAD_URL_TTL, content_type=content_type)
        return UploadTarget(
            method="PUT",
            expires_in=UPLOAD_URL_TTL,
            url=url,
            headers={"Content-Type": content_type},
        )
    part_size = max(s.video_multipart_part_bytes, math.ceil(size / MAX_PARTS))
    count = math.ceil(size / part_size)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)[
        "UploadId"
    ]
    parts = [
        UploadPart(
            n,
            client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": n},
                ExpiresIn=UPLOAD_URL_TTL,
            ),
        )
        for n in range(1, count + 1)
    ]
    return UploadTarget(
        method="MULTIPART",
        expires_in=UPLOAD_URL_TTL,
        upload_id=upload_id,
        part_size=part_size,
        parts=parts,
    )


# --- routes ----------------------------------------------------------------------------


class VideoController(Controller):
    path = "/api/v1/videos"
    tags = ["videos"]

    @post("/", guards=[require_staff], status_code=HTTP_201_CREATED, summary="Create a video")
    async def create_video(
        self,
        data: JSONBody[VideoCreate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> VideoCreated:
        errors = _check_create(data)
        if errors:
            raise Problem(422, f"{len(errors)} field error(s)", errors=errors)
        lecture_id = data.lecture_id
        session_id = data.session_id
        if session_id is not None:
            session = await tenant_scope.fetchrow(
                "SELECT lecture FROM lecture_session WHERE tenant = $1 AND id = $2", session_id
            )
            if session is None:
                raise field_error("session_id", "no such session in this academy")
            if lecture_id is not None and lecture_id != session["lecture"]:
                raise field_error("session_id", "the session belongs to another lecture")
            lecture_id = session["lecture"]
        assert lecture_id is not None
        if (
            not await tenant_scope.select(LectureRow, LectureRow.id)
            .where(LectureRow.id == lecture_id)
            .first()
        ):
            raise field_error("lecture_id", "no such lecture in this academy")

        s = get_settings()
        video_id = uuid.uuid4()
        key = raw_key(tenant_scope.tenant_id, video_id, data.filename)
        upload = await asyncio.to_thread(
            _upload_target, s.r2_video_bucket, key, data.size_bytes, data.content_type
        )
        async with transaction():
            row = tenant_scope.new(
                VideoRow,
                id=video_id,
                lecture=lecture_id,
                session=session_id,
                title=clean_text(data.title),
                proctored=data.proctored,
                due_date=data.due_date,
                filename=data.filename.strip(),
                content_type=data.content_type,
                size_bytes=data.size_bytes,
                raw_key=key,
                upload_id=upload.upload_id,
                created_by=principal.user_id,
            )
            await row.save()
            if session_id is not None:
                await tenant_scope.update(SessionRow, {SessionRow.video_id: video_id}).where(
                    SessionRow.id == session_id
                )
        video = await tenant_scope.get(VideoRow, video_id)
        return VideoCreated(video=_to_video(video, None), upload=upload)

    @get("/", guards=[require_staff], summary="Videos of a lecture, newest first")
    async def list_videos(
        self,
        tenant_scope: NamedDependency[TenantScope],
        lecture_id: FromQuery[uuid.UUID | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> Page[Video]:
        check_limit(limit)
        after = decode_cursor_as(cursor, as_datetime, as_uuid)
        query = tenant_scope.select(VideoRow)
        if lecture_id is not None:
            query = query.where(VideoRow.lecture == lecture_id)
        if after is not None:
            at, last_id = after
            query = query.where(
                (VideoRow.created_at < at) | ((VideoRow.created_at == at) & (VideoRow.id < last_id))
            )
        rows = await query.order_by(VideoRow.created_at, VideoRow.id, ascending=False).limit(
            limit + 1
        )
        job_ids = [r["job"] for r in rows[:limit] if r["job"]]
        jobs = (
            {
                j["id"]: j
                for j in await tenant_scope.select(
                    JobRow, JobRow.id, JobRow.progress, JobRow.stage
                ).where(JobRow.id.is_in(job_ids))
            }
            if job_ids
            else {}
        )
        return page_of(
            rows,
            limit,
            lambda r: [r["created_at"].isoformat(), str(r["id"])],
            lambda r: _to_video(r, jobs.get(r["job"])),
        )

    @get("/{video_id:str}", guards=[require_staff], summary="A video, with its pipeline progress")
    async def get_video(
        self, video_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Video:
        row = await tenant_scope.get(VideoRow, video_id)
        return _to_video(row, await _job_of(tenant_scope, row))

    @patch(
        "/{video_id:str}", guards=[require_staff], summary="Rename, set the due date or proctoring"
    )
    async def update_video(
        self,
        video_id: FromPath[str],
        data: JSONBody[VideoUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Video:
        row = await tenant_scope.get(VideoRow, video_id)
        values: dict[Any, Any] = {}
        if data.title is not msgspec.UNSET:
            title = clean_text(data.title)
            if not title:
                raise field_error("title", "must not be empty")
            values[VideoRow.title] = title
        if data.proctored is not msgspec.UNSET:
            values[VideoRow.proctored] = data.proctored
        if data.due_date is not msgspec.UNSET:
            values[VideoRow.due_date] = data.due_date
        if values:
            values[VideoRow.updated_at] = dt.datetime.now(dt.UTC)
            await tenant_scope.update(VideoRow, values).where(VideoRow.id == row["id"])
            row = await tenant_scope.get(VideoRow, video_id)
        return _to_video(row, await _job_of(tenant_scope, row))

    @post(
        "/{video_id:str}/complete",
        guards=[require_staff],
        status_code=HTTP_202_ACCEPTED,
        summary="Confirm the upload and start processing",
    )
    async def complete_upload(
        self,
        request: Request[Any, Any, Any],
        video_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        data: JSONBody[UploadComplete | None] = None,
    ) -> Video:
        s = get_settings()
        video = await tenant_scope.get(VideoRow, video_id)
        if video["status"] != VideoStatus.uploading.value:
            # Already confirmed (a retried request): the same answer, nothing started twice.
            if video["status"] == VideoStatus.failed.value and video["job"] is None:
                raise Problem(409, video["error"] or "the upload was rejected")
            return _to_video(video, await _job_of(tenant_scope, video))
        bucket, key = s.r2_video_bucket, video["raw_key"]
        if video["upload_id"]:
            parts = (data.parts if data else []) or []
            if not parts:
                raise field_error("parts", "a multipart upload needs its parts' ETags")
            await asyncio.to_thread(_complete_multipart, bucket, key, video["upload_id"], parts)
        meta = await asyncio.to_thread(storage.head, bucket, key)
        if meta is None:
            raise Problem(
                409,
                "the file has not been uploaded yet: upload it to the given URL first",
                type_="/problems/upload-missing",
            )
        size = int(meta["ContentLength"])
        if size > s.video_max_upload_bytes or size == 0:
            reason = (
                "the uploaded file is empty"
                if size == 0
                else f"the uploaded file is {size} bytes; the limit is {s.video_max_upload_bytes}"
            )
            await asyncio.to_thread(storage.delete, bucket, key)
            await tenant_scope.update(
                VideoRow, {VideoRow.status: VideoStatus.failed.value, VideoRow.error: reason}
            ).where(VideoRow.id == video["id"])
            raise Problem(413 if size else 422, reason, type_="/problems/upload-rejected")
        async with transaction():
            claimed = await tenant_scope.fetchrow(
                """UPDATE video SET status = 'PROCESSING', size_bytes = $3, updated_at = now()
                   WHERE tenant = $1 AND id = $2 AND status = 'UPLOADING' RETURNING id""",
                video["id"],
                size,
            )
            if claimed is not None:
                job = await submit(
                    video_probe,
                    tenant_id=tenant_scope.tenant_id,
                    kind="video.process",
                    request_id=request.scope.get("state", {}).get("request_id", ""),
                    input_key=key,
                    video_id=str(video["id"]),
                )
                await tenant_scope.update(VideoRow, {VideoRow.job: job.id}).where(
                    VideoRow.id == video["id"]
                )
        row = await tenant_scope.get(VideoRow, video_id)
        return _to_video(row, await _job_of(tenant_scope, row))

    @delete(
        "/{video_id:str}",
        guards=[require_roles(Role.owner, Role.admin, Role.staff, Role.teacher)],
        summary="Delete a video, its renditions and its source",
    )
    async def delete_video(
        self, video_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        s = get_settings()
        video = await tenant_scope.get(VideoRow, video_id)
        if video["upload_id"] and video["status"] == VideoStatus.uploading.value:
            await asyncio.to_thread(_abort_multipart, s.r2_video_bucket, video)
        video["hls_prefix"] = video["hls_prefix"] or hls_prefix(video["tenant"], video["id"])
        await delete_video_objects(video)
        if video["job"] and video["status"] == VideoStatus.processing.value:
            # Its remaining steps find no video and stop; the job must not stay RUNNING.
            await fail_job(str(video["job"]), "the video was deleted while it was processing")
        async with transaction():
            await tenant_scope.update(SessionRow, {SessionRow.video_id: None}).where(
                SessionRow.video_id == video["id"]
            )
            await tenant_scope.delete(VideoRow).where(VideoRow.id == video["id"])

    @get(
        "/{video_id:str}/playback",
        guards=[require_viewer],
        summary="A signed HLS URL (staff, or a student enrolled in the lecture)",
    )
    async def playback(
        self,
        video_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Playback:
        s = get_settings()
        video = await _visible_video(tenant_scope, principal, video_id)
        if video["status"] != VideoStatus.ready.value:
            raise Problem(
                409,
                f"the video is not ready (status {video['status']})",
                type_="/problems/video-not-ready",
            )
        if not s.cdn_hls_base_url:
            raise Problem(503, "playback is not configured: set CDN_HLS_BASE_URL")
        folder = f"{video['tenant']}/{video['id']}"
        sign = {
            "secret": s.cdn_hls_signing_secret,
            "kid": s.cdn_hls_signing_key_id,
            "ttl": DEFAULT_TTL_SECONDS,
        }
        master, exp = sign_url(s.cdn_hls_base_url, "master.m3u8", folder, **sign)  # type: ignore[arg-type]
        poster, _ = sign_url(s.cdn_hls_base_url, "poster.jpg", folder, **sign)  # type: ignore[arg-type]
        vtt, _ = sign_url(s.cdn_hls_base_url, "thumbnails.vtt", folder, **sign)  # type: ignore[arg-type]
        if principal.role == Role.student and principal.student_id is not None:
            # Opening playback starts the real-time clock of the first heartbeat.
            await tenant_scope.fetch(
                """INSERT INTO video_watch (tenant, video, student, last_heartbeat_at)
                   VALUES ($1, $2, $3, now())
                   ON CONFLICT (video, student) DO UPDATE
                   SET last_heartbeat_at = COALESCE(video_watch.last_heartbeat_at, now())""",
                video["id"],
                principal.student_id,
            )
        return Playback(
            master_url=master,
            poster_url=poster,
            thumbnails_url=vtt,
            expires_at=dt.datetime.fromtimestamp(exp, dt.UTC),
            duration_seconds=video["duration_seconds"],
            rungs=[_rendition(r) for r in video["rungs"] or []],
            proctored=video["proctored"],
        )

    @post(
        "/{video_id:str}/progress",
        guards=[require_viewer],
        status_code=HTTP_200_OK,
        summary="A watch heartbeat (every ~10 s while playing)",
    )
    async def progress(
        self,
        video_id: FromPath[str],
        data: JSONBody[Heartbeat],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> WatchProgress:
        s = get_settings()
        video = await _visible_video(tenant_scope, principal, video_id)
        if video["status"] != VideoStatus.ready.value or not video["duration_seconds"]:
            raise Problem(409, "the video is not ready", type_="/problems/video-not-ready")
        _check_heartbeat(data)
        duration = float(video["duration_seconds"])
        student_id = principal.student_id
        if principal.role != Role.student or student_id is None:
            # Staff previewing with the same player: answered, never recorded.
            preview = apply_heartbeat(
                [],
                [(a, b) for a, b in data.played],
                duration=duration,
                completion_ratio=s.video_completion_percent / 100,
                proctored=False,
            )
            return WatchProgress(
                video_id=video["id"],
                position=max(0.0, min(duration, data.position)),
                intervals=preview.intervals,
                watched_seconds=preview.watched_seconds,
                coverage_percent=round(preview.coverage * 100, 2),
                completed=False,
                completed_at=None,
                recorded=False,
            )
        updated: Any = None
        async with transaction():
            await tenant_scope.fetch(
                """INSERT INTO video_watch (tenant, video, student) VALUES ($1, $2, $3)
                   ON CONFLICT (video, student) DO NOTHING""",
                video["id"],
                student_id,
            )
            row = await tenant_scope.fetchrow(
                """SELECT *, EXTRACT(EPOCH FROM now() - last_heartbeat_at) AS elapsed
                   FROM video_watch WHERE tenant = $1 AND video = $2 AND student = $3
                   FOR UPDATE""",
                video["id"],
                student_id,
            )
            assert row is not None
            existing = [(float(a), float(b)) for a, b in row["intervals"]]
            try:
                state = apply_heartbeat(
                    existing,
                    [(a, b) for a, b in data.played],
                    duration=duration,
                    completion_ratio=s.video_completion_percent / 100,
                    proctored=video["proctored"],
                    seq=data.seq,
                    last_seq=row["last_seq"],
                    elapsed_seconds=float(row["elapsed"]) if row["elapsed"] is not None else 0.0,
                )
            except HeartbeatRejected as exc:
                rejected: HeartbeatRejected | None = exc
            else:
                rejected = None
            if rejected is not None:
                await tenant_scope.fetch(
                    """UPDATE video_watch SET rejected_heartbeats = rejected_heartbeats + 1
                       WHERE tenant = $1 AND id = $2""",
                    row["id"],
                )
            else:
                updated = await tenant_scope.fetchrow(
                    """UPDATE video_watch SET intervals = $3::jsonb, watched_seconds = $4,
                           coverage = $5, position = $6, frontier = $7,
                           completed = completed OR $8,
                           completed_at = CASE WHEN $8 AND completed_at IS NULL THEN now()
                                               ELSE completed_at END,
                           last_seq = COALESCE($9, last_seq), last_heartbeat_at = now(),
                           heartbeats = heartbeats + 1, updated_at = now()
                       WHERE tenant = $1 AND id = $2 RETURNING *""",
                    row["id"],
                    json.dumps(state.intervals),
                    state.watched_seconds,
                    state.coverage,
                    max(0.0, min(duration, data.position)),
                    state.frontier,
                    state.completed,
                    data.seq,
                )
                assert updated is not None
        if rejected is not None:
            raise Problem(
                409,
                str(rejected),
                type_=f"/problems/heartbeat-{rejected.kind}",
            )
        return WatchProgress(
            video_id=video["id"],
            position=updated["position"],
            intervals=[(a, b) for a, b in state.intervals],
            watched_seconds=updated["watched_seconds"],
            coverage_percent=round(updated["coverage"] * 100, 2),
            completed=updated["completed"],
            completed_at=updated["completed_at"],
        )

    @get(
        "/{video_id:str}/watch-report",
        guards=[require_staff],
        summary="Every enrolled student's watch progress on this video",
    )
    async def watch_report(
        self,
        video_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> WatchReport:
        s = get_settings()
        limit = check_limit(limit)
        after_name, after_id = decode_cursor_as(cursor, as_text, as_uuid) or (None, None)
        video = await tenant_scope.get(VideoRow, video_id)
        # Active enrollments, plus anyone who watched and has left since.
        audience = """
            FROM student s
            LEFT JOIN video_watch w ON w.student = s.id AND w.video = $2
            WHERE s.tenant = $1 AND s.deleted_at IS NULL AND (
                w.id IS NOT NULL OR EXISTS (
                    SELECT 1 FROM enrollment e WHERE e.student = s.id AND e.lecture = $3
                                                 AND e.status = 'active'))
        """
        rows = await tenant_scope.fetch(
            f"""SELECT s.id, s.name, w.watched_seconds, w.coverage, w.completed,
                       w.completed_at, w.updated_at, w.heartbeats, w.rejected_heartbeats
                {audience}
                  AND ($4::text IS NULL OR (s.name, s.id) > ($4::text, $5::uuid))
                ORDER BY s.name, s.id LIMIT $6""",
            video["id"],
            video["lecture"],
            after_name,
            after_id,
            limit + 1,
        )
        totals = await tenant_scope.fetchrow(
            f"SELECT count(*) AS n, count(*) FILTER (WHERE w.completed) AS done {audience}",
            video["id"],
            video["lecture"],
        )
        page = page_of(rows, limit, lambda r: [r["name"], str(r["id"])], _watch_row)
        return WatchReport(
            video_id=video["id"],
            duration_seconds=video["duration_seconds"],
            completion_percent=s.video_completion_percent,
            student_count=totals["n"] if totals else 0,
            completed_count=totals["done"] if totals else 0,
            students=page.items,
            limit=limit,
            next_cursor=page.next_cursor,
        )


def _watch_row(r: Any) -> WatchReportRow:
    return WatchReportRow(
        student_id=r["id"],
        student_name=r["name"],
        watched_seconds=r["watched_seconds"] or 0.0,
        coverage_percent=round((r["coverage"] or 0.0) * 100, 2),
        completed=bool(r["completed"]),
        completed_at=r["completed_at"],
        last_watched_at=r["updated_at"] if r["heartbeats"] else None,
        heartbeats=r["heartbeats"] or 0,
        rejected_heartbeats=r["rejected_heartbeats"] or 0,
    )


def _check_heartbeat(data: Heartbeat) -> None:
    errors: list[dict[str, str]] = []
    if not math.isfinite(data.position) or data.position < 0:
        errors.append({"field": "position", "message": "a non-negative number of seconds"})
    if len(data.played) > MAX_PLAYED_INTERVALS:
        errors.append({"field": "played", "message": f"at most {MAX_PLAYED_INTERVALS} intervals"})
    for i, (start, end) in enumerate(data.played):
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            errors.append({"field": f"played[{i}]", "message": "needs 0 <= start <= end"})
    if data.seq is not None and data.seq < 0:
        errors.append({"field": "seq", "message": "must not be negative"})
    if errors:
        raise Problem(422, f"{len(errors)} field error(s)", errors=errors)


def _complete_multipart(bucket: str, key: str, upload_id: str, parts: list[CompletedPart]) -> None:
    from botocore.exceptions import ClientError

    try:
        storage.client().complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": p.part_number, "ETag": p.etag}
                    for p in sorted(parts, key=lambda p: p.part_number)
                ]
            },
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchUpload" and storage.head(bucket, key) is not None:
            return  # completed by an earlier call
        raise Problem(
            409,
            f"the multipart upload cannot be completed: {code or exc}",
            type_="/problems/upload-incomplete",
        ) from None


def _abort_multipart(bucket: str, video: dict[str, Any]) -> None:
    from botocore.exceptions import ClientError

    with contextlib.suppress(ClientError):  # already completed or aborted
        storage.client().abort_multipart_upload(
            Bucket=bucket, Key=video["raw_key"], UploadId=video["upload_id"]
        )


CONTROLLERS: list[type[Controller]] = [VideoController]
