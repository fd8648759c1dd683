"""`supervisor trigger` and `health` find the daemon by its lock, never by a pid file; bad
settings from the environment or flags exit 2 naming the setting, never with a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.parts import SupervisorProcess, write_policy
from supervisor.runtime import lock
from tests.helpers import cli, no_docker


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process, the kind whose pid a stale pid file may end up naming."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_stale_pid_file_naming_another_process_is_never_signalled(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "supervisor.pid").write_text(f"{bystander.pid}\n")
    (state / lock.LOCK_FILE).write_text(f"{bystander.pid}\n")
    out = cli("trigger", "--state-dir", str(state))
    assert out.returncode == 1
    assert "no supervisor is running with state directory" in out.stderr
    assert bystander.poll() is None  # still alive: a trigger's SIGUSR2 would have killed it
    assert not (state / "triggers").exists() or not list((state / "triggers").iterdir())


def test_lock_holder_is_read_from_the_kernel(tmp_path: Path) -> None:
    assert lock.holder(tmp_path) is None
    with lock.Held(tmp_path):
        assert lock.holder(tmp_path) == os.getpid()
    assert lock.holder(tmp_path) is None


@pytest.mark.integration
def test_trigger_refuses_an_unknown_policy_and_health_sees_a_kill_at_once(
    redis_url: str, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    state = tmp_path / "state"
    sup = SupervisorProcess([policy], state, extra_env=no_docker(tmp_path))
    try:
        sup.wait_started()
        sup.wait_for((state / "heartbeat.json").exists, 20, "heartbeat")
        out = cli("trigger", "nope", "--state-dir", str(state))
        assert out.returncode == 2
        assert "no policy named 'nope'" in out.stderr and "runs w" in out.stderr
        assert cli("health", "--state-dir", str(state)).returncode == 0
        os.kill(sup.proc.pid, signal.SIGKILL)
        sup.proc.wait(10)
        health = cli("health", "--state-dir", str(state))
        assert health.returncode == 1 and "not running" in health.stdout
        out = cli("trigger", "w", "--state-dir", str(state))
        assert out.returncode == 1 and "no supervisor is running" in out.stderr
    finally:
        sup.stop()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SUPERVISOR_METRICS_PORT": "ninety"}, "SUPERVISOR_METRICS_PORT='ninety'"),
        ({"SUPERVISOR_METRICS_PORT": "70000"}, "SUPERVISOR_METRICS_PORT=70000"),
        ({"SUPERVISOR_DRY_RUN": "maybe"}, "SUPERVISOR_DRY_RUN='maybe'"),
        ({"SUPERVISOR_LOG_FORMAT": "xml"}, "SUPERVISOR_LOG_FORMAT='xml'"),
    ],
)
def test_bad_settings_exit_2_naming_the_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", "redis://127.0.0.1:1/0", "c")
    out = cli("run", "--state-dir", str(tmp_path / "state"), str(policy), env=env)
    assert out.returncode == 2, out.stderr
    assert named in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "state" / "audit.jsonl").exists()


def test_a_state_dir_that_is_a_file_exits_2(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", "redis://127.0.0.1:1/0", "c")
    (tmp_path / "file").write_text("")
    out = cli("run", "--state-dir", str(tmp_path / "file"), str(policy))
    assert out.returncode == 2 and "is not a directory" in out.stderr


def test_a_metrics_port_in_use_exits_2(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", "redis://127.0.0.1:1/0", "c")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            "run",
            "--state-dir",
            str(tmp_path / "state"),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(port),
            str(policy),
            env=no_docker(tmp_path),
        )
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_trigger_refuses_what_the_daemon_would_discard_and_stamps_the_boot_clock(
    tmp_path: Path,
) -> None:
    """Never exit 0 for a request the daemon will discard: a heartbeat saying the daemon
    started after now on its own clock (a frame of another boot) is refused, no request left;
    a daemon of this boot takes the request, dated on its clock from the boot clock."""
    import json
    import time

    from supervisor import clock
    from supervisor.clock import Frame, Here
    from supervisor.errors import SupervisorError
    from supervisor.runtime import heartbeat, trigger

    with lock.Held(tmp_path):
        pid = os.getpid()
        policies = {"w": heartbeat.PolicyBeat(interval=1)}
        now = clock.boottime()
        heartbeat.Heartbeat(
            t=1e12, pid=pid, policies=policies, started=1e12, boot_id="another", offset=0.0
        ).write(tmp_path)
        with pytest.raises(SupervisorError, match="would discard"):
            trigger.request(tmp_path, "w")
        assert list((tmp_path / trigger.TRIGGER_DIR).glob("*")) == []
        offset = 1_700_000_000.0 - now
        heartbeat.Heartbeat(
            t=offset + now, pid=pid, policies=policies, started=offset + now,
            boot_id=clock.boot_id(), offset=offset, wall=time.time(),
        ).write(tmp_path)  # fmt: skip
        previous = signal.signal(signal.SIGUSR2, lambda *_: None)
        try:
            assert trigger.request(tmp_path, "w") == pid
        finally:
            signal.signal(signal.SIGUSR2, previous)
        [path] = (tmp_path / trigger.TRIGGER_DIR).glob("*.request")
        data = json.loads(path.read_text())
        assert data["boot_id"] == clock.boot_id() and data["boot"] >= now
        here = Here(Frame(clock.boot_id(), offset), offset + clock.boottime(), time.time() - 3600)
        [taken] = trigger.take(tmp_path, here)
        assert taken.name == "w" and taken.t == offset + data["boot"]  # not the wall's
