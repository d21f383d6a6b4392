"""Start the Dramatiq worker for one tier: ``just worker TIER [PROCESSES] [THREADS]``.

Tiers are the queue tiers (``video``, ``ai-lite``, ``ai-basic``, ``ai-premium``,
``messaging``) plus the host groups of the seed: ``ai-cpu`` (lite + basic) and ``ai-gpu``
(premium).
"""

from __future__ import annotations

import argparse
import os
import sys

from ops.settings import get_settings

GROUPS: dict[str, tuple[str, ...]] = {
    "ai-cpu": ("ai-basic", "ai-lite"),
    "ai-gpu": ("ai-premium",),
    "all": ("video", "ai-lite", "ai-basic", "ai-premium", "messaging"),
}


def queues_for(name: str) -> list[str]:
    settings = get_settings()
    tiers = GROUPS.get(name, (name,))
    return [settings.queue_for(tier) for tier in tiers]


def command(name: str, processes: int = 1, threads: int = 4) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "actors.worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *queues_for(name),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just worker", description=__doc__)
    parser.add_argument("tier", choices=sorted({*get_settings().queues, *GROUPS}))
    parser.add_argument("processes", nargs="?", type=int, default=1)
    parser.add_argument("threads", nargs="?", type=int, default=4)
    args = parser.parse_args(argv)
    cmd = command(args.tier, args.processes, args.threads)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main())
