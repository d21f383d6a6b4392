"""Watch progress: union of intervals, coverage completion, proctored anti-seek and
heartbeat rules."""

from __future__ import annotations

import pytest

from pipelines.video.watch import HeartbeatRejected, apply_heartbeat, frontier, union


def beat(existing, played, *, proctored=False, **kw):
    return apply_heartbeat(
        existing, played, duration=100.0, completion_ratio=0.9, proctored=proctored, **kw
    )


def test_intervals_are_stored_as_their_union():
    state = beat([(0, 10)], [(5, 20), (30, 40)])
    assert state.intervals == [(0, 20), (30, 40)]
    assert state.watched_seconds == 30
    # Re-watching a part counts once.
    again = beat(state.intervals, [(0, 20)])
    assert again.watched_seconds == 30
    assert union([(0, 1), (1, 2), (5, 6)]) == [(0, 2), (5, 6)]
    # Out-of-range intervals are clipped to the video.
    assert beat([], [(-5, 3), (95, 120)]).intervals == [(0, 3), (95, 100)]


def test_completion_is_coverage_not_reaching_the_end():
    jumped_to_end = beat([(0, 10)], [(95, 100)])
    assert not jumped_to_end.completed
    watched_most = beat([(0, 50)], [(50, 89)])
    assert not watched_most.completed
    watched_enough = beat(watched_most.intervals, [(89, 90)])
    assert watched_enough.completed and watched_enough.coverage == pytest.approx(0.9)


def test_proctored_seek_past_the_frontier_is_not_counted():
    state = beat([(0, 20)], [(60, 70)], proctored=True, seq=2, last_seq=1, elapsed_seconds=10)
    assert state.intervals == [(0, 20)]
    # Continuing from the frontier counts, and so does re-watching earlier parts.
    state = beat(state.intervals, [(19, 29)], proctored=True, seq=3, last_seq=2, elapsed_seconds=10)
    assert state.intervals == [(0, 29)]
    assert frontier(state.intervals) == 29
    # Without proctoring the same seek counts.
    assert beat([(0, 20)], [(60, 70)]).intervals == [(0, 20), (60, 70)]


def test_proctored_heartbeats_must_be_in_order():
    with pytest.raises(HeartbeatRejected) as exc:
        beat([(0, 10)], [(10, 20)], proctored=True, seq=4, last_seq=4, elapsed_seconds=10)
    assert exc.value.kind == "out-of-order"
    with pytest.raises(HeartbeatRejected):
        beat([(0, 10)], [(10, 20)], proctored=True, seq=3, last_seq=4, elapsed_seconds=10)
    with pytest.raises(HeartbeatRejected):
        beat([(0, 10)], [(10, 20)], proctored=True, seq=None, last_seq=4, elapsed_seconds=10)


def test_proctored_heartbeats_faster_than_real_time_are_rejected():
    with pytest.raises(HeartbeatRejected) as exc:
        beat([(0, 10)], [(10, 40)], proctored=True, seq=2, last_seq=1, elapsed_seconds=10)
    assert exc.value.kind == "too-fast"
    # Real time, with a little slack for timer skew, is fine.
    ok = beat([(0, 10)], [(10, 22)], proctored=True, seq=2, last_seq=1, elapsed_seconds=10)
    assert ok.intervals == [(0, 22)]
    # Re-watched time is not new time.
    ok = beat([(0, 60)], [(0, 60)], proctored=True, seq=2, last_seq=1, elapsed_seconds=10)
    assert ok.watched_seconds == 60
