from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.parts import SupervisorProcess, write_policy
from supervisor.cli import main
from supervisor.health import check
from supervisor.runtime import heartbeat, lock
from supervisor.runtime.heartbeat import Heartbeat, PolicyBeat
from tests.helpers import no_docker


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose lock this test process holds, as a live daemon would."""
    with lock.Held(tmp_path):
        yield tmp_path


def beat(state: Path, t: float, interval: float = 20, **extra: Any) -> None:
    policies = {"w": PolicyBeat(interval=interval, depth=3)}
    Heartbeat(t=t, pid=7, **{"policies": policies, **extra}).write(state)


def test_nobody_holding_the_lock_is_not_running_whatever_the_heartbeat_says(
    tmp_path: Path,
) -> None:
    beat(tmp_path, 100.0)
    result = check(tmp_path, 100.0)
    assert not result.healthy and "not running" in result.message


def test_missing_heartbeat_is_unhealthy(held: Path) -> None:
    result = check(held, 100.0)
    assert not result.healthy and "does not exist" in result.message


def test_stale_after_three_of_the_longest_intervals(held: Path) -> None:
    beat(held, 1000.0)
    assert check(held, 1060.0).healthy  # 60 s = 3 x 20 s
    stale = check(held, 1060.5)
    assert not stale.healthy and "last ticked 60s ago (limit 60s)" in stale.message
    assert check(held, 1005.0, max_age=2).healthy is False


def test_short_intervals_still_get_thirty_seconds(held: Path) -> None:
    beat(held, 0.0, interval=0.5)
    assert check(held, 29.0).healthy and not check(held, 31.0).healthy


def test_a_redis_outage_is_reported_but_healthy(held: Path) -> None:
    Heartbeat(
        t=10.0, pid=7, policies={"w": PolicyBeat(interval=1, sampling=False)}, docker_error="down"
    ).write(held)
    result = check(held, 11.0)
    assert result.healthy
    assert "w cannot sample Redis" in result.message and "Docker unreachable" in result.message


def test_a_stopped_supervisor_is_unhealthy(held: Path) -> None:
    beat(held, 10.0, stopped=True)
    result = check(held, 11.0)
    assert not result.healthy and "has stopped" in result.message


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 1, "t": 1}', '{"version": 2}'])
def test_garbage_heartbeat_is_unhealthy_and_named(held: Path, text: str) -> None:
    (held / "heartbeat.json").write_text(text)
    result = check(held, 0.0)
    assert not result.healthy and "heartbeat.json" in result.message


def test_the_heartbeat_round_trips(held: Path) -> None:
    original = Heartbeat(
        t=5.0,
        pid=9,
        dry_run=True,
        policies={"w": PolicyBeat(interval=2.0, depth=4, trend=(1, None, 4), verdict="stuck")},
        docker_error="down",
        policy_paths=("/p",),
        started=1.0,
    )
    original.write(held)
    assert heartbeat.read(held) == original


@pytest.mark.integration
def test_health_of_a_live_daemon_and_of_a_frozen_one(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    sup = SupervisorProcess([policy], tmp_path / "state", extra_env=no_docker(tmp_path))
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


def test_the_heartbeat_rides_along_with_a_pass_a_little_early_never_more_often() -> None:
    pace = heartbeat.Pace(gap=1.0, early=0.1)
    assert pace.due(0.0)
    pace.wrote(0.0)
    assert not pace.due(0.5)  # nothing changed, and too soon
    pace.pending = True
    assert not pace.due(0.85) and pace.next_at() == 1.0  # the loop wakes for it at 1.0 ...
    assert pace.due(0.95)  # ... unless a pass (a tick) comes a little before
    pace.wrote(0.95)
    assert not pace.due(1.9) and pace.next_at() is None  # written, nothing pending


def test_a_state_directory_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    from supervisor.health import unwritable

    assert unwritable(tmp_path) is None and list(tmp_path.iterdir()) == []
    why = unwritable("/proc")  # root ignores mode bits; /proc takes no new file
    assert why is not None and why.startswith("cannot write the state directory /proc")


def test_in_its_own_boot_the_heartbeat_is_aged_on_the_boot_clock_whatever_the_wall_says(
    held: Path,
) -> None:
    """Written at boot time 1000 (its frame: t = offset + boot time) in this boot: 100 s later
    on the boot clock it is stale, even with the wall clock stepped 3 h back (main 421711a:
    "loop ticked -10700s ago", healthy), and fresh 10 s later even 3 h forward."""
    from supervisor import clock

    offset = 1_700_000_000.0
    beat(held, offset + 1000.0, boot_id=clock.boot_id(), offset=offset, wall=offset + 1000.0)
    wall_back = offset + 1100.0 - 3 * 3600
    hung = check(held, wall_back, boot=1100.0)
    assert not hung.healthy and "last ticked 100s ago" in hung.message
    assert check(held, offset + 1010.0 + 3 * 3600, boot=1010.0).healthy


def test_a_heartbeat_of_another_boot_or_without_a_frame_is_aged_on_the_wall_clock(
    held: Path,
) -> None:
    beat(held, 50.0, boot_id="another-boot", offset=0.0, wall=5_000.0)
    assert check(held, 5_010.0, boot=1e9).healthy
    assert not check(held, 5_100.0, boot=50.0).healthy
