"""Video figures (`just bench video`): a 60 s 1080p generated source through the full
ladder (360p/720p/1080p, H.264 + AAC, 6 s HLS segments) by our PyAV transcode, and the
same ladder in the same run by the ffmpeg CLI with identical encoder settings (one
decode, split to three scalers, the same x264 preset/profile/GOP/VBV, keyframes forced at
every 6 s, AAC 128 kb/s, the same HLS muxer options).

Three runs of each, interleaved (ours, theirs, ours, ...) so a busy moment on a shared
machine hits both. Printed: every run's wall time, each side's median, the ratio of the
medians (target <= 1.00), the realtime factors and the peak RSS of the process running our
transcode (target <= 500 MB) and of the ffmpeg CLI, and each side's CPU seconds (user +
system): on a shared machine the wall times swing with other load, the work done barely
does, so equal CPU with unequal wall points at how well a side keeps both cores busy.
Nothing is asserted about speed.
Without Debian's ``ffmpeg`` the comparison is skipped with a message (``apt-get install
ffmpeg``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.video.ladder import plan_ladder
from pipelines.video.probe import probe
from pipelines.video.transcode import (
    AUDIO_RATE,
    X264_PRESET,
    X264_PROFILE,
    hls_muxer_options,
    x264_params,
)
from tests.factories.videos import make_video

ROOT = Path(__file__).resolve().parents[2]
SECONDS = int(os.environ.get("VIDEO_BENCH_SECONDS", "60"))  # 60 unless trying a change
FPS = 30
RUNS = int(os.environ.get("VIDEO_BENCH_RUNS", "3"))

# Our transcode, as the worker's transcode step runs it, in a process of its own so its
# peak RSS is its alone.
WORKER_SCRIPT = textwrap.dedent(
    """
    import json, resource, shutil, sys, time
    from pathlib import Path
    from pipelines.video.ladder import plan_ladder
    from pipelines.video.probe import probe
    from pipelines.video.transcode import ensure_transcoded
    from pipelines.video.workdir import Workdir
    src, base = Path(sys.argv[1]), Path(sys.argv[2])
    info = probe(src)
    wd = Workdir(base, "bench"); wd.remove(); wd.ensure()
    shutil.copyfile(src, wd.source)
    started = time.perf_counter()
    ensure_transcoded(wd, info, plan_ladder(*info.display_size), segment_seconds=6, poster_at=5)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"wall": wall, "rss_kb": usage.ru_maxrss, "cpu": cpu}))
    """
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench-video") / "source-1080p.mp4"
    started = time.perf_counter()
    make_video(path, width=1920, height=1080, seconds=SECONDS, fps=FPS, bitrate=8_000_000)
    print(f"\nvideo: generated a {SECONDS} s 1920x1080 {FPS} fps source in "
          f"{time.perf_counter() - started:.1f} s ({path.stat().st_size / 1e6:.1f} MB)")  # fmt: skip
    return path


def ffmpeg_command(src: Path, out: Path) -> list[str]:
    """The ladder by the ffmpeg CLI, with our encoder settings, one decode for all rungs."""
    info = probe(src)
    rungs = plan_ladder(*info.display_size)
    labels = "".join(f"[v{i}]" for i in range(len(rungs)))
    graph = f"[0:v]split={len(rungs)}{labels};" + ";".join(
        f"[v{i}]scale={r.width}:{r.height}:flags=bilinear[o{i}]" for i, r in enumerate(rungs)
    )
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src)]
    cmd += ["-filter_complex", graph]
    for i, r in enumerate(rungs):
        folder = out / r.name
        folder.mkdir(parents=True, exist_ok=True)
        cmd += ["-map", f"[o{i}]", "-map", "0:a?"]
        cmd += ["-c:v", "libx264", "-preset", X264_PRESET, "-profile:v", X264_PROFILE]
        cmd += ["-x264-params", x264_params(info.fps, 6), "-pix_fmt", "yuv420p"]
        cmd += ["-force_key_frames", "expr:gte(t,n_forced*6)"]
        cmd += ["-b:v", str(r.video_bitrate), "-maxrate", str(r.maxrate)]
        cmd += ["-bufsize", str(r.maxrate * 2), "-r", f"{info.fps_num}/{info.fps_den}"]
        cmd += ["-c:a", "aac", "-b:a", str(r.audio_bitrate), "-ar", str(AUDIO_RATE), "-ac", "2"]
        cmd += ["-f", "hls"]
        for key, value in hls_muxer_options(str(folder / "seg_%05d.ts"), 6).items():
            cmd += [f"-{key}", value]
        cmd.append(str(folder / "index.m3u8"))
    return cmd


def _ours(source: Path, work: Path) -> tuple[float, int, float]:
    """One transcode in a fresh process: its wall time, peak RSS (kB) and CPU seconds
    (the whole process, so the probe is in it too)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", WORKER_SCRIPT, str(source), str(work)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    ours = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(ours["wall"]), int(ours["rss_kb"]), float(ours["cpu"])


def _theirs(source: Path, out: Path) -> tuple[float, int, float]:
    """The ffmpeg CLI's ladder: wall time, the peak RSS of its process (kB), CPU seconds."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = ffmpeg_command(source, out)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"ffmpeg exited {proc.returncode}"
    return wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def test_bench_video_ladder_pyav_vs_ffmpeg(source: Path, tmp_path: Path) -> None:
    rungs = plan_ladder(1920, 1080)
    print(f"video: ladder {', '.join(f'{r.name} {r.video_bitrate // 1000} kb/s' for r in rungs)}")
    have_ffmpeg = shutil.which("ffmpeg") is not None
    if not have_ffmpeg:
        print("video: ffmpeg CLI not installed (apt-get install ffmpeg): comparison skipped")
    ours: list[tuple[float, int, float]] = []
    theirs: list[tuple[float, int, float]] = []
    for run in range(1, RUNS + 1):
        ours.append(_ours(source, tmp_path / "pyav"))
        line = f"video: run {run}: PyAV {ours[-1][0]:.1f} s (CPU {ours[-1][2]:.1f} s)"
        if have_ffmpeg:
            theirs.append(_theirs(source, tmp_path / "ffmpeg"))
            line += (
                f", ffmpeg {theirs[-1][0]:.1f} s (CPU {theirs[-1][2]:.1f} s), "
                f"ratio {ours[-1][0] / theirs[-1][0]:.2f}"
            )
        print(line)
    our_median = statistics.median(w for w, _, _ in ours)
    our_rss = max(r for _, r, _ in ours) / 1024
    print(
        f"video: PyAV   median wall {our_median:.1f} s, realtime x{SECONDS / our_median:.2f}, "
        f"worker peak RSS {our_rss:.0f} MB (target <= 500 MB), "
        f"median CPU {statistics.median(c for _, _, c in ours):.1f} s"
    )
    if have_ffmpeg:
        their_median = statistics.median(w for w, _, _ in theirs)
        version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
        print(
            f"video: ffmpeg median wall {their_median:.1f} s, realtime x"
            f"{SECONDS / their_median:.2f}, peak RSS {max(r for _, r, _ in theirs) / 1024:.0f} MB, "
            f"median CPU {statistics.median(c for _, _, c in theirs):.1f} s "
            f"({version.splitlines()[0]})"
        )
        print(
            f"video: ratio of medians PyAV / ffmpeg = {our_median / their_median:.2f} "
            "(target <= 1.00)"
        )
        for side, folder in (("PyAV", tmp_path / "pyav"), ("ffmpeg", tmp_path / "ffmpeg")):
            print(f"video: {side} x264 threading: {_x264_threading(folder)}")
    print(f"video: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end")


def _x264_threading(folder: Path) -> str:
    """The threading x264 reports in its SEI, from a 1080p segment the side wrote."""
    for segment in sorted(folder.rglob("1080p/seg_00000.ts")):
        found = re.search(
            rb"threads=\d+ lookahead_threads=\d+ sliced_threads=\d+", segment.read_bytes()
        )
        if found:
            return found.group(0).decode()
    return "not found"
