"""The supervisor on a worker shaped like Dify's real one: gevent -c 4, prefetch 1,
--max-tasks-per-child 50, Dify's 20 queues, a Redis broker with a password on DB 1, a Redis
result backend, restart policy `always`. The shipped policy is used with its durations
shortened and nothing else changed: its broker comes from SUPERVISOR_BROKER_URL and its queues
are discovered from the worker."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import REPO, Producer, SupervisorProcess, Worker, celery_app, dify_worker

pytestmark = pytest.mark.e2e

SHORTER = {
    "interval": "0.5s",
    "window": "5s",
    "max_gap": "2s",
    "cooldown": "60s",
    "backoff_initial": "60s",
    "backoff_max": "120s",
    "reset_after": "240s",
    "budget_window": "600s",
    "stop_timeout": "3s",
}


def shipped_policy(folder: Path, **changes: Any) -> Path:
    text = (REPO / "policies" / "dify-worker.toml").read_text()
    for key, value in {**SHORTER, **changes}.items():
        toml = f'"{value}"' if isinstance(value, str) else str(value)
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {toml}  ", text, flags=re.M)
        assert n == 1, key
    folder.mkdir(exist_ok=True)
    path = folder / "dify-worker.toml"
    path.write_text(text)
    return path


class Dify:
    def __init__(self, engine: Any, factory: Any, tmp: Path) -> None:
        self.redis = factory(password="difyai123456")
        self.redis.start()
        self.url = self.redis.url.rsplit("/", 1)[0] + "/1"  # a stock Dify's broker: DB 1
        self.app = celery_app(self.url)
        self.worker: Worker = dify_worker(engine, self.url)
        self.worker.wait_ready(self.app)
        self.tmp = tmp
        self.sup: SupervisorProcess | None = None
        self.producer: Producer | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def supervise(self, **changes: Any) -> SupervisorProcess:
        policy = shipped_policy(self.tmp / "policies", **changes)
        self.sup = SupervisorProcess(
            [policy], self.tmp / "state", extra_env={"SUPERVISOR_BROKER_URL": self.url}
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
    sup = dify.supervise()
    for _ in range(4):  # every greenlet hangs, cooperatively
        dify.app.send_task("tasks.poison", queue="dataset")
    producer = dify.produce(per_second=25)
    [record] = sup.wait_for(lambda: sup.events("restart"), 90, "the restart")
    producer.stop()
    assert record["outcome"] == "done" and record["containers"] == ["iti-dify-worker"]
    assert "worker progress stuck at" in record["reason"]
    drained(dify)
    assert dify.done() == set(producer.sent)  # all but the hung ones
    assert len(sup.events("restart")) == 1


def test_2_a_task_blocking_the_hub_is_restarted_by_depth_alone(dify: Dify) -> None:
    sup = dify.supervise()
    dify.app.send_task("tasks.block_hub", queue="dataset")  # heartbeats stop with it
    producer = dify.produce(per_second=25)
    [record] = sup.wait_for(lambda: sup.events("restart"), 120, "the restart")
    producer.stop()
    assert "progress unknown" in record["reason"], record["reason"]
    assert "stuck at" not in record["reason"]
    drained(dify)
    assert dify.done() == set(producer.sent)


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
