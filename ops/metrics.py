"""Metrics that survive scale-to-zero, served by the API at ``GET /metrics``.

Dramatiq's Prometheus middleware serves per worker process and vanishes with an idle
worker, so the numbers an operator alerts on come from places that outlive workers:

* **SQS queue attributes** (per tier queue and its DLQ): visible, in flight, delayed.
* **The job table**: per actor, jobs done / failed, retries, jobs pending / running, and
  histograms of processing time and queue wait, plus the age of the oldest pending job
  per tier (SQS publishes the age of the oldest message only to CloudWatch, as
  ``ApproximateAgeOfOldestMessage``; the CloudWatch alarms in ``ops/dashboards`` use that).

Counters come from rows, so they only grow while job rows are kept. One scrape costs a few
small queries: the job figures are read from a summary that the job table's trigger keeps,
not from the job rows (``models.ops``); the queue attributes (one GetQueueAttributes call
per queue) are re-read at most every ``METRICS_QUEUE_REFRESH_SECONDS`` (``QueueSampler``).

Part of the ops base (the API serves it), and the one base module that reads the
database: through ``models.ops``, whose imports end at ``ops.settings``, so no cycle.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from models.ops import PendingAge, job_table_stats
from models.ops import oldest_pending as pending_ages
from ops.queues import sqs_client
from ops.settings import Settings, get_settings

# Seconds. Covers a 100 ms probe up to an hour-long transcode.
BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

_clients: dict[str, Any] = {}
_urls: dict[str, str] = {}


@dataclass(frozen=True)
class QueueStats:
    tier: str
    queue: str
    kind: str  # "queue" or "dlq"
    visible: int
    in_flight: int
    delayed: int
    up: bool
    error: str = ""


def _sqs(settings: Settings) -> Any:
    if "sqs" not in _clients:
        # Room for a scrape's ten parallel calls beside a background reading's one.
        _clients["sqs"] = sqs_client(settings, max_pool_connections=16)
    return _clients["sqs"]


def _queue_stat(client: Any, tier: str, kind: str, queue: str) -> QueueStats:
    try:
        if queue not in _urls:
            _urls[queue] = client.get_queue_url(QueueName=queue)["QueueUrl"]
        attrs = client.get_queue_attributes(
            QueueUrl=_urls[queue],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except Exception as exc:
        _urls.pop(queue, None)
        return QueueStats(tier, queue, kind, 0, 0, 0, False, f"{type(exc).__name__}: {exc}")
    return QueueStats(
        tier,
        queue,
        kind,
        int(attrs.get("ApproximateNumberOfMessages", 0)),
        int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        True,
    )


def queue_stats(settings: Settings | None = None, parallel: bool = True) -> list[QueueStats]:
    """Attributes of every tier queue and DLQ (blocking: boto3). The calls go out together
    (boto3 clients are thread-safe) unless ``parallel`` is off: one after another, ten round
    trips to SQS take ten times as long."""
    s = settings or get_settings()
    client = _sqs(s)
    targets = [
        (tier, kind, queue)
        for tier, name in s.queues.items()
        for kind, queue in (("queue", name), ("dlq", f"{name}-dlq"))
    ]
    if not parallel:
        return [_queue_stat(client, *t) for t in targets]
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(lambda t: _queue_stat(client, *t), targets))


# A reading older than this many refresh intervals (no scrape for a while) is not served.
STALE_FACTOR = 4


class QueueSampler:
    """The last reading of every queue's attributes, shared by one process's scrapes.

    Ten GetQueueAttributes calls are most of a scrape's cost (boto3 signs and parses each in
    Python), while the figures are approximate anyway and the alert rules wait minutes. So a
    scrape serves the last reading while it is younger than ``STALE_FACTOR`` refresh
    intervals, and once it has answered, a reading older than ``refresh`` seconds is renewed
    in the background (one at a time, its calls one after another, so it does not compete
    with the next scrape). No reading yet, or a stale one, and the scrape waits for a fresh
    one; ``refresh`` 0 reads on every scrape. The queue figures are thus about one scrape
    interval old; the reading's age is exported beside them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading: tuple[float, list[QueueStats]] | None = None
        self._refreshing = False

    def _read(self, settings: Settings, parallel: bool = True) -> tuple[float, list[QueueStats]]:
        reading = (time.monotonic(), queue_stats(settings, parallel))
        with self._lock:
            if self._reading is None or reading[0] > self._reading[0]:
                self._reading = reading
        return reading

    def _read_in_background(self, settings: Settings) -> None:
        try:
            self._read(settings, parallel=False)
        finally:
            with self._lock:
                self._refreshing = False

    async def get(self, settings: Settings) -> tuple[list[QueueStats], float]:
        """The queue figures and their age in seconds."""
        refresh = settings.metrics_queue_refresh_seconds
        reading = self._reading
        if reading is None or time.monotonic() - reading[0] > refresh * STALE_FACTOR:
            reading = await asyncio.to_thread(self._read, settings)
        return reading[1], time.monotonic() - reading[0]

    def refresh_if_due(self, settings: Settings) -> None:
        """After a scrape: renew a reading older than the refresh interval, in the background."""
        with self._lock:
            reading = self._reading
            due = (
                reading is None
                or time.monotonic() - reading[0] > settings.metrics_queue_refresh_seconds
            )
            if not due or self._refreshing or settings.metrics_queue_refresh_seconds <= 0:
                return
            self._refreshing = True
        threading.Thread(target=self._read_in_background, args=(settings,), daemon=True).start()


sampler = QueueSampler()


@dataclass
class Histogram:
    buckets: list[int]  # cumulative counts, one per BUCKETS entry
    count: int
    total: float


@dataclass
class ActorStats:
    actor: str
    tier: str
    by_status: dict[str, int]
    retries: int
    processing: Histogram
    queue_wait: Histogram
    resends: int = 0  # messages re-sent by the job lifeline


def _oldest(ages: Iterable[PendingAge]) -> dict[str, float]:
    return {a.tier: a.age for a in ages}


async def oldest_pending() -> dict[str, float]:
    """Age of the oldest job not yet started, per tier (tiers with none waiting are absent)."""
    return _oldest(await pending_ages())


async def job_stats() -> tuple[list[ActorStats], dict[str, float]]:
    stats = await job_table_stats(BUCKETS)
    empty = [0] * len(BUCKETS)
    actors: dict[tuple[str, str], ActorStats] = {}

    def actor(name: str, tier: str) -> ActorStats:
        key = (name or "unknown", tier)
        if key not in actors:
            actors[key] = ActorStats(
                key[0], tier, {}, 0, Histogram(list(empty), 0, 0.0), Histogram(list(empty), 0, 0.0)
            )
        return actors[key]

    for c in stats.counts:
        a = actor(c.actor_name, c.tier)
        a.by_status[c.status] = c.n
        a.retries += c.retries
        a.resends += c.resends
    for s in stats.sums:
        a = actor(s.actor_name, s.tier)
        a.processing.count = a.queue_wait.count = s.n
        a.processing.total = s.processing_sum
        a.queue_wait.total = s.wait_sum
    for b in stats.buckets:
        a = actor(b.actor_name, b.tier)
        a.processing.buckets[b.i - 1] = b.processing_le
        a.queue_wait.buckets[b.i - 1] = b.wait_le
    return sorted(actors.values(), key=lambda a: (a.tier, a.actor)), _oldest(stats.oldest)


# --- Prometheus text exposition (version 0.0.4) -------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self.lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def histogram(self, name: str, h: Histogram, **labels: str) -> None:
        for bound, count in zip(BUCKETS, h.buckets, strict=True):
            self.sample(f"{name}_bucket", count, **labels, le=_number(bound))
        self.sample(f"{name}_bucket", h.count, **labels, le="+Inf")
        self.sample(f"{name}_sum", h.total, **labels)
        self.sample(f"{name}_count", h.count, **labels)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _render_queues(out: Exposition, queues: Sequence[QueueStats], age: float) -> None:
    for attr, name, help_text in (
        ("visible", "academy_sqs_messages_visible", "Messages waiting in the queue."),
        ("in_flight", "academy_sqs_messages_in_flight", "Messages received, not yet deleted."),
        ("delayed", "academy_sqs_messages_delayed", "Messages delayed (retry back-off)."),
    ):
        out.family(name, "gauge", help_text)
        for q in queues:
            if q.up:
                out.sample(name, getattr(q, attr), queue=q.queue, tier=q.tier, kind=q.kind)
    out.family("academy_sqs_up", "gauge", "1 when the queue's attributes could be read.")
    for q in queues:
        out.sample("academy_sqs_up", 1 if q.up else 0, queue=q.queue, tier=q.tier, kind=q.kind)
    out.family(
        "academy_sqs_reading_age_seconds",
        "gauge",
        "Age of the queue attributes above (read at most every METRICS_QUEUE_REFRESH_SECONDS).",
    )
    out.sample("academy_sqs_reading_age_seconds", round(age, 3))


def render(
    queues: Sequence[QueueStats],
    actors: Iterable[ActorStats],
    oldest: dict[str, float],
    tiers: Iterable[str],
    scrape_seconds: float,
    queues_age: float = 0.0,
) -> str:
    out = Exposition()
    _render_queues(out, queues, queues_age)
    out.family(
        "academy_queue_oldest_pending_job_age_seconds",
        "gauge",
        "Age of the oldest job not yet started, per tier (0 when none waits).",
    )
    for tier in tiers:
        out.sample("academy_queue_oldest_pending_job_age_seconds", oldest.get(tier, 0.0), tier=tier)

    actors = list(actors)
    out.family("academy_jobs_finished_total", "counter", "Jobs finished, by actor and outcome.")
    for a in actors:
        for status, outcome in (("DONE", "done"), ("FAILED", "failed")):
            out.sample(
                "academy_jobs_finished_total",
                a.by_status.get(status, 0),
                actor=a.actor,
                tier=a.tier,
                outcome=outcome,
            )
    out.family("academy_jobs_current", "gauge", "Jobs pending or running now, by actor.")
    for a in actors:
        for status in ("PENDING", "RUNNING"):
            out.sample(
                "academy_jobs_current",
                a.by_status.get(status, 0),
                actor=a.actor,
                tier=a.tier,
                status=status.lower(),
            )
    out.family("academy_job_retries_total", "counter", "Attempts beyond the first, by actor.")
    for a in actors:
        out.sample("academy_job_retries_total", a.retries, actor=a.actor, tier=a.tier)
    out.family(
        "academy_job_lifeline_resends_total",
        "counter",
        "Messages of silent jobs re-sent by the job lifeline, by the job's first actor.",
    )
    for a in actors:
        out.sample("academy_job_lifeline_resends_total", a.resends, actor=a.actor, tier=a.tier)
    out.family(
        "academy_job_processing_seconds", "histogram", "From a job's start to its end, by actor."
    )
    for a in actors:
        out.histogram("academy_job_processing_seconds", a.processing, actor=a.actor, tier=a.tier)
    out.family(
        "academy_job_queue_wait_seconds",
        "histogram",
        "From a job's message being sent to its first start, by actor.",
    )
    for a in actors:
        out.histogram("academy_job_queue_wait_seconds", a.queue_wait, actor=a.actor, tier=a.tier)
    out.family("academy_metrics_scrape_seconds", "gauge", "Time taken to collect these metrics.")
    out.sample("academy_metrics_scrape_seconds", round(scrape_seconds, 4))
    return out.text()


async def collect(settings: Settings | None = None) -> str:
    s = settings or get_settings()
    started = time.perf_counter()
    (queues, age), (actors, oldest) = await asyncio.gather(sampler.get(s), job_stats())
    text = render(queues, actors, oldest, s.queues, time.perf_counter() - started, age)
    sampler.refresh_if_due(s)
    return text


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Read an exposition back: {(name, labels): value}. Strict: raises on a bad line."""
    sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = sample.match(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample: {line!r}")
        labels = frozenset(label.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out
