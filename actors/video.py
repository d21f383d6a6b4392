"""The video pipeline: small retryable steps on the ``video`` tier.

``probe -> transcode -> package -> thumbnails -> upload -> finalise``, one Job for the
whole chain (its ``progress`` and ``stage`` move through the steps). Each actor:

1. claims its step on the video row (``step_trying``/``step_attempts``). A step that the
   row says is already done only re-sends the next step (its first run may have died
   between its commit and that send) and does nothing else;
2. makes the work directory hold everything the step needs. On the worker that ran the
   earlier steps that is already there; on another worker, or after the directory was lost,
   the earlier ``ensure_*`` functions rebuild it (each is a no-op when its output exists);
3. runs its pipeline function in a thread (progress is written to the Job as it goes);
4. records the step done and, after that commit, sends the next step.

Two copies of one message on one worker (SQS delivers at least once) serialise on a file
lock in the work directory; the second finds the step done. A rejected source (no video,
corrupt, truncated) or an invalid packaging result ends the video FAILED at once with its
reason; any other error is retried, and the last failed attempt ends it FAILED too. The
work directory is removed when the video is READY or FAILED, and by the cleanup of stale
work directories on the next probe.

Transcodes of long lectures outlive the tier's visibility timeout; the SQS consumer's
heartbeat (``actors.sqs``) keeps extending it while the worker lives. A killed worker's
message comes back and the step starts over from its last complete output.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from actors.jobs import JobActor, fail_job, finish_job, job, set_progress, start_job, utcnow
from models.db import on_commit, transaction
from models.tables import Video, VideoStatus
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.video.ladder import Rung
from pipelines.video.package import PackagingError, ensure_packaged
from pipelines.video.probe import ProbeResult, VideoRejected, probe
from pipelines.video.thumbnails import ensure_thumbnails
from pipelines.video.transcode import ensure_transcoded
from pipelines.video.upload import RetryPolicy, ensure_uploaded, with_retries
from pipelines.video.workdir import Workdir, root

log = logging.getLogger("actors.video")

STEPS = ("probe", "transcode", "package", "thumbnails", "upload", "finalise")
# Progress (0-100) at the start of each step; transcode is the long one.
PROGRESS_AT = {
    "probe": 0,
    "transcode": 5,
    "package": 75,
    "thumbnails": 80,
    "upload": 85,
    "finalise": 98,
}
MAX_RETRIES = 5
# A work directory untouched this long belongs to a video some other worker finished.
STALE_WORKDIR_SECONDS = 24 * 3600
TRANSCODE_TIME_LIMIT_MS = 12 * 3600 * 1000


class _Final(Exception):
    """A failure no retry can fix; carries the reason shown to the uploader."""


# --- keys and places -------------------------------------------------------------------


def raw_key(tenant_id: Any, video_id: Any, filename: str = "") -> str:
    """The source's key: the tenant's raw prefix in ``R2_VIDEO_BUCKET``."""
    suffix = Path(filename).suffix.lower()[:8] if filename else ""
    return storage.object_key("raw", str(tenant_id), str(video_id), f"source{suffix}")


def hls_prefix(tenant_id: Any, video_id: Any) -> str:
    return storage.object_key("hls", str(tenant_id), str(video_id))


def workdir_for(video_id: Any) -> Workdir:
    return Workdir(root(get_settings().video_worker_temp_dir), str(video_id))


def retry_policy() -> RetryPolicy:
    s = get_settings()
    return RetryPolicy(s.retry_max_attempts, s.backoff_base_seconds, s.backoff_cap_seconds)


@contextlib.contextmanager
def _step_lock(workdir: Workdir) -> Iterator[None]:
    workdir.ensure()
    with (workdir.path / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prune_stale_workdirs(max_age: float = STALE_WORKDIR_SECONDS) -> int:
    """Remove work directories nobody touched for ``max_age`` seconds (left by a video that
    another worker finished). Returns how many."""
    base = root(get_settings().video_worker_temp_dir)
    cutoff = time.time() - max_age
    removed = 0
    for child in base.iterdir():
        try:
            if child.is_dir() and child.stat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


# --- the local state a step needs ------------------------------------------------------


def _download_source(video: dict[str, Any], workdir: Workdir) -> None:
    s = get_settings()
    expected = int(video["size_bytes"])
    if workdir.source.is_file() and workdir.source.stat().st_size == expected:
        return
    workdir.ensure()
    partial = workdir.source.with_suffix(".partial")
    with_retries(
        lambda: storage.client().download_file(s.r2_video_bucket, video["raw_key"], str(partial)),
        retry_policy(),
    )
    partial.replace(workdir.source)


def _rungs(video: dict[str, Any]) -> list[Rung]:
    return [Rung.from_dict(r) for r in video["rungs"]]


def _prepare(
    video: dict[str, Any], workdir: Workdir, upto: str, progress: Callable[[float], None] | None
) -> dict[str, Any]:
    """Make the work directory hold every output before step ``upto``, then run it."""
    s = get_settings()
    info = ProbeResult.from_dict(video["probe"])
    rungs = _rungs(video)
    out: dict[str, Any] = {}
    if workdir.done("transcode") is None or not workdir.hls.is_dir():
        _download_source(video, workdir)
    out["transcode"] = ensure_transcoded(
        workdir,
        info,
        rungs,
        segment_seconds=s.hls_time_seconds,
        poster_at=s.thumbnail_at_seconds,
        progress=progress if upto == "transcode" else None,
    )
    if upto == "transcode":
        return out
    out["package"] = ensure_packaged(
        workdir,
        rungs,
        duration=info.duration,
        fps=Fraction(info.fps_num, info.fps_den),
        segment_seconds=s.hls_time_seconds,
        min_segments=s.min_segments_per_variant,
        has_audio=info.has_audio,
    )
    if upto == "package":
        return out
    t = out["transcode"]
    out["thumbnails"] = ensure_thumbnails(
        workdir,
        tile_times=t["tile_times"],
        tile_interval=t["tile_interval"],
        duration=info.duration,
    )
    return out


# --- step bookkeeping ------------------------------------------------------------------


async def _claim(video_id: str, step: str) -> tuple[dict[str, Any] | None, bool]:
    """(video row, already done). Counts this attempt of ``step``."""
    rows = await Video.raw(
        """
        UPDATE video SET
            step_attempts = CASE WHEN step_trying = {} THEN step_attempts + 1 ELSE 1 END,
            step_trying = {}, updated_at = now()
        WHERE id = {} AND status = 'PROCESSING'
        RETURNING *
        """,
        step,
        step,
        video_id,
    )
    if not rows:
        return None, False
    row = dict(rows[0])
    for column in ("probe", "rungs"):  # raw queries return JSON as text
        if isinstance(row[column], str):
            row[column] = json.loads(row[column])
    done = row["step_done"]
    already = bool(done) and STEPS.index(done) >= STEPS.index(step)
    return row, already


async def _complete(
    job_id: str,
    video_id: str,
    step: str,
    values: dict[Any, Any] | None = None,
    request_id: str = "",
) -> None:
    """Record ``step`` done and, after the commit, send the next step."""
    async with transaction():
        await Video.update(
            {Video.step_done: step, Video.updated_at: utcnow(), **(values or {})}
        ).where((Video.id == video_id) & (Video.status == VideoStatus.processing.value))
        await _send_next(job_id, video_id, step, request_id)


async def _send_next(job_id: str, video_id: str, step: str, request_id: str) -> None:
    index = STEPS.index(step)
    if index + 1 >= len(STEPS):
        return
    nxt = ACTORS[STEPS[index + 1]]

    async def send() -> None:
        await nxt.send_async(job_id=job_id, video_id=video_id, request_id=request_id)

    await on_commit(send)


async def fail_video(job_id: str | None, video_id: str, reason: str) -> None:
    """End the video FAILED with ``reason``; its work directory goes."""
    await Video.update(
        {
            Video.status: VideoStatus.failed.value,
            Video.error: reason[:2000],
            Video.updated_at: utcnow(),
        }
    ).where((Video.id == video_id) & (Video.status != VideoStatus.ready.value))
    if job_id:
        await fail_job(job_id, reason)
    await asyncio.to_thread(workdir_for(video_id).remove)
    log_event(log, "VIDEO_FAILED", video_id=video_id, job_id=job_id, reason=reason)


def _progress_callback(job_id: str, step: str) -> Callable[[float], None]:
    """A thread-safe callback writing ``step``'s share of progress to the Job."""
    loop = asyncio.get_running_loop()
    start = PROGRESS_AT[step]
    index = STEPS.index(step)
    end = PROGRESS_AT[STEPS[index + 1]] if index + 1 < len(STEPS) else 100

    def report(fraction: float) -> None:
        pct = int(start + (end - start) * max(0.0, min(1.0, fraction)))
        future = asyncio.run_coroutine_threadsafe(set_progress(job_id, pct, step), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)

    return report


async def _run_step(
    step: str,
    job_id: str,
    video_id: str,
    request_id: str,
    work: Callable[[dict[str, Any], Workdir, Callable[[float], None]], dict[Any, Any] | None],
) -> None:
    """Claim, run ``work`` under the per-video lock in a thread, record, send the next."""
    if await start_job(job_id, step) is None:
        return  # the job already ended (DONE or FAILED): a late copy does nothing
    video, already = await _claim(video_id, step)
    if video is None:
        return  # deleted, failed or ready: nothing to do
    if already:
        log_event(log, "VIDEO_STEP_ALREADY_DONE", video_id=video_id, step=step)
        async with transaction():
            await _send_next(job_id, video_id, step, request_id)
        return
    await set_progress(job_id, PROGRESS_AT[step], step)
    workdir = workdir_for(video_id)
    report = _progress_callback(job_id, step)

    def locked() -> dict[Any, Any] | None:
        with _step_lock(workdir):
            return work(video, workdir, report)

    started = time.monotonic()
    try:
        values = await asyncio.to_thread(locked)
    except (VideoRejected, PackagingError, _Final) as exc:
        await fail_video(job_id, video_id, str(exc))
        return
    except Exception as exc:
        if video["step_attempts"] > MAX_RETRIES:
            await fail_video(job_id, video_id, f"{step} failed: {type(exc).__name__}: {exc}")
        raise
    log_event(
        log,
        "VIDEO_STEP_DONE",
        video_id=video_id,
        step=step,
        seconds=round(time.monotonic() - started, 3),
    )
    await _complete(job_id, video_id, step, values, request_id)


# --- the actors ------------------------------------------------------------------------


@job("video.probe", tier="video", max_retries=MAX_RETRIES)
async def video_probe(job_id: str, video_id: str, request_id: str = "") -> None:
    """Download the source and read its facts; plan the ladder. Rejects non-videos."""
    from pipelines.video.ladder import plan_ladder

    await asyncio.to_thread(prune_stale_workdirs)

    def work(video: dict[str, Any], workdir: Workdir, _: Callable[[float], None]) -> dict[Any, Any]:
        _download_source(video, workdir)
        info = probe(workdir.source)
        width, height = info.display_size
        rungs = plan_ladder(width, height)
        return {
            Video.probe: info.as_dict(),
            Video.duration_seconds: info.duration,
            Video.width: width,
            Video.height: height,
            Video.rungs: [r.as_dict() for r in rungs],
        }

    await _run_step("probe", job_id, video_id, request_id, work)


@job(
    "video.transcode",
    tier="video",
    max_retries=MAX_RETRIES,
    time_limit_ms=TRANSCODE_TIME_LIMIT_MS,
)
async def video_transcode(job_id: str, video_id: str, request_id: str = "") -> None:
    """Decode once, encode every rung into HLS segments (the long step)."""

    def work(video: dict[str, Any], workdir: Workdir, report: Callable[[float], None]) -> None:
        _prepare(video, workdir, "transcode", report)

    await _run_step("transcode", job_id, video_id, request_id, work)


@job("video.package", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS)
async def video_package(job_id: str, video_id: str, request_id: str = "") -> None:
    """Check every rung's playlist and segments; write the master playlist."""

    def work(video: dict[str, Any], workdir: Workdir, _: Callable[[float], None]) -> None:
        _prepare(video, workdir, "package", None)

    await _run_step("package", job_id, video_id, request_id, work)


@job(
    "video.thumbnails", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS
)
async def video_thumbnails(job_id: str, video_id: str, request_id: str = "") -> None:
    """Poster, sprite sheets and the WebVTT thumbnail track."""

    def work(video: dict[str, Any], workdir: Workdir, _: Callable[[float], None]) -> None:
        _prepare(video, workdir, "thumbnails", None)

    await _run_step("thumbnails", job_id, video_id, request_id, work)


@job("video.upload", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS)
async def video_upload(job_id: str, video_id: str, request_id: str = "") -> None:
    """Upload the HLS output (skipping files already there with the same size)."""

    def work(
        video: dict[str, Any], workdir: Workdir, report: Callable[[float], None]
    ) -> dict[Any, Any]:
        s = get_settings()
        _prepare(video, workdir, "thumbnails", None)
        prefix = hls_prefix(video["tenant"], video["id"])
        counts = ensure_uploaded(
            storage.client(),
            s.r2_video_bucket,
            prefix,
            workdir.hls,
            concurrency=s.upload_max_concurrency,
            policy=retry_policy(),
            progress=lambda done, total: report(done / max(1, total)),
        )
        log_event(log, "VIDEO_UPLOADED", video_id=str(video["id"]), **counts)
        return {Video.hls_prefix: prefix, Video.poster_key: f"{prefix}/poster.jpg"}

    await _run_step("upload", job_id, video_id, request_id, work)


@job("video.finalise", tier="video", max_retries=MAX_RETRIES)
async def video_finalise(job_id: str, video_id: str, request_id: str = "") -> None:
    """READY: the video is playable. The work directory is removed."""
    if await start_job(job_id, "finalise") is None:
        return
    video, _ = await _claim(video_id, "finalise")
    if video is None:
        return
    now = utcnow()
    async with transaction():
        await Video.update(
            {
                Video.status: VideoStatus.ready.value,
                Video.step_done: "finalise",
                Video.error: None,
                Video.ready_at: now,
                Video.updated_at: now,
            }
        ).where((Video.id == video_id) & (Video.status == VideoStatus.processing.value))
        await finish_job(
            job_id,
            {
                "video_id": video_id,
                "duration_seconds": video["duration_seconds"],
                "rungs": [r["name"] for r in video["rungs"]],
                "poster_key": video["poster_key"],
            },
        )
    await asyncio.to_thread(workdir_for(video_id).remove)
    log_event(log, "VIDEO_READY", video_id=video_id, job_id=job_id)


ACTORS: dict[str, JobActor] = {
    "probe": video_probe,
    "transcode": video_transcode,
    "package": video_package,
    "thumbnails": video_thumbnails,
    "upload": video_upload,
    "finalise": video_finalise,
}


# --- lifecycle -------------------------------------------------------------------------


async def delete_video_objects(video: dict[str, Any]) -> int:
    """Delete a video's HLS prefix and its source. Returns how many objects went."""
    s = get_settings()
    prefix = video.get("hls_prefix") or hls_prefix(video["tenant"], video["id"])
    deleted = await asyncio.to_thread(
        storage.delete_under, s.r2_video_bucket, prefix.rstrip("/") + "/"
    )
    if video.get("raw_deleted_at") is None:
        await asyncio.to_thread(storage.delete, s.r2_video_bucket, video["raw_key"])
        deleted += 1
    return deleted


async def cleanup_raw_uploads(
    *, older_than_days: int | None = None, dry_run: bool = False, limit: int = 1000
) -> dict[str, int]:
    """Delete the sources of videos READY for more than ``VIDEO_RAW_RETENTION_DAYS`` days
    (the HLS renditions stay). Returns counts; safe to repeat."""
    import datetime as dt

    s = get_settings()
    days = s.video_raw_retention_days if older_than_days is None else older_than_days
    cutoff = utcnow() - dt.timedelta(days=days)
    rows = (
        await Video.select(Video.id, Video.raw_key)
        .where(
            (Video.status == VideoStatus.ready.value)
            & Video.raw_deleted_at.is_null()
            & (Video.ready_at <= cutoff)
        )
        .limit(limit)
    )
    deleted = 0
    for row in rows:
        if not dry_run:
            await asyncio.to_thread(storage.delete, s.r2_video_bucket, row["raw_key"])
            await Video.update({Video.raw_deleted_at: utcnow()}).where(Video.id == row["id"])
        deleted += 1
    return {"video_raw_deleted": deleted, "dry_run": int(dry_run)}


def cleanup_raw_uploads_command(*, dry_run: bool = False) -> str:
    """``just storage-cleanup``'s video part: run ``cleanup_raw_uploads`` in its own loop
    and say what it did."""
    from models.db import configure_db

    configure_db()
    counts = asyncio.run(cleanup_raw_uploads(dry_run=dry_run))
    days = get_settings().video_raw_retention_days
    verb = "would delete" if dry_run else "deleted"
    return f"{verb} {counts['video_raw_deleted']} video source(s) of videos READY over {days} days"
