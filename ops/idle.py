"""Idle shutdown and graceful shutdown for worker processes (the seed's cost defence).

The rule: a worker host stops itself once every queue it consumes has answered
``EC2_IDLE_STOP_THRESHOLD`` consecutive empty long polls (``SQS_WAIT_TIME_SECONDS`` each, so
5 x 20 s by default) while nothing is in progress, prefetched or delayed in memory.

* **The signal is the consumer's own.** ``actors.sqs.AcademySQSConsumer`` counts its
  consecutive empty receive calls (``empty_polls``) and the messages it holds
  (``in_flight``); this middleware only reads them. It adds no receive call, so idling
  costs exactly one long poll per queue per wait period.
* **Re-check after deciding.** The known trap is a stop that races a message just received.
  One poll before the threshold, every consumer is suspended (no new receive starts) and the
  middleware waits for the long poll already under way to return -- the last one counted;
  only if it brought nothing is the stop carried out. Otherwise receiving resumes and the
  countdown starts over. So the stop comes about ``threshold x wait`` after the last job.
* **Exactly one shutdown per host.** Under ``dramatiq -p N`` each process runs its own
  middleware. Each publishes whether it is idle in a small state directory keyed by the
  master's pid; the first to find *every* process idle takes a file lock, records that it
  signalled, and sends the master one SIGTERM. The master forwards it once to each process,
  so every one stops gracefully and the exit code is 0 (a second SIGTERM would hard-kill).
* **Then the instance.** ``IDLE_STOP_MODE=ec2``: after its own graceful stop, the process
  that signalled waits for its siblings to finish and stops its own EC2 instance (IMDSv2
  token, instance id, region, then ``ec2.stop_instances``). ``exit``: only the clean exit (for
  containers and ECS, whose scheduler decides what happens next). ``off``: never stops.

Limits: messages delayed *in SQS* (a retry's back-off) are not the worker's to wait for; the
scale-up side (queue-depth alarm) brings a host back for them. A message received by a
sibling process in the instant between the all-idle check and the signal is not lost: the
graceful stop lets it finish, or returns it to the queue at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ops.logging import log_event
from ops.runtime import pid_alive
from ops.settings import Settings, get_settings

log = logging.getLogger("ops.idle")

IMDS_TOKEN_TTL_SECONDS = 60
IMDS_TIMEOUT_SECONDS = 2.0
# How long the signalling process waits for its siblings to finish before stopping the host.
SIBLINGS_STOP_TIMEOUT_SECONDS = 600.0


# --- what the consumers say ------------------------------------------------------------


@dataclass(frozen=True)
class IdleState:
    """One look at a worker process: the smallest empty-poll streak over its queues and
    everything it still has in memory."""

    empty_polls: int
    in_flight: int  # held by the consumers: prefetched, queued for a thread, or running
    queued: int  # work-queue items not yet marked done
    delayed: int  # in the consumers' in-memory delay queues

    @property
    def busy(self) -> bool:
        return self.in_flight > 0 or self.queued > 0 or self.delayed > 0


def _consumers(worker: dramatiq.Worker) -> list[Any]:
    return [getattr(thread, "consumer", None) for thread in list(worker.consumers.values())]


def observe(worker: dramatiq.Worker) -> IdleState | None:
    """The worker's idle state, or None while some consumer cannot tell (not started yet,
    restarting, or not one of ours)."""
    consumers = _consumers(worker)
    if not consumers or any(c is None or not hasattr(c, "empty_polls") for c in consumers):
        return None
    threads = list(worker.consumers.values())
    return IdleState(
        empty_polls=min(int(c.empty_polls) for c in consumers),
        in_flight=sum(int(c.in_flight) for c in consumers),
        queued=int(worker.work_queue.unfinished_tasks),
        delayed=sum(int(t.delay_queue.unfinished_tasks) for t in threads),
    )


def suspend_receiving(worker: dramatiq.Worker, timeout: float) -> bool:
    """Stop every consumer from starting a receive call; True once none is under way.

    All are flagged first, then waited for, so the wait is one long poll, not one per queue.
    """
    consumers = [c for c in _consumers(worker) if c is not None and hasattr(c, "suspend")]
    for consumer in consumers:
        consumer.suspended.set()
    deadline = time.monotonic() + timeout
    settled = True
    for consumer in consumers:
        settled = consumer.suspend(max(0.0, deadline - time.monotonic())) and settled
    return settled


def resume_receiving(worker: dramatiq.Worker) -> None:
    for consumer in _consumers(worker):
        if consumer is not None and hasattr(consumer, "resume"):
            consumer.resume()


# --- one shutdown per host ---------------------------------------------------------------


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks (Linux), so a reused pid gets a fresh state."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


class HostCoordinator:
    """Shared state of the worker processes under one ``dramatiq`` master.

    Files in ``<tmp>/academy-idle-<master pid>-<start>/``: ``<pid>.alive`` per process,
    ``<pid>.idle`` while that process is idle, ``signalled`` once the master was told to
    stop, and ``lock`` (flock) around the decision.
    """

    def __init__(self, master_pid: int, root: Path | None = None, pid: int | None = None):
        self.master_pid = master_pid
        self.pid = pid if pid is not None else os.getpid()
        base = root or Path(tempfile.gettempdir())
        self.dir = base / f"academy-idle-{master_pid}-{_process_start(master_pid)}"
        self._lock_fd: int | None = None

    def register(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{self.pid}.alive").write_text(str(time.time()))

    def unregister(self) -> None:
        for name in (f"{self.pid}.alive", f"{self.pid}.idle"):
            with contextlib.suppress(FileNotFoundError):
                (self.dir / name).unlink()

    def mark(self, idle: bool) -> None:
        path = self.dir / f"{self.pid}.idle"
        if idle:
            if not path.exists():
                path.write_text(str(time.time()))
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def live_pids(self) -> list[int]:
        pids = []
        for path in self.dir.glob("*.alive"):
            pid = int(path.stem)
            if pid_alive(pid):
                pids.append(pid)
            else:  # died without unregistering
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return pids

    def all_idle(self) -> bool:
        pids = self.live_pids()
        return bool(pids) and all((self.dir / f"{pid}.idle").exists() for pid in pids)

    @property
    def signalled(self) -> bool:
        return (self.dir / "signalled").exists()

    def try_claim(self) -> bool:
        """True for exactly one caller per master: the one that may signal it."""
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if self.signalled or not self.all_idle():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return False
        (self.dir / "signalled").write_text(str(self.pid))
        self._lock_fd = fd  # held until the process exits
        return True

    def wait_for_siblings(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [p for p in self.live_pids() if p != self.pid]:
                return True
            time.sleep(0.2)
        return False

    def cleanup(self) -> None:
        self.unregister()
        if self.signalled and not [p for p in self.live_pids() if p != self.pid]:
            for path in self.dir.glob("*"):
                with contextlib.suppress(OSError):
                    path.unlink()
            with contextlib.suppress(OSError):
                self.dir.rmdir()


# --- stopping the instance ----------------------------------------------------------------


def _imds(endpoint: str, path: str, token: str | None = None, method: str = "GET") -> str:
    headers = (
        {"X-aws-ec2-metadata-token": token}
        if token
        else {"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_SECONDS)}
    )
    request = urllib.request.Request(f"{endpoint}{path}", method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=IMDS_TIMEOUT_SECONDS) as response:
        return str(response.read().decode().strip())


def stop_this_instance(settings: Settings | None = None) -> str:
    """Stop the EC2 instance this process runs on; returns its id.

    IMDSv2 only: a session token first (a PUT, which IMDSv1-style SSRF cannot forge), then
    the instance id and region with it, then ``ec2.stop_instances`` with the instance
    role's credentials. Raises on any failure: the caller logs it and the process still
    exits cleanly.
    """
    import boto3

    s = settings or get_settings()
    endpoint = s.ec2_metadata_endpoint
    token = _imds(endpoint, "/latest/api/token", method="PUT")
    instance_id = _imds(endpoint, "/latest/meta-data/instance-id", token)
    region = _imds(endpoint, "/latest/meta-data/placement/region", token)
    client = boto3.client("ec2", region_name=region, endpoint_url=s.ec2_endpoint_url or None)
    client.stop_instances(InstanceIds=[instance_id])
    return instance_id


# --- the middleware -------------------------------------------------------------------------


class IdleShutdown(Middleware):
    """Stops an idle worker host; see the module docstring for the rule.

    ``signal_master`` and ``stop_instance`` are injectable so the decision can be exercised
    without a ``dramatiq`` master or an EC2 host; by default they signal the CLI master and
    call :func:`stop_this_instance`. Outside the ``dramatiq`` CLI there is no master to
    signal and the middleware stays passive.
    """

    def __init__(
        self,
        *,
        threshold: int,
        mode: str,
        wait_seconds: float,
        check_interval: float = 1.0,
        signal_master: Callable[[], None] | None = None,
        stop_instance: Callable[[], object] | None = None,
        state_root: Path | None = None,
    ) -> None:
        if mode not in ("ec2", "exit", "off"):
            raise ValueError(f"unknown idle stop mode {mode!r}")
        self.threshold = max(1, threshold)
        self.mode = mode
        self.wait_seconds = wait_seconds
        self.check_interval = check_interval
        self._signal_master = signal_master
        self._stop_instance = stop_instance or stop_this_instance
        self._state_root = state_root
        self.coordinator: HostCoordinator | None = None
        self.signalled = False
        self._worker: dramatiq.Worker | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_logged = -1

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> IdleShutdown:
        s = settings or get_settings()
        return cls(
            threshold=s.ec2_idle_stop_threshold,
            mode=s.idle_stop_mode,
            wait_seconds=s.sqs_wait_time_seconds,
            check_interval=min(1.0, max(0.1, s.sqs_wait_time_seconds / 4)),
        )

    # Dramatiq hooks ------------------------------------------------------------------
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only the CLI's worker processes emit this: their parent is the master.
        if self.mode != "off" and self._signal_master is None:
            master = os.getppid()
            self.coordinator = HostCoordinator(master, self._state_root)
            self._signal_master = lambda: os.kill(master, signal.SIGTERM)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.mode == "off":
            return
        if self._signal_master is None:
            log.warning("idle shutdown needs the dramatiq CLI (no master to signal); disabled")
            return
        if self.coordinator is not None:
            self.coordinator.register()
        self._worker = worker
        self._thread = threading.Thread(target=self._watch, name="idle-shutdown", daemon=True)
        self._thread.start()
        log_event(
            log,
            "IDLE_SHUTDOWN_ARMED",
            mode=self.mode,
            threshold=self.threshold,
            wait_seconds=self.wait_seconds,
        )

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.set()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        coordinator = self.coordinator
        if coordinator is None:
            return
        coordinator.unregister()
        if self.signalled and self.mode == "ec2":
            if not coordinator.wait_for_siblings(SIBLINGS_STOP_TIMEOUT_SECONDS):
                log.warning("sibling worker processes still running; stopping the host anyway")
            try:
                instance_id = self._stop_instance()
                log_event(log, "IDLE_INSTANCE_STOPPED", instance_id=instance_id)
            except Exception as exc:
                log_event(
                    log,
                    "IDLE_INSTANCE_STOP_FAILED",
                    logging.ERROR,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                )
        if self.signalled:
            coordinator.cleanup()

    # The decision ----------------------------------------------------------------------
    def check_once(self) -> bool:
        """One look; True when this call signalled the master."""
        worker = self._worker
        if worker is None or self.signalled:
            return False
        state = observe(worker)
        if state is None:
            return False
        self._log_countdown(state)
        # Decide one poll early: the long poll under way when we suspend is the last one
        # counted, so the stop comes after ``threshold`` empty polls, not one more.
        if state.busy or state.empty_polls < max(1, self.threshold - 1):
            self._mark(False)
            return False
        self._mark(True)
        if self.coordinator is not None and not self.coordinator.all_idle():
            return False  # a sibling process is still working
        # Close the race: no new receive, wait out the one under way, look again.
        settled = suspend_receiving(worker, timeout=self.wait_seconds + 10)
        again = observe(worker)
        if not settled or again is None or again.busy or again.empty_polls < state.empty_polls:
            resume_receiving(worker)
            self._mark(False)
            log_event(log, "IDLE_SHUTDOWN_CANCELLED", reason="work arrived while deciding")
            return False
        if again.empty_polls < self.threshold:
            resume_receiving(worker)  # no poll was under way: not the last one yet
            return False
        self._log_countdown(again)
        if self.coordinator is not None and not self.coordinator.try_claim():
            resume_receiving(worker)
            return False
        self.signalled = True
        log_event(
            log,
            "IDLE_SHUTDOWN",
            mode=self.mode,
            empty_polls=again.empty_polls,
            threshold=self.threshold,
            idle_seconds=round(again.empty_polls * self.wait_seconds, 1),
        )
        assert self._signal_master is not None
        self._signal_master()
        return True

    def _mark(self, idle: bool) -> None:
        if self.coordinator is not None:
            self.coordinator.mark(idle)

    def _log_countdown(self, state: IdleState) -> None:
        polls = 0 if state.busy else min(state.empty_polls, self.threshold)
        if polls == self._last_logged:
            return
        if polls > 0 or self._last_logged > 0:
            log_event(
                log,
                "IDLE_COUNTDOWN",
                empty_polls=polls,
                threshold=self.threshold,
                in_flight=state.in_flight,
            )
        self._last_logged = polls

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_interval):
            try:
                if self.check_once():
                    return
            except Exception:
                log.exception("idle check failed")


class GracefulShutdown(Middleware):
    """On SIGTERM: stop receiving at once, let running jobs finish, and hand back every
    message not started (visibility 0, by Dramatiq's requeue and our consumer's close)."""

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        state = observe(worker)
        for consumer in _consumers(worker):
            if consumer is not None and hasattr(consumer, "suspended"):
                consumer.suspended.set()  # no new receive; one under way still returns
        log_event(
            log,
            "Graceful shutdown",
            in_flight=state.in_flight if state else None,
            queued=state.queued if state else None,
        )

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        log_event(log, "GRACEFUL_SHUTDOWN_DONE", pid=os.getpid())
