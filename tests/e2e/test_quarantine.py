"""A poison message on a real worker with acks_late: a task that hangs every worker that runs
it, among normal tasks. Without quarantine the supervisor restarts until the budget and
escalates (tests/e2e/test_scenarios.py, test 6). With quarantine_after = 2 the second restart
parks it: no third restart, every other task completes exactly once, and `supervisor
quarantine requeue` brings it back (and it hangs again)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness.parts import wait_exactly_once
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def quarantine(stack: Stack, policy: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "quarantine", args[0], policy, *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_poison_message_is_parked_at_the_second_restart_and_can_be_requeued(
    stack: Stack,
) -> None:
    policy = stack.policy(
        restart={
            "cooldown": 2,
            "backoff_initial": 4,
            "backoff_max": 8,
            "max_restarts": 3,
            "quarantine_after": 2,
            "record_args": True,
            "capture_stacks": True,
        }
    )
    sup = stack.supervise([policy])
    sup.wait_progress_known()
    client = stack.redis.client()
    began = time.monotonic()
    poison = stack.app.send_task("tasks.poison_late", args=[3600.0], queue="celery").id
    producer = stack.produce(per_second=4)
    [parked] = sup.wait_for(lambda: sup.events("quarantined"), 150, "the poison parked")
    restarts = sup.events("restart")
    assert len(restarts) == 2, restarts
    for record in restarts:  # each says what hung: the poison, whose message comes back
        [hung] = [t for t in record["hung"] if t["id"] == poison]
        assert hung["name"] == "tasks.poison_late" and hung["comes_back"] is True
        assert "3600" in hung["args"]
        assert "hung in tasks.poison_late" in record["text"]
    assert restarts[1]["parked"] == [poison] and restarts[0].get("parked") is None
    # The stacks the worker logged on SIGUSR1, one file per restart (prefork: its main
    # process's threads; bench/stacks_by_pool.py measures what each pool shows).
    for record in restarts:
        stacks = (sup.state_dir / record["stacks"]).read_text()
        assert f"== {stack.worker.name}: logged after SIGUSR1 ==" in stacks
        assert "Thread" in stacks, stacks[:2000]
    assert [t["id"] for t in parked["tasks"]] == [poison]
    time.sleep(1)  # a little more work after the parking
    producer.stop()
    depth, unacked = stack.wait_drained(90)
    drained = time.monotonic() - began
    assert (depth, unacked) == (0, 0)
    wait_exactly_once(client, producer.sent, 60)  # every other task, exactly once
    assert len(sup.events("restart")) == 2 and sup.events("escalate") == []  # drained, once
    assert int(client.get("test:poison_started") or 0) == 2
    print(
        f"poison with quarantine_after = 2: 2 restarts, queue drained {drained / 60:.1f} min "
        f"after the poison, {len(producer.sent)} other tasks completed once each"
    )

    # What is parked, as `supervisor quarantine list` shows it; then back onto its queue.
    listed = quarantine(stack, str(policy), "list")
    assert listed.returncode == 0 and poison in listed.stdout, listed.stderr
    assert "tasks.poison_late" in listed.stdout and "in a row" in listed.stdout
    again = quarantine(stack, str(policy), "requeue", poison)
    assert again.returncode == 0 and "requeued onto celery" in again.stdout, again.stderr
    sup.wait_for(
        lambda: int(client.get("test:poison_started") or 0) == 3, 30, "the poison running again"
    )
    assert quarantine(stack, str(policy), "list").stdout.count(poison) == 0
    assert quarantine(stack, str(policy), "drop", poison).returncode == 1  # nothing to drop
