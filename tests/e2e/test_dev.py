"""`just dev` from nothing: it becomes healthy, every tier's probe runs, a killed child is
started again, and Ctrl-C stops it in order, without an error line, leaving no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from ops.runtime import DATA_DIR, free_port
from ops.settings import get_settings
from tests.dev_stack import DevStack, alive, children, descendants


@pytest.mark.slow
def test_dev_starts_healthy_and_ctrl_c_leaves_nothing(tmp_path_factory) -> None:
    data_dir = DATA_DIR / f"dev-test-{os.getpid()}"
    port = free_port()
    dev = DevStack(data_dir, port, tmp_path_factory.mktemp("dev") / "dev.log")
    try:
        dev.start()
        assert "15 OK, 0 FAIL" in dev.text(), dev.text()[-4000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200
        postmaster = dev.postmaster()
        assert len(descendants(dev.pid)) >= 6  # moto, watchdog, api, four workers (+ theirs)

        # A worker killed by the kernel is started again, with a log line.
        queue = get_settings().queue_for("messaging")
        [killed] = children(dev.pid, queue)
        os.killpg(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not [p for p in children(dev.pid, queue) if p != killed]:
            assert dev.proc is not None and dev.proc.poll() is None, dev.text()[-4000:]
            assert time.monotonic() < deadline, dev.text()[-4000:]
            time.sleep(0.2)
        assert "worker messaging exited with -9; restarting in" in dev.text()
        time.sleep(3)  # let the new worker get to its queues before it is stopped again

        everything = {*descendants(dev.pid), postmaster}
        assert dev.interrupt() == 0
        text = dev.text()
        stops = [text.index(f"stopping {what}") for what in ("workers", "api", "queues")]
        assert stops == sorted(stops), text[-4000:]
        for bad in ("CRITICAL", '"level": "critical"', "Traceback"):
            assert bad not in text, text[-6000:]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(alive(p) for p in everything):
            time.sleep(0.2)
        left = sorted(p for p in everything if alive(p))
        assert not left, subprocess.run(
            ["ps", "-fp", ",".join(map(str, left))], capture_output=True, text=True
        ).stdout
    finally:
        dev.close()
        shutil.rmtree(data_dir, ignore_errors=True)
