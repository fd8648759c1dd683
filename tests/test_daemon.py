"""`supervisor run` and `supervisor trigger` as processes, against a real redis-server. Docker is
pointed at a socket with no engine behind it: the daemon must keep running and say so."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.parts import SupervisorProcess, write_policy
from supervisor.sinks.audit import read_audit
from tests import helpers
from tests.helpers import cli

pytestmark = pytest.mark.integration


@pytest.fixture
def no_docker(tmp_path: Path) -> dict[str, str]:
    return helpers.no_docker(tmp_path)


@pytest.fixture
def supervisors() -> Iterator[list[SupervisorProcess]]:
    started: list[SupervisorProcess] = []
    yield started
    for sup in started:
        sup.stop()


def start(
    started: list[SupervisorProcess],
    policies: list[Path],
    state: Path,
    env: dict[str, str],
    dry_run: bool = False,
) -> SupervisorProcess:
    sup = SupervisorProcess(policies, state, dry_run=dry_run, extra_env=env)
    started.append(sup)
    sup.wait_started()
    return sup


def test_bad_policy_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "w"\n[broker]\nurl = "redis://x"\n[target]\ncontainer = "c"\n'
        "[detect]\nwindow = -1\n"
    )
    out = cli("run", "--state-dir", str(tmp_path / "state"), str(bad))
    assert out.returncode == 2
    assert f"{bad}: detect.window: duration must not be negative" in out.stderr
    assert "nothing started" in out.stderr
    # Nothing started, and the audit says why (under a restart policy, each refusal is there).
    [refused] = read_audit(tmp_path / "state" / "audit.jsonl")
    assert refused["event"] == "start_refused"
    assert "detect.window: duration must not be negative" in refused["problems"][0]


def test_sigterm_stops_cleanly_and_one_state_dir_has_one_supervisor(
    redis_url: str,
    tmp_path: Path,
    no_docker: dict[str, str],
    supervisors: list[SupervisorProcess],
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    sup = start(supervisors, [policy], tmp_path / "state", no_docker)
    second = cli("run", "--state-dir", str(tmp_path / "state"), str(policy), env=no_docker)
    assert second.returncode == 1
    assert "another supervisor is running" in second.stderr
    assert sup.stop() == 0
    assert sup.events("stop")
    assert not (tmp_path / "state" / "supervisor.pid").exists()


def test_sighup_reload_refuses_a_bad_file_and_keeps_the_old_policies(
    redis_url: str,
    tmp_path: Path,
    no_docker: dict[str, str],
    supervisors: list[SupervisorProcess],
) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write_policy(folder / "a.toml", "a", redis_url, "c")
    sup = start(supervisors, [folder], tmp_path / "state", no_docker)
    (folder / "b.toml").write_text("name = 'b'\n[broker]\nurl = 1\n")
    sup.signal(signal.SIGHUP)
    [refused] = sup.wait_for(lambda: sup.events("reload_refused"), 20, "reload refusal")
    assert any("b.toml: broker.url" in p for p in refused["problems"])
    assert sup.proc.poll() is None
    heartbeat = json.loads((tmp_path / "state" / "heartbeat.json").read_text())
    assert list(heartbeat["policies"]) == ["a"]
    write_policy(folder / "b.toml", "b", redis_url, "c2")
    sup.signal(signal.SIGHUP)
    [reload] = sup.wait_for(lambda: sup.events("reload"), 20, "reload")
    assert reload["policies"] == ["a", "b"]


def test_docker_unreachable_keeps_running_and_a_failed_restart_counts(
    redis_url: str,
    tmp_path: Path,
    no_docker: dict[str, str],
    supervisors: list[SupervisorProcess],
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    sup = start(supervisors, [policy], tmp_path / "state", no_docker)
    [down] = sup.wait_for(lambda: sup.events("docker_error_begin"), 30, "docker error")
    assert "unreachable" in down["reason"]
    out = cli("trigger", "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 0, out.stderr
    [failed] = sup.wait_for(lambda: sup.events("restart_failed"), 60, "failed restart")
    assert failed["outcome"] == "failed" and failed["trigger"] == "manual"
    assert "unreachable" in failed["error"]
    assert sup.proc.poll() is None
    state = json.loads(
        (tmp_path / "state" / "state" / "targets" / "container%3Ac.json").read_text()
    )
    assert state["streak"] == 1 and len(state["recent"]) == 1


def test_dry_run_from_the_environment(
    redis_url: str,
    tmp_path: Path,
    no_docker: dict[str, str],
    supervisors: list[SupervisorProcess],
) -> None:
    policy = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    sup = start(supervisors, [policy], tmp_path / "state", {**no_docker, "SUPERVISOR_DRY_RUN": "1"})
    assert sup.events("start")[0]["dry_run"] is True
    sup.signal(signal.SIGUSR1)
    [record] = sup.wait_for(lambda: sup.events("dry_run_restart"), 30, "dry-run restart")
    assert record["trigger"] == "manual" and record["outcome"] == "dry_run"
    assert sup.events("restart") == []


def test_trigger_without_a_daemon_says_so(tmp_path: Path) -> None:
    out = cli("trigger", "--state-dir", str(tmp_path))
    assert out.returncode == 1
    assert "no supervisor is running with state directory" in out.stderr


def test_passwords_never_reach_logs_or_audit(
    redis_server_factory: Any,
    tmp_path: Path,
    no_docker: dict[str, str],
    supervisors: list[SupervisorProcess],
) -> None:
    server = redis_server_factory(password="pw-never-logged")
    server.start()
    policy = write_policy(tmp_path / "w.toml", "w", server.url, "c")
    sup = start(supervisors, [policy], tmp_path / "state", no_docker)
    server.stop()
    sup.wait_for(lambda: sup.events("sample_error_begin"), 30, "sample error")
    server.start()
    sup.wait_for(lambda: sup.events("sample_error_end"), 30, "recovery")
    sup.signal(signal.SIGUSR1)
    sup.wait_for(lambda: sup.events("restart_failed"), 60, "a restart record")
    sup.stop()
    audit = (tmp_path / "state" / "audit.jsonl").read_text()
    assert "pw-never-logged" not in audit and "***" in audit
    assert "pw-never-logged" not in sup.log_path.read_text()
