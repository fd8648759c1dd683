"""The shipped least-privilege ACL users (deploy/redis/acl.txt) against a real redis-server:
the supervisor works under them, and they cannot touch the queues."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import WORKER_APP
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.policy import Policy
from tests.helpers import make_policy, quarantine_round_trip
from tests.shipped import acl_commands

pytestmark = pytest.mark.integration


@pytest.fixture
def acl_server(redis_server_factory: Any) -> Any:
    server = redis_server_factory()
    server.start()
    admin = server.client()
    for args in acl_commands().values():
        assert admin.execute_command("ACL", *args) == b"OK"
    admin.rpush("celery", *range(12))
    return server


def policy_as(server: Any, user: str, **detect: Any) -> Policy:
    return make_policy(
        broker={"url": f"redis://{user}:acl-test-pw@127.0.0.1:{server.port}/0", "timeout": 2},
        detect=detect,
    )


def test_both_users_are_shipped() -> None:
    assert set(acl_commands()) == {"supervisor", "supervisor-progress"}


@pytest.mark.parametrize("user", ["supervisor", "supervisor-progress"])
def test_sampling_works_and_queues_cannot_be_touched(acl_server: Any, user: str) -> None:
    policy = policy_as(acl_server, user)
    probe = RedisProbe(policy.broker)
    sample = probe.sample()
    probe.close()
    assert sample.ok, sample.error
    assert sample.depth == 12
    client = redis.Redis.from_url(policy.broker.url)
    for command in (
        ("DEL", "celery"),
        ("LPOP", "celery"),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "*"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    assert client.llen("celery") == 12


@pytest.mark.parametrize("heartbeats", [True, False], ids=["heartbeats", "remote-control"])
def test_progress_user_hears_a_real_worker(
    acl_server: Any, tmp_path: Path, heartbeats: bool
) -> None:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "-c",
            "1",
            "-Q",
            "work",
            "-n",
            "acl@test",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
            *(() if heartbeats else ("--without-heartbeat",)),
        ],
        cwd=WORKER_APP,
        env={"TEST_BROKER_URL": acl_server.url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )
    monitor = ProgressMonitor(policy_as(acl_server, "supervisor-progress").broker, poll_every=1)
    monitor.start()
    try:
        # Before its first heartbeat, a worker may be asked by remote control: wait for the
        # source this worker settles on.
        expected = "heartbeats" if heartbeats else "remote control"
        deadline = time.monotonic() + 30
        progress = monitor.progress(["work"])
        while progress.source != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            progress = monitor.progress(["work"])
        assert progress.processed is not None, (tmp_path / "worker.log").read_text()
        assert progress.source == expected
        assert monitor.processed(["celery"]) is None  # the worker does not consume it
        assert acl_server.client().execute_command("ACL", "LOG") == []  # nothing was denied
    finally:
        monitor.stop()
        worker.terminate()
        worker.wait(20)


@pytest.mark.parametrize("heartbeats", [True, False], ids=["heartbeats", "remote-control"])
def test_celery_settings_in_the_environment_change_nothing(
    redis_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heartbeats: bool
) -> None:
    """Dify's .env sets CELERY_BROKER_URL; Celery gives it precedence over a configured broker.
    With it (and the read URL) pointing at another database, progress is still heard from the
    worker on the policy's own."""
    server = redis_server_factory()
    server.start()
    other = server.url.rsplit("/", 1)[0] + "/5"
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        monkeypatch.setenv(name, other)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-c", "1", "-Q", "work",
         "-n", "env@test", "--without-mingle", "--without-gossip", "-l", "warning",
         *(() if heartbeats else ("--without-heartbeat",))],
        cwd=WORKER_APP,
        env={"TEST_BROKER_URL": server.url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )  # fmt: skip
    policy = make_policy(broker={"url": server.url, "timeout": 2})
    monitor = ProgressMonitor(policy.broker, poll_every=1)
    monitor.start()
    try:
        expected = "heartbeats" if heartbeats else "remote control"
        deadline = time.monotonic() + 30
        while monitor.progress(["work"]).source != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert monitor.progress(["work"]).source == expected, (tmp_path / "worker.log").read_text()
        # Nothing was ever written to the other database.
        assert redis.Redis.from_url(other).dbsize() == 0
    finally:
        monitor.stop()
        worker.terminate()
        worker.wait(20)


def test_the_progress_user_parks_requeues_and_drops_poison_messages(acl_server: Any) -> None:
    quarantine_round_trip(acl_server.client(), policy_as(acl_server, "supervisor-progress"))
