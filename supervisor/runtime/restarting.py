"""One live restart as the executor carries it out: ask the workers being restarted what they
hold, keep what hung as evidence (core/evidence.py), park the poison messages the core's rule
picks (core/quarantine.py), optionally ask the workers for their stacks, restart their
containers, and when one had to be SIGKILLed, give its reserved messages back to their queues at
once (core/unacked.py decides which) instead of leaving them in kombu's unacked hash for the
visibility timeout. Every restart reports what is left there. It decides nothing itself: each
choice is a core function of the plan's facts and the workers' answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

from supervisor.core import evidence, quarantine, unacked
from supervisor.core.evidence import Holding
from supervisor.core.plan import Plan
from supervisor.core.results import Outcome, RestartResult, StartResult
from supervisor.core.tracker import Command, DryRun, Restart, Result
from supervisor.policy import Policy, Target
from supervisor.runtime.wiring import Actuator


class Restarter(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...


class Fence(Protocol):
    def fence(self, policy: Policy) -> str | None:
        """Right before a restart: why this supervisor no longer holds the target's lease, or
        None when it does."""
        ...


class Holder(Protocol):
    def holding(self, workers: list[str]) -> Holding | None: ...


# Keeps the text of the workers' stacks in the state directory: (text, when) -> file name.
KeepStacks = Callable[[str, float], str]


def carry_out(  # noqa: PLR0917 - the parts that carry out every kind of command
    policy: Policy,
    actuator: Actuator | None,
    monitor: Holder | None,
    store_for: Callable[[Policy], Any],
    leases: Fence | None,
    keep_stacks: KeepStacks,
    command: Command,
) -> Result:
    """Carry out one command of the tracker's, in the executor's thread. Every command that
    changes a container is fenced by the target's lease first."""
    assert actuator is not None
    if isinstance(command, DryRun):
        return actuator.lookup(policy.target)
    lost = leases.fence(policy) if leases is not None else None
    if isinstance(command, Restart):
        if lost is not None:  # another supervisor may be acting: touch nothing
            error = f"not restarted, {lost} (checked right before the restart)"
            return RestartResult(Outcome.FAILED, policy.restart.method, error=error)
        return restart(policy, command, actuator, monitor, store_for, keep_stacks)
    if lost is not None:
        return StartResult(error=f"not started, {lost} (checked right before starting)")
    return actuator.ensure_running(policy.target)


def restart(  # noqa: PLR0917 - the command and the five parts that carry it out
    policy: Policy,
    command: Restart,
    actuator: Restarter,
    monitor: Holder | None,
    store_for: Callable[[Policy], Any],
    keep_stacks: KeepStacks | None = None,
) -> RestartResult:
    """Carry out the command's plan, deciding nothing: ask its workers (and only them) what
    they hold, park what core/quarantine.py picks from the command's streaks, restart its
    containers with or without SIGQUIT as it says, and give back what core/unacked.py picks
    from the plan's facts."""
    plan, streaks = command.plan, command.streaks
    workers = list(plan.workers)
    holding = monitor.holding(workers) if monitor is not None and workers else None
    asked_at = time.time()
    hung = evidence.hung_tasks(holding, asked_at, policy.restart.record_args) if holding else None
    store = store_for(policy)
    try:
        parked = _park(policy, store, hung or (), dict(streaks), asked_at)
        stacks = _stacks(policy, plan, actuator, keep_stacks)
        called_at = time.time()
        result = actuator.restart(
            policy.target, policy.restart, plan.containers, sigquit=plan.cold.sigquit
        )
        result = dataclasses.replace(
            result,
            called_at=called_at,
            hung=hung,
            silent=holding.silent if holding else (),
            stacks=stacks,
            **parked,
        )
        return _give_back(result, store, plan, holding.ids if holding else None)
    finally:
        store.close()


def _park(
    policy: Policy,
    store: Any,
    hung: tuple[evidence.HungTask, ...],
    streaks: dict[str, int],
    now: float,
) -> dict[str, Any]:
    """Park the messages of the running tasks that core/quarantine.py picks, before the
    restart: a worker's cold shutdown would otherwise give them back itself."""
    after = policy.restart.quarantine_after
    ids = quarantine.to_park([t.id for t in hung if t.comes_back], streaks, after)
    if not ids:
        return {}
    reason = quarantine.reason(after, policy.target.describe())
    entries = {
        t.id: quarantine.Entry(t.id, t.name, t.queue, policy.name, reason, now, ({}, "", ""))
        for t in hung
        if t.id in ids
    }
    key = quarantine.key_for(policy.target.key, policy.broker.key_prefix)
    try:
        done = store.park(entries, key)
    except Exception as exc:  # noqa: BLE001 - the restart goes on; the audit says why
        return {"park_error": f"{type(exc).__name__}: {exc}"}
    return {"parked": done.task_ids, "parked_in": done.key, "park_error": done.error}


def _stacks(policy: Policy, plan: Plan, actuator: Any, keep: KeepStacks | None) -> str | None:
    if not policy.restart.capture_stacks or keep is None or not plan.containers:
        return None
    try:
        text = actuator.stacks(plan.containers)
    except Exception as exc:  # noqa: BLE001 - evidence is never worth a failed restart
        text = f"could not ask for the stacks: {type(exc).__name__}: {exc}\n"
    return keep(text, time.time())


def _give_back(
    result: RestartResult, store: Any, plan: Plan, held_ids: frozenset[str] | None
) -> RestartResult:
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
