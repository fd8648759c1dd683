"""The shipped alert rules and dashboard, checked with Prometheus's own promtool: the rules
parse, every alert has unit tests that show it firing and staying quiet, and the dashboard is a
Grafana model whose every query names metrics the supervisor really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from harness.parts import REPO
from supervisor.sinks.metrics import Metrics
from tests.shipped import DASHBOARD, RULE_TESTS, RULES, alerts, dashboard_queries

METRIC = re.compile(r"\biti_supervisor_[a-z_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run the tests through scripts/test")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, check=False, timeout=120
    )


def exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names | {f"{n}_total" for n in names}


def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alerts():
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test shows it firing"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test shows it quiet"


def test_every_alert_says_what_to_do() -> None:
    runbooks = (REPO / "docs" / "operations.md").read_text()
    for rule in alerts():
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert rule["annotations"]["runbook_url"].startswith("docs/operations.md#")
        assert anchor == f"runbook-{rule['alert'].lower()}"
        assert f"### Runbook: {rule['alert']}" in runbooks, f"{rule['alert']}: no runbook"


def test_rules_and_dashboard_only_use_metrics_the_supervisor_exports() -> None:
    exported = exported_names()
    used = {m for rule in alerts() for m in METRIC.findall(rule["expr"])}
    used |= {m for expr in dashboard_queries() for m in METRIC.findall(expr)}
    assert used, "no metric found in the rules and the dashboard"
    assert used - exported == set()


def test_dashboard_is_a_grafana_model_with_the_data_source_as_a_variable() -> None:
    model = json.loads(DASHBOARD.read_text())
    assert model["schemaVersion"] >= 36  # Grafana 10
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    titles = " / ".join(p["title"] for p in model["panels"]).lower()
    for wanted in (
        "depth",
        "stuck",
        "run length",
        "restarts",
        "until a restart",
        "unacked",
        "redis and docker",
        "sampling failures",
    ):
        assert wanted in titles, wanted
