"""A Celery worker container on the private engine with its own redis-server, the producers
and supervisors a test starts on it, all removed after the test (the `stack` fixture of
tests/e2e/conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.parts import (
    Producer,
    SupervisorProcess,
    Worker,
    celery_app,
    queue_state,
    write_policy,
)


class Stack:
    def __init__(self, engine: Any, factory: Any, tmp_path: Path) -> None:
        self.redis = factory()
        self.redis.start()
        self.url = self.redis.url
        self.app = celery_app(self.url)
        self.worker = Worker(engine, self.url)
        self.worker.wait_ready(self.app)
        self.tmp = tmp_path
        self.supervisors: list[SupervisorProcess] = []
        self.producers: list[Producer] = []

    def policy(self, name: str = "worker", **sections: Any) -> Path:
        return write_policy(self.tmp / f"{name}.toml", name, self.url, self.worker.name, **sections)

    def supervise(
        self, policies: list[Path], dry_run: bool = False, env: dict[str, str] | None = None
    ) -> SupervisorProcess:
        sup = SupervisorProcess(policies, self.tmp / "state", dry_run=dry_run, extra_env=env)
        self.supervisors.append(sup)
        sup.wait_started()
        return sup

    def produce(self, per_second: float, work_seconds: float = 0.05) -> Producer:
        producer = Producer(self.app, per_second, work_seconds).start()
        self.producers.append(producer)
        return producer

    def poison(self, task: str = "tasks.poison") -> None:
        self.app.send_task(task, queue="celery")

    def wait_drained(self, timeout: float = 60) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            depth, unacked = queue_state(self.url)
            if depth == 0 and unacked == 0:
                time.sleep(1.0)  # the last reserved task completes
                return queue_state(self.url)
            time.sleep(0.25)
        return queue_state(self.url)

    def done(self) -> set[int]:
        return {int(x) for x in self.redis.client().smembers("test:done")}

    def close(self) -> None:
        for producer in self.producers:
            producer.stop()
        for sup in self.supervisors:
            sup.stop()
        self.worker.remove()
        self.app.close()
