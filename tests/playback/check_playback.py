"""``just check-playback``: a real client plays our HLS.

Makes a 16 s 720p video, runs it through the pipeline (probe, transcode, package,
thumbnails, upload to ``R2_VIDEO_BUCKET``), serves it on 127.0.0.1 through the signing
edge (``ops.commands.hls_server``), and opens a page in headless Chromium that plays the signed
master URL with hls.js. It passes when playback advances past the first segment, frames
are decoded, and the player has played at least two rungs (it asks for the top rung if
its ABR does not switch by itself).

Needs: Debian's ``chromium`` (``apt-get install chromium``), and ``npm`` to install hls.js
from the npm registry into tests/playback/node_modules (done on first run). Exit status:
0 passed, 1 failed, 2 something it needs is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests import chromium

HERE = Path(__file__).resolve().parent
TIMEOUT_SECONDS = 90
PLAY_PAST_SECONDS = 8.0  # past the first 6 s segment


def ensure_hlsjs() -> bool:
    if (HERE / "node_modules" / "hls.js" / "dist" / "hls.min.js").is_file():
        return True
    npm = shutil.which("npm")
    if npm is None:
        return False
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    return True


def build_video(work: Path) -> tuple[str, str, list[Any]]:
    """Run the pipeline on a generated source and upload it; returns (tenant, video, rungs)."""
    from ops import storage
    from ops.commands.provision import ensure_buckets
    from ops.settings import get_settings
    from pipelines.video.ladder import plan_ladder
    from pipelines.video.package import ensure_packaged
    from pipelines.video.probe import probe
    from pipelines.video.thumbnails import ensure_thumbnails
    from pipelines.video.transcode import ensure_transcoded
    from pipelines.video.upload import RetryPolicy, ensure_uploaded
    from pipelines.video.workdir import Workdir
    from tests.factories.videos import make_video

    s = get_settings()
    ensure_buckets(s)
    source = make_video(work / "source.mp4", width=1280, height=720, seconds=16, fps=12)
    info = probe(source)
    rungs = plan_ladder(*info.display_size)
    wd = Workdir(work, "video")
    wd.ensure()
    shutil.copyfile(source, wd.source)
    t = ensure_transcoded(wd, info, rungs, segment_seconds=s.hls_time_seconds, poster_at=5)
    ensure_packaged(
        wd,
        rungs,
        duration=info.duration,
        fps=info.fps,
        segment_seconds=s.hls_time_seconds,
        min_segments=s.min_segments_per_variant,
        has_audio=info.has_audio,
    )
    ensure_thumbnails(
        wd, tile_times=t["tile_times"], tile_interval=t["tile_interval"], duration=info.duration
    )
    tenant, video = "playback-check", str(uuid.uuid4())
    ensure_uploaded(
        storage.client(),
        s.r2_video_bucket,
        storage.object_key("hls", tenant, video),
        wd.hls,
        concurrency=s.upload_max_concurrency,
        policy=RetryPolicy(s.retry_max_attempts, s.backoff_base_seconds, s.backoff_cap_seconds),
    )
    return tenant, video, rungs


def play(browser: str, page_url: str) -> tuple[bool, list[dict[str, Any]]]:
    """Open the page; collect its reports until it passes, fails or times out."""
    events: list[dict[str, Any]] = []
    with chromium.profile() as profile:
        return _play(browser, profile, page_url, events), events


def _play(browser: str, profile: str, page_url: str, events: list[dict[str, Any]]) -> bool:
    cmd = chromium.command(
        browser,
        profile,
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr",
        "--v=0",
        page_url,
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = threading.Event()
    verdict = {"ok": False}

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            at = line.find('"PLAYBACK ')
            if at < 0:
                continue
            raw = line[at + 1 :].split('", source:', 1)[0]
            try:
                event = json.loads(raw[len("PLAYBACK ") :].encode().decode("unicode_escape"))
            except ValueError:
                continue
            events.append(event)
            if event["kind"] == "error":
                done.set()
            elif (
                event["kind"] == "tick"
                and event["time"] >= PLAY_PAST_SECONDS
                and len(event["levels"]) >= 2
                and event["frames"] > 0
            ):
                verdict["ok"] = True
                done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done.wait(TIMEOUT_SECONDS)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return verdict["ok"]


def main() -> int:
    browser = chromium.find()
    if browser is None:
        print(f"check-playback {chromium.MISSING}", file=sys.stderr)
        return 2
    if not ensure_hlsjs():
        print("check-playback needs npm to install hls.js (tests/playback/package.json)",
              file=sys.stderr)  # fmt: skip
        return 2
    from ops import storage
    from ops.commands.hls_server import serve_in_thread
    from ops.settings import get_settings
    from pipelines.video.signing import sign_url

    s = get_settings()
    with tempfile.TemporaryDirectory(prefix="academy-playback-") as tmp:
        started = time.monotonic()
        tenant, video, rungs = build_video(Path(tmp))
        print(f"built {len(rungs)} rungs ({', '.join(r.name for r in rungs)}) "
              f"in {time.monotonic() - started:.1f} s")  # fmt: skip
        server = serve_in_thread(static_dir=HERE)
        base = f"http://127.0.0.1:{server.server_address[1]}/hls"
        try:
            master, _ = sign_url(
                base, "master.m3u8", f"{tenant}/{video}",
                secret=s.cdn_hls_signing_secret, kid=s.cdn_hls_signing_key_id,
            )  # fmt: skip
            page = f"http://127.0.0.1:{server.server_address[1]}/static/player.html?src={quote(master, safe='')}"
            ok, events = play(browser, page)
        finally:
            server.shutdown()
            storage.delete_under(s.r2_video_bucket, storage.object_key("hls", tenant, video) + "/")
    ticks = [e for e in events if e["kind"] == "tick"]
    last = ticks[-1] if ticks else {}
    for e in events:
        if e["kind"] != "tick":
            print("  ", json.dumps(e))
    print(
        f"playback reached {last.get('time', 0):.1f} s, {last.get('frames', 0)} frames decoded, "
        f"rungs played {last.get('levels', [])}, picture {last.get('width')}x{last.get('height')}"
    )
    print("check-playback:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.exit(main())
