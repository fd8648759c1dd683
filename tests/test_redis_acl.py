"""The shipped least-privilege ACL users (deploy/redis/acl.txt) against a real redis-server:
the supervisor works under them, and they cannot touch the queues."""

from __future__ import annotations

import re
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
from tests.shipped import acl_commands, every_key_but

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
    probe.sample()
    sample = probe.sample()  # the heads of the lists the first sample found not empty
    probe.close()
    assert sample.ok, sample.error
    assert sample.depth == 12
    assert sample.heads is not None and sample.heads.get("celery"), "LINDEX refused"
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


def test_the_progress_user_rpushes_onto_every_key_but_the_mutex_and_the_bindings() -> None:
    """The RPUSH selector spells "every key but unacked_mutex and _kombu.binding.*"."""
    [rpush] = re.findall(r"\(([^()]*) \+rpush\)", " ".join(acl_commands()["supervisor-progress"]))
    patterns = [p.removeprefix("%W~") for p in rpush.split()]
    assert patterns == every_key_but("unacked_mutex", "_kombu.binding.")


def test_the_progress_user_cannot_delete_bindings_or_hold_the_mutex_for_good(
    acl_server: Any,
) -> None:
    """Defect 10 of issue 25: DEL _kombu.binding.celery (producers that cached their
    declarations route nothing: tasks lost) and SET unacked_mutex with no expiry (kombu's own
    restore blocked for good) are refused on a real redis-server; what the supervisor writes
    is not."""
    admin = acl_server.client()
    member = "celery\x06\x16\x06\x16celery"
    admin.sadd("_kombu.binding.celery", member)
    client = redis.Redis.from_url(policy_as(acl_server, "supervisor-progress").broker.url)
    refused = [
        ("DEL", "_kombu.binding.celery"),
        ("UNLINK", "_kombu.binding.celery"),
        ("SET", "_kombu.binding.celery", "x"),
        ("SREM", "_kombu.binding.celery", member),
        ("SADD", "_kombu.binding.celery", "x\x06\x16\x06\x16elsewhere"),
        ("RPUSH", "_kombu.binding.newqueue", "x"),  # a list squatting a binding's name
        ("SET", "unacked_mutex", "x"),
        ("SET", "unacked_mutex", "x", "NX"),
        ("SET", "unacked_mutex", "x", "PX", "1000"),  # SET is denied outright
        ("SETNX", "unacked_mutex", "x"),
        ("RPUSH", "unacked_mutex", "x"),
        ("LPUSH", "unacked_mutex", "x"),
        ("SADD", "unacked_mutex", "x"),
        ("PERSIST", "unacked_mutex"),
        ("DEL", "unacked_mutex"),
        ("PSETEX", "unacked_mutex", "4611686018427387904", "x"),  # 146 million years
        ("GETDEL", "unacked_mutex"),
        ("DEL", "celery"),
    ]
    for command in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    # Nothing slips through a script either: its commands are checked as the user's own.
    with pytest.raises(redis.exceptions.ResponseError, match=r"can.t access|no permissions"):
        client.eval("return redis.call('SET', KEYS[1], 'x')", 1, "unacked_mutex")
    assert admin.smembers("_kombu.binding.celery") == {member.encode()}
    assert admin.exists("unacked_mutex") == 0
    # What the supervisor itself writes: the queues and its own keys; never kombu's mutex.
    for queue in ("celery", "celery\x06\x163", "unacked_mutexes", "_kombu.bindingx", "u", "work"):
        assert client.rpush(queue, "m") >= 1, queue
    assert client.rpush("iti-supervisor:quarantine:container:w", "m") == 1


def test_the_progress_user_gives_back_and_parks_as_a_killed_worker_needs(acl_server: Any) -> None:
    """A restart's give-back as the shipped user, on a real redis-server: the delivery read is
    pushed back, one delivered again since is left to its holder, a parked one moves to the
    dead-letter list, and Redis refuses nothing (on main's ACL the give-back's ZSCORE was
    refused: nothing came back under the shipped users)."""
    import json as _json

    from supervisor.adapters.unacked_store import UnackedStore
    from supervisor.core import quarantine

    admin = acl_server.client()
    admin.execute_command("ACL", "LOG", "RESET")
    for tag, task in (("t1", "a"), ("t2", "b"), ("t3", "c")):
        payload = {"headers": {"id": task}, "properties": {"delivery_info": {}}}
        admin.hset("unacked", tag, _json.dumps([payload, "", "acl-give-back"]))
        admin.zadd("unacked_index", {tag: 100.0})
    store = UnackedStore(policy_as(acl_server, "supervisor-progress").broker)
    try:
        read = {h.tag: h for h in store.held()}
        admin.zadd("unacked_index", {"t2": 200.0})  # t2 delivered again since the read
        done = store.give_back((read["t1"], read["t2"]))
        assert done.error is None and done.count == 1, done
        entry = quarantine.Entry("c", "tasks.x", "acl-give-back", "w", "poison", 1.0, ({}, "", ""))
        parked = store.park({"c": entry}, "iti-supervisor:quarantine:container:w")
        assert parked.error is None and parked.task_ids == ("c",), parked
    finally:
        store.close()
    assert admin.llen("acl-give-back") == 1
    assert {b"t1", b"t3"}.isdisjoint(admin.hkeys("unacked")) and admin.hexists("unacked", "t2")
    assert admin.llen("iti-supervisor:quarantine:container:w") == 1
    assert admin.exists("unacked_mutex") == 0
    assert admin.execute_command("ACL", "LOG") == []
