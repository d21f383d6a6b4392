"""Decode the source once and fan every frame out to each rung's encoder (H.264 + AAC),
muxed by FFmpeg's HLS muxer into MPEG-TS segments of ``HLS_TIME_SECONDS``.

Output is placed by time (``pipelines.video.timing``): the renditions run at a constant
rate, the source's maximum sustained rate capped by ``VIDEO_MAX_FPS``, and each source
frame is shown from the slot nearest its presentation time until the next one's, so a
variable-rate source (a screen recording, a phone that dropped frames, a freeze or a gap)
keeps its timing: frames are repeated across slow stretches and dropped only where the
source is faster than the output. Audio is placed by time on the same clock (both start at
the earliest stream's first time stamp); a gap in it is filled with silence, so the two
stay in sync to well within a frame.

Why segments come out even: a decoder marks the frames it decoded (``pict_type`` I/P/B)
and libx264 honours a marked I frame as a forced keyframe, so the source's own GOP would
leak into ours. Every frame we encode has ``pict_type`` cleared, except the first frame at
or after each multiple of ``HLS_TIME_SECONDS``, which is marked I (an IDR, the GOP being
closed); x264's own keyframe interval is set just beyond a segment and ``scenecut=0``, so
those are the only keyframes and each segment starts exactly on its boundary.

Rotation (a phone's display matrix) is applied to the pixels once, before scaling, so
every rung is upright and players need no metadata.

Every rung carries the same AAC track (same input, rate and bit rate), so each distinct
audio bit rate is encoded once, on the decoding thread, and every rung muxes its own copy
of the packets: identical bytes to encoding per rung, for a third of the AAC work. The
packets travel to a rung with the next video frame, in the order they were decoded, so a
rung's queue carries one item per output frame.

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
from pipelines.video.probe import ProbeResult, VideoRejected, output_rate
from pipelines.video.timing import FramePlacer, frames_per_segment, keyframe_slots
from pipelines.video.workdir import Workdir

X264_PRESET = "veryfast"
X264_PROFILE = "high"
X264_FRAME_THREADS = 2  # per rung encoder; see _RungOutput
AUDIO_RATE = 48_000
TILE_INTERVAL_SECONDS = 5
TILE_WIDTH = 160  # sprite tiles: 160 px on the long side
POSTER_MAX_WIDTH = 1280
# Decoded frames waiting for a rung: enough to ride out x264's lookahead bursts, few enough
# to bound memory (eight 1080p frames are 25 MB).
RUNG_QUEUE_FRAMES = 8
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
# Encoded audio waits for the next video frame to travel with it; past this many packets
# (a long gap in the video) it goes on alone.
AUDIO_BATCH_PACKETS = 64

Progress = Callable[[float], None]


# An audio gap (or overlap) longer than this is filled with silence (or dropped).
AUDIO_SLACK_SECONDS = 0.04


def x264_params(fps: Fraction, segment_seconds: int) -> str:
    """The encoder's GOP settings; the benchmark passes the very same to the ffmpeg CLI.
    Keyframes are forced at segment boundaries, x264's own interval only backs them up."""
    return f"keyint={frames_per_segment(fps, segment_seconds) + 1}:scenecut=0:open-gop=0"


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
    """One rung: its HLS muxer and video encoder, plus an audio stream muxing the shared
    encoder's packets, fed through a bounded queue by the decoding thread and run on a
    thread of its own.

    Scaling (swscale) and encoding (libx264) release the GIL, so the rungs' scalers and
    encoder calls overlap instead of taking turns behind one Python loop. Each rung keeps
    one reformatter: ``VideoFrame.reformat`` would build a new scaler context per frame.
    The scaler runs on the rung's thread alone (``threads=1``): PyAV's default splits every
    frame across swscale worker threads, a hand-off per frame that bought nothing with the
    cores already busy encoding (the same pixels, ~8% more scaling CPU).
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
        vs = self.container.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": X264_PRESET,
                "profile": X264_PROFILE,
                "x264-params": x264_params(fps, segment_seconds),
                "maxrate": str(rung.maxrate),
                "bufsize": str(rung.maxrate * 2),
            },
        )
        vs.width, vs.height, vs.pix_fmt = rung.width, rung.height, "yuv420p"
        # PyAV opens encoders for slice threads, which libx264 runs as sliced threads: a
        # barrier on every frame, which with three encoders on two cores left a core idle
        # ~7% of the time (1.06x the ffmpeg CLI's wall time for the same CPU). Frame
        # threads keep both cores busy. Two per encoder, not the CLI's default three:
        # three held ~30 MB more of frames in flight and took the worker over its 500 MB.
        vs.codec_context.thread_type = "FRAME"
        vs.codec_context.thread_count = X264_FRAME_THREADS
        vs.bit_rate = rung.video_bitrate
        vs.codec_context.time_base = 1 / fps
        self.video = vs
        self.time_base = vs.codec_context.time_base
        self.audio = None
        if audio:
            # Its own encoder is opened (for the stream's parameters) but never fed: the
            # packets come from the shared encoder, configured the same (_audio_encoder).
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

    def finish(self, audio: list[av.Packet]) -> None:
        """Mux the last audio packets, flush the video encoder, write the playlist, and
        re-raise the rung's error if any."""
        if self.thread.is_alive():
            self.put("end", audio)
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
                kind, item = self.queue.get()
                if kind == "v":
                    self._mux_audio(item[3])
                    self._encode_video(item)
                elif kind == "a":
                    self._mux_audio(item)
                elif kind == "end":
                    self._mux_audio(item)
                    self.container.mux(self.video.encode(None))
                    self.container.close()
                    return
                else:  # abort
                    return
        except BaseException as exc:  # handed to the producer, which raises it
            self.error = exc

    def _encode_video(self, item: tuple[int, av.VideoFrame, bool, list[av.Packet]]) -> None:
        # One frame object may come several times (a repeat) and to every rung: only this
        # rung's scaled copy is stamped (a same-size rung gets the shared frame back, but
        # the encoder copies it before the next stamp).
        slot, frame, key, _ = item
        rung = self.rung
        scaled = self.reformatter.reformat(frame, rung.width, rung.height, "yuv420p", threads=1)
        scaled.pts = slot
        scaled.time_base = self.time_base
        scaled.pict_type = PictureType.I if key else PictureType.NONE
        self.container.mux(self.video.encode(scaled))

    def _mux_audio(self, packets: list[av.Packet]) -> None:
        """Mux this rung's copy of the shared encoder's packets: muxing rewrites a packet's
        stream and time stamps, so the rungs must not share one."""
        if not packets:
            return
        stream, mux_one = self.audio, self.container.mux_one
        assert stream is not None
        for packet in packets:
            own = av.Packet(bytes(packet))
            own.pts, own.dts, own.duration = packet.pts, packet.dts, packet.duration
            own.time_base = AUDIO_TIME_BASE
            own.is_keyframe = packet.is_keyframe
            own.stream = stream
            mux_one(own)


class _Decode:
    """The decoding side of one transcode: video frames placed on the output grid, turned
    upright, captured for the tiles and the poster, and handed to every rung; audio
    resampled to ``AUDIO_RATE`` stereo, placed by time, encoded once per audio bit rate
    and handed on with the next video frame."""

    def __init__(
        self,
        info: ProbeResult,
        fps: Fraction,
        segment_seconds: int,
        outputs: list[_RungOutput],
        tiles: Path,
        poster_time: float,
        progress: Progress | None,
    ) -> None:
        self.info = info
        self.fps = fps
        self.is_key = keyframe_slots(fps, segment_seconds)
        self.fps_float = float(fps)
        self.source_period = 1 / float(info.fps)  # a frame of unknown length lasts this
        self.outputs = outputs
        self.tiles = tiles
        self.poster_time = poster_time
        self.progress = progress
        self.placer: FramePlacer | None = None
        self.frames = 0
        self.tile_times: list[float] = []
        self.poster_saved = False
        self.next_tile = 0.0
        self.graph: Any | None = None
        self.upright: tuple[Any, Any] = (None, None)  # (source frame, its upright copy)
        self.last_report = time.monotonic()
        self.resampler: av.AudioResampler | None = None
        self.audio_samples = 0  # output samples sent
        self.audio_next: float | None = None  # where the next source audio should start (s)
        self.video_end = 0.0  # where each stream's last frame ends (s)
        self.audio_end = 0.0
        self.encoders: dict[int, Any] = {}  # the AAC encoder of each rung audio bit rate
        self.packets: dict[int, list[av.Packet]] = {}  # encoded, not handed on yet

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
                for out in self.outputs:
                    rate = out.rung.audio_bitrate
                    if out.audio is not None and rate not in self.encoders:
                        self.encoders[rate] = _audio_encoder(rate)
                        self.packets[rate] = []
            starts = [
                float(s.start_time * s.time_base) for s in streams if s.start_time is not None
            ]
            self.placer = FramePlacer(self.fps, min(starts, default=0.0), self._emit)
            for packet in container.demux(*streams):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError as exc:
                    raise VideoRejected(
                        "corrupt_file", f"the video cannot be decoded at {packet.pts}: {exc}"
                    ) from None
                for frame in decoded:
                    if frame.time is None:
                        continue
                    if isinstance(frame, av.VideoFrame):
                        self._video(frame, float(frame.time))
                    elif self.resampler is not None:
                        self._audio(frame, float(frame.time))
            if self.resampler is not None and self.audio_next is not None:
                self._send_audio(self.resampler.resample(None))
            self.frames = self.placer.finish(self._end(container))
        for rate, encoder in self.encoders.items():
            self.packets[rate].extend(_encode_audio(encoder, None))

    def audio_for(self, out: _RungOutput) -> list[av.Packet]:
        """The encoded audio not handed to ``out`` yet (after ``run``: the encoder's tail)."""
        return self.packets.get(out.rung.audio_bitrate, [])

    def _hand_off(self) -> dict[int, list[av.Packet]]:
        """The encoded audio, for every rung; the lists handed on are never touched again."""
        packets = self.packets
        self.packets = {rate: [] for rate in packets}
        return packets

    def _end(self, container: Any) -> float:
        """Where the output ends: the later stream's end. Decoded audio runs on by the
        encoder's padding of its last frame, so it counts only up to the container's
        declared length."""
        end = self.audio_end
        if container.duration:
            declared = (container.start_time or 0) / 1e6 + container.duration / 1e6
            end = min(end, declared)
        return max(self.video_end, end)

    def _video(self, frame: av.VideoFrame, at: float) -> None:
        assert self.placer is not None
        shown = self.source_period
        if frame.duration and frame.time_base is not None:
            shown = float(frame.duration * frame.time_base)
        self.video_end = max(self.video_end, at + shown)
        if self.graph is None and self.info.rotation:
            self.graph = _rotation_graph(frame, self.info.rotation)
        self.placer.push(frame, at)

    def _emit(self, slot: int, frame: av.VideoFrame) -> None:
        if self.upright[0] is not frame:  # a repeat is turned once
            upright = frame
            if self.graph is not None:
                self.graph.push(frame)
                upright = self.graph.pull()
            self.upright = (frame, upright)
        upright = self.upright[1]
        key = self.is_key(slot)
        audio = self._hand_off()
        for out in self.outputs:
            out.put("v", (slot, upright, key, audio.get(out.rung.audio_bitrate, [])))
        rel = slot / self.fps_float
        if rel + 1e-6 >= self.next_tile:
            _save_tile(upright, self.tiles / f"tile_{len(self.tile_times):05d}.jpg")
            self.tile_times.append(round(self.next_tile, 3))
            self.next_tile += TILE_INTERVAL_SECONDS
        if not self.poster_saved and rel + 1e-6 >= self.poster_time:
            _save_poster(upright, self.tiles / "poster.jpg")
            self.poster_saved = True
        if self.progress is not None and time.monotonic() - self.last_report > 1.0:
            self.last_report = time.monotonic()
            self.progress(min(1.0, rel / max(self.info.duration, 0.001)))

    def _audio(self, frame: av.AudioFrame, at: float) -> None:
        assert self.resampler is not None and self.placer is not None
        at -= self.placer.start
        length = frame.samples / frame.sample_rate
        self.audio_end = max(self.audio_end, self.placer.start + at + length)
        if self.audio_next is None:
            self.audio_samples = max(0, round(at * AUDIO_RATE))
        elif at < self.audio_next - AUDIO_SLACK_SECONDS:
            return  # overlaps what was sent: dropped, or the rest would come late
        elif at > self.audio_next + AUDIO_SLACK_SECONDS:
            self._send_audio(self.resampler.resample(_silence(frame, at - self.audio_next)))
            self.audio_next = at
        self.audio_next = (at if self.audio_next is None else self.audio_next) + length
        frame.pts = None
        self._send_audio(self.resampler.resample(frame))

    def _send_audio(self, chunks: list[av.AudioFrame]) -> None:
        for chunk in chunks:
            chunk.pts = self.audio_samples
            chunk.time_base = AUDIO_TIME_BASE
            self.audio_samples += chunk.samples
            for rate, encoder in self.encoders.items():
                self.packets[rate].extend(_encode_audio(encoder, chunk))
        if any(len(waiting) > AUDIO_BATCH_PACKETS for waiting in self.packets.values()):
            audio = self._hand_off()
            for out in self.outputs:
                out.put("a", audio.get(out.rung.audio_bitrate, []))


def _encode_audio(encoder: Any, chunk: av.AudioFrame | None) -> list[av.Packet]:
    try:
        return list(encoder.encode(chunk))
    except av.error.FFmpegError as exc:
        # The encoder failing is not the source's fault: retryable, never "corrupt".
        raise RuntimeError(f"audio encoder failed: {exc}") from exc


def _audio_encoder(bit_rate: int) -> Any:
    """The AAC encoder whose packets every rung of this bit rate muxes, set up as a rung's
    own audio stream is (``_RungOutput``), so its packets are the ones that would make."""
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate = AUDIO_RATE
    encoder.layout = "stereo"
    encoder.format = "fltp"
    encoder.bit_rate = bit_rate
    encoder.time_base = AUDIO_TIME_BASE
    return encoder


def _silence(like: av.AudioFrame, seconds: float) -> av.AudioFrame:
    """A silent frame of ``seconds`` in the format, layout and rate of ``like``."""
    silent = av.AudioFrame(
        format=like.format.name,
        layout=like.layout.name,
        samples=max(1, round(seconds * like.sample_rate)),
    )
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = like.sample_rate
    return silent


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
    max_fps: int = 30,
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
    fps = output_rate(info.fps, max_fps)
    poster_time = min(poster_at, info.duration / 2) if info.duration < poster_at * 2 else poster_at
    outputs = [
        _RungOutput(r, partial / r.name, fps, segment_seconds, info.has_audio) for r in rungs
    ]
    decode = _Decode(info, fps, segment_seconds, outputs, tiles_partial, poster_time, progress)
    try:
        decode.run(workdir.source)
        for out in outputs:
            out.finish(decode.audio_for(out))
    except av.error.FFmpegError as exc:
        for out in outputs:
            out.abort()
        raise VideoRejected("corrupt_file", f"the video cannot be decoded: {exc}") from None
    except BaseException:
        for out in outputs:
            out.abort()
        raise
    if decode.frames == 0:
        raise VideoRejected("corrupt_file", "the video stream has no decodable frames")
    if not decode.poster_saved and decode.tile_times:
        shutil.copyfile(tiles_partial / "tile_00000.jpg", tiles_partial / "poster.jpg")
    os.replace(partial, workdir.hls)
    os.replace(tiles_partial, workdir.tiles)
    record = {
        "rungs": [r.as_dict() for r in rungs],
        "fps_num": fps.numerator,
        "fps_den": fps.denominator,
        "frames": decode.frames,
        "duration": round(decode.frames / float(fps), 3),
        "dropped": decode.placer.dropped if decode.placer else 0,
        "repeated": decode.placer.repeated if decode.placer else 0,
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
