"""The process supervisor of ``just dev``: a child that exits is started again after a
backoff, with a log line; the stack gives up only when one child keeps dying.

Children stop in stages, in the order ``stop`` is given: ``just dev`` stops the workers
first, then the API side, so a worker finishes (and gives its held messages back) while
the API, database and queues it talks to are still up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Spawn = Callable[[list[str]], subprocess.Popen[bytes]]


@dataclass
class Child:
    name: str
    cmd: list[str]
    stage: str  # children of one stage stop together
    proc: subprocess.Popen[bytes] | None = None
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class GaveUp(Exception):
    """A child died too often: the stack stops (the message names it)."""


class Supervisor:
    """Keeps children running: ``check()`` once in a while restarts the ones that exited."""

    def __init__(
        self,
        spawn: Spawn,
        *,
        max_deaths: int = 5,
        window: float = 60.0,
        backoff: float = 1.0,
        backoff_cap: float = 30.0,
        out: Callable[[str], None] = print,
    ) -> None:
        self.spawn = spawn
        self.max_deaths = max_deaths
        self.window = window
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.out = out
        self.children: list[Child] = []

    def add(self, name: str, cmd: list[str], stage: str) -> Child:
        child = Child(name, cmd, stage)
        self._start(child)
        self.children.append(child)
        return child

    def _start(self, child: Child) -> None:
        shown = child.cmd[2:] if child.cmd[0] == sys.executable else child.cmd
        self.out(f"  starting {child.name}: {' '.join(shown)}")
        child.proc = self.spawn(child.cmd)
        child.restart_at = None

    def procs(self) -> list[subprocess.Popen[bytes]]:
        return [c.proc for c in self.children if c.proc is not None]

    def check(self, now: float | None = None) -> None:
        """Restart children whose backoff is over; schedule one for each child that
        exited. Raises ``GaveUp`` when a child died ``max_deaths`` times within ``window``."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._start(child)
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            child.deaths.append(now)
            while child.deaths and child.deaths[0] < now - self.window:
                child.deaths.popleft()
            dead = len(child.deaths)
            if dead >= self.max_deaths:
                raise GaveUp(
                    f"{child.name} exited {dead} times within {self.window:.0f}s "
                    f"(last with {child.proc.returncode}); stopping"
                )
            delay = min(self.backoff_cap, self.backoff * 2 ** (dead - 1))
            child.restart_at = now + delay
            self.out(
                f"  {child.name} exited with {child.proc.returncode}; restarting in {delay:g}s "
                f"({dead} of {self.max_deaths} exits allowed within {self.window:.0f}s)"
            )

    def stop(self, stages: Sequence[str], timeout: float = 30.0) -> None:
        """SIGTERM each stage, wait for it (SIGKILL what outlives ``timeout``), then the next;
        children of a stage not named stop last."""
        rest = [c.stage for c in self.children if c.stage not in stages]
        for stage in [*stages, *dict.fromkeys(rest)]:
            members = [c for c in self.children if c.stage == stage and c.proc is not None]
            if not members:
                continue
            self.out(f"  stopping {stage}: {', '.join(c.name for c in members)}")
            for child in members:
                assert child.proc is not None
                if child.proc.poll() is None:
                    # Exactly one SIGTERM: a second one makes Dramatiq hard-kill its workers.
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for child in members:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.out(f"  {child.name} did not stop in time; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.proc.pid, signal.SIGKILL)
                    child.proc.wait()


def spawner(cwd: Path, preexec: Callable[[], None] | None = None) -> Spawn:
    """Children in sessions of their own (the terminal's Ctrl-C reaches only ``just dev``,
    which stops each one once, in order), with the project on their path."""

    def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(cwd)},
            start_new_session=True,
            preexec_fn=preexec,
        )

    return spawn
