"""`status` and `sample` show the queues the daemon watches: those listed and those its
workers said they consume, as the state file keeps them (a stock Dify's `dataset`, say)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from supervisor.core import tracker
from supervisor.core.governor import GovernorState
from supervisor.runtime.state_store import StateStore
from tests.helpers import cli

pytestmark = pytest.mark.integration


def test_status_and_sample_use_the_discovered_queues(redis_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "w.toml"
    policy.write_text(
        f'name = "w"\n[broker]\nurl = "{redis_url}"\nqueues = []\ndiscover_queues = true\n'
        '[target]\ncontainer = "w"\n'
    )
    state = tmp_path / "state"
    StateStore(state).save(
        "container:w", "w", tracker.new(GovernorState(), discovered=("dataset", "mail"))
    )
    redis.Redis.from_url(redis_url).rpush("dataset", *range(7))
    sample = cli("sample", "--state-dir", str(state), str(policy))
    assert sample.returncode == 0, sample.stderr
    seen = json.loads(sample.stdout)
    assert seen["depth"] == 7 and seen["queues"] == {"dataset": 7, "mail": 0}
    status = cli("status", "--json", "--state-dir", str(state), "--policies", str(policy))
    assert status.returncode == 0, status.stderr
    [w] = json.loads(status.stdout)["policies"]
    assert w["sample"]["depth"] == 7 and w["sample"]["queues"] == {"dataset": 7, "mail": 0}
