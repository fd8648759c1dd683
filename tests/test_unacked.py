"""Giving a SIGKILLed worker's reserved messages back, against a real worker and redis-server,
under the shipped least-privilege user; and what happens when the ACL refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from harness.parts import local_worker, wait_exactly_once, wait_until
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.unacked_store import UnackedStore
from supervisor.core.unacked import Held, to_give_back, to_restore
from tests.helpers import make_policy
from tests.shipped import acl_commands

H = [Held("t1", "a", "celery"), Held("t2", "b", "celery"), Held("t3", "c", "mail")]


def test_only_what_the_killed_worker_held_is_given_back() -> None:
    # Another worker consumes the queue: only what the killed one reported.
    assert to_restore(H, ["celery"], frozenset({"a"}), others_consume=True) == ("t1",)
    assert to_restore(H, ["celery"], None, others_consume=True) == ()
    # Nobody else consumes it: everything of the watched queues (what it reported, what kombu
    # had moved to unacked without Celery reserving it yet, and all of it when it did not
    # answer), never another queue's.
    assert to_restore(H, ["celery"], frozenset({"a", "c"}), others_consume=False) == ("t1", "t2")
    assert to_restore(H, ["celery"], None, others_consume=False) == ("t1", "t2")


def test_while_others_run_only_what_it_reported_and_still_the_same_delivery_goes_back() -> None:
    # "a" was given back by a cold shutdown and reserved again by a running worker under the
    # same tag: another score than before the restart, so it is that worker's now.
    before = {"t1": 10.0, "t2": 11.0}
    read = [Held("t1", "a", "celery", 15.0), Held("t2", "b", "celery", 11.0)]
    ids = frozenset({"a", "b"})
    picked = to_give_back(read, ["celery"], ids, before, others_running=True)
    assert [h.tag for h in picked] == ["t2"]
    # A tag not there before the restart is a fresh delivery: never taken while others run.
    assert to_give_back([Held("t3", "a", "celery", 1.0)], ["celery"], ids, before, True) == ()
    # Nobody runs: whatever is in unacked of the watched queues, whoever it was delivered to.
    alone = to_give_back(read, ["celery"], None, before, others_running=False)
    assert [h.tag for h in alone] == ["t1", "t2"]


def worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return local_worker(url, "held@test", log, "-c", "1", "--prefetch-multiplier", "4")


@pytest.mark.integration
def test_a_killed_workers_reserved_messages_go_back_at_once(
    redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    admin = server.client()
    for args in acl_commands().values():
        admin.execute_command("ACL", *args)
    app = Celery("producer", broker=server.url, set_as_current=False)
    first = worker(server.url, tmp_path / "worker.log")
    progress_user = make_policy(
        broker={"url": server.url.replace("redis://", "redis://supervisor-progress:acl-test-pw@")}
    )
    monitor = ProgressMonitor(progress_user.broker)
    try:
        app.send_task("tasks.poison", queue="celery")  # hangs the only pool process
        ids = [app.send_task("tasks.work", args=[i], queue="celery").id for i in range(6)]
        wait_until(lambda: admin.hlen("unacked") >= 3, 30, "reserved messages")
        holding = monitor.holding(["held@test"])
        assert holding is not None
        held = holding.ids
        assert held is not None and set(ids[:3]) <= held
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        stranded = admin.hlen("unacked")
        waiting = admin.llen("celery")

        store = UnackedStore(progress_user.broker)
        tags = to_restore(store.held(), ["celery"], held, others_consume=False)
        assert len(tags) == stranded

        sampling_only = make_policy(
            broker={"url": server.url.replace("redis://", "redis://supervisor:acl-test-pw@")}
        )
        refused = UnackedStore(sampling_only.broker)
        denied = refused.restore(tags)
        assert denied.count == 0 and denied.error is not None and "NoPermission" in denied.error
        refused.close()
        assert admin.hlen("unacked") == stranded  # nothing was lost on the way

        done = store.restore(tags)
        store.close()
        assert done.error is None and done.count == stranded and done.left == 0
        assert admin.llen("celery") == waiting + stranded
        second = worker(server.url, tmp_path / "worker.log")
        try:
            wait_exactly_once(admin, range(6), 60)
        finally:
            os.killpg(second.pid, signal.SIGKILL)
            second.wait(10)
    finally:
        monitor.stop()
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        app.close()
        redis.Redis.close(admin)


@pytest.mark.integration
def test_give_back_takes_only_the_delivery_that_was_read(redis_server_factory: Any) -> None:
    """An entry delivered again since it was read (same tag, another unacked_index score, as a
    message given back by a cold shutdown and reserved by a fresh worker is) stays with its
    new holder; one taken meanwhile is not pushed twice; the unchanged one goes back."""
    server = redis_server_factory()
    server.start()
    admin = server.client()
    try:
        for tag, task, score in (("t1", "a", 10.0), ("t2", "b", 11.0), ("t3", "c", 12.0)):
            message = [{"headers": {"id": task}, "properties": {"delivery_tag": tag}}, "", "celery"]
            admin.hset("unacked", tag, json.dumps(message))
            admin.zadd("unacked_index", {tag: score})
        store = UnackedStore(make_policy(broker={"url": server.url}).broker)
        read = tuple(store.held())
        admin.zadd("unacked_index", {"t1": 20.0})  # t1 delivered again since the read
        admin.hdel("unacked", "t3")  # t3 acknowledged since
        admin.zrem("unacked_index", "t3")
        done = store.give_back(read)
        store.close()
        assert done.count == 1 and done.error is None
        assert admin.hexists("unacked", "t1") and not admin.hexists("unacked", "t2")
        assert [json.loads(m)["headers"]["id"] for m in admin.lrange("celery", 0, -1)] == ["b"]
    finally:
        redis.Redis.close(admin)
