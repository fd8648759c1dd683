"""The progress monitor against a real redis-server and a real Celery worker: what the worker
says of itself is learnt while it answers, and the supervisor's own lost connection neither
forgets the worker nor blames it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.parts import local_worker, wait_until
from supervisor.adapters.progress_probe import ProgressMonitor
from tests.helpers import make_policy

pytestmark = pytest.mark.integration

NODE = "facts@test"


def threads_worker(url: str, log: Path) -> subprocess.Popen[bytes]:
    return local_worker(url, NODE, log, "-P", "threads", "-c", "2", "--heartbeat-interval", "1")


def test_facts_are_learnt_and_a_broker_restart_keeps_the_worker(
    redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    worker = threads_worker(server.url, tmp_path / "worker.log")
    monitor = ProgressMonitor(make_policy(broker={"url": server.url}).broker, poll_every=1.0)
    monitor.start()
    log = (tmp_path / "worker.log").read_text
    try:

        def learnt() -> Any:  # the version comes with its heartbeats, the rest by remote control
            return [f for f in monitor.facts([NODE]) if f.version]

        [facts] = wait_until(learnt, 30, "the worker's facts", log)
        assert facts.pool_name == "threads" and facts.concurrency == 2
        assert facts.result_backend is False and facts.acks_late is False
        assert facts.queues == ("celery",)
        wait_until(lambda: monitor.progress(["celery"]).processed is not None, 30, "progress")

        server.stop()  # the supervisor's own connection fails, not the worker

        def blamed() -> str:
            return monitor.progress(["celery"]).unknown or ""

        wait_until(lambda: "cannot read worker events" in blamed(), 30, "the listener's fault")
        assert monitor.workers()[NODE][1] == frozenset({"celery"})  # not forgotten
        assert monitor.facts([NODE])[0].pool_name == "threads"

        server.start()  # the same port: the worker and the listener reconnect
        wait_until(
            lambda: "heartbeats" in (monitor.progress(["celery"]).source or ""),
            60,
            "progress from heartbeats again",
            log,
        )
    finally:
        monitor.stop()
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def test_the_rules_at_any_depth_read_the_workers_load_and_its_own_answer(
    redis_server_factory: Any, tmp_path: Path
) -> None:
    """Issue 26: slots and active tasks from the heartbeats, then the worker's own answer
    (active with name, id and time_start; reserved; scheduled) asked in the background and
    handed over once, with the next call."""
    import time

    from harness.parts import celery_app

    server = redis_server_factory()
    server.start()
    worker = threads_worker(server.url, tmp_path / "worker.log")
    # The daemon's stepless clock reads 3 h behind the wall clock, as after the wall clock was
    # stepped forward 3 h: each task's start must come in that clock's frame, not Celery's wall.
    step = 3 * 3600.0
    stepped = [0.0]  # the wall clock's step after the monitor began (below)
    monitor = ProgressMonitor(
        make_policy(broker={"url": server.url}).broker,
        poll_every=1.0,
        clock=lambda: time.time() - step,
        wall=lambda: time.time() + stepped[0],
    )
    monitor.start()
    log = (tmp_path / "worker.log").read_text
    app = celery_app(server.url)
    try:
        [load] = wait_until(
            lambda: [x for x in monitor.loads([NODE], []) if x.concurrency and x.active == 0],
            30,
            "the worker's load",
            log,
        )
        assert load.concurrency == 2 and load.queues == ("celery",) and load.answer is None
        app.send_task("tasks.work", args=[1], queue="celery", countdown=600)  # an ETA task
        sent = time.time()
        for _ in range(2):
            app.send_task("tasks.poison", queue="celery")
        wait_until(lambda: [x for x in monitor.loads([NODE], []) if x.active == 2], 30, "busy")
        monitor.loads([NODE], [NODE])  # ask

        def answered() -> Any:
            return [x.answer for x in monitor.loads([NODE], []) if x.answer is not None]

        [answer] = wait_until(answered, 30, "its answer", log)
        assert not answer.silent and answer.scheduled == 1 and answer.reserved == 0
        assert [r.name for r in answer.active] == ["tasks.poison", "tasks.poison"]
        assert abs(answer.t - (time.time() - step)) < 30
        assert all(
            r.started is not None and abs(r.started - (sent - step)) < 30 for r in answer.active
        ), answer.active
        assert all(x.answer is None for x in monitor.loads([NODE], []))  # handed over once
        # The wall clock steps an hour forward while the tasks run: no task may look an hour
        # older (never earlier than the first answer that named it).
        first = {r.id: r.started for r in answer.active}
        stepped[0] = 3600.0
        monitor.loads([NODE], [NODE])
        [again] = wait_until(answered, 30, "its answer after the step", log)
        assert {r.id for r in again.active} == set(first)
        for r in again.active:
            assert r.started is not None and r.started >= answer.t - 1, (r, answer.t)
    finally:
        app.close()
        monitor.stop()
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


@pytest.mark.parametrize(
    ("replies", "handed"),
    [
        ((None, {}, {}), None),  # the supervisor's own request failed: says nothing of it
        (({"w": []}, None, {"w": []}), None),
        (({"w": []}, {}, {"w": []}), None),  # a partial answer: ask again
        (({}, {}, {}), "silent"),  # no reply to any of the three within the wait
        (({"w": []}, {"w": []}, {"w": [{"id": "e"}]}), "answer"),
    ],
    ids=["failed", "one-failed", "partial", "silent", "whole"],
)
def test_only_the_workers_own_silence_is_handed_over_as_silence(
    redis_url: str, replies: tuple[Any, ...], handed: str | None
) -> None:
    """Issue 26 review: a failed request was handed over as the worker's silence, and silence
    confirms the idle rule. Remote control is the edge faked here."""
    monitor = ProgressMonitor(make_policy(broker={"url": redis_url}).broker)
    answers = dict(zip(("active", "reserved", "scheduled"), replies, strict=True))
    monitor._ask_once = lambda hosts, what, timeout=None: answers[what]  # type: ignore[method-assign]
    monitor._answer(["w"])
    got = monitor._answers.get("w")
    if handed is None:
        assert got is None
    else:
        assert got is not None and got.silent == (handed == "silent")
        assert handed == "silent" or got.scheduled == 1
    monitor.stop()
