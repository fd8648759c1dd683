"""One live restart as the executor carries it out: ask the workers being restarted which tasks
they hold, restart their containers, and when one had to be SIGKILLed, give its reserved
messages back to their queues at once (core/unacked.py decides which) instead of leaving them in
kombu's unacked hash for the visibility timeout. Every restart reports what is left there."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

from supervisor.core import unacked
from supervisor.core.plan import Plan
from supervisor.core.results import RestartResult
from supervisor.policy import Policy, Target


class Restarter(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...


class HeldBy(Protocol):
    def held_by(self, workers: list[str]) -> frozenset[str] | None: ...


def restart(
    policy: Policy,
    plan: Plan,
    actuator: Restarter,
    monitor: HeldBy | None,
    store_for: Callable[[Policy], Any],
) -> RestartResult:
    """Carry out `plan`, deciding nothing: ask its workers (and only them) what they hold,
    restart its containers with or without SIGQUIT as it says, and give back what
    core/unacked.py picks from the plan's facts."""
    workers = list(plan.workers)
    held_ids = monitor.held_by(workers) if monitor is not None and workers else None
    called_at = time.time()
    result = actuator.restart(
        policy.target, policy.restart, plan.containers, sigquit=plan.cold.sigquit
    )
    result = dataclasses.replace(result, called_at=called_at)
    store = store_for(policy)
    try:
        if not result.killed:
            return dataclasses.replace(result, unacked_left=store.left())
        tags = unacked.to_restore(
            store.held(), plan.queues, held_ids, plan.others_consume, result.stopped_at
        )
        done = store.restore(tags)
        return dataclasses.replace(
            result, restored=done.count, unacked_left=done.left, restore_error=done.error
        )
    except Exception as exc:  # noqa: BLE001 - the restart itself is done: report, never lose it
        return dataclasses.replace(result, restore_error=f"{type(exc).__name__}: {exc}")
    finally:
        store.close()
