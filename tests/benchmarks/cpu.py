"""CPU seconds (user + system) spent by process trees over a stretch of a benchmark.

A tree is a root process and its descendants as they are when sampled: processes born in
between count from zero; one that ends in between loses what it used since the first
sample (Postgres's short-lived backends, if any), so the figures are a floor.
"""

from __future__ import annotations

import resource
from collections.abc import Iterable

import psutil

Sample = dict[str, dict[int, float]]


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _times(procs: Iterable[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = t.user + t.system
    return out


def sample(groups: dict[str, list[int]]) -> Sample:
    """Every group's processes (the trees of its root pids) and their CPU seconds so far;
    ``machine`` is the whole host's busy seconds, ``children`` what this process's reaped
    children used (k6, run to completion by ``subprocess.run``)."""
    out: Sample = {
        name: _times(p for pid in roots for p in _tree(pid)) for name, roots in groups.items()
    }
    host = psutil.cpu_times()
    out["machine"] = {0: host.user + host.nice + host.system + host.irq + host.softirq + host.steal}
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["children"] = {0: kids.ru_utime + kids.ru_stime}
    return out


def used(before: Sample, after: Sample) -> dict[str, float]:
    """CPU seconds per group between two samples."""
    return {
        name: sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in procs.items())
        for name, procs in after.items()
    }


def children_named(name: str) -> list[int]:
    """Descendants of this process called ``name`` (PgBouncer, started by the runtime)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.name() == name:
                found.append(p.pid)
        except psutil.Error:
            continue
    return found
