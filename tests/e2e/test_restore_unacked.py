"""A worker a cold shutdown cannot stop, SIGKILLed after stop_timeout: the messages it had
reserved go back to the queue at once, not after kombu's one-hour visibility timeout."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from harness.parts import (
    SupervisorProcess,
    Worker,
    celery_app,
    queue_state,
    wait_exactly_once,
    write_policy,
)

pytestmark = pytest.mark.e2e


def test_a_killed_workers_reserved_messages_are_given_back(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    app = celery_app(server.url)
    worker = Worker(
        docker_engine,
        server.url,
        extra_args=("--prefetch-multiplier", "4"),
        env={"TEST_IGNORE_SIGQUIT": "1"},
    )
    try:
        worker.wait_ready(app)
        policy = write_policy(
            tmp_path / "w.toml", "w", server.url, worker.name, restart={"stop_timeout": 2}
        )
        sup = SupervisorProcess([policy], tmp_path / "state")
        sup.wait_started()
        app.send_task("tasks.poison", queue="celery")  # hangs the only pool process
        for i in range(6):
            app.send_task("tasks.work", args=[i], queue="celery")
        deadline = time.monotonic() + 30
        while queue_state(server.url)[1] < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        sup.wait_progress_known()  # the worker heard, its container read (once a minute)
        stranded = queue_state(server.url)[1]  # reserved behind the hung task
        assert stranded >= 3
        sup.signal(signal.SIGUSR1)
        [record] = sup.wait_for(lambda: sup.events("restart"), 60, "the restart")
        assert record["killed"] == [worker.name], record
        assert record["restored"] == stranded and record["unacked_left"] == 0, record
        assert f"{stranded} reserved message(s) given back, 0 left in unacked" in record["text"]
        # Every task but the hung one, without waiting an hour, and none twice.
        wait_exactly_once(server.client(), range(6), 60)
        sup.stop()
    finally:
        worker.remove()
        app.close()
