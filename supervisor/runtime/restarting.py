"""One live restart as the executor carries it out: ask the workers being restarted what they
hold, keep what hung as evidence (core/evidence.py), park the poison messages the core's rule
picks (core/quarantine.py), optionally ask the workers for their stacks, then restart their
containers. A cold restart of containers is a sequence of steps core/procedure.py decides one at
a time (signal, inspect, read unacked for a killed container while it is stopped, give back what
core/unacked.py picks, start, confirm): the loop here carries each out on the actuator or kombu's
unacked hash and reports the outcome back with the monotonic time. A Swarm service, or Docker's
own `restart` method, is restarted in one call, and what a killed task's workers reported is
given back by the same rule. Every restart reports what is left in unacked. It decides nothing
itself: each choice is a core function of the plan's facts, the workers' answer and what each
step saw."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from supervisor.core import evidence, procedure, quarantine, unacked
from supervisor.core.evidence import Holding
from supervisor.core.plan import Plan
from supervisor.core.procedure import Step
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.core.tracker import Command, DryRun, Restart, Result
from supervisor.errors import ActuatorError
from supervisor.policy import Policy, Target
from supervisor.runtime.wiring import Actuator, Steps

log = logging.getLogger("supervisor.restart")


class Restarter(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...
    def steps(self, target: Target) -> Steps | None: ...


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
        return dry_run(policy, command, actuator, monitor)
    lost = leases.fence(policy) if leases is not None else None
    if isinstance(command, Restart):
        if lost is not None:  # another supervisor may be acting: touch nothing
            error = f"not restarted, {lost} (checked right before the restart)"
            return RestartResult(Outcome.FAILED, policy.restart.method, error=error)
        return restart(policy, command, actuator, monitor, store_for, keep_stacks)
    if lost is not None:
        return StartResult(error=f"not started, {lost} (checked right before starting)")
    return actuator.ensure_running(policy.target)


def dry_run(
    policy: Policy, command: DryRun, actuator: Actuator, monitor: Holder | None
) -> LookupResult:
    """What a live restart would touch and cost: the containers it would act on, and the same
    bounded question to the same workers (`reserved` and `active`), read as a live restart
    reads it (core/evidence.py, core/quarantine.py). No signal, no give-back, no parking."""
    found = actuator.lookup(policy.target)
    workers = list(command.plan.workers) if command.plan is not None else []
    holding = monitor.holding(workers) if monitor is not None and workers else None
    if holding is None:
        return found
    hung = evidence.hung_tasks(holding, time.time(), policy.restart.record_args)
    after = policy.restart.quarantine_after
    parked = quarantine.to_park([t.id for t in hung if t.comes_back], dict(command.streaks), after)
    reserved = sum(len(r) for r in holding.reserved.values())
    return dataclasses.replace(
        found, hung=hung, silent=holding.silent, reserved=reserved, parked=tuple(sorted(parked))
    )


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
        steps = actuator.steps(policy.target) if policy.restart.method == "cold" else None
        if steps is not None:
            result = cold_restart(
                steps, policy.target, store, plan, holding, policy.restart.stop_timeout
            )
        else:
            result = _in_one_call(policy, plan, holding, actuator, store)
        return dataclasses.replace(
            result,
            called_at=called_at,
            hung=hung,
            silent=holding.silent if holding else (),
            stacks=stacks,
            **parked,
        )
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


def cold_restart(  # noqa: PLR0917 - the plan and the parts its steps act on
    steps: Steps,
    target: Target,
    store: Any | None,
    plan: Plan,
    holding: Holding | None,
    stop_timeout: float,
    poll: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RestartResult:
    """Carry out core/procedure.py's steps until it is done, each outcome reported back with
    the time (`store` None: kombu's unacked hash is not touched)."""
    state, step = procedure.begin(
        plan, holding, method="cold", stop_timeout=stop_timeout, poll=poll, now=clock()
    )
    while not isinstance(step, procedure.Done):
        report = _carry(step, steps, target, store, sleep)
        state, step = procedure.advance(state, report, clock())
    return step.result


def _carry(
    step: Step, steps: Steps, target: Target, store: Any | None, sleep: Callable[[float], None]
) -> procedure.Report:
    """One step, on the actuator or the unacked hash; a failure is an outcome too."""
    try:
        if isinstance(step, procedure.Find):
            return procedure.Found(steps.replicas(target, step.only))
        if isinstance(step, procedure.Inspect):
            if step.after:
                sleep(step.after)
            return steps.inspect(step.container)
        if isinstance(step, procedure.Signal):
            log.info("%s: sending %s", step.container, step.signal)
            steps.signal(step.container, step.signal)
            return procedure.Ok()
        if isinstance(step, procedure.Start):
            steps.start(step.container)
            return procedure.Ok()
        if isinstance(step, procedure.ReadHeld):
            return procedure.Read(tuple(store.held()) if store is not None else ())
        if isinstance(step, procedure.GiveBack):
            if store is None:
                return procedure.GaveBack(0, None)
            done = store.give_back(step.entries)
            return procedure.GaveBack(done.count, done.left, done.error)
        if isinstance(step, procedure.CountLeft):
            return procedure.Left(store.left() if store is not None else None)
    except Exception as exc:  # noqa: BLE001 - the core decides what a failed step means
        text = str(exc) if isinstance(exc, ActuatorError) else f"{type(exc).__name__}: {exc}"
        return procedure.Failed(text)
    raise AssertionError(f"no way to carry out {step!r}")


def _in_one_call(
    policy: Policy, plan: Plan, holding: Holding | None, actuator: Restarter, store: Any
) -> RestartResult:
    """A Swarm service's restart, or Docker's own `restart` method: one call. Swarm replaces a
    killed task at once, so a read made after it may see the new task's reservations: only
    deliveries unchanged since before the restart go back (core/unacked.py's rule with others
    running), those the killed containers' workers reported; every one when the restart
    replaced each container of the plan and nothing outside it consumes (then every worker
    that held them before has stopped)."""
    try:
        before = unacked.scores(store.held())
    except Exception:  # noqa: BLE001 - then nothing unreported can be told apart: none goes back
        before = {}
    result = actuator.restart(
        policy.target, policy.restart, plan.containers, sigquit=plan.cold.sigquit
    )
    try:
        if not result.killed:
            return dataclasses.replace(result, unacked_left=store.left())
        ids = dict(procedure.held_ids(plan, holding))
        read = store.held()
        replaced_all = (
            result.outcome is Outcome.DONE
            and bool(plan.containers)
            and set(plan.containers) <= set(result.containers)
        )
        unclaimed = replaced_all and not plan.others_consume
        picked: dict[str, unacked.Held] = {}
        for container in result.killed:
            for h in unacked.to_give_back(
                read, plan.queues, ids.get(container), before, True, unclaimed=unclaimed
            ):
                picked[h.tag] = h
        done = store.give_back(tuple(picked.values()))
        return dataclasses.replace(
            result, restored=done.count, unacked_left=done.left, restore_error=done.error
        )
    except Exception as exc:  # noqa: BLE001 - the restart itself is done: report, never lose it
        return dataclasses.replace(result, restore_error=f"{type(exc).__name__}: {exc}")
