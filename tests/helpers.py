"""Builders shared by the tests."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

from supervisor.policy import Policy, parse_policy

BASE: dict[str, Any] = {
    "name": "test-worker",
    "broker": {"url": "redis://127.0.0.1:6379/0", "queues": ["celery"]},
    "target": {"container": "test-worker"},
    "detect": {
        "interval": 1,
        "window": 10,
        "threshold": 100,
        "max_gap": 3,
        "require_no_progress": True,
    },
    "restart": {
        "cooldown": 60,
        "backoff_initial": 60,
        "backoff_factor": 2.0,
        "backoff_max": 600,
        "reset_after": 1200,
        "max_restarts": 3,
        "budget_window": 3600,
        "stop_timeout": 5,
    },
}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def policy_dict(**sections: Any) -> dict[str, Any]:
    return merge(BASE, sections)


def make_policy(**sections: Any) -> Policy:
    return parse_policy(policy_dict(**sections), "test.toml")


def no_docker(tmp: Any) -> dict[str, str]:
    """The environment of a supervisor with no Docker engine: a socket that does not exist,
    tried once per call rather than retried for the default 30 s."""
    return {"DOCKER_HOST": f"unix://{tmp}/no-engine.sock", "SUPERVISOR_DOCKER_RETRY": "0"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m supervisor ARGS` as a separate process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
