"""ops/dashboards/alerts.yaml read by Prometheus' own promtool: the rules are valid, and each
alert has a rule unit test (tests/alerts/) in which it fires on the series that should fire
it and stays quiet on the series that should not; the README's example scrape_config is a
valid Prometheus configuration."""

from __future__ import annotations

import re
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.prometheus import ALERT_TESTS, ALERTS, promtool

TEST_FILES = sorted(ALERT_TESTS.glob("*.yaml"))


def test_alert_rules_pass_promtool_check() -> None:
    out = promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in out


@pytest.mark.parametrize("path", TEST_FILES, ids=[p.stem for p in TEST_FILES])
def test_alert_rule_unit_tests_pass(path: Path) -> None:
    out = promtool("test", "rules", path.name, cwd=ALERT_TESTS)
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    cases: dict[str, set[str]] = defaultdict(set)
    for path in TEST_FILES:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../../ops/dashboards/alerts.yaml"], path.name
        for test in spec["tests"]:
            for check in test.get("alert_rule_test", []):
                cases[check["alertname"]].add("fires" if check["exp_alerts"] else "quiet")
    missing = {a: {"fires", "quiet"} - cases[a] for a in alerts if cases[a] != {"fires", "quiet"}}
    assert not missing, f"alerts without both cases: {missing}"
    assert set(cases) <= alerts, f"tests for unknown alerts: {sorted(set(cases) - alerts)}"


def test_the_readme_scrape_config_passes_promtool(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"Point a Prometheus at the API.*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert found, "README: no example scrape_config"
    config = yaml.safe_load(textwrap.dedent(found.group(1)))
    config["rule_files"] = [str(ALERTS)]  # where the README says to copy it
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = promtool("check", "config", str(path))
    assert "SUCCESS" in out and "1 rule files found" in out
