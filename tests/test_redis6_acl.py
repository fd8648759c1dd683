"""The ACL file for Redis 6.2 (deploy/redis/users-redis6.acl) loaded with --aclfile into a real
redis-server (7 here: it reads the 6.2 syntax, which has no selectors and no read-only key
patterns, and this file uses nothing else), so its users survive a restart of Redis: the
supervisor samples and hears a real worker under them, and what they must not do is refused."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import REPO, local_worker
from harness.services import free_port
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.redis_probe import RedisProbe
from tests.helpers import make_policy, quarantine_round_trip

pytestmark = pytest.mark.integration

ACL_FILE = REPO / "deploy" / "redis" / "users-redis6.acl"
REDIS7_ONLY = re.compile(r"\(|%[RW]~|selector")  # selectors and read/write key patterns


def test_the_file_uses_only_redis_6_2_syntax() -> None:
    lines = ACL_FILE.read_text().splitlines()
    users = [line for line in lines if line.startswith("user ")]
    assert users == lines  # an ACL file holds nothing else: Redis refuses a comment
    assert [u.split()[1] for u in users] == ["supervisor", "supervisor-progress"]
    assert not [u for u in users if REDIS7_ONLY.search(u)]


@pytest.fixture
def server(tmp_path: Path) -> Any:
    acl = tmp_path / "users.acl"
    acl.write_text(
        "user default on nopass ~* &* +@all\n"
        + ACL_FILE.read_text().replace(">PASSWORD", ">acl-test-pw")
    )
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path), "--aclfile", str(acl)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    admin = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.rpush("celery", *range(12))
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield port, admin, args
    proc.terminate()
    proc.wait(10)


def url(port: int, user: str, queue: str = "celery") -> str:
    return f"redis://{user}:acl-test-pw@127.0.0.1:{port}/0"


@pytest.mark.parametrize("user", ["supervisor", "supervisor-progress"])
def test_sampling_works_and_what_it_must_not_do_is_refused(server: Any, user: str) -> None:
    port, _, _ = server
    policy = make_policy(broker={"url": url(port, user), "timeout": 2})
    probe = RedisProbe(policy.broker)
    probe.sample()
    sample = probe.sample()  # the heads of the lists the first sample found not empty
    probe.close()
    assert sample.ok and sample.depth == 12, sample.error
    assert sample.heads is not None and sample.heads.get("celery"), "LINDEX refused"
    client = redis.Redis.from_url(url(port, user))
    refused = [("FLUSHDB",), ("KEYS", "*"), ("CONFIG", "GET", "*"), ("LPOP", "celery")]
    if user == "supervisor":
        refused += [("DEL", "celery"), ("SET", "x", "1"), ("RPUSH", "celery", "x")]
    for command in refused:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    assert client.llen("celery") == 12


def test_the_progress_user_hears_a_real_worker_and_its_users_come_from_the_file(
    server: Any, tmp_path: Path
) -> None:
    port, admin, _ = server
    admin.delete("celery")  # the fixture's stand-in messages are no Celery messages
    log = tmp_path / "worker.log"
    worker = local_worker(f"redis://127.0.0.1:{port}/0", "acl6@test", log, "-c", "1")
    monitor = ProgressMonitor(
        make_policy(broker={"url": url(port, "supervisor-progress")}).broker, poll_every=1
    )
    monitor.start()
    try:
        deadline = time.monotonic() + 30
        while monitor.progress(["celery"]).processed is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert monitor.progress(["celery"]).processed is not None, log.read_text()
        assert admin.execute_command("ACL", "LOG") == []  # nothing was denied
    finally:
        monitor.stop()
        worker.terminate()
        worker.wait(20)
    admin.execute_command("ACL", "DELUSER", "supervisor")
    admin.execute_command("ACL", "LOAD")  # what Redis does at a restart: the file's users again
    users = {u.decode() for u in admin.execute_command("ACL", "USERS")}
    assert {"supervisor", "supervisor-progress"} <= users


def test_the_progress_user_parks_requeues_and_drops_poison_messages(server: Any) -> None:
    port, admin, _ = server
    quarantine_round_trip(admin, make_policy(broker={"url": url(port, "supervisor-progress")}))
