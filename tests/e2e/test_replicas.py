"""Two replicas of one worker service (compose labels, `all = true`), one hung: only that one
is restarted; the healthy one keeps its StartedAt and none of its tasks is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.parts import (
    Producer,
    SupervisorProcess,
    Worker,
    celery_app,
    wait_exactly_once,
    write_policy,
)

pytestmark = pytest.mark.e2e

LABELS = {"com.docker.compose.project": "iti", "com.docker.compose.service": "dify-worker"}


@pytest.fixture
def replicas(docker_engine: Any, redis_server_factory: Any) -> Iterator[tuple[Any, list[Worker]]]:
    server = redis_server_factory()
    server.start()
    # Replica a also consumes a queue of its own, so that a test can hang exactly it.
    workers = [
        Worker(docker_engine, server.url, queues="celery,only-a", labels=LABELS),
        Worker(docker_engine, server.url, labels=LABELS),
    ]
    app = celery_app(server.url)
    for worker in workers:
        worker.wait_ready(app)
    yield server, workers
    for worker in workers:
        worker.remove()
    app.close()


def test_only_the_hung_replica_is_restarted(
    replicas: tuple[Any, list[Worker]], tmp_path: Path
) -> None:
    server, (hung, healthy) = replicas
    app = celery_app(server.url)
    policy = write_policy(tmp_path / "w.toml", "w", server.url, "unused")
    text = policy.read_text().replace(
        'container = "unused"',
        'compose_project = "iti"\ncompose_service = "dify-worker"\nall = true',
    )
    policy.write_text(text)
    healthy_started = healthy.started_at()
    sup = SupervisorProcess([policy], tmp_path / "state")
    try:
        sup.wait_started()
        sup.wait_progress_known()  # the first heartbeats, and the containers read from Docker
        app.send_task("tasks.poison", queue="only-a")
        producer = Producer(app, per_second=8, work_seconds=0.2).start()  # one replica: 5/s
        try:
            [record] = sup.wait_for(lambda: sup.events("restart"), 90, "a restart")
        finally:
            producer.stop()
        assert record["containers"] == [hung.name], record
        assert record["replicas"] == [{"container": hung.name, "worker": hung.node}]
        assert f"replica {hung.name} (worker {hung.node})" in record["reason"]
        assert healthy.started_at() == healthy_started
        # Nothing lost, and none of the healthy replica's tasks ran twice (its prefetched
        # messages were never given back while it held them).
        wait_exactly_once(server.client(), producer.sent, 90)
        assert len(sup.events("restart")) == 1
    finally:
        sup.stop()
        app.close()
