from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from supervisor.cli import main
from supervisor.health import check
from tests.harness import SupervisorProcess, write_policy


def beat(state: Path, t: float, **extra: object) -> None:
    state.mkdir(parents=True, exist_ok=True)
    data = {"t": t, "pid": 7, "policies": {"w": {"interval": 20, "sampling": True, "depth": 3}}}
    data.update(extra)
    (state / "heartbeat.json").write_text(json.dumps(data))


def test_missing_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    result = check(tmp_path, 100.0)
    assert not result.healthy and "does not exist" in result.message


def test_stale_after_three_of_the_longest_intervals(tmp_path: Path) -> None:
    beat(tmp_path, 1000.0)
    assert check(tmp_path, 1060.0).healthy  # 60 s = 3 x 20 s
    stale = check(tmp_path, 1060.5)
    assert not stale.healthy and "last ticked 60s ago (limit 60s)" in stale.message
    assert check(tmp_path, 1005.0, max_age=2).healthy is False


def test_short_intervals_still_get_thirty_seconds(tmp_path: Path) -> None:
    beat(tmp_path, 0.0, policies={"w": {"interval": 0.5}})
    assert check(tmp_path, 29.0).healthy and not check(tmp_path, 31.0).healthy


def test_a_redis_outage_is_reported_but_healthy(tmp_path: Path) -> None:
    beat(tmp_path, 10.0, policies={"w": {"interval": 1, "sampling": False}}, docker_error="down")
    result = check(tmp_path, 11.0)
    assert result.healthy
    assert "w cannot sample Redis" in result.message and "Docker unreachable" in result.message


def test_a_stopped_supervisor_is_unhealthy(tmp_path: Path) -> None:
    beat(tmp_path, 10.0, stopped=True)
    result = check(tmp_path, 11.0)
    assert not result.healthy and "has stopped" in result.message


def test_garbage_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    (tmp_path / "heartbeat.json").write_text("{")
    assert not check(tmp_path, 0.0).healthy


@pytest.mark.integration
def test_health_of_a_live_daemon_and_of_a_frozen_one(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    sup = SupervisorProcess(
        [policy], tmp_path / "state", extra_env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    )
    try:
        sup.wait_started()
        sup.wait_for((tmp_path / "state" / "heartbeat.json").exists, 20, "heartbeat")
        assert main(["health", "--state-dir", str(tmp_path / "state")]) == 0
        assert "healthy: loop ticked" in capsys.readouterr().out
        os.kill(sup.proc.pid, signal.SIGSTOP)  # a hung loop
        try:
            time.sleep(2.5)
            code = main(["health", "--state-dir", str(tmp_path / "state"), "--max-age", "2"])
            assert code == 1
            assert "unhealthy: the loop last ticked" in capsys.readouterr().out
        finally:
            os.kill(sup.proc.pid, signal.SIGCONT)
    finally:
        assert sup.stop() == 0
