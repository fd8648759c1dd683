"""What the project ships, read the way the tests need it: the Redis ACL users, the Prometheus
alert rules and the Grafana dashboard's queries. Shared by the tests; imports no test module."""

from __future__ import annotations

import json
import shlex
from typing import Any

import yaml

from harness.parts import REPO

ACL_FILE = REPO / "deploy" / "redis" / "acl.txt"
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "iti-worker-supervisor.json"


def acl_commands(path: Any = ACL_FILE) -> dict[str, list[str]]:
    """Each user's ACL SETUSER arguments, with the test password."""
    users = {}
    for line in path.read_text().splitlines():
        if line.startswith("ACL SETUSER"):
            words = shlex.split(line.replace("PASSWORD", "acl-test-pw"))
            users[words[2]] = words[1:]
    return users


def alerts() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def dashboard_queries() -> list[str]:
    model = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in model["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    return exprs


def every_key_but(exact: str, prefix: str) -> list[str]:
    """Redis glob patterns matching every key except `exact` and the keys starting with
    `prefix` (Redis ACLs have no negative pattern): a key whose first character is neither
    word's, a proper beginning of either word, or one that leaves either word at some
    character."""
    assert exact[0] != prefix[0]
    patterns = [f"[^{''.join(sorted({exact[0], prefix[0]}))}]*"]
    for word in (exact, prefix):
        for i in range(1, len(word)):
            patterns += [word[:i], f"{word[:i]}[^{word[i]}]*"]
        if word == exact:
            patterns.append(f"{word}?*")
    return patterns
