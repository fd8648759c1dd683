"""The shipped alerts and dashboard against a real Prometheus scraping a live supervisor that
restarts a really stuck worker, and then escalates when the worker hangs again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness.parts import wait_until
from harness.services import PrometheusServer, free_port
from tests.e2e.stack import Stack
from tests.shipped import RULES, alerts, dashboard_queries

pytestmark = pytest.mark.e2e

SELECTOR = re.compile(r"\biti_supervisor_[a-z_]+(?:\{[^}]*\})?")
# What Grafana puts in for its variables when it sends a query.
GRAFANA = {"$policy": ".*", "$__rate_interval": "5m"}


def grafana(expr: str) -> str:
    for name, value in GRAFANA.items():
        expr = expr.replace(name, value)
    return expr


def test_alerts_and_dashboard_on_a_real_prometheus_through_a_restart_and_an_escalation(
    stack: Stack, tmp_path: Path
) -> None:
    # The shipped rules with every `for:` at 0, so that this run need not last their minutes
    # (the unit tests in alerts.test.yml hold the durations).
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    quick = tmp_path / "alerts.yml"
    quick.write_text(yaml.safe_dump(rules))

    port = free_port()
    policy = stack.policy(
        restart={"cooldown": 2, "backoff_initial": 2, "backoff_max": 4, "max_restarts": 1}
    )
    sup = stack.supervise(
        [policy],
        env={"SUPERVISOR_METRICS_PORT": str(port), "SUPERVISOR_METRICS_ADDRESS": "127.0.0.1"},
    )
    prometheus = PrometheusServer(tmp_path / "prometheus", f"127.0.0.1:{port}", [quick])
    try:
        wait_until(
            lambda: prometheus.query('up{job="iti-worker-supervisor"} == 1'), 30, "first scrape"
        )
        # An acks-late poison task: restarted once, it comes back, and the budget (1) is spent.
        stack.poison("tasks.poison_late")
        stack.produce(per_second=4)
        [restart] = sup.wait_for(lambda: sup.events("restart"), 90, "a restart")
        assert restart["outcome"] == "done"
        sup.wait_for(lambda: sup.events("escalate"), 90, "an escalation")

        firing = wait_until(
            lambda: [
                a
                for a in prometheus.firing()
                if a["labels"]["alertname"] == "CeleryWorkerEscalated"
            ],
            30,
            "CeleryWorkerEscalated firing",
        )
        assert firing[0]["labels"]["policy"] == "worker"
        assert firing[0]["labels"]["severity"] == "critical"
        names = {a["labels"]["alertname"] for a in prometheus.firing()}
        assert "CeleryWorkerStuck" in names  # stuck again, and for: 0 here
        assert not names & {
            "WorkerSupervisorAbsent",
            "WorkerSupervisorLoopStalled",
            "WorkerSupervisorRedisUnreachable",
            "WorkerSupervisorDockerUnreachable",
            "CeleryWorkerRestartFailed",
        }, names

        # Every dashboard query is valid and has data for this run.
        for expr in dashboard_queries():
            assert prometheus.query(grafana(expr)), f"no data for the dashboard's {expr}"
        assert prometheus.api("label/policy/values") == ["worker"]  # the $policy variable
        done = 'iti_supervisor_restarts_total{outcome="done"}'
        restarts = prometheus.query(f"sum by (outcome, trigger) (increase({done}[5m]))")
        assert [r["metric"]["trigger"] for r in restarts if float(r["value"][1]) > 0] == [
            "automatic"
        ]
        # Every alert expression is valid, and every series it reads has data for this run.
        for rule in alerts():
            prometheus.query(rule["expr"])  # raises on an invalid expression
            for selector in SELECTOR.findall(rule["expr"]):
                assert prometheus.query(selector), f"{rule['alert']}: no data for {selector}"
    finally:
        prometheus.stop()
