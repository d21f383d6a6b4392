"""Watch progress: the union of watched intervals, coverage, and the proctored rules.

A player reports, every ~10 s, its position and the intervals it played since the last
report. We keep the union of everything ever played (so re-watching a part counts once
and skipping a part leaves a hole), and completion is coverage -- the union's length over
the duration -- reaching a threshold, never "the position reached the end".

In a proctored lecture:

* seeking past the furthest point watched from the start is not counted: only intervals
  that begin at or before the current watched frontier (plus a little slack for the
  player's own jitter) extend it; a later interval is dropped;
* a heartbeat whose sequence number is not above the last accepted one is rejected (out
  of order or replayed);
* a heartbeat claiming more newly played time than the watch's real-time clock allows
  (times a small tolerance) is rejected: faster than real time. The clock advances by the
  playback each accepted heartbeat is credited with, but never lags the heartbeat's time
  by more than ``REALTIME_CARRY_SECONDS``: a heartbeat the server handled late (queued
  behind others on a busy host) does not make the player's next one, sent on time, look
  too fast, and time not played is banked for at most that long.
"""

from __future__ import annotations

from dataclasses import dataclass

Interval = tuple[float, float]

# A player's own jitter: a gap this small between intervals is not a seek.
SEEK_SLACK_SECONDS = 1.5
# Real time allows for timer skew and network delay between heartbeats.
REALTIME_TOLERANCE = 1.10
REALTIME_GRACE_SECONDS = 2.0
REALTIME_CARRY_SECONDS = 10.0


class HeartbeatRejected(Exception):
    """A proctored heartbeat that breaks the rules; nothing of it is stored."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "out-of-order" | "too-fast"


def clean(intervals: list[list[float]] | list[Interval], duration: float) -> list[Interval]:
    """Clip to [0, duration], drop empty ones, and return them sorted."""
    out: list[Interval] = []
    for start, end in intervals:
        s, e = max(0.0, float(start)), min(float(duration), float(end))
        if e > s:
            out.append((s, e))
    return sorted(out)


def union(intervals: list[Interval], gap: float = 0.0) -> list[Interval]:
    """Merge overlapping (or within ``gap`` of each other) intervals."""
    merged: list[Interval] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def covered(intervals: list[Interval]) -> float:
    return sum(e - s for s, e in union(intervals))


def new_time(existing: list[Interval], played: list[Interval]) -> float:
    """How much of ``played`` is not already in ``existing``."""
    return covered(existing + played) - covered(existing)


def frontier(intervals: list[Interval]) -> float:
    """The furthest point reached by watching from the start without a skip."""
    reach = 0.0
    for s, e in union(intervals):
        if s > reach + SEEK_SLACK_SECONDS:
            break
        reach = max(reach, e)
    return reach


def anti_seek(existing: list[Interval], played: list[Interval]) -> list[Interval]:
    """The part of ``played`` that counts in proctored mode: what extends (or stays within)
    the watched frontier; anything that starts beyond it was reached by seeking."""
    reach = frontier(existing)
    counted: list[Interval] = []
    for s, e in sorted(played):
        if s > reach + SEEK_SLACK_SECONDS:
            continue
        counted.append((s, e))
        reach = max(reach, e)
    return counted


@dataclass(frozen=True)
class WatchState:
    intervals: list[Interval]
    watched_seconds: float
    coverage: float  # 0..1
    frontier: float
    completed: bool
    fresh: float  # newly played seconds, what the real-time clock advances by


def apply_heartbeat(
    existing: list[Interval],
    played: list[Interval],
    *,
    duration: float,
    completion_ratio: float,
    proctored: bool,
    seq: int | None = None,
    last_seq: int | None = None,
    elapsed_seconds: float | None = None,
) -> WatchState:
    """The new state after one heartbeat; raises ``HeartbeatRejected`` in proctored mode."""
    played = clean(played, duration)
    fresh = new_time(existing, played)
    if proctored:
        if seq is None:
            raise HeartbeatRejected("out-of-order", "a proctored heartbeat needs a sequence number")
        if last_seq is not None and seq <= last_seq:
            raise HeartbeatRejected(
                "out-of-order", f"heartbeat {seq} arrived after heartbeat {last_seq}"
            )
        allowed = (elapsed_seconds or 0.0) * REALTIME_TOLERANCE + REALTIME_GRACE_SECONDS
        if fresh > allowed:
            raise HeartbeatRejected(
                "too-fast",
                f"{fresh:.1f} s of new playback reported {elapsed_seconds or 0:.1f} s after "
                "the previous heartbeat (faster than real time)",
            )
        played = anti_seek(existing, played)
    merged = union(existing + played)
    watched = covered(merged)
    coverage = min(1.0, watched / duration) if duration > 0 else 0.0
    return WatchState(
        intervals=[(round(s, 3), round(e, 3)) for s, e in merged],
        watched_seconds=round(watched, 3),
        coverage=coverage,
        frontier=frontier(merged),
        completed=coverage + 1e-9 >= completion_ratio,
        fresh=fresh,
    )
