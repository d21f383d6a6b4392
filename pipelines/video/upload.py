"""Upload a video's HLS output to object storage: bounded concurrency, retries with
capped exponential back-off and full jitter, and idempotence by size.

Idempotence: before a put, the object's size is compared with the local file's; an equal
size is taken as "already uploaded" (a redelivered upload step re-sends nothing it sent).
The master playlist goes last, so a reader that finds it finds every file it names.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
}
LAST = "master.m3u8"


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog): a uniform
        draw in [0, min(cap, base * 2**attempt)]; ``attempt`` counts from 0."""
        ceiling = min(self.cap_seconds, self.base_seconds * (2**attempt))
        return (rng or random).uniform(0, ceiling)


def with_retries(
    fn: Callable[[], Any],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    retry_on: tuple[type[BaseException], ...] = (BotoCoreError, ClientError, OSError),
) -> Any:
    """Call ``fn`` until it succeeds or ``policy.max_attempts`` calls have failed."""
    for attempt in range(policy.max_attempts):
        try:
            return fn()
        except retry_on:
            if attempt + 1 >= policy.max_attempts:
                raise
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")


def _remote_size(client: Any, bucket: str, key: str) -> int | None:
    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def ensure_uploaded(
    client: Any,
    bucket: str,
    prefix: str,
    folder: Path,
    *,
    concurrency: int,
    policy: RetryPolicy,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Upload every file under ``folder`` to ``prefix/<relative path>``.

    Returns counts: ``uploaded`` and ``skipped`` (already there with the same size).
    """
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    last = [p for p in files if p.relative_to(folder).as_posix() == LAST]
    rest = [p for p in files if p not in last]
    counts = {"uploaded": 0, "skipped": 0, "files": len(files)}
    done = 0

    def one(path: Path) -> bool:
        key = f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}"
        size = path.stat().st_size

        def attempt() -> bool:
            if _remote_size(client, bucket, key) == size:
                return False
            extra = {}
            if path.suffix in CONTENT_TYPES:
                extra["ContentType"] = CONTENT_TYPES[path.suffix]
            with path.open("rb") as body:
                client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
            return True

        return bool(with_retries(attempt, policy))

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for sent in pool.map(one, rest):
            counts["uploaded" if sent else "skipped"] += 1
            done += 1
            if progress is not None:
                progress(done, len(files))
    for path in last:
        counts["uploaded" if one(path) else "skipped"] += 1
        done += 1
        if progress is not None:
            progress(done, len(files))
    return counts
