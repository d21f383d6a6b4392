"""The supervisor of `just dev`, on real child processes (the clock is passed in)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ops.commands.supervisor import GaveUp, Supervisor, spawner

CRASH = [sys.executable, "-c", "raise SystemExit(3)"]
SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def supervisor(lines: list[str]) -> Supervisor:
    return Supervisor(spawner(Path.cwd()), backoff=1.0, backoff_cap=4.0, out=lines.append)


def die_and_check(sup: Supervisor, now: float) -> None:
    for child in sup.children:
        assert child.proc is not None
        child.proc.wait(30)
    sup.check(now=now)


def test_a_dead_child_is_restarted_after_a_growing_backoff() -> None:
    lines: list[str] = []
    sup = supervisor(lines)
    child = sup.add("crasher", CRASH, "workers")
    first = child.proc
    die_and_check(sup, now=0.0)
    assert child.restart_at == 1.0
    assert "  crasher exited with 3; restarting in 1s (1 of 5 exits allowed within 60s)" in lines
    sup.check(now=0.5)
    assert child.proc is first  # still backing off
    sup.check(now=1.0)
    assert child.proc is not first and lines[-1].startswith("  starting crasher")
    die_and_check(sup, now=2.0)
    die_and_check(sup, now=4.0)  # restarted at 4
    die_and_check(sup, now=5.0)
    assert child.restart_at == 5.0 + 4.0  # 1, 2, 4, then capped at 4


def test_five_exits_within_a_minute_give_up_but_spread_out_ones_do_not() -> None:
    lines: list[str] = []
    sup = supervisor(lines)
    sup.add("crasher", CRASH, "workers")
    for n in range(4):
        now = n * 70.0  # a minute and more apart: never five in the window
        die_and_check(sup, now=now)
        sup.check(now=now + 10)
    for n in range(4):
        now = 1000.0 + n * 10
        die_and_check(sup, now=now)
        sup.check(now=now + 5)
    with pytest.raises(GaveUp, match="crasher exited 5 times within 60s"):
        die_and_check(sup, now=1045.0)


def test_stop_goes_stage_by_stage_in_the_order_given() -> None:
    lines: list[str] = []
    sup = supervisor(lines)
    api = sup.add("api", SLEEP, "api")
    worker = sup.add("worker", SLEEP, "workers")
    other = sup.add("edge", SLEEP, "edge")
    sup.stop(("workers", "api"), timeout=10)
    assert [line for line in lines if "stopping" in line] == [
        "  stopping workers: worker",
        "  stopping api: api",
        "  stopping edge: edge",
    ]
    assert all(c.proc is not None and c.proc.poll() is not None for c in (api, worker, other))
