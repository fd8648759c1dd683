"""Builders shared by the tests."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

import pytest

from supervisor.policy import Policy, parse_policy

# The private Docker engines scripts/test starts, by the variable naming each one's socket:
# Debian 12's docker.io (20.10, the last to honour API versions below 1.24) and a current one,
# trixie's (26.1; operators run 24 to 28), which the actuator, socket-proxy and Compose recipe
# tests run on too (the `engine` fixture, tests/conftest.py).
ENGINES = {"docker20": "DOCKER_HOST", "docker26": "DOCKER_HOST_CURRENT"}
# As scripts/test set them: a test on the current engine points DOCKER_HOST at it meanwhile.
_HOSTS = {name: os.environ.get(variable) for name, variable in ENGINES.items()}


def engine_host(name: str) -> str:
    """Engine `name`'s socket as a DOCKER_HOST value; the test fails when it was not started."""
    variable, host = ENGINES[name], _HOSTS[name]
    if not host:
        pytest.fail(f"{variable} is not set: run the end-to-end tests through scripts/test")
    return host


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


def quarantine_round_trip(admin: Any, policy: Any) -> None:
    """Park a kombu-shaped message from `unacked` as `policy`'s user, list it, requeue it onto
    its queue, park it again and drop it: what the daemon and `supervisor quarantine` do. The
    ACL log stays empty (nothing was refused)."""
    import json as _json

    from supervisor.adapters.unacked_store import UnackedStore
    from supervisor.core import quarantine

    payload = {
        "body": "e30=",
        "headers": {"id": "poison-1", "task": "tasks.poison_late"},
        "properties": {"delivery_tag": "tag-1", "delivery_info": {"routing_key": "celery"}},
    }
    admin.delete("unacked", "unacked_index", "celery")
    admin.hset("unacked", "tag-1", _json.dumps([payload, "", "celery"]))
    admin.zadd("unacked_index", {"tag-1": 1.0})
    admin.execute_command("ACL", "LOG", "RESET")
    key = quarantine.key_for(policy.target.key)
    entry = quarantine.Entry(
        "poison-1", "tasks.poison_late", "celery", "p", "why", 1.0, ({}, "", "")
    )
    store = UnackedStore(policy.broker)
    try:
        parked = store.park({"poison-1": entry}, key)
        assert parked.task_ids == ("poison-1",) and parked.error is None, parked
        assert admin.hlen("unacked") == 0 and admin.zcard("unacked_index") == 0
        [(listed, _)] = store.parked(key)
        assert listed is not None and listed.message[0]["headers"]["id"] == "poison-1"
        back = store.requeue(key, "poison-1")
        assert back is not None and admin.llen(key) == 0
        [raw] = admin.lrange("celery", 0, -1)
        assert _json.loads(raw)["headers"]["id"] == "poison-1"
        admin.hset("unacked", "tag-1", _json.dumps([payload, "", "celery"]))
        store.park({"poison-1": entry}, key)
        assert store.drop(key, "poison-1") is not None and admin.llen(key) == 0
        assert store.drop(key, "poison-1") is None
    finally:
        store.close()
        admin.delete(key, "celery")
    assert admin.execute_command("ACL", "LOG") == []
