"""A growing queue no worker consumes is escalated once, never answered with a restart that
cannot help; the target's worker, alive on its other queue, is left alone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harness.parts import SupervisorProcess, Worker, celery_app, write_policy

pytestmark = pytest.mark.e2e


def test_a_growing_queue_nobody_consumes_is_escalated_not_restarted(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    app = celery_app(server.url)
    worker = Worker(docker_engine, server.url)  # consumes celery only
    try:
        worker.wait_ready(app)
        before = worker.started_at()
        policy = write_policy(tmp_path / "w.toml", "w", server.url, worker.name)
        text = policy.read_text().replace('queues = ["celery"]', 'queues = ["celery", "nobody"]')
        policy.write_text(text)
        sup = SupervisorProcess([policy], tmp_path / "state")
        sup.wait_started()
        end = time.monotonic() + 20
        i = 0
        while time.monotonic() < end:  # a producer into a queue no worker consumes
            app.send_task("tasks.work", args=[i], queue="nobody")
            app.send_task("tasks.work", args=[100000 + i], queue="celery")  # the worker is busy
            i += 1
            time.sleep(0.25)
            if sup.events("escalate"):
                break
        [escalate] = sup.wait_for(lambda: sup.events("escalate"), 30, "the escalation")
        assert escalate["reason"].startswith("no consumer for queue nobody")
        time.sleep(3)
        assert sup.events("restart") == [] and worker.started_at() == before
        assert len(sup.events("escalate")) == 1
        sup.stop()
    finally:
        worker.remove()
        app.close()
