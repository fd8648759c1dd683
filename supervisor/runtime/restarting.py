"""One live restart as the executor carries it out: ask the workers being restarted which tasks
they hold, restart their containers, and when one had to be SIGKILLed, give its reserved
messages back to their queues at once (core/unacked.py decides which) instead of leaving them in
kombu's unacked hash for the visibility timeout. Every restart reports what is left there."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from supervisor.core import unacked
from supervisor.core.results import RestartResult
from supervisor.policy import Policy, Target


class Restarter(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...


class HeldBy(Protocol):
    def held_by(self, workers: list[str]) -> frozenset[str] | None: ...
    def cold_shutdown_breaks(self, workers: list[str]) -> bool: ...


@dataclass(frozen=True)
class Plan:
    """What the loop knew when it handed the restart over (the executor reads no loop state)."""

    containers: tuple[str, ...]  # the replicas to restart; empty: the whole target
    workers: tuple[str, ...]  # the Celery workers of those containers, where mapped
    others_consume: bool  # a live worker outside them consumes the policy's queues
    queues: tuple[str, ...] = ()  # the queues watched now (listed and discovered)


def restart(
    policy: Policy,
    plan: Plan,
    actuator: Restarter,
    monitor: HeldBy | None,
    store_for: Callable[[Policy], Any],
) -> RestartResult:
    workers = list(plan.workers)
    held_ids = monitor.held_by(workers) if monitor and workers else None
    # A worker whose cold shutdown is known to break is not asked for one: SIGKILL at once,
    # then its reserved messages are given back here, all of them.
    sigquit = not (monitor and workers and monitor.cold_shutdown_breaks(workers))
    called_at = time.time()
    result = actuator.restart(policy.target, policy.restart, plan.containers, sigquit=sigquit)
    result = dataclasses.replace(result, called_at=called_at)
    store = store_for(policy)
    try:
        if not result.killed:
            return dataclasses.replace(result, unacked_left=store.left())
        if monitor is None:  # no worker information: whose messages are whose cannot be told
            return dataclasses.replace(result, restored=0, unacked_left=store.left())
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
