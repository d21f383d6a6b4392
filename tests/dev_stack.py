"""`just dev` as a process under test: start it, wait until it is up, Ctrl-C it the way a
terminal does, or SIGKILL everything it started (its database included)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ops.runtime import pid_alive as alive
from tests.conftest import ROOT

# Unset, so `just dev` starts its own database, queues and storage.
CLEARED = ("DATABASE_URL", "SQS_ENDPOINT_URL", "R2_ENDPOINT", "R2_ACCESS_KEY", "R2_SECRET_KEY")


def descendants(pid: int) -> set[int]:
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


def children(pid: int, containing: str) -> list[int]:
    """Direct children of ``pid`` whose command line contains ``containing``."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(line.split()[0]) for line in out.splitlines() if containing in line]


class DevStack:
    def __init__(self, data_dir: Path, port: int, log: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        self.env.update(ACADEMY_DATA_DIR=str(data_dir), PORT=str(port), PYTHONPATH=str(ROOT))
        self.env.update(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 180) -> None:
        """Start it and wait for its "academy is up" (asserting the readiness check passed)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ops.commands.dev"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, so Ctrl-C can be sent the way a terminal does.
                start_new_session=True,
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while self.text().count("academy is up") < self.starts:
            assert self.proc.poll() is None, self.text()[-4000:]
            assert time.monotonic() < deadline, self.text()[-4000:]
            time.sleep(0.5)
        assert self.text().count(" OK, 0 FAIL") >= self.starts, self.text()[-4000:]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def postmaster(self) -> int:
        return int((self.data_dir / "pg-dev" / "postmaster.pid").read_text().split()[0])

    def runtime_env(self) -> dict[str, str]:
        """What it published for other commands (database URL, endpoints)."""
        return dict(json.loads((self.data_dir / "dev.json").read_text())["env"])

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, as the terminal sends it: SIGINT to the whole process group."""
        os.killpg(self.pid, signal.SIGINT)
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9_everything(self) -> None:
        """SIGKILL, at once, every process it started and the database server."""
        postmaster = self.postmaster()
        everything = {self.pid, *descendants(self.pid), postmaster, *descendants(postmaster)}
        for pid in everything:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)
        deadline = time.monotonic() + 30
        while any(alive(p) for p in everything) and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> Any:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9_everything()
