"""`just dev` from nothing: it becomes healthy, every tier's probe runs, a killed child is
started again, and Ctrl-C stops it in order, without an error line, leaving no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from ops.runtime import DATA_DIR, free_port
from ops.settings import get_settings
from tests.conftest import ROOT

CLEARED = ("DATABASE_URL", "SQS_ENDPOINT_URL", "R2_ENDPOINT", "R2_ACCESS_KEY", "R2_SECRET_KEY")


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines()[1:]:
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _children(pid: int, containing: str) -> list[int]:
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(line.split()[0]) for line in out.splitlines() if containing in line]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running.
    stat = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return bool(stat.stdout.strip()) and not stat.stdout.strip().startswith("Z")


@pytest.mark.slow
def test_dev_starts_healthy_and_ctrl_c_leaves_nothing(tmp_path_factory) -> None:
    data_dir = DATA_DIR / f"dev-test-{os.getpid()}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(ACADEMY_DATA_DIR=str(data_dir), PORT=str(port), PYTHONPATH=str(ROOT))
    log = tmp_path_factory.mktemp("dev") / "dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.commands.dev"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group, so the test can send Ctrl-C the way a terminal does.
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "academy is up" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        text = log.read_text(errors="replace")
        assert "15 OK, 0 FAIL" in text, text[-4000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
        postmaster = int((data_dir / "pg-dev" / "postmaster.pid").read_text().split()[0])
        assert len(_descendants(proc.pid)) >= 6  # moto, watchdog, api, four workers (+ theirs)

        # A worker killed by the kernel is started again, with a log line.
        queue = get_settings().queue_for("messaging")
        [killed] = _children(proc.pid, queue)
        os.killpg(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not [p for p in _children(proc.pid, queue) if p != killed]:
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(0.2)
        assert "worker messaging exited with -9; restarting in" in log.read_text(errors="replace")
        time.sleep(3)  # let the new worker get to its queues before it is stopped again

        children = _descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal's Ctrl-C sends (to the group)
        assert proc.wait(90) == 0
        text = log.read_text(errors="replace")
        stops = [text.index(f"stopping {what}") for what in ("workers", "api", "queues")]
        assert stops == sorted(stops), text[-4000:]
        for bad in ("CRITICAL", '"level": "critical"', "Traceback"):
            assert bad not in text, text[-6000:]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in {*children, postmaster}):
            time.sleep(0.2)
        left = sorted(p for p in {*children, postmaster} if _alive(p))
        assert not left, subprocess.run(
            ["ps", "-fp", ",".join(map(str, left))], capture_output=True, text=True
        ).stdout
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
