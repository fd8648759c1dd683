"""End to end, with the supervisor's wall clock stepped while it runs (tests/clockstep/shim.c:
only CLOCK_REALTIME, gettimeofday and time are offset; the boot and monotonic clocks are the
machine's). A real Celery worker container, a real redis-server, `supervisor run`, `trigger`,
`status` and `health` as their own processes, all under the shim.

Time-scaled policy: interval 0.5 s, window 3 s, cooldown and backoff 10 s, 3 restarts in a
budget window of one hour. The steps are of hours: 3 h back, then 4 h forward (1 h ahead of
the machine), then back again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.parts import SupervisorProcess
from tests.clockstep.shim import WallStep
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e

HOUR = 3600.0
COOLDOWN = 10.0


def command(shim: WallStep, *args: str) -> subprocess.CompletedProcess[str]:
    """A `supervisor` command under the shim, as a person on the stepped host runs it."""
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        env={**os.environ, **shim.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def mine(sup: SupervisorProcess, kind: str) -> list[dict[str, Any]]:
    """The records of `kind` this process wrote (the state directory's audit holds both's)."""
    out, writing = [], False
    for r in sup.audit():
        if r["event"] == "start":
            writing = r["pid"] == sup.proc.pid
        elif writing and r["event"] == kind:
            out.append(r)
    return out


def restarts(sup: SupervisorProcess) -> list[dict[str, Any]]:
    return mine(sup, "restart")


def offset_of(sup: SupervisorProcess) -> float:
    """The frame of this process's stepless clock, from its own heartbeat."""
    beat = sup.wait_for(
        lambda: (b := sup.heartbeat()).get("pid") == sup.proc.pid and not b["stopped"] and b,
        30,
        "its heartbeat",
    )
    return float(beat.get("offset", 0.0))  # main 421711a has no frame: wall = stepless


def boot_time(record: dict[str, Any], offset: float) -> float:
    """When a restart was decided, on the boot clock: its stepless time less its frame."""
    return float(record["decided_at"]) - offset


def test_a_wall_clock_stepped_by_hours_changes_no_decision(stack: Stack, tmp_path: Path) -> None:
    shim = WallStep(tmp_path)
    policy = stack.policy(
        detect={"window": 3, "threshold": 3},
        restart={"cooldown": COOLDOWN, "backoff_initial": COOLDOWN, "backoff_factor": 1.0,
                 "backoff_max": COOLDOWN, "max_restarts": 3, "budget_window": HOUR},
    )  # fmt: skip
    state = stack.tmp / "state"
    first = stack.supervise([policy], env=shim.env)
    first.wait_sampled()
    offset_1 = offset_of(first)

    # 1. Stuck: restarted.
    stack.poison()
    stack.produce(per_second=4)
    [one] = first.wait_for(lambda: restarts(first), 60, "the first restart")
    assert one["trigger"] == "automatic" and one["outcome"] == "done"

    # 2. The wall clock steps 3 h back, and the supervisor is restarted on it: its new process
    # anchors its clock on the stepped wall clock; the state file says in which frame it was.
    shim.step(-3 * HOUR)
    assert first.stop() == 0
    status = command(shim, "status", "--state-dir", str(state), "--json")
    assert status.returncode == 0, status.stderr
    [shown] = json.loads(status.stdout)["policies"]
    # main 421711a: "next restart in 3h0m10s" (the restart looked 3 h in the future).
    assert 0 <= shown["next_restart_in_seconds"] <= COOLDOWN, shown
    second = stack.supervise([policy], env=shim.env)
    offset_2 = offset_of(second)
    assert abs((offset_1 - offset_2) - 3 * HOUR) < 60  # it did anchor on the stepped clock

    # 3. Stuck again at once: the next restart waits out the cooldown from the first, on the
    # boot clock, and no more (main 421711a: 3 h 10 min).
    stack.poison()
    two = second.wait_for(lambda: restarts(second), 60, "the second restart")[0]
    gap = boot_time(two, offset_2) - boot_time(one, offset_1)
    assert COOLDOWN - 0.1 <= gap <= COOLDOWN + 20, f"restarted {gap:.1f}s after the first"
    print(f"\nsecond restart {gap:.1f}s after the first, across a 3 h backward step")

    # 4. The wall clock steps back another hour, behind the running supervisor's start, and
    # `supervisor trigger` is run: accepted and carried out (main 421711a: exit 0, then
    # `trigger_discarded`, the request looking older than the supervisor).
    shim.step(-4 * HOUR)
    asked = command(shim, "trigger", "--state-dir", str(state))
    assert asked.returncode == 0, asked.stderr
    manual = second.wait_for(
        lambda: [r for r in restarts(second) if r["trigger"] == "manual"], 60, "a manual restart"
    )
    assert len(manual) == 1 and mine(second, "trigger_discarded") == []

    # 5. A forward step of 5 h (the wall clock 1 h ahead of the machine's, past the budget
    # window of every restart so far): the budget still holds 3 restarts, so the next due one
    # is refused and escalated (main 421711a: the budget emptied and it restarted a 4th time).
    shim.step(+1 * HOUR)
    stack.poison()
    [escalated] = second.wait_for(lambda: mine(second, "escalate"), 60, "an escalation")
    assert "budget" in escalated["reason"] or "max_restarts" in escalated["reason"], escalated
    assert len(restarts(first) + restarts(second)) == 3

    # 6. A hung loop while the clock steps back again: `health` says so, on the boot clock
    # (main 421711a: the heartbeat looked 4 h in the future, "healthy" for 4 h). A live loop
    # is healthy at once after the forward step (main: "last ticked 14401s ago").
    healthy = command(shim, "health", "--state-dir", str(state), "--max-age", "3")
    assert healthy.returncode == 0, healthy.stdout
    second.signal(signal.SIGSTOP)
    try:
        shim.step(-3 * HOUR)
        deadline = time.monotonic() + 30
        verdict = command(shim, "health", "--state-dir", str(state), "--max-age", "3")
        while verdict.returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            verdict = command(shim, "health", "--state-dir", str(state), "--max-age", "3")
        assert verdict.returncode == 1 and "is hung" in verdict.stdout, verdict.stdout
    finally:
        second.signal(signal.SIGCONT)
