"""Prometheus' own tools in the tests: ``promtool`` and ``prometheus`` from Debian's
``prometheus`` package (``.ci/run`` installs it). Outside CI a test that needs them skips
and says what to install; in CI (``CI`` set) a missing tool is a failure."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ops.processes import stop_server
from ops.runtime import free_port
from tests.conftest import ROOT

ALERTS = ROOT / "ops" / "dashboards" / "alerts.yaml"
ALERT_TESTS = ROOT / "tests" / "alerts"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    reason = f"needs `{name}` from Debian's prometheus package: apt-get install prometheus"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def promtool(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> str:
    """Run promtool; fail with its whole output unless it exits 0."""
    done = subprocess.run(
        [tool("promtool"), *args], input=stdin, capture_output=True, text=True, cwd=cwd
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{output}"
    return output


DASHBOARD = ROOT / "ops" / "dashboards" / "grafana-academy.json"
PROMQL_WORDS = {
    "sum", "by", "rate", "max", "min", "histogram_quantile", "and", "or", "absent", "le",
    "without", "on", "ignoring", "avg", "count",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names (not functions, labels,
    label values, or durations)."""
    stripped = re.sub(r'"[^"]*"', "", expr)  # label values
    stripped = re.sub(r"\{[^}]*\}", "", stripped)  # label matchers
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # ranges
    stripped = re.sub(r"by \([^)]*\)", "", stripped)
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped))
    return {w for w in words if w not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    """Every query of the Grafana dashboard, its ``$tier`` variable's included."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    variable = dash["templating"]["list"][0]["definition"]  # label_values(metric, label)
    found = re.fullmatch(r"label_values\((\w+), \w+\)", variable)
    assert found, variable
    return [*exprs, found.group(1)]


def alert_exprs() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def used_metrics() -> set[str]:
    """The metric names the dashboard and the alert rules query."""
    used = set().union(*(metric_names(e) for e in [*dashboard_exprs(), *alert_exprs().values()]))
    assert used, "no metric names found"
    return used


@contextlib.contextmanager
def prometheus(target: str, token: str, workdir: Path) -> Iterator[str]:
    """A real Prometheus on loopback: data in ``workdir``, the alert rules loaded, scraping
    ``target`` (host:port) every second with the bearer ``token``, rules evaluated every
    second. Yields its base URL; stopped afterwards."""
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(ALERTS)],
                "scrape_configs": [
                    {
                        "job_name": "academy",
                        "authorization": {"type": "Bearer", "credentials": token},
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc, 30)
