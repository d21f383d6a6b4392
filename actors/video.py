"""The video pipeline: small retryable steps on the ``video`` tier.

``probe -> transcode -> package -> thumbnails -> upload -> finalise``, one Job for the
whole chain (its ``progress`` and ``stage`` move through the steps), run on
``actors.jobs``' step chain with the video row's ``step_done`` as its record. Each actor:

1. claims its step on the video row (``step_trying``/``step_attempts``). A step that the
   row says is already done only re-sends the next step (its first run may have died
   between its commit and that send) and does nothing else;
2. makes the work directory hold everything the step needs. On the worker that ran the
   earlier steps that is already there; on another worker, or after the directory was lost,
   the earlier ``ensure_*`` functions rebuild it (``pipelines.video.outputs``);
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
import logging
import time
from collections.abc import Awaitable, Callable

from actors.jobs import (
    Chain,
    Claim,
    JobActor,
    StepFailed,
    fail_job,
    finish_job,
    job,
    run_step,
    set_progress,
)
from models import videos
from models.db import on_commit
from models.jobs import JobRecord
from models.videos import StepOutput, VideoWork
from ops import storage
from ops.logging import log_event
from ops.settings import get_settings
from pipelines.video.ladder import Rung, plan_ladder
from pipelines.video.outputs import ensure_outputs
from pipelines.video.package import PackagingError
from pipelines.video.probe import ProbeResult, VideoRejected, probe
from pipelines.video.upload import RetryPolicy, ensure_uploaded, with_retries
from pipelines.video.workdir import Workdir, prune_stale_workdirs, workdir_for

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
# The code of a failure that is not the source's: the renditions did not check out, or a
# step kept failing until its retries ran out.
PROCESSING_FAILED = "processing_failed"
TRANSCODE_TIME_LIMIT_MS = 12 * 3600 * 1000

CHAIN = Chain(STEPS)

Report = Callable[[float], None]
# A step's work, run in a thread under the video's file lock: what the row keeps of it.
Work = Callable[[VideoWork, Workdir, Report], StepOutput | None]
Record = Callable[[], Awaitable[None]]


def retry_policy() -> RetryPolicy:
    s = get_settings()
    return RetryPolicy(s.retry_max_attempts, s.backoff_base_seconds, s.backoff_cap_seconds)


# --- the local state a step needs ------------------------------------------------------


def _download_source(video: VideoWork, workdir: Workdir) -> None:
    s = get_settings()
    if workdir.source.is_file() and workdir.source.stat().st_size == video.size_bytes:
        return
    workdir.ensure()
    partial = workdir.source.with_suffix(".partial")
    with_retries(
        lambda: storage.client().download_file(s.r2_video_bucket, video.raw_key, str(partial)),
        retry_policy(),
    )
    partial.replace(workdir.source)


def _prepare(video: VideoWork, workdir: Workdir, upto: str, progress: Report | None) -> None:
    """Make the work directory hold every output before step ``upto``, then run it."""
    assert video.probe is not None  # recorded by the probe step
    ensure_outputs(
        workdir,
        ProbeResult.from_dict(video.probe),
        [Rung.from_dict(r) for r in video.rungs],
        upto,
        fetch_source=lambda: _download_source(video, workdir),
        progress=progress,
    )


# --- step bookkeeping ------------------------------------------------------------------


async def fail_video(job_id: str | None, video_id: str, reason: str, code: str) -> None:
    """End the video (and its job) FAILED with ``reason`` and ``code``; its work directory
    goes."""
    await videos.fail_video(video_id, reason, code)
    if job_id:
        await fail_job(job_id, reason, code)
    await asyncio.to_thread(workdir_for(video_id).remove)
    log_event(log, "VIDEO_FAILED", video_id=video_id, job_id=job_id, reason=reason, code=code)


def _progress_callback(job_id: str, step: str) -> Report:
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


async def _chain_step(
    step: str,
    job_id: str,
    video_id: str,
    body: Callable[[VideoWork], Awaitable[Record]],
) -> None:
    """``step`` of the chain on this video: claimed on its row, ``body`` run, recorded."""

    async def claim(_: JobRecord) -> Claim | None:
        video = await videos.claim_step(video_id, step)
        return None if video is None else Claim(video, video.step_done)

    async def on_failure(_: VideoWork, failure: StepFailed) -> None:
        await fail_video(job_id, video_id, str(failure), failure.code or PROCESSING_FAILED)

    await run_step(
        CHAIN,
        step,
        job_id=job_id,
        stage=step,
        claim=claim,
        body=body,
        on_failure=on_failure,
        next_kwargs={"job_id": job_id, "video_id": video_id},
    )


async def _run_step(
    step: str,
    job_id: str,
    video_id: str,
    work: Work,
    record: Callable[[str, str, StepOutput | None], Awaitable[object]] = videos.record_step,
) -> None:
    """A step whose ``work`` runs in a thread under the per-video lock; ``record`` keeps
    its output on the video row."""

    async def body(video: VideoWork) -> Record:
        await set_progress(job_id, PROGRESS_AT[step], step)
        workdir = workdir_for(video_id)
        report = _progress_callback(job_id, step)

        def locked() -> StepOutput | None:
            with workdir.locked():
                return work(video, workdir, report)

        started = time.monotonic()
        try:
            output = await asyncio.to_thread(locked)
        except VideoRejected as exc:
            raise StepFailed(str(exc), exc.code) from exc
        except PackagingError as exc:
            raise StepFailed(str(exc), PROCESSING_FAILED) from exc
        except Exception as exc:
            if video.step_attempts > MAX_RETRIES:
                reason = f"{step} failed: {type(exc).__name__}: {exc}"
                await fail_video(job_id, video_id, reason, PROCESSING_FAILED)
            raise
        log_event(
            log,
            "VIDEO_STEP_DONE",
            video_id=video_id,
            step=step,
            seconds=round(time.monotonic() - started, 3),
        )

        async def recorded() -> None:
            await record(video_id, step, output)

        return recorded

    await _chain_step(step, job_id, video_id, body)


# --- the actors ------------------------------------------------------------------------


@job("video.probe", tier="video", max_retries=MAX_RETRIES)
async def video_probe(job_id: str, video_id: str) -> None:
    """Download the source and read its facts; plan the ladder. Rejects non-videos."""
    await asyncio.to_thread(prune_stale_workdirs)

    def work(video: VideoWork, workdir: Workdir, _: Report) -> StepOutput:
        _download_source(video, workdir)
        info = probe(workdir.source, max_duration=get_settings().video_max_duration_seconds)
        width, height = info.display_size
        rungs = plan_ladder(width, height)
        return StepOutput(
            probe=info.as_dict(),
            duration_seconds=info.duration,
            width=width,
            height=height,
            rungs=[r.as_dict() for r in rungs],
        )

    await _run_step("probe", job_id, video_id, work)


@job(
    "video.transcode",
    tier="video",
    max_retries=MAX_RETRIES,
    time_limit_ms=TRANSCODE_TIME_LIMIT_MS,
)
async def video_transcode(job_id: str, video_id: str) -> None:
    """Decode once, encode every rung into HLS segments (the long step)."""

    def work(video: VideoWork, workdir: Workdir, report: Report) -> None:
        _prepare(video, workdir, "transcode", report)

    await _run_step("transcode", job_id, video_id, work)


@job("video.package", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS)
async def video_package(job_id: str, video_id: str) -> None:
    """Check every rung's playlist and segments; write the master playlist."""

    def work(video: VideoWork, workdir: Workdir, _: Report) -> None:
        _prepare(video, workdir, "package", None)

    await _run_step("package", job_id, video_id, work)


@job(
    "video.thumbnails", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS
)
async def video_thumbnails(job_id: str, video_id: str) -> None:
    """Poster, sprite sheets and the WebVTT thumbnail track."""

    def work(video: VideoWork, workdir: Workdir, _: Report) -> None:
        _prepare(video, workdir, "thumbnails", None)

    await _run_step("thumbnails", job_id, video_id, work)


@job("video.upload", tier="video", max_retries=MAX_RETRIES, time_limit_ms=TRANSCODE_TIME_LIMIT_MS)
async def video_upload(job_id: str, video_id: str) -> None:
    """Upload the HLS output (skipping files already there with the same size)."""

    def work(video: VideoWork, workdir: Workdir, report: Report) -> StepOutput:
        s = get_settings()
        _prepare(video, workdir, "thumbnails", None)
        prefix = storage.hls_prefix(video.tenant, video.id)
        counts = ensure_uploaded(
            storage.client(),
            s.r2_video_bucket,
            prefix,
            workdir.hls,
            concurrency=s.upload_max_concurrency,
            policy=retry_policy(),
            progress=lambda done, total: report(done / max(1, total)),
        )
        log_event(log, "VIDEO_UPLOADED", video_id=str(video.id), **counts)
        return StepOutput(hls_prefix=prefix, poster_key=f"{prefix}/poster.jpg")

    await _run_step("upload", job_id, video_id, work, record=_record_upload)


async def _record_upload(video_id: str, step: str, output: StepOutput | None) -> None:
    """Record the upload; if the video went meanwhile (deleted during this step: the API
    removes the row before its objects), what this step uploaded has no owner and goes."""
    if await videos.record_step(video_id, step, output):
        return
    assert output is not None and output.hls_prefix is not None
    prefix = output.hls_prefix

    async def orphaned() -> None:
        bucket = get_settings().r2_video_bucket
        removed = await asyncio.to_thread(storage.delete_under, bucket, prefix + "/")
        log_event(log, "VIDEO_UPLOAD_ORPHANED", video_id=video_id, removed=removed)

    await on_commit(orphaned)


@job("video.finalise", tier="video", max_retries=MAX_RETRIES)
async def video_finalise(job_id: str, video_id: str) -> None:
    """READY: the video is playable. The work directory is removed."""

    async def removed() -> None:
        await asyncio.to_thread(workdir_for(video_id).remove)
        log_event(log, "VIDEO_READY", video_id=video_id, job_id=job_id)

    async def body(video: VideoWork) -> Record:
        result = {
            "video_id": video_id,
            "duration_seconds": video.duration_seconds,
            "rungs": [Rung.from_dict(r).name for r in video.rungs],
            "poster_key": video.poster_key,
        }

        async def record() -> None:
            await videos.finish_video(video_id)
            await finish_job(job_id, result)
            await on_commit(removed)

        return record

    await _chain_step("finalise", job_id, video_id, body)


ACTORS: dict[str, JobActor] = {
    "probe": video_probe,
    "transcode": video_transcode,
    "package": video_package,
    "thumbnails": video_thumbnails,
    "upload": video_upload,
    "finalise": video_finalise,
}
CHAIN.bind(**ACTORS)
