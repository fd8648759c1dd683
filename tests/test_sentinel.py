"""A Sentinel broker on loopback (a master, a replica, a sentinel; Debian's redis-sentinel): the
supervisor reaches the current master through the sentinel for sampling, progress and giving
messages back, follows a failover within seconds, and the old master gone for good changes
nothing. Prints the seconds from SENTINEL FAILOVER to the first sample from the new master and
to progress known again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.parts import local_worker, wait_until
from harness.services import SentinelSet
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.adapters.unacked_store import UnackedStore
from supervisor.core.unacked import to_restore
from tests.helpers import make_policy

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinels(tmp_path: Path) -> Any:
    found = SentinelSet(tmp_path / "sentinel")
    found.workdir.mkdir()
    found.start()
    yield found
    found.stop()


def worker(s: SentinelSet, log: Path) -> subprocess.Popen[bytes]:
    env = {"TEST_MASTER_NAME": s.MASTER_NAME}
    return local_worker(
        s.url, "sentinel@test", log, "-c", "1", "--heartbeat-interval", "1", env=env
    )


def test_sampling_progress_and_give_back_follow_a_failover(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    s = sentinels
    policy = make_policy(
        broker={"url": s.url, "master_name": s.MASTER_NAME, "timeout": 2},
        detect={"interval": 0.5},
    )
    probe = RedisProbe(policy.broker)
    log = tmp_path / "worker.log"
    proc = worker(s, log)
    monitor = ProgressMonitor(policy.broker, poll_every=0.5)
    monitor.start()
    try:
        wait_until(
            lambda: monitor.progress(["celery"]).processed is not None,
            30, "progress through the sentinel", log.read_text,
        )  # fmt: skip
        old_db1 = s.master.client()
        old_db1.execute_command("SELECT", 1)
        for i in range(7):
            old_db1.lpush("held", f"m{i}")  # a queue no worker consumes: its depth stays
        assert probe.sample(["held"]).depth == 7

        asked = time.monotonic()
        new = s.failover()
        new_db1 = new.client()
        new_db1.execute_command("SELECT", 1)
        new_db1.lpush("held", "after")  # written to the new master only
        wait_until(lambda: probe.sample(["held"]).depth == 8, 30, "a sample of the new master")
        to_sample = time.monotonic() - asked
        before = monitor.progress(["celery"]).processed or 0
        from celery import Celery

        app = Celery("p", broker=s.url, set_as_current=False)
        app.conf.broker_transport_options = {"master_name": s.MASTER_NAME}
        app.send_task("tasks.work", args=[1], queue="celery")
        wait_until(
            lambda: (monitor.progress(["celery"]).processed or 0) > before,
            60, "progress known again, from the new master", log.read_text,
        )  # fmt: skip
        app.close()
        to_progress = time.monotonic() - asked
        print(f"\nSENTINEL FAILOVER -> first sample of the new master: {to_sample:.1f} s; "
              f"-> progress known again: {to_progress:.1f} s")  # fmt: skip

        # Reserved messages are given back on the new master, the way kombu stores them.
        new_db1.hset("unacked", "tag-1", '[{"headers": {"id": "t1"}}, "", "celery"]')
        new_db1.zadd("unacked_index", {"tag-1": time.time() - 5})
        store = UnackedStore(policy.broker)
        held = store.held()
        done = store.restore(to_restore(held, ["celery"], frozenset({"t1"}), True))
        store.close()
        assert done.error is None and done.count == 1 and new_db1.hlen("unacked") == 0

        s.master.stop() if new is s.replica else s.replica.stop()  # the old one, for good
        new_db1.lpush("held", "x")
        assert probe.sample(["held"]).depth == 9
    finally:
        monitor.stop()
        probe.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_the_lease_fence_follows_a_failover(sentinels: SentinelSet) -> None:
    """Right after a failover the fence is answered by the new master: a lease that is
    another's there is never taken for ours because a connection still reaches the old one."""
    from supervisor.adapters.lease_store import LeaseStore, lease_key

    s = sentinels
    policy = make_policy(broker={"url": s.url, "master_name": s.MASTER_NAME, "timeout": 2})
    key = policy.target.key
    store = LeaseStore(policy.broker)
    try:
        assert store.hold(key, "me", 60.0)[2] is None
        assert store.still_mine(key, "me", 60.0) is None  # a connection to the old master
        new = s.failover()
        db1 = new.client()
        db1.execute_command("SELECT", 1)
        db1.set(lease_key(key), "other/2", px=60_000)  # the lease is another's now
        answers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the sentinels have switched the master
            answers.append(store.still_mine(key, "me", 60.0))
            if answers[-1] == "the lease is held by other/2":
                break
            time.sleep(0.05)
        assert None not in answers  # never ours, not even while the failover was under way
        assert answers[-1] == "the lease is held by other/2"
        assert all("failover" in a and "is under way" in a for a in answers[:-1] if a), answers
    finally:
        store.close()
