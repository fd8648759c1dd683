"""Two replicas of one worker service that ignore SIGQUIT, both hung with reserved messages,
restarted in one restart: each is SIGKILLed after stop_timeout, one after the other, and the
first one, running again, reserves messages before the second is killed. What is given back
for the second must not include the first one's fresh reservations: every task runs once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from harness.parts import (
    SupervisorProcess,
    Worker,
    celery_app,
    queue_state,
    ran_twice,
    wait_exactly_once,
    wait_until,
    write_policy,
)

pytestmark = [pytest.mark.e2e, pytest.mark.exclusive]  # timing: the engine to itself

LABELS = {"com.docker.compose.project": "iti", "com.docker.compose.service": "hung-pair"}
TASKS = 40  # enough that the first one back still holds reservations when the second is killed


def test_two_hung_replicas_restarted_in_one_restart_run_every_task_once(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    client = server.client()
    app = celery_app(server.url)
    replicas = [
        Worker(
            docker_engine,
            server.url,
            queues=f"celery,only-{i}",  # a queue of its own, to hang exactly it
            labels=LABELS,
            extra_args=("--prefetch-multiplier", "4"),
            env={"TEST_IGNORE_SIGQUIT": "1"},
        )
        for i in range(2)
    ]
    sup = None
    try:
        for worker in replicas:
            worker.wait_ready(app)
        policy = write_policy(
            tmp_path / "w.toml",
            "w",
            server.url,
            "unused",
            detect={"threshold": 10_000},  # restarted by hand only, once
            restart={"stop_timeout": 8},
        )
        text = policy.read_text().replace(
            'container = "unused"',
            'compose_project = "iti"\ncompose_service = "hung-pair"\nall = true',
        )
        policy.write_text(text)
        sup = SupervisorProcess([policy], tmp_path / "state")
        sup.wait_started()
        for i in range(2):
            app.send_task("tasks.poison", queue=f"only-{i}")  # hangs its only pool process
        wait_until(lambda: int(client.get("test:poison_started") or 0) == 2, 30, "both hung")
        for i in range(TASKS):
            app.send_task("tasks.work", args=[i, 1.0], queue="celery")
        wait_until(lambda: queue_state(server.url)[1] >= 8, 30, "4 reserved by each")
        sup.wait_progress_known()  # both workers heard, their containers read
        stranded = queue_state(server.url)[1]
        first_started = {w.name: w.started_at() for w in replicas}
        sup.signal(signal.SIGUSR1)

        # The interleaving the test is about: one replica runs again and takes messages
        # while the other, not yet killed, still runs its old (hung) worker.
        def one_back_one_hung() -> bool:
            again = [w for w in replicas if w.started_at() != first_started[w.name]]
            return len(again) == 1 and client.scard(f"test:started:{again[0].node}") > 0

        wait_until(one_back_one_hung, 60, "the first replica back and working")
        [record] = sup.wait_for(lambda: sup.events("restart"), 60, "the restart")
        assert sorted(record["containers"]) == sorted(w.name for w in replicas), record
        assert sorted(record["killed"]) == sorted(w.name for w in replicas), record
        wait_exactly_once(client, range(TASKS), 120)  # none lost, none twice
        assert record["restored"] == stranded, (record, ran_twice(client))
    finally:
        if sup is not None:
            sup.stop()
        for worker in replicas:
            worker.remove()
        app.close()
