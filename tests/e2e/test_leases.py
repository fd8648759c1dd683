"""Two supervisors of one worker, coordinating through a lease in the broker's Redis: one
restart per incident across both, and a takeover after the holder is SIGKILLed that honours
the restart budget the first one spent."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from harness.parts import SupervisorProcess
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

PERIOD = 3.0  # seconds: the lease period of this test


def supervise(stack: Stack, policy: Path, name: str) -> SupervisorProcess:
    sup = SupervisorProcess(
        [policy], stack.tmp / name, extra_env={"SUPERVISOR_LEASE": f"{PERIOD:g}s"}
    )
    stack.supervisors.append(sup)
    sup.wait_started()
    return sup


def test_4_one_restart_per_incident_and_a_takeover_that_keeps_the_budget(
    stack: Stack,
) -> None:
    # One restart allowed in the window: after it, the incident can only escalate.
    policy = stack.policy(
        restart={"cooldown": 2, "backoff_initial": 2, "backoff_max": 4, "max_restarts": 1}
    )
    first = supervise(stack, policy, "a")
    first.wait_for(lambda: first.events("lease_acquired"), 20, "a holds the lease")
    second = supervise(stack, policy, "b")
    time.sleep(PERIOD)  # b has tried the lease at least once: held by a
    assert second.events("lease_acquired") == []

    # An acks-late poison task: after the restart it comes back, and the worker hangs again.
    stack.poison("tasks.poison_late")
    stack.produce(per_second=4)
    [restart] = first.wait_for(lambda: first.events("restart"), 90, "the holder's restart")
    assert restart["outcome"] == "done"
    [standby] = second.wait_for(lambda: second.events("standby"), 30, "b's standby decision")
    assert standby["outcome"] == "standby" and "standby" in standby["text"]
    assert second.events("restart") == []  # b decided the same, and did nothing

    killed_at = time.time()
    first.proc.send_signal(signal.SIGKILL)  # mid-incident: the poison task is coming back
    first.proc.wait(10)
    [taken] = second.wait_for(lambda: second.events("lease_acquired"), 3 * PERIOD, "takeover")
    takeover = taken["t"] - killed_at
    assert takeover <= 2 * PERIOD, takeover
    assert taken["previous"] is not None and taken["previous"] != taken["holder"]

    # The worker hangs again; the restart budget is the one a spent, read from Redis: b
    # escalates, and never restarts.
    [escalation] = second.wait_for(lambda: second.events("escalate"), 90, "b's escalation")
    assert "budget spent: 1 restarts" in escalation["reason"], escalation["reason"]
    time.sleep(2)
    restarts = first.events("restart") + second.events("restart")
    assert len(restarts) == 1, restarts
    print(f"lease takeover {takeover:.2f}s after the holder's SIGKILL (lease period {PERIOD:g}s)")
