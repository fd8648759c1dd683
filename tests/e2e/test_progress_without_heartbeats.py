"""Workers run with `--without-heartbeat --without-gossip --without-mingle` (the workaround for
celery/celery#8030): their progress comes from remote control `stats`, so a busy one is left
alone and a hung one is restarted; with remote control disabled too, the supervisor says it
cannot tell busy from stuck, and the depth rule decides.

The measured case of the issue: prefork `-c 2`, tasks of 0.25 s, a producer at 12 tasks/s (the
backlog grows by about 4 a second), policy window 8 s, threshold 30.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.parts import Producer, SupervisorProcess, Worker, celery_app, wait_until, write_policy

pytestmark = pytest.mark.e2e

SILENT = ("--without-heartbeat",)  # the harness always adds --without-gossip --without-mingle
NO_SOURCE = "the worker sends no heartbeats and does not answer remote control"


class Silent:
    def __init__(self, engine: Any, factory: Any, tmp: Path) -> None:
        self.redis = factory()
        self.redis.start()
        self.app = celery_app(self.redis.url)
        self.tmp = tmp
        self.workers: list[Worker] = []
        self.producers: list[Producer] = []
        self.sup: SupervisorProcess | None = None
        self.engine = engine

    def worker(self, remote_control: bool = True) -> Worker:
        env = {} if remote_control else {"TEST_NO_REMOTE_CONTROL": "1"}
        worker = Worker(self.engine, self.redis.url, concurrency=2, extra_args=SILENT, env=env)
        self.workers.append(worker)
        worker.wait_ready(self.app)
        return worker

    def supervise(self, worker: Worker) -> SupervisorProcess:
        policy = write_policy(
            self.tmp / "w.toml",
            "w",
            self.redis.url,
            worker.name,
            detect={"interval": 0.5, "window": 8, "threshold": 30, "max_gap": 2},
        )
        self.sup = SupervisorProcess([policy], self.tmp / "state")
        self.sup.wait_started()
        return self.sup

    def produce(self) -> Producer:
        producer = Producer(self.app, per_second=12, work_seconds=0.25).start()
        self.producers.append(producer)
        return producer

    def progress_seen(self) -> str | None:
        beat = json.loads((self.tmp / "state" / "heartbeat.json").read_text())
        return beat["policies"]["w"].get("progress")

    def close(self) -> None:
        for producer in self.producers:
            producer.stop()
        if self.sup is not None:
            self.sup.stop()
        for worker in self.workers:
            worker.remove()
        self.app.close()


@pytest.fixture
def silent(docker_engine: Any, redis_server_factory: Any, tmp_path: Path) -> Iterator[Silent]:
    s = Silent(docker_engine, redis_server_factory, tmp_path)
    yield s
    s.close()


def depth(s: Silent) -> int:
    return int(s.redis.client().llen("celery"))


def test_1_a_busy_worker_without_heartbeats_is_never_restarted(silent: Silent) -> None:
    worker = silent.worker()
    before = worker.started_at()
    sup = silent.supervise(worker)
    silent.produce()
    wait_until(lambda: depth(silent) > 60, 40, "a backlog well over the threshold")
    time.sleep(12)  # over the threshold and growing for longer than the 8 s window
    assert depth(silent) > 80
    assert sup.events("restart") == [] and sup.events("restart_failed") == []
    assert worker.started_at() == before
    seen = silent.progress_seen()
    assert seen is not None and seen.endswith("from remote control"), seen
    assert sup.events("progress_unknown") == []


def test_2_a_hung_worker_without_heartbeats_is_restarted_naming_the_source(silent: Silent) -> None:
    worker = silent.worker()
    before = worker.started_at()
    sup = silent.supervise(worker)
    for _ in range(2):  # both pool processes hang
        silent.app.send_task("tasks.poison", queue="celery")
    silent.produce()
    [record] = sup.wait_for(lambda: sup.events("restart"), 60, "a restart")
    assert record["outcome"] == "done" and worker.started_at() != before
    assert "worker progress stuck at" in record["reason"]
    assert record["reason"].endswith("from remote control"), record["reason"]


def test_3_no_heartbeats_and_no_remote_control_is_said_and_depth_decides(silent: Silent) -> None:
    worker = silent.worker(remote_control=False)
    sup = silent.supervise(worker)
    silent.produce()  # busy, not stuck: but nothing can tell
    [unknown] = sup.wait_for(lambda: sup.events("progress_unknown"), 30, "the warning")
    assert NO_SOURCE in unknown["text"] and "busy worker may be restarted" in unknown["text"]
    assert NO_SOURCE in sup.log_path.read_text()
    seen = silent.progress_seen()
    assert seen is not None and NO_SOURCE in seen
    [record] = sup.wait_for(lambda: sup.events("restart"), 60, "a restart by the depth rule")
    assert f"progress unknown: {NO_SOURCE}" in record["reason"]
    assert len(sup.events("progress_unknown")) == 1  # said once
