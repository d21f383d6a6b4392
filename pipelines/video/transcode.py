"""Decode the source once and fan every frame out to each rung's encoder (H.264 + AAC),
muxed by FFmpeg's HLS muxer into fixed-length MPEG-TS segments.

Why segments come out even: a decoder marks the frames it decoded (``pict_type`` I/P/B)
and libx264 honours a marked I frame as a forced keyframe, so the source's own GOP would
leak into ours. Every frame we encode has ``pict_type`` cleared, and the GOP is fixed at
``fps * HLS_TIME_SECONDS`` frames (``keyint = min-keyint``, ``scenecut=0``): each segment
then starts on a keyframe exactly ``HLS_TIME_SECONDS`` after the previous one.

Time stamps are re-based on the first video frame and snapped to the frame grid of the
source's average rate (a variable-rate phone video keeps its timing to within a frame;
two frames that snap to the same slot keep the first). Audio is resampled to 48 kHz
stereo and encoded per rung (AAC costs little next to H.264). A source with no audio
makes video-only renditions, which HLS allows.

Rotation (a phone's display matrix) is applied to the pixels once, before scaling, so
every rung is upright and players need no metadata.

While decoding we also keep the frames the thumbnails step needs (a tile every
``TILE_INTERVAL_SECONDS`` and the poster frame), so nothing decodes the source twice.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

from pipelines.video.ladder import Rung
from pipelines.video.probe import ProbeResult, VideoRejected
from pipelines.video.workdir import Workdir

X264_PRESET = "veryfast"
X264_PROFILE = "high"
AUDIO_RATE = 48_000
TILE_INTERVAL_SECONDS = 5
TILE_WIDTH = 160  # sprite tiles: 160 px on the long side
POSTER_MAX_WIDTH = 1280
# Decoded frames waiting for a rung: enough to ride out x264's lookahead bursts, few enough
# to bound memory (eight 1080p frames are 25 MB).
RUNG_QUEUE_FRAMES = 8

Progress = Callable[[float], None]


def gop_frames(fps: Fraction, segment_seconds: int) -> int:
    return max(1, round(fps * segment_seconds))


def x264_params(gop: int) -> str:
    """The encoder's GOP settings; the benchmark passes the very same to the ffmpeg CLI."""
    return f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0"


def hls_muxer_options(segment_pattern: str, segment_seconds: int) -> dict[str, str]:
    return {
        "hls_time": str(segment_seconds),
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_segment_type": "mpegts",
        "hls_flags": "independent_segments",
        "hls_segment_filename": segment_pattern,
    }


def _rotation_graph(template: av.VideoFrame, rotation: int) -> Any | None:
    """A filter graph turning frames upright; None when they already are.

    ``rotation`` is FFmpeg's counter-clockwise angle: -90 means "turn clockwise".
    """
    if rotation == 0:
        return None
    graph = av.filter.Graph()
    src = graph.add_buffer(
        width=template.width,
        height=template.height,
        format=template.format,
        time_base=Fraction(1, 1000),
    )
    chain: list[Any] = []
    if rotation == -90:
        chain.append(graph.add("transpose", "clock"))
    elif rotation == 90:
        chain.append(graph.add("transpose", "cclock"))
    else:  # 180
        chain.append(graph.add("hflip"))
        chain.append(graph.add("vflip"))
    sink = graph.add("buffersink")
    previous = src
    for node in chain:
        previous.link_to(node)
        previous = node
    previous.link_to(sink)
    graph.configure()
    return graph


class _RungOutput:
    """One rung: its HLS muxer, video encoder and (optional) audio encoder, fed through a
    bounded queue by the decoding thread and run on a thread of its own.

    Scaling (swscale) and encoding (libx264) release the GIL, so the rungs' scalers and
    encoder calls overlap instead of taking turns behind one Python loop. Each rung keeps
    one reformatter: ``VideoFrame.reformat`` would build a new scaler context per frame.
    """

    def __init__(
        self, rung: Rung, directory: Path, fps: Fraction, segment_seconds: int, audio: bool
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.rung = rung
        self.container = av.open(
            str(directory / "index.m3u8"),
            "w",
            format="hls",
            options=hls_muxer_options(str(directory / "seg_%05d.ts"), segment_seconds),
        )
        gop = gop_frames(fps, segment_seconds)
        vs = self.container.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": X264_PRESET,
                "profile": X264_PROFILE,
                "x264-params": x264_params(gop),
                "maxrate": str(rung.maxrate),
                "bufsize": str(rung.maxrate * 2),
            },
        )
        vs.width, vs.height, vs.pix_fmt = rung.width, rung.height, "yuv420p"
        vs.bit_rate = rung.video_bitrate
        vs.codec_context.time_base = 1 / fps
        self.video = vs
        self.audio = None
        if audio:
            a = self.container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            a.bit_rate = rung.audio_bitrate
            self.audio = a
        self.reformatter = VideoReformatter()
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=RUNG_QUEUE_FRAMES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"rung-{rung.name}", daemon=True)
        self.thread.start()

    # --- producer side (the decoding thread) ---------------------------------------
    def _raise(self) -> None:
        # An encoder or muxer failing is not the source's fault: retryable, never "corrupt".
        raise RuntimeError(f"rung {self.rung.name} failed: {self.error}") from self.error

    def put(self, kind: str, frame: Any) -> None:
        while True:
            if self.error is not None:
                self._raise()
            try:
                self.queue.put((kind, frame), timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Flush the encoders, write the playlist, and re-raise the rung's error if any."""
        if self.thread.is_alive():
            self.put("end", None)
            self.thread.join()
        if self.error is not None:
            self._raise()

    def abort(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(BaseException):
                self.queue.put(("abort", None), timeout=5)
            self.thread.join(timeout=30)
        with contextlib.suppress(Exception):
            self.container.close()

    # --- the rung's thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                kind, frame = self.queue.get()
                if kind == "v":
                    self._encode_video(frame)
                elif kind == "a":
                    self._encode_audio(frame)
                elif kind == "end":
                    self.container.mux(self.video.encode(None))
                    self._encode_audio(None)
                    self.container.close()
                    return
                else:  # abort
                    return
        except BaseException as exc:  # handed to the producer, which raises it
            self.error = exc

    def _encode_video(self, frame: av.VideoFrame) -> None:
        scaled = self.reformatter.reformat(frame, self.rung.width, self.rung.height, "yuv420p")
        if scaled is not frame:
            scaled.pts = frame.pts
            scaled.time_base = frame.time_base
            scaled.pict_type = PictureType.NONE
        self.container.mux(self.video.encode(scaled))

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        if self.audio is not None:
            self.container.mux(self.audio.encode(frame))


class _Decode:
    """The decoding side of one transcode: each frame re-timed onto the output grid,
    turned upright, captured for the tiles and the poster, and handed to every rung;
    audio resampled to ``AUDIO_RATE`` stereo and handed on the same way."""

    def __init__(
        self,
        info: ProbeResult,
        outputs: list[_RungOutput],
        tiles: Path,
        poster_time: float,
        progress: Progress | None,
    ) -> None:
        self.info = info
        self.fps = info.fps
        self.outputs = outputs
        self.tiles = tiles
        self.poster_time = poster_time
        self.progress = progress
        self.frames = 0
        self.tile_times: list[float] = []
        self.poster_saved = False
        self.t0: float | None = None
        self.last_pts = -1
        self.next_tile = 0.0
        self.graph: Any | None = None
        self.last_report = time.monotonic()
        self.resampler: av.AudioResampler | None = None
        self.audio_samples = 0
        self.audio_started = False

    def run(self, source: Path) -> None:
        with av.open(str(source)) as container:
            vs = container.streams.video[0]
            vs.thread_type = "AUTO"
            streams: list[Any] = [vs]
            a_in = (
                container.streams.audio[0]
                if self.info.has_audio and container.streams.audio
                else None
            )
            if a_in is not None:
                streams.append(a_in)
                self.resampler = av.AudioResampler(
                    format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024
                )
            for packet in container.demux(*streams):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError as exc:
                    raise VideoRejected(
                        f"the video cannot be decoded at {packet.pts}: {exc}"
                    ) from None
                for frame in decoded:
                    if frame.time is None:
                        continue
                    if isinstance(frame, av.VideoFrame):
                        self._video(frame, float(frame.time))
                    elif self.resampler is not None and self.t0 is not None:
                        self._audio(frame, float(frame.time))
            if self.resampler is not None and self.audio_started:
                self._send_audio(self.resampler.resample(None))

    def _video(self, frame: av.VideoFrame, at: float) -> None:
        if self.t0 is None:
            self.t0 = at
            if self.info.rotation:
                self.graph = _rotation_graph(frame, self.info.rotation)
        rel = at - self.t0
        pts = round(rel * self.fps)
        if pts <= self.last_pts:
            return  # two source frames in one output slot
        self.last_pts = pts
        if self.graph is not None:
            self.graph.push(frame)
            frame = self.graph.pull()
        frame.pts = pts
        frame.time_base = 1 / self.fps
        frame.pict_type = PictureType.NONE
        for out in self.outputs:
            out.put("v", frame)
        self.frames += 1
        if rel + 1e-6 >= self.next_tile:
            _save_tile(frame, self.tiles / f"tile_{len(self.tile_times):05d}.jpg")
            self.tile_times.append(round(self.next_tile, 3))
            self.next_tile += TILE_INTERVAL_SECONDS
        if not self.poster_saved and rel + 1e-6 >= self.poster_time:
            _save_poster(frame, self.tiles / "poster.jpg")
            self.poster_saved = True
        if self.progress is not None and time.monotonic() - self.last_report > 1.0:
            self.last_report = time.monotonic()
            self.progress(min(1.0, rel / max(self.info.duration, 0.001)))

    def _audio(self, frame: av.AudioFrame, at: float) -> None:
        assert self.resampler is not None and self.t0 is not None
        if not self.audio_started:
            self.audio_started = True
            self.audio_samples = max(0, round((at - self.t0) * AUDIO_RATE))
        frame.pts = None
        self._send_audio(self.resampler.resample(frame))

    def _send_audio(self, chunks: list[av.AudioFrame]) -> None:
        for chunk in chunks:
            chunk.pts = self.audio_samples
            chunk.time_base = Fraction(1, AUDIO_RATE)
            self.audio_samples += chunk.samples
            for out in self.outputs:
                out.put("a", chunk)


def _fresh_partials(workdir: Workdir) -> tuple[Path, Path]:
    """Empty ``hls.partial`` / ``tiles.partial`` (what a killed run left goes first)."""
    partial = workdir.path / "hls.partial"
    tiles_partial = workdir.path / "tiles.partial"
    for stale in (partial, tiles_partial, workdir.hls, workdir.tiles):
        shutil.rmtree(stale, ignore_errors=True)
    partial.mkdir(parents=True)
    tiles_partial.mkdir(parents=True)
    return partial, tiles_partial


def ensure_transcoded(
    workdir: Workdir,
    info: ProbeResult,
    rungs: list[Rung],
    *,
    segment_seconds: int,
    poster_at: float,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Transcode ``workdir.source`` into ``workdir.hls/<rung>/``; a no-op when done.

    Returns the step's record: rungs, frame rate, tile times and the poster's time.
    A killed run leaves only ``hls.partial`` / ``tiles.partial``, removed on the next run.
    """
    record = workdir.done("transcode")
    if record is not None and workdir.hls.is_dir():
        return record
    partial, tiles_partial = _fresh_partials(workdir)
    fps = info.fps
    poster_time = min(poster_at, info.duration / 2) if info.duration < poster_at * 2 else poster_at
    outputs = [
        _RungOutput(r, partial / r.name, fps, segment_seconds, info.has_audio) for r in rungs
    ]
    decode = _Decode(info, outputs, tiles_partial, poster_time, progress)
    try:
        decode.run(workdir.source)
        for out in outputs:
            out.finish()
    except av.error.FFmpegError as exc:
        for out in outputs:
            out.abort()
        raise VideoRejected(f"the video cannot be decoded: {exc}") from None
    except BaseException:
        for out in outputs:
            out.abort()
        raise
    if decode.frames == 0:
        raise VideoRejected("the video stream has no decodable frames")
    if not decode.poster_saved and decode.tile_times:
        shutil.copyfile(tiles_partial / "tile_00000.jpg", tiles_partial / "poster.jpg")
    os.replace(partial, workdir.hls)
    os.replace(tiles_partial, workdir.tiles)
    record = {
        "rungs": [r.as_dict() for r in rungs],
        "fps_num": fps.numerator,
        "fps_den": fps.denominator,
        "frames": decode.frames,
        "tile_times": decode.tile_times,
        "tile_interval": TILE_INTERVAL_SECONDS,
        "poster_time": poster_time,
        "segment_seconds": segment_seconds,
    }
    workdir.mark("transcode", record)
    return record


def _save_tile(frame: av.VideoFrame, path: Path) -> None:
    w, h = frame.width, frame.height
    scale = TILE_WIDTH / max(w, h)
    tw, th = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
    frame.reformat(tw, th, "rgb24").to_image().save(path, quality=80)


def _save_poster(frame: av.VideoFrame, path: Path) -> None:
    w, h = frame.width, frame.height
    scale = min(1.0, POSTER_MAX_WIDTH / max(w, h))
    pw, ph = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
    frame.reformat(pw, ph, "rgb24").to_image().save(path, quality=85)
