"""The HLS upload: idempotent by size, bounded concurrency, retries with capped full-jitter
back-off. Against an in-memory bucket that counts what it is sent and can fail on cue."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pipelines.video.upload import RetryPolicy, ensure_uploaded, with_retries


class Bucket:
    def __init__(self, fail_first: int = 0) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []
        self.active = 0
        self.peak = 0
        self.fail_left = fail_first
        self.lock = threading.Lock()

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"ContentLength": len(self.objects[Key])}

    def put_object(self, Bucket: str, Key: str, Body: Any, **_: Any) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            failing = self.fail_left > 0
            self.fail_left -= failing
        try:
            time.sleep(0.01)
            if failing:
                raise ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
            self.objects[Key] = Body.read()
            self.puts.append(Key)
        finally:
            with self.lock:
                self.active -= 1


POLICY = RetryPolicy(max_attempts=5, base_seconds=0.001, cap_seconds=0.004)


def _tree(root: Path) -> Path:
    for rung in ("360p", "720p"):
        (root / rung).mkdir(parents=True)
        (root / rung / "index.m3u8").write_text("#EXTM3U\n")
        for i in range(6):
            (root / rung / f"seg_{i:05d}.ts").write_bytes(bytes([i]) * (100 + i))
    (root / "master.m3u8").write_text("#EXTM3U\n")
    return root


def test_upload_is_idempotent_by_size_and_sends_the_master_last(tmp_path):
    folder = _tree(tmp_path / "hls")
    bucket = Bucket()
    first = ensure_uploaded(bucket, "b", "hls/t/v", folder, concurrency=4, policy=POLICY)
    assert first == {"uploaded": 15, "skipped": 0, "files": 15}
    assert bucket.puts[-1] == "hls/t/v/master.m3u8"
    assert 1 < bucket.peak <= 4
    second = ensure_uploaded(bucket, "b", "hls/t/v", folder, concurrency=4, policy=POLICY)
    assert second == {"uploaded": 0, "skipped": 15, "files": 15}
    # A file whose stored copy is short (a torn earlier upload) is sent again.
    bucket.objects["hls/t/v/720p/seg_00003.ts"] = b"x"
    third = ensure_uploaded(bucket, "b", "hls/t/v", folder, concurrency=4, policy=POLICY)
    assert third["uploaded"] == 1 and bucket.puts[-1] == "hls/t/v/720p/seg_00003.ts"


def test_transient_failures_are_retried(tmp_path):
    folder = _tree(tmp_path / "hls")
    bucket = Bucket(fail_first=3)
    counts = ensure_uploaded(bucket, "b", "p", folder, concurrency=4, policy=POLICY)
    assert counts["uploaded"] == 15 and len(bucket.objects) == 15


def test_backoff_is_capped_full_jitter_and_gives_up_after_max_attempts():
    policy = RetryPolicy(max_attempts=5, base_seconds=0.5, cap_seconds=10.0)
    rng = random.Random(7)
    for attempt in range(8):
        ceiling = min(10.0, 0.5 * 2**attempt)
        draws = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8  # jitter spans the range
    slept: list[float] = []
    calls = 0

    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise OSError("connection reset")

    with pytest.raises(OSError):
        with_retries(always_fails, policy, sleep=slept.append)
    assert calls == 5 and len(slept) == 4
    assert all(d <= min(10.0, 0.5 * 2**i) for i, d in enumerate(slept))
