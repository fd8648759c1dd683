"""The supervisor on a worker shaped like Dify's real one: gevent -c 4, prefetch 1,
--max-tasks-per-child 50, Dify's 20 queues, a Redis broker with a password on DB 1, a Redis
result backend, restart policy `always`. The shipped policy is used with its durations
shortened and nothing else changed: its broker comes from SUPERVISOR_BROKER_URL and its queues
are discovered from the worker."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import (
    DIFY_QUEUES,
    Producer,
    SupervisorProcess,
    Worker,
    celery_app,
    dify_worker,
    ran_twice,
    shipped_policy,
    wait_until,
)

pytestmark = pytest.mark.e2e


class Dify:
    def __init__(self, engine: Any, factory: Any, tmp: Path, **worker: Any) -> None:
        self.redis = factory(password="difyai123456")
        self.redis.start()
        self.url = self.redis.url.rsplit("/", 1)[0] + "/1"  # a stock Dify's broker: DB 1
        self.app = celery_app(self.url)
        self.worker: Worker = dify_worker(engine, self.url, **worker)
        self.worker.wait_ready(self.app)
        self.tmp = tmp
        self.sup: SupervisorProcess | None = None
        self.producer: Producer | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def supervise(self, env: dict[str, str] | None = None, **changes: Any) -> SupervisorProcess:
        policy = shipped_policy(self.tmp / "policies", **changes)
        self.sup = SupervisorProcess(
            [policy],
            self.tmp / "state",
            extra_env={"SUPERVISOR_BROKER_URL": self.url, **(env or {})},
        )
        self.sup.wait_started()
        # The worker's own queues are learnt before anything is judged.
        [learnt] = self.sup.wait_for(lambda: self.sup.events("queues_changed"), 30, "queues")
        assert "dataset" in learnt["queues"] and len(learnt["queues"]) == 20
        return self.sup

    def produce(self, per_second: float, work_seconds: float = 0.01) -> Producer:
        self.producer = Producer(self.app, per_second, work_seconds, queue="dataset").start()
        return self.producer

    def done(self) -> set[int]:
        return {int(x) for x in self.client().smembers("test:done")}

    def close(self) -> None:
        if self.producer is not None:
            self.producer.stop()
        if self.sup is not None:
            self.sup.stop()
        self.worker.remove()
        self.app.close()


@pytest.fixture
def dify(docker_engine: Any, redis_server_factory: Any, tmp_path: Path) -> Iterator[Dify]:
    d = Dify(docker_engine, redis_server_factory, tmp_path)
    yield d
    d.close()


def drained(d: Dify, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    client = d.client()
    while time.monotonic() < deadline:
        if client.llen("dataset") == 0 and client.hlen("unacked") == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"not drained: {client.llen('dataset')} waiting, {client.hlen('unacked')}")


def test_1_four_hung_greenlets_on_dataset_restarted_once_nothing_else_lost(dify: Dify) -> None:
    """Scenario 6: Dify's .env in the supervisor's environment, CELERY_BROKER_URL pointing at
    another database; the hung worker is still restarted. (The same hang without it runs on
    the stand-in of Dify's compose file: tests/dify/test_dify_recipe.py.)"""
    other = dify.url.rsplit("/", 1)[0] + "/7"
    env = dict.fromkeys(("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL"), other)
    sup = dify.supervise(env=env)
    for _ in range(4):  # every greenlet hangs, cooperatively
        dify.app.send_task("tasks.poison", queue="dataset")
    producer = dify.produce(per_second=25)
    [record] = sup.wait_for(lambda: sup.events("restart"), 90, "the restart")
    producer.stop()
    assert record["outcome"] == "done" and record["containers"] == ["iti-dify-worker"]
    assert "worker progress stuck at" in record["reason"]
    # gevent with a Redis result backend: Celery's cold shutdown breaks there, so none is tried.
    assert record["sigquit"] is False and record["killed"] == ["iti-dify-worker"]
    drained(dify)
    # All but the hung ones, give or take one: kombu's Redis transport pops a message (BRPOP)
    # and only then records it in unacked, and under gevent the worker yields in between; a
    # message caught there when the worker dies is in neither place, only in its memory.
    lost = set(producer.sent) - dify.done()
    assert len(lost) <= 1, sorted(lost)
    assert not ran_twice(dify.client())  # given back after the SIGKILL, run once all the same
    assert len(sup.events("restart")) == 1


def test_2_a_task_blocking_the_hub_is_restarted_by_depth_alone(dify: Dify) -> None:
    sup = dify.supervise()
    dify.app.send_task("tasks.block_hub", queue="dataset")  # heartbeats stop with it
    producer = dify.produce(per_second=25)
    [record] = sup.wait_for(lambda: sup.events("restart"), 120, "the restart")
    producer.stop()
    assert "progress unknown" in record["reason"], record["reason"]
    assert "stuck at" not in record["reason"]
    drained(dify)  # the queue drains and nothing is left in unacked
    assert not ran_twice(dify.client())  # what was given back ran once


def test_3_a_busy_healthy_gevent_worker_is_never_restarted(dify: Dify) -> None:
    sup = dify.supervise(threshold=30)
    before = dify.worker.started_at()
    dify.produce(per_second=12, work_seconds=0.5)  # 4 greenlets: 8 a second
    deadline = time.monotonic() + 60
    while dify.client().llen("dataset") < 80 and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(8)  # over the threshold and growing for longer than the 5 s window
    assert dify.client().llen("dataset") > 80
    assert sup.events("restart") == [] and dify.worker.started_at() == before


def test_4_a_stop_signal_and_restart_always_one_restart_is_one_start(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    d = Dify(docker_engine, redis_server_factory, tmp_path, stop_signal="SIGTERM")
    try:
        sup = d.supervise()
        time.sleep(1.5)  # docker events are filtered by whole seconds
        since = int(time.time())
        sup.signal(signal.SIGUSR1)
        [record] = sup.wait_for(lambda: sup.events("restart"), 60, "the restart")
        seen = docker_engine.events(
            since=since,
            until=int(time.time()) + 2,
            filters={"container": d.worker.container.id},
            decode=True,
        )
        actions = [
            (e["Action"], e["Actor"]["Attributes"].get("signal"))
            for e in seen
            if e.get("Type") == "container"
        ]
        starts = [i for i, a in enumerate(actions) if a[0] == "start"]
        assert len(starts) == 1, actions  # one restart, one new start
        # Nothing is ever signalled after that start: a freshly started worker is never killed.
        assert not [a for a in actions[starts[0] :] if a[0] == "kill"], actions
        assert record.get("by_restart_policy") or record.get("killed"), record
    finally:
        d.close()


def test_5_two_replicas_one_hung_only_it_is_restarted_none_of_the_others_tasks_lost(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    labels = {"com.docker.compose.project": "dify", "com.docker.compose.service": "worker"}
    d = Dify(
        docker_engine,
        redis_server_factory,
        tmp_path,
        name="dify-worker-1",
        labels=labels,
        queues=DIFY_QUEUES + ",only-1",
    )
    healthy = dify_worker(docker_engine, d.url, name="dify-worker-2", labels=labels)
    try:
        healthy.wait_ready(d.app)
        before = healthy.started_at()
        target = 'compose_project = "dify"\ncompose_service = "worker"\nall = true'
        policy = shipped_policy(tmp_path / "policies")
        policy.write_text(policy.read_text().replace('container = "iti-dify-worker"', target))
        d.sup = SupervisorProcess(
            [policy], tmp_path / "state", extra_env={"SUPERVISOR_BROKER_URL": d.url}
        )
        d.sup.wait_started()
        d.sup.wait_for(lambda: d.sup.events("queues_changed"), 30, "queues")
        for _ in range(4):  # every greenlet of replica 1 hangs
            d.app.send_task("tasks.poison", queue="only-1")
        time.sleep(1)
        producer = d.produce(per_second=14, work_seconds=0.5)  # one replica alone: 8 a second
        [record] = d.sup.wait_for(lambda: d.sup.events("restart"), 120, "the restart")
        producer.stop()
        assert record["containers"] == ["dify-worker-1"], (record["reason"], record.get("why"))
        assert healthy.started_at() == before

        # Every task the healthy replica started completes. (Another replica consumes the
        # queue, so of the killed one's messages only those it reported are given back: an
        # entry kombu had moved to unacked without Celery reserving it stays there for the
        # visibility timeout rather than risk running twice.)
        def healthy_done() -> bool:
            ran = {int(x) for x in d.client().smembers(f"test:started:{healthy.node}")}
            return bool(ran) and d.client().llen("dataset") == 0 and ran <= d.done()

        wait_until(healthy_done, 90, "the healthy replica's tasks done")
        # ... and none twice: the healthy replica's prefetched messages were never given back.
        assert not ran_twice(d.client())
        assert record["sigquit"] is False  # gevent with a result backend: no cold shutdown
    finally:
        healthy.remove()
        d.close()
