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
  ``pipelines.video.watch``; staff previews are answered but not recorded);
  ``GET /api/v1/videos/{id}/watch-report``: every enrolled student's progress, for staff.
* ``DELETE /api/v1/videos/{id}`` removes the row, its HLS prefix and its source.

Roles: staff create, read and report (a teacher: on the lectures they teach); the office
and teachers delete. Students play and report progress; parents have no access here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import uuid
from typing import Annotated, Any, Literal

import msgspec
from botocore.exceptions import ClientError
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from actors.jobs import submit
from actors.video import video_probe
from api import rules, watch
from api.auth import STAFF_ROLES, Principal, require_own_lecture, require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from api.watch import Heartbeat, WatchProgress, not_enrolled
from models import enrollments, video_watch, videos
from models.db import transaction
from models.errors import fail_fields
from models.jobs import fail_job
from models.limits import TITLE_MAX, Day, Name, RequiredTitle
from models.pages import Page
from models.scope import TenantScope
from models.tables import Role, VideoStatus
from models.video_watch import Viewable, WatchReport
from models.videos import Rendition, StoredVideo, Video
from ops import storage
from ops.settings import get_settings
from pipelines.korean import clean_text
from pipelines.video.signing import DEFAULT_TTL_SECONDS, sign_url

require_viewer = require_roles(*STAFF_ROLES, Role.student)

ContentType = Literal[
    "video/mp4",
    "video/quicktime",
    "video/x-matroska",
    "video/webm",
    "video/x-msvideo",
    "video/mpeg",
    "video/mp2t",
    "application/octet-stream",
]
MAX_PARTS = 10_000  # S3's limit on parts of one multipart upload
UPLOAD_URL_TTL = 6 * 3600  # a lecture upload over a slow line takes hours

# Litestar keys a generic's schema component by its item class's module: the page keeps
# the key it had while ``Video`` was declared here, so generated clients keep their names.
VideoPage = Annotated[Page[Video], page_schema(Video)]


# --- schemas ---------------------------------------------------------------------------


class VideoCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Give ``lecture_id``, or ``session_id`` (its lecture is implied), or both."""

    title: RequiredTitle
    filename: RequiredTitle
    size_bytes: Annotated[int, msgspec.Meta(ge=1)]
    content_type: ContentType = "video/mp4"
    lecture_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    proctored: bool = False  # PROCTORED_CLASS: no credit for seeking ahead
    due_date: Day | None = None  # after it, guardians of students who have not watched are reminded


class VideoUpdate(msgspec.Struct, forbid_unknown_fields=True):
    title: RequiredTitle | msgspec.UnsetType = msgspec.UNSET
    proctored: bool | msgspec.UnsetType = msgspec.UNSET
    due_date: Day | msgspec.UnsetType | None = msgspec.UNSET


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


class VideoCreated(msgspec.Struct):
    video: Video
    upload: UploadTarget


class CompletedPart(msgspec.Struct, forbid_unknown_fields=True):
    part_number: int
    etag: Name


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


# --- helpers ---------------------------------------------------------------------------


def _check_create(data: VideoCreate) -> list[dict[str, str]]:
    s = get_settings()
    errors: list[dict[str, str]] = []
    # Blank names, other content types and empty files are the schema's (``VideoCreate``).
    if data.size_bytes > s.video_max_upload_bytes:
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


def _complete_multipart(bucket: str, key: str, upload_id: str, parts: list[CompletedPart]) -> None:
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


def _abort_multipart(bucket: str, video: StoredVideo) -> None:
    with contextlib.suppress(ClientError):  # already completed or aborted
        storage.client().abort_multipart_upload(
            Bucket=bucket, Key=video.raw_key, UploadId=video.upload_id
        )


def _received_size(video: StoredVideo, parts: list[CompletedPart]) -> int:
    """The uploaded source's size (its multipart upload completed first). Blocking."""
    bucket = get_settings().r2_video_bucket
    if video.upload_id:
        if not parts:
            raise field_error("parts", "a multipart upload needs its parts' ETags")
        _complete_multipart(bucket, video.raw_key, video.upload_id, parts)
    meta = storage.head(bucket, video.raw_key)
    if meta is None:
        raise Problem(
            409,
            "the file has not been uploaded yet: upload it to the given URL first",
            type_="/problems/upload-missing",
        )
    return int(meta["ContentLength"])


async def _visible_video(scope: TenantScope, principal: Principal, video_id: str) -> Viewable:
    """The video, if the caller may watch it: staff always; a student only when enrolled
    (another academy's id, or a malformed one, is the usual 404)."""
    video = await video_watch.viewable_video(scope, video_id)
    if principal.role == Role.student and (
        principal.student_id is None
        or not await enrollments.is_enrolled(scope, principal.student_id, video.lecture)
    ):
        raise not_enrolled()
    return video


# --- routes ----------------------------------------------------------------------------


class VideoController(Controller):
    path = "/api/v1/videos"
    tags = ["videos"]
    guards = [require_own_lecture]

    @post("/", opt=rules.VIDEO_CREATE, guards=[require_staff], status_code=HTTP_201_CREATED,
          summary="Create a video")  # fmt: skip
    async def create_video(
        self,
        data: JSONBody[VideoCreate],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> VideoCreated:
        fail_fields(_check_create(data))
        lecture_id = await videos.resolve_lecture(tenant_scope, data.lecture_id, data.session_id)
        s = get_settings()
        video_id = uuid.uuid4()
        key = storage.raw_key(tenant_scope.tenant_id, video_id, data.filename)
        upload = await asyncio.to_thread(
            _upload_target, s.r2_video_bucket, key, data.size_bytes, data.content_type
        )
        video = await videos.create_video(
            tenant_scope,
            video_id=video_id,
            lecture_id=lecture_id,
            session_id=data.session_id,
            title=clean_text(data.title, TITLE_MAX),
            proctored=data.proctored,
            due_date=data.due_date,
            filename=data.filename.strip(),
            content_type=data.content_type,
            size_bytes=data.size_bytes,
            raw_key=key,
            upload_id=upload.upload_id,
            created_by=principal.user_id,
        )
        return VideoCreated(video=video, upload=upload)

    @get("/", guards=[require_staff], summary="Videos of a lecture, newest first")
    async def list_videos(
        self,
        tenant_scope: NamedDependency[TenantScope],
        lecture_id: FromQuery[uuid.UUID | None] = None,
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> VideoPage:
        return await videos.list_videos(
            tenant_scope, lecture_id=lecture_id, cursor=cursor, limit=check_limit(limit)
        )

    @get("/{video_id:str}", guards=[require_staff], summary="A video, with its pipeline progress")
    async def get_video(
        self, video_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Video:
        return await videos.get_video(tenant_scope, video_id)

    @patch(
        "/{video_id:str}", guards=[require_staff], summary="Rename, set the due date or proctoring"
    )
    async def update_video(
        self,
        video_id: FromPath[str],
        data: JSONBody[VideoUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Video:
        video = await videos.get_video(tenant_scope, video_id)
        changes: dict[str, Any] = {}
        if data.title is not msgspec.UNSET:
            title = clean_text(data.title, TITLE_MAX)
            if not title:
                raise field_error("title", "must not be empty")
            changes["title"] = title
        if data.proctored is not msgspec.UNSET:
            changes["proctored"] = data.proctored
        if data.due_date is not msgspec.UNSET:
            changes["due_date"] = data.due_date
        if not changes:
            return video
        return await videos.update_video(tenant_scope, video.id, changes)

    @post("/{video_id:str}/complete", opt=rules.UPLOAD_COMPLETE, guards=[require_staff],
          status_code=HTTP_202_ACCEPTED, summary="Confirm the upload and start processing")  # fmt: skip
    async def complete_upload(
        self,
        video_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        data: JSONBody[UploadComplete | None] = None,
    ) -> Video:
        s = get_settings()
        video = await videos.stored_video(tenant_scope, video_id)
        if video.status != VideoStatus.uploading.value:
            # Already confirmed (a retried request): the same answer, nothing started twice.
            if video.status == VideoStatus.failed.value and video.job is None:
                raise Problem(409, video.error or "the upload was rejected")
            return await videos.get_video(tenant_scope, video.id)
        size = await asyncio.to_thread(_received_size, video, (data.parts if data else []) or [])
        if size > s.video_max_upload_bytes or size == 0:
            reason = f"the uploaded file is {size} bytes; the limit is {s.video_max_upload_bytes}"
            reason = reason if size else "the uploaded file is empty"
            await asyncio.to_thread(storage.delete, s.r2_video_bucket, video.raw_key)
            code = "too_large" if size else "empty_file"
            await videos.reject_upload(tenant_scope, video.id, reason, code)
            raise Problem(413 if size else 422, reason, type_="/problems/upload-rejected")
        async with transaction():
            if await videos.start_processing(tenant_scope, video.id, size):
                job = await submit(
                    video_probe,
                    tenant_id=tenant_scope.tenant_id,
                    kind="video.process",
                    input_key=video.raw_key,
                    video_id=str(video.id),
                )
                await videos.attach_job(tenant_scope, video.id, job.id)
        return await videos.get_video(tenant_scope, video_id)

    @delete(
        "/{video_id:str}",
        guards=[require_roles(Role.owner, Role.admin, Role.staff, Role.teacher)],
        summary="Delete a video, its renditions and its source",
    )
    async def delete_video(
        self, video_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        s = get_settings()
        video = await videos.stored_video(tenant_scope, video_id)
        # The row first: an upload step still running then removes what it uploaded.
        await videos.delete_video(tenant_scope, video.id)
        if video.job and video.status == VideoStatus.processing.value:
            # Its remaining steps find no video and stop; the job must not stay RUNNING.
            reason = "the video was deleted while it was processing"
            await fail_job(str(video.job), reason, "deleted")
        if video.upload_id and video.status == VideoStatus.uploading.value:
            await asyncio.to_thread(_abort_multipart, s.r2_video_bucket, video)
        await asyncio.to_thread(
            storage.delete_video_objects,
            video.tenant,
            video.id,
            hls=video.hls_prefix,
            raw=video.raw_key if video.raw_deleted_at is None else None,
        )

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
        if video.status != VideoStatus.ready.value:
            raise Problem(
                409,
                f"the video is not ready (status {video.status})",
                type_="/problems/video-not-ready",
            )
        if not s.cdn_hls_base_url:
            raise Problem(503, "playback is not configured: set CDN_HLS_BASE_URL")
        folder = f"{video.tenant}/{video.id}"
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
            await video_watch.open_watch(tenant_scope, video.id, principal.student_id)
        return Playback(
            master_url=master,
            poster_url=poster,
            thumbnails_url=vtt,
            expires_at=dt.datetime.fromtimestamp(exp, dt.UTC),
            duration_seconds=video.duration_seconds,
            rungs=video.rungs,
            proctored=video.proctored,
        )

    @post("/{video_id:str}/progress", opt=rules.HEARTBEAT, guards=[require_viewer],
          status_code=HTTP_200_OK, summary="A watch heartbeat (every ~10 s while playing)")  # fmt: skip
    async def progress(
        self,
        video_id: FromPath[str],
        data: JSONBody[Heartbeat],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> WatchProgress:
        return await watch.heartbeat(tenant_scope, principal, video_id, data)

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
        await watch.flush()  # this process's heartbeats written behind, in the report now
        return await video_watch.watch_report(
            tenant_scope, video_id, cursor=cursor, limit=check_limit(limit)
        )


CONTROLLERS: list[type[Controller]] = [VideoController]
