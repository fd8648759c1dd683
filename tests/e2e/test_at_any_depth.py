"""The rules at any depth (issue 26) on a worker shaped like Dify's (gevent -c 4, Redis result
backend, Dify's 20 queues), with the shipped policy at shortened durations: a trickle of
messages far under the chapter's threshold of 100."""

from __future__ import annotations

import socket

import pytest

from harness.parts import wait_exactly_once

from .test_dify_worker import Dify, dify, drained

pytestmark = pytest.mark.e2e
__all__ = ["dify"]  # the fixture, shared with test_dify_worker


def test_every_slot_hung_at_depth_5_is_restarted_and_the_waiting_tasks_run_once(
    dify: Dify,
) -> None:
    sup = dify.supervise(max_task_runtime="5s")
    # A server that takes connections and never answers (a tarpit): its backlog accepts them.
    tarpit = socket.socket()
    tarpit.bind(("127.0.0.1", 0))
    tarpit.listen(16)
    for _ in range(4):  # every greenlet hangs on that socket
        dify.app.send_task("tasks.dead_socket", args=[tarpit.getsockname()[1]], queue="dataset")
    sent = list(range(5))
    for i in sent:
        dify.app.send_task("tasks.work", args=[i], queue="dataset")
    [record] = sup.wait_for(lambda: sup.events("restart"), 90, "the restart")
    tarpit.close()
    assert record["outcome"] == "done", record
    assert record["reason"].startswith("hung rule: worker "), record["reason"]
    assert "4 of 4 slots hung: tasks.dead_socket" in record["reason"]
    assert "> 5s (max_task_runtime)" in record["reason"]
    assert record["oldest_wait"]["dataset"] > 0
    wait_exactly_once(dify.client(), sent, 90)  # nothing lost, nothing ran twice
    drained(dify)
    assert len(sup.events("restart")) == 1


def test_a_worker_that_stops_consuming_with_free_slots_is_restarted_and_its_queue_runs_once(
    dify: Dify,
) -> None:
    """kombu#2629's worker: it answers remote control and sends heartbeats, 0 of 4 slots busy,
    and takes nothing (here: cancel_consumer; its queues were learnt before, as the real one
    still lists them). Restarted on its own answer; the new worker runs every message once."""
    sup = dify.supervise(idle_window="5s")
    [node] = dify.app.control.ping(timeout=5)
    dify.app.control.cancel_consumer("dataset", destination=list(node), reply=True, timeout=5)
    sent = list(range(5))
    for i in sent:
        dify.app.send_task("tasks.work", args=[i], queue="dataset")
    [record] = sup.wait_for(lambda: sup.events("restart"), 90, "the restart")
    assert record["outcome"] == "done", record
    assert record["reason"].startswith("idle rule: worker "), record["reason"]
    assert "idle: 0 of 4 slots busy, 0 started in" in record["reason"]
    assert " waiting, oldest " in record["reason"]
    assert record["reason"].endswith("it answered 0 active, 0 reserved, 0 scheduled")
    wait_exactly_once(dify.client(), sent, 90)
    drained(dify)
    assert len(sup.events("restart")) == 1
