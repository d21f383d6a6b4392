"""The scheduler: the background rounds of the system, beside the API (``just scheduler``).

* ``sweep``: PENDING jobs committed but never sent (the process died between its COMMIT
  and the send) are sent (``actors.jobs.sweep_unsent``).
* ``lifeline``: jobs sent or running but silent for longer than their tier's visibility
  timeout plus a margin lost their message; their last recorded step is sent again, a
  bounded number of times (``actors.jobs.lifeline``).
* ``pump``: outbox events (absences, scores, ...) and messages left open too long go to
  the messaging workers (``actors.messaging.pump``).
* ``purge``: login attempts and refresh tokens that can no longer change an answer are
  deleted (``models.auth.purge_expired``).
* ``fold``: the job changes the ``job`` trigger appended for ``/metrics`` are added into
  its summary (``models.ops.fold_job_stat_deltas``). Each scrape does it too; this round
  keeps them from piling up where nothing scrapes.

Each round runs in a transaction holding an advisory lock named after it, so several
schedulers (one per API host) can run: one does each round, the others skip it. A failing
round is logged and the next one comes anyway. ``--once`` runs the rounds once and prints
what they did (``just sweep`` is ``--once sweep``). SIGTERM or Ctrl-C stops it between
rounds, rolling back a round that was running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors.broker import setup_broker
from actors.jobs import lifeline, sweep_unsent
from actors.messaging import pump
from models.auth import purge_expired
from models.db import close_pool, configure_db, run_exclusively, run_exclusively_forever, start_pool
from models.ops import FOLD_LOCK, fold_job_stat_deltas
from ops.logging import configure_logging, log_event
from ops.settings import Settings, get_settings

log = logging.getLogger("scheduler")


@dataclass(frozen=True)
class Round:
    name: str
    lock: str  # the advisory lock: one round at a time across every scheduler
    interval: Callable[[Settings], float]  # seconds between two rounds
    work: Callable[[], Awaitable[Any]]


def _sweep_interval(settings: Settings) -> float:
    # A fifth of the age at which a job counts as unsent: it waits at most 20 % longer.
    return max(10.0, settings.job_sweep_after_seconds / 5)


def _lifeline_interval(settings: Settings) -> float:
    # A fifth of the margin: a lost message waits at most 20 % longer than it must.
    return max(5.0, settings.job_lifeline_margin_seconds / 5)


ROUNDS = (
    Round("sweep", "academy.job_sweeper", _sweep_interval, sweep_unsent),
    Round("lifeline", "academy.job_lifeline", _lifeline_interval, lifeline),
    Round("pump", "academy.messaging_pump", lambda s: s.messaging_outbox_poll_seconds, pump),
    # Stale login rows only cost space: the sweeper's pace is more than enough.
    Round("purge", "academy.login_purge", _sweep_interval, purge_expired),
    Round("fold", FOLD_LOCK, lambda s: 60.0, fold_job_stat_deltas),
)


async def run_forever(rounds: tuple[Round, ...] = ROUNDS) -> None:
    """Every round on its own interval, until cancelled."""
    settings = get_settings()
    log_event(log, "SCHEDULER_STARTED", rounds=[r.name for r in rounds])
    await asyncio.gather(
        *(run_exclusively_forever(r.lock, r.interval(settings), r.work) for r in rounds)
    )


async def run_once(rounds: tuple[Round, ...] = ROUNDS) -> list[tuple[str, bool, Any]]:
    """Each round once, one after the other: (name, ran, result). A round whose lock another
    scheduler holds at that moment is skipped (``ran`` False): that one is doing it."""
    done = []
    for r in rounds:
        ran, result = await run_exclusively(r.lock, r.work)
        done.append((r.name, ran, result))
    return done


async def _serve(rounds: tuple[Round, ...], once: bool) -> None:
    await start_pool()
    try:
        if once:
            for name, ran, result in await run_once(rounds):
                print(
                    f"{name}: {result}" if ran else f"{name}: skipped (another scheduler runs it)"
                )
            return
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        try:
            await run_forever(rounds)
        except asyncio.CancelledError:
            log_event(log, "SCHEDULER_STOPPED")
    finally:
        await close_pool()


def main(argv: list[str] | None = None) -> int:
    names = [r.name for r in ROUNDS]
    parser = argparse.ArgumentParser(prog="just scheduler", description=__doc__)
    parser.add_argument("--once", action="store_true", help="run the rounds once, then exit")
    parser.add_argument("rounds", nargs="*", metavar="ROUND", help=f"one of {names} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rounds) - set(names))
    if unknown:
        parser.error(f"unknown round(s) {unknown}; choose from {names}")
    settings = get_settings()
    configure_logging(settings.log_level)
    configure_db()
    # Rounds enqueue (a swept job, a dispatch): the broker, without consuming anything.
    setup_broker(worker=False)
    chosen = tuple(r for r in ROUNDS if not args.rounds or r.name in args.rounds)
    asyncio.run(_serve(chosen, args.once))
    return 0


if __name__ == "__main__":
    sys.exit(main())
