"""Crash-consistent restarts on the real engine: a worker killed through the Docker API is left
stopped whatever its restart policy says, so a restart the supervisor could not finish must be
finished by it: after its own crash, and after Docker went away between the kill and the start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from harness.parts import (
    PYTHON_HOME,
    SupervisorProcess,
    ensure_base_image,
    host_mounts,
    write_policy,
)

pytestmark = pytest.mark.e2e

# PID 1 of the container: what it does with SIGQUIT is the point of each test.
IGNORES_SIGQUIT = (
    "import signal, time\n"
    "signal.signal(signal.SIGQUIT, signal.SIG_IGN)\n"
    "while True: time.sleep(1)\n"
)
SLOW_TO_QUIT = (
    "import signal, sys, time\n"
    "def bye(*_): time.sleep(2); sys.exit(0)\n"
    "signal.signal(signal.SIGQUIT, bye)\n"
    "while True: time.sleep(1)\n"
)
QUITS = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGQUIT, lambda *_: sys.exit(0))\n"
    "while True: time.sleep(1)\n"
)


@pytest.fixture
def container(docker_engine: docker.DockerClient) -> Iterator[Any]:
    made: list[Any] = []

    def make(script: str) -> Any:
        c = docker_engine.containers.run(
            ensure_base_image(docker_engine),
            [str(PYTHON_HOME / "bin" / "python3"), "-c", script],
            name=f"iti-test-crash-{uuid.uuid4().hex[:8]}",
            detach=True,
            network_mode="none",
            volumes=host_mounts(),
            restart_policy={"Name": "always"},  # as Dify's compose file sets it
        )
        made.append(c)
        return c

    yield make
    for c in made:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def state(c: Any) -> dict[str, Any]:
    c.reload()
    return dict(c.attrs["State"])


def state_file(state_dir: Path) -> Path | None:
    """The one target's state file, once written."""
    found = sorted((state_dir / "state" / "targets").glob("*.json"))
    return found[0] if found else None


def saved(state_dir: Path) -> dict[str, Any]:
    path = state_file(state_dir)
    assert path is not None, f"no state file in {state_dir}"
    return dict(json.loads(path.read_text()))


def policy_for(tmp: Path, redis_url: str, c: Any) -> Path:
    return write_policy(
        tmp / "w.toml",
        "w",
        redis_url,
        c.name,
        restart={"stop_timeout": 20, "cooldown": 600, "backoff_initial": 600, "backoff_max": 600},
    )


def kill_mid_restart(sup: SupervisorProcess) -> None:
    """Trigger a restart and SIGKILL the supervisor once its intent is on disk and the worker
    has been sent SIGQUIT."""
    sup.signal(signal.SIGUSR1)
    sup.wait_for(
        lambda: state_file(sup.state_dir) is not None and saved(sup.state_dir)["intent"],
        20,
        "the intent",
    )
    time.sleep(1.0)  # the kill call follows the save within milliseconds
    os.kill(sup.proc.pid, signal.SIGKILL)
    sup.proc.wait(10)


@pytest.mark.parametrize("script", [IGNORES_SIGQUIT, SLOW_TO_QUIT], ids=["ignores", "slow"])
def test_a_supervisor_killed_mid_restart_completes_it_when_started_again(
    container: Any, redis_url: str, tmp_path: Path, script: str
) -> None:
    worker = container(script)
    before = state(worker)["StartedAt"]
    policy = policy_for(tmp_path, redis_url, worker)
    first = SupervisorProcess([policy], tmp_path / "state")
    first.wait_started()
    kill_mid_restart(first)
    first.stop()
    if script is SLOW_TO_QUIT:
        deadline = time.monotonic() + 15
        while state(worker)["Running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # restart: always does not bring back a container killed through the API
        assert not state(worker)["Running"]

    second = SupervisorProcess([policy], tmp_path / "state")
    try:
        started = second.wait_started()
        [done] = second.wait_for(lambda: second.events("restart_completed"), 20, "completion")
        assert state(worker)["Running"]
        # Within one interval (0.5 s) of the start, plus what one Docker start takes.
        assert done["t"] - started["t"] < 0.5 + 5
        [resumed] = second.events("restart_resumed")
        assert resumed["trigger"] == "manual" and resumed["t"] <= done["t"]
        if script is SLOW_TO_QUIT:
            assert done["started"] == [worker.name] and state(worker)["StartedAt"] != before
        else:
            assert done["started"] == [] and state(worker)["StartedAt"] == before
        history = saved(tmp_path / "state")
        assert len(history["recent"]) == 1 and history["intent"] is None
        assert second.events("restart") == []  # completing is not a new restart
    finally:
        second.stop()


class CuttableDocker:
    """A proxy on a unix socket in front of the engine that goes down right after it has passed
    a `kill` on, for `down_for` seconds: Docker unreachable between the kill and the start."""

    def __init__(self, upstream: str, path: Path, down_for: float) -> None:
        self.upstream, self.path, self.down_for = upstream, path, down_for
        self.down = threading.Event()
        self.cut_at: float | None = None
        self._cutting = False
        self.restored_at: float | None = None
        self.conns: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.upstream)
            self.conns += [client, up]
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, watch: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
                if watch and b"/kill" in data and self.cut_at is None:
                    self.cut_at = time.time()
                elif not watch and self.cut_at is not None and not self._cutting:
                    self._cutting = True  # the kill's answer is through: go down now
                    threading.Thread(target=self._cut, daemon=True).start()
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def _cut(self) -> None:
        self.down.set()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        time.sleep(self.down_for)
        self.restored_at = time.time()
        self.down.clear()

    def close(self) -> None:
        self.server.close()


def test_docker_gone_between_the_kill_and_the_start_is_completed_without_cooldown(
    container: Any, redis_url: str, tmp_path: Path
) -> None:
    worker = container(QUITS)
    engine = os.environ["DOCKER_HOST"].removeprefix("unix://")
    proxy = CuttableDocker(engine, tmp_path / "cut.sock", down_for=8.0)
    policy = policy_for(tmp_path, redis_url, worker)
    sup = SupervisorProcess(
        [policy], tmp_path / "state", extra_env={"DOCKER_HOST": f"unix://{proxy.path}"}
    )
    try:
        sup.wait_started()
        sup.signal(signal.SIGUSR1)
        [failed] = sup.wait_for(lambda: sup.events("restart_failed"), 40, "the failed restart")
        assert proxy.cut_at is not None and not state(worker)["Running"]
        assert "stopped containers will be started" in failed["text"]
        [done] = sup.wait_for(lambda: sup.events("restart_completed"), 60, "the completion")
        assert state(worker)["Running"] and done["started"] == [worker.name]
        assert proxy.restored_at is not None and done["t"] >= proxy.restored_at
        assert len(sup.events("start_error_begin")) == 1
        # The cooldown is 600 s: the start came long before it, and counted no restart.
        history = saved(tmp_path / "state")
        assert len(history["recent"]) == 1 and history["intent"] is None
    finally:
        sup.stop()
        proxy.close()
