"""ops/dashboards: the Grafana dashboard imports (round trip and a schema check), the alert
rules and dashboard queries only name metrics the API really serves, and the CloudWatch
recipe prints one alarm set per queue."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.metrics import parse
from ops.settings import get_settings
from tests.conftest import ROOT
from tests.prometheus import used_metrics

DASHBOARDS = ROOT / "ops" / "dashboards"
PANEL_TYPES = {"row", "stat", "timeseries"}


@pytest.fixture
async def served(client: Any) -> set[str]:
    """Metric names a real scrape of /metrics declares or samples (with the _bucket, _sum
    and _count series of each histogram)."""
    r = await client.get("/metrics")
    assert r.status_code == 200
    names = {name for name, _ in parse(r.text)}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", r.text, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def balanced(expr: str) -> bool:
    depth: list[str] = []
    pairs = {")": "(", "}": "{", "]": "["}
    for ch in re.sub(r'"[^"]*"', "", expr):
        if ch in "({[":
            depth.append(ch)
        elif ch in pairs and (not depth or depth.pop() != pairs[ch]):
            return False
    return not depth


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads((DASHBOARDS / "grafana-academy.json").read_text()))


def test_dashboard_round_trips_and_fits_the_grafana_schema() -> None:
    text = (DASHBOARDS / "grafana-academy.json").read_text()
    dash = json.loads(text)
    assert json.loads(json.dumps(dash)) == dash
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["uid"] and dash["title"] and dash["id"] is None
    assert [i["name"] for i in dash["__inputs"]] == ["DS_PROMETHEUS"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    occupied: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        assert p["type"] in PANEL_TYPES, p["type"]
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("x", "y", "w", "h"))
        assert g["x"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"].strip() and balanced(t["expr"]), t["expr"]


async def test_dashboard_and_alerts_use_only_served_metrics(served: set[str]) -> None:
    used = used_metrics()
    assert used <= served, f"not served by /metrics: {sorted(used - served)}"


def test_alert_rules_match_the_seed_alarms() -> None:
    rules = yaml.safe_load((DASHBOARDS / "alerts.yaml").read_text())
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for rule in by_name.values():
        assert balanced(rule["expr"]) and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and re.fullmatch(r"\d+m", rule["for"])
    assert 'kind="dlq"} > 0' in by_name["AcademyDeadLettersPresent"]["expr"]
    assert 'kind="dlq"} > 10' in by_name["AcademyDeadLettersHigh"]["expr"]
    assert 'kind="queue"} > 1000' in by_name["AcademyQueueBacklog"]["expr"]
    assert "oldest_pending_job_age_seconds" in by_name["AcademyOldestJobWaiting"]["expr"]
    assert 'outcome="failed"' in by_name["AcademyJobFailureRate"]["expr"]


def test_cloudwatch_recipe_prints_an_alarm_set_per_queue() -> None:
    out = subprocess.run(
        ["bash", str(DASHBOARDS / "cloudwatch-alarms.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": __import__("os").environ["PATH"], "PYTHONPATH": str(ROOT)},
    ).stdout.splitlines()
    assert all(line.startswith("aws cloudwatch put-metric-alarm ") for line in out)
    queues = get_settings().queues.values()
    assert len(out) == 5 * len(queues)
    text = "\n".join(out)
    for queue in queues:
        assert f"--alarm-name {queue}-dlq-high" in text
        assert f"Name=QueueName\\,Value={queue}-dlq" in text
    assert text.count("--threshold 10 ") == len(queues)
    assert text.count("--metric-name ApproximateAgeOfOldestMessage") == len(queues)
    assert Path(DASHBOARDS / "cloudwatch-alarms.sh").stat().st_mode & 0o111
