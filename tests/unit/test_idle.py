"""The idle-shutdown decision, on consumers whose counters the test sets.

The real consumer and worker are exercised end to end in tests/e2e/test_idle.py; here the
rule itself: the threshold, busy states, the re-check after deciding, and one signal per host.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any

from ops.idle import HostCoordinator, IdleShutdown, observe


class FakeConsumer:
    def __init__(self) -> None:
        self.empty_polls = 0
        self.in_flight = 0
        self.suspended = threading.Event()
        self.on_suspend: Any = None

    def suspend(self, timeout: float) -> bool:
        self.suspended.set()
        if self.on_suspend is not None:
            self.on_suspend(self)  # what the long poll under way brought back
        return True

    def resume(self) -> None:
        self.suspended.clear()


class FakeThread:
    def __init__(self) -> None:
        self.consumer = FakeConsumer()
        self.delay_queue: queue.PriorityQueue[Any] = queue.PriorityQueue()


class FakeWorker:
    def __init__(self, queues: int = 2) -> None:
        self.consumers = {f"q{i}": FakeThread() for i in range(queues)}
        self.work_queue: queue.PriorityQueue[Any] = queue.PriorityQueue()

    def polls(self, n: int) -> None:
        for thread in self.consumers.values():
            thread.consumer.empty_polls = n

    def consumer(self, i: int = 0) -> FakeConsumer:
        return self.consumers[f"q{i}"].consumer


def make(worker: FakeWorker, threshold: int = 3, **kw: Any) -> tuple[IdleShutdown, list[int]]:
    signals: list[int] = []
    mw = IdleShutdown(
        threshold=threshold,
        mode="exit",
        wait_seconds=0.1,
        signal_master=lambda: signals.append(1),
        **kw,
    )
    mw._worker = worker  # type: ignore[assignment]
    return mw, signals


def test_idle_worker_signals_once_after_the_threshold() -> None:
    worker = FakeWorker()
    mw, signals = make(worker, threshold=3)
    for n in range(3):
        worker.polls(n)
        assert not mw.check_once()
    worker.polls(3)
    assert mw.check_once()
    assert mw.check_once() is False and signals == [1]
    # Receiving stays suspended: the stop is under way.
    assert all(t.consumer.suspended.is_set() for t in worker.consumers.values())


def test_every_queue_must_reach_the_threshold() -> None:
    worker = FakeWorker()
    mw, signals = make(worker, threshold=3)
    worker.consumer(0).empty_polls = 10
    worker.consumer(1).empty_polls = 2
    assert not mw.check_once() and signals == []


def test_busy_worker_never_signals() -> None:
    worker = FakeWorker()
    mw, signals = make(worker, threshold=1)
    worker.polls(50)
    worker.consumer(1).in_flight = 1  # prefetched or running
    assert not mw.check_once()
    worker.consumer(1).in_flight = 0
    worker.work_queue.put(object())  # handed to the threads, not yet done
    assert not mw.check_once()
    worker.work_queue.get()
    worker.work_queue.task_done()
    worker.consumers["q0"].delay_queue.put(object())  # delayed in memory
    assert not mw.check_once()
    assert signals == []


def test_a_message_taken_while_deciding_cancels_the_stop() -> None:
    worker = FakeWorker()
    mw, signals = make(worker, threshold=2)
    worker.polls(2)

    def a_message_arrives(consumer: FakeConsumer) -> None:
        consumer.in_flight = 1
        consumer.empty_polls = 0

    worker.consumer(1).on_suspend = a_message_arrives
    assert not mw.check_once()
    assert signals == []
    assert not any(t.consumer.suspended.is_set() for t in worker.consumers.values())
    # The countdown starts over from the new message.
    state = observe(worker)  # type: ignore[arg-type]
    assert state is not None and state.empty_polls == 0 and state.busy


def test_one_signal_per_host_whatever_the_number_of_processes(tmp_path: Path) -> None:
    master = os.getppid()
    # Two "processes" under the same master; both pids must be alive, so use real ones.
    pids = [os.getpid(), master]
    workers = [FakeWorker(), FakeWorker()]
    mws, signals = [], []
    for pid, worker in zip(pids, workers, strict=True):
        mw, sent = make(worker, threshold=2)
        mw.coordinator = HostCoordinator(master, tmp_path, pid=pid)
        mw.coordinator.register()
        mws.append(mw)
        signals.append(sent)

    workers[0].polls(2)
    workers[1].polls(1)
    # The first is idle but its sibling is not: nobody stops the host.
    assert not mws[0].check_once() and not mws[1].check_once()
    workers[1].polls(2)
    results = [mw.check_once() for mw in mws] + [mw.check_once() for mw in mws]
    assert results.count(True) == 1
    assert sum(len(s) for s in signals) == 1


def test_coordinator_ignores_dead_processes(tmp_path: Path) -> None:
    master = os.getppid()
    me = HostCoordinator(master, tmp_path)
    me.register()
    dead = HostCoordinator(master, tmp_path, pid=2**22 + 12345)  # beyond pid_max
    dead.register()
    me.mark(True)
    assert me.all_idle()
    assert me.live_pids() == [os.getpid()]
    assert me.try_claim() and not me.try_claim()


def test_the_poll_under_way_is_the_last_one_counted() -> None:
    """One poll short of the threshold the middleware suspends and waits for the poll under
    way: if it comes back empty, that was the threshold-th and the worker stops then."""
    worker = FakeWorker()
    mw, signals = make(worker, threshold=5)
    worker.polls(4)

    def the_last_poll_returns_empty(consumer: FakeConsumer) -> None:
        consumer.empty_polls += 1

    for i in range(2):
        worker.consumer(i).on_suspend = the_last_poll_returns_empty
    assert mw.check_once() and signals == [1]


def test_no_poll_under_way_means_not_yet() -> None:
    worker = FakeWorker()
    mw, signals = make(worker, threshold=5)
    worker.polls(4)  # suspend finds no receive call running: nothing new is counted
    assert not mw.check_once() and signals == []
    assert not any(t.consumer.suspended.is_set() for t in worker.consumers.values())
