"""The rules at any depth on real parts, at shortened durations: a real redis-server, real
Celery workers (local processes of harness/worker/tasks.py), the real probe and progress
monitor, and the daemon's tracker judging each sample (in dry-run: what it would restart, and
why). The worker hangs the way the issue's failures do: every slot in a task on a socket that
never answers (`tasks.poison`), or a worker that stops consuming while it answers and sends
heartbeats (`cancel_consumer`, standing in for kombu#2629)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import celery_app, executions, local_worker, wait_until
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.core import tracker
from supervisor.policy import Policy
from tests.helpers import make_policy

pytestmark = pytest.mark.integration

NODE = "stall@test"


def policy_for(url: str, **detect: Any) -> Policy:
    return make_policy(
        broker={"url": url, "queues": ["celery"]},
        detect={"interval": 0.5, "window": 60, "max_gap": 2, **detect},
    )


def judge(
    policy: Policy,
    url: str,
    seconds: float,
    monitor: ProgressMonitor | None = None,
    *,
    asked: list[float] | None = None,
    nodes: tuple[str, ...] = (NODE,),
    during: Any = None,
) -> tuple[float, str] | None:
    """Sample every interval for `seconds` as the daemon does; when the first restart is
    decided, and why (None: none)."""
    probe = RedisProbe(policy.broker)
    own = monitor is None
    monitor = monitor or ProgressMonitor(policy.broker, poll_every=1.0)
    if own:
        monitor.start()
    state, asks, start = tracker.TrackerState(), [], time.monotonic()
    try:
        wait_until(lambda: len(monitor.loads(list(nodes), [])) == len(nodes), 30, "the heartbeats")
        while time.monotonic() - start < seconds:
            progress = monitor.progress(["celery"])
            sample = dataclasses.replace(
                probe.sample(),
                processed=progress.processed,
                progress_source=progress.source,
                loads=monitor.loads(list(nodes), asks),
            )
            if during is not None:
                during(time.monotonic() - start)
            state, step = tracker.on_sample(policy, state, sample, dry_run=True)
            asks = list(step.decision.stalls.asks) if step.decision else []
            if asks and asked is not None:
                asked.append(time.monotonic() - start)
            for command in step.commands:
                if isinstance(command, tracker.DryRun):
                    return time.monotonic() - start, command.action.reason
            time.sleep(policy.detect.interval)  # the supervisor's own cadence
        return None
    finally:
        if own:
            monitor.stop()
        probe.close()


def worker(url: str, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return local_worker(
        url, NODE, log, "-P", "threads", "-c", "2", "--heartbeat-interval", "1", *args, env=env
    )


@pytest.fixture
def server(redis_server_factory: Any) -> Any:
    s = redis_server_factory()
    s.start()
    return s


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_every_slot_hung_on_a_dead_socket_is_found_at_depth_3(server: Any, tmp_path: Path) -> None:
    proc = worker(server.url, tmp_path / "w.log")
    app = celery_app(server.url)
    try:
        for _ in range(2):
            app.send_task("tasks.poison", queue="celery")  # both slots, for an hour
        for i in range(12):  # past the prefetch (2 slots x 4): some wait in the queue
            app.send_task("tasks.work", args=[i], queue="celery")
        found = judge(policy_for(server.url, max_task_runtime=3), server.url, 30)
        assert found is not None, "no decision in 30 s"
        seconds, reason = found
        assert reason.startswith(f"hung rule: worker {NODE}: 2 of 2 slots hung: tasks.poison")
        assert "> 3s (max_task_runtime)" in reason and " waiting, oldest " in reason
        assert seconds < 15
    finally:
        app.close()
        stop(proc)


def test_a_worker_busy_under_its_limits_is_left_alone(server: Any, tmp_path: Path) -> None:
    proc = worker(server.url, tmp_path / "w.log")
    app = celery_app(server.url)
    try:
        for _ in range(2):
            app.send_task("tasks.poison", args=[60], queue="celery")
        for i in range(12):
            app.send_task("tasks.work", args=[i], queue="celery")
        detect = {"max_task_runtime": 3, "task_runtime": {"tasks.poison": 3600}, "idle_window": 3}
        assert judge(policy_for(server.url, **detect), server.url, 12) is None
    finally:
        app.close()
        stop(proc)


def test_a_worker_that_stops_consuming_with_free_slots_is_found_and_one_that_takes_is_not(
    server: Any, tmp_path: Path
) -> None:
    proc = worker(server.url, tmp_path / "w.log")
    app = celery_app(server.url)
    client = redis.Redis.from_url(server.url)
    policy = policy_for(server.url, idle_window=3)
    # One monitor throughout: it learnt the worker's queues before the worker stopped
    # consuming, as a worker hit by kombu#2629 still lists them (they are asked once a minute).
    monitor = ProgressMonitor(policy.broker, poll_every=1.0)
    monitor.start()
    try:
        # Healthy: a message is taken at once; nothing is decided.
        app.send_task("tasks.work", args=[100], queue="celery")
        wait_until(lambda: executions(client).get(100) == 1, 30, "the worker to take a task")
        assert judge(policy, server.url, 8, monitor) is None
        app.control.cancel_consumer("celery", destination=[NODE], reply=True, timeout=5)
        for i in range(5):
            app.send_task("tasks.work", args=[i], queue="celery")
        found = judge(policy, server.url, 30, monitor)
        assert found is not None, "no decision in 30 s"
        seconds, reason = found
        assert reason.startswith(f"idle rule: worker {NODE} idle: 0 of 2 slots busy, 0 started")
        assert "5 waiting" in reason and reason.endswith("0 reserved, 0 scheduled")
        assert seconds < 15
        assert executions(client) == {100: 1}  # nothing ran twice, nothing else ran
    finally:
        monitor.stop()
        app.close()
        client.close()
        stop(proc)


def test_a_worker_holding_eta_tasks_up_to_its_limit_is_not_stuck(
    server: Any, tmp_path: Path
) -> None:
    """worker_eta_task_limit = 2: holding two ETA tasks, it takes nothing more, with free
    slots, while messages wait. Idle by its heartbeats, so the rule asks; its answer says 2
    scheduled: waiting on purpose, never restarted."""
    proc = worker(server.url, tmp_path / "w.log", TEST_ETA_LIMIT="2")
    app = celery_app(server.url)
    client = redis.Redis.from_url(server.url)
    try:
        for i in range(2):
            app.send_task("tasks.work", args=[i], queue="celery", countdown=600)
        wait_until(lambda: client.llen("celery") == 0, 30, "the worker to hold the ETA tasks")
        for i in range(10, 15):
            app.send_task("tasks.work", args=[i], queue="celery")
        asked: list[float] = []
        assert judge(policy_for(server.url, idle_window=3), server.url, 12, asked=asked) is None
        assert asked, "the worker never looked idle: the test would show nothing"
        assert client.llen("celery") == 5 and executions(client) == {}
    finally:
        app.close()
        client.close()
        stop(proc)


def test_a_worker_reconnecting_after_a_broker_restart_within_idle_window_is_left_alone(
    server: Any, tmp_path: Path
) -> None:
    proc = worker(server.url, tmp_path / "w.log")
    policy = policy_for(server.url, idle_window=10)
    monitor = ProgressMonitor(policy.broker, poll_every=1.0)
    monitor.start()
    client = redis.Redis.from_url(server.url)
    try:
        wait_until(lambda: monitor.loads([NODE], []), 30, "the worker's heartbeats")
        server.stop()
        server.start()  # the same port: the worker and the supervisor reconnect
        app = celery_app(server.url)
        for i in range(3):
            app.send_task("tasks.work", args=[i], queue="celery")
        app.close()
        assert judge(policy, server.url, 20, monitor) is None
        wait_until(lambda: executions(client) == {0: 1, 1: 1, 2: 1}, 30, "each ran once")
    finally:
        monitor.stop()
        client.close()
        stop(proc)


def test_a_tasks_own_time_limit_the_pool_cannot_enforce_is_learnt_and_is_its_limit(
    server: Any, tmp_path: Path
) -> None:
    """The rule on with an hour's limit: the task's own time_limit (an annotation, as
    `registered` reports it) in a threads pool, which cannot enforce it, wins."""
    proc = worker(
        server.url, tmp_path / "w.log", TEST_ANNOTATIONS='{"tasks.poison": {"time_limit": 3}}'
    )
    app = celery_app(server.url)
    try:
        for _ in range(2):
            app.send_task("tasks.poison", queue="celery")
        for i in range(12):
            app.send_task("tasks.work", args=[i], queue="celery")
        found = judge(policy_for(server.url, max_task_runtime=3600), server.url, 30)
        assert found is not None, "no decision in 30 s"
        _, reason = found
        assert reason.startswith(f"hung rule: worker {NODE}: 2 of 2 slots hung: tasks.poison")
        assert "> 3s (tasks.poison's own time_limit, which the threads pool cannot enforce)" in (
            reason
        )
    finally:
        app.close()
        stop(proc)


def test_a_worker_holding_rate_limited_tasks_is_not_stuck(server: Any, tmp_path: Path) -> None:
    """tasks.work limited to 6 a minute: the worker takes what its prefetch allows and holds
    those messages (unseen by `reserved`) until their turn, with free slots, while messages
    wait; it starts one every 10 s, far apart for a 3 s idle_window alone."""
    proc = worker(
        server.url, tmp_path / "w.log", TEST_ANNOTATIONS='{"tasks.work": {"rate_limit": "6/m"}}'
    )
    app = celery_app(server.url)
    client = redis.Redis.from_url(server.url)
    try:
        for i in range(8):
            app.send_task("tasks.work", args=[i], queue="celery")
        wait_until(lambda: executions(client), 30, "the first task")
        assert judge(policy_for(server.url, idle_window=3), server.url, 25) is None
        done = sorted(float(t) for _, t in client.zrange("test:done_at", 0, -1, withscores=True))
        gaps = [b - a for a, b in itertools.pairwise(done)]
        # What the test shows: idle for longer than idle_window between two starts.
        assert len(done) >= 3 and min(gaps) > 3, gaps
        assert client.llen("celery") > 0 and all(n == 1 for n in executions(client).values())
    finally:
        app.close()
        client.close()
        stop(proc)


def test_an_autoscaling_worker_is_left_alone(server: Any, tmp_path: Path) -> None:
    """--autoscale 3,1 (prefork): one process busy with a long task under its limit while
    messages arrive; the autoscaler grows the pool to take them, whatever `stats` says of its
    slots as it grows and shrinks."""
    proc = local_worker(
        server.url, NODE, tmp_path / "w.log", "--autoscale", "3,1", "--heartbeat-interval", "1"
    )
    app = celery_app(server.url)
    client = redis.Redis.from_url(server.url)
    sent: list[int] = []

    def trickle(elapsed: float) -> None:  # a message every ~2 s after the long task
        if len(sent) < 1 + int(elapsed / 2):
            sent.append(len(sent))
            app.send_task("tasks.work", args=[len(sent) - 1, 0.3], queue="celery")

    try:
        app.send_task("tasks.work", args=[1000, 20.0], queue="celery")  # under its 60 s limit
        for i in range(100, 106):  # a burst behind it
            app.send_task("tasks.work", args=[i], queue="celery")
        policy = policy_for(server.url, idle_window=3, max_task_runtime=60)
        monitor = ProgressMonitor(policy.broker, poll_every=1.0)
        monitor.start()
        try:
            assert judge(policy, server.url, 25, monitor, during=trickle) is None
            # Its slots are the autoscaler's max, not the pool's size at start (1).
            assert [x.concurrency for x in monitor.loads([NODE], [])] == [3]
        finally:
            monitor.stop()
        wanted = {1000, *range(100, 106), *sent}
        wait_until(lambda: set(executions(client)) == wanted, 60, "every task")
        assert all(n == 1 for n in executions(client).values())
    finally:
        app.close()
        client.close()
        stop(proc)


def test_a_replica_idle_because_its_sibling_takes_every_message_is_left_alone(
    server: Any, tmp_path: Path
) -> None:
    """Two healthy replicas at low traffic (a message every 1.5 s): whichever takes each
    message, the queue is empty at most samples, and one empty sample ends an idle run."""
    sibling = "sibling@test"
    procs = [
        worker(server.url, tmp_path / "a.log"),
        local_worker(server.url, sibling, tmp_path / "b.log", "-P", "threads", "-c", "2",
                     "--heartbeat-interval", "1"),
    ]  # fmt: skip
    app = celery_app(server.url)
    client = redis.Redis.from_url(server.url)
    sent: list[int] = []

    def trickle(elapsed: float) -> None:
        if len(sent) < int(elapsed / 1.5):
            sent.append(len(sent))
            app.send_task("tasks.work", args=[len(sent) - 1], queue="celery")

    try:
        policy = policy_for(server.url, idle_window=3)
        assert judge(policy, server.url, 20, nodes=(NODE, sibling), during=trickle) is None
        wait_until(lambda: set(executions(client)) == set(sent), 30, "every task")
        assert all(n == 1 for n in executions(client).values()) and len(sent) >= 10
    finally:
        app.close()
        client.close()
        for p in procs:
            stop(p)
