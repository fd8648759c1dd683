"""The decision engine: detector and governor composed into one pure step.

`step` takes the engine state, a sample and `now`, and returns the new state and a decision with
the actions to carry out. `supervisor replay` and the live daemon both drive exactly this; only
where samples come from, and what is done with the actions, differs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from supervisor.core import detector, governor, replicas, stalls
from supervisor.core.detector import Diagnosis, Point, RunState, Verdict
from supervisor.core.governor import Gate, GovernorState, Ruling
from supervisor.core.stalls import Stalls, StallState
from supervisor.policy import Policy
from supervisor.sample import Sample


class ActionKind(enum.Enum):
    RESTART = "restart"
    ESCALATE = "escalate"


class Trigger(enum.Enum):
    AUTOMATIC = "automatic"
    MANUAL = "manual"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    t: float
    policy: str
    reason: str
    trigger: Trigger = Trigger.AUTOMATIC
    depth: int | None = None
    streak: int | None = None  # for a restart: its rank in the current streak
    containers: tuple[str, ...] = ()  # the replicas to restart; empty: the whole target

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "action": self.kind.value,
            "policy": self.policy,
            "reason": self.reason,
            "trigger": self.trigger.value,
            "depth": self.depth,
            "streak": self.streak,
            "containers": list(self.containers) or None,
        }


@dataclass(frozen=True)
class EngineState:
    run: RunState = field(default_factory=RunState)
    governor: GovernorState = field(default_factory=GovernorState)
    replicas: tuple[tuple[str, RunState], ...] = ()  # each replica's own run (replicas.py)
    orphan: RunState = field(default_factory=RunState)  # a backlog no live worker consumes
    blind: bool = False  # escalated a stuck-looking worker whose progress cannot be seen
    unmapped: bool = False  # escalated a stuck worker not known to be in one of the containers
    stalls: StallState = field(default_factory=StallState)  # the rules at any depth (stalls.py)


@dataclass(frozen=True)
class Decision:
    diagnosis: Diagnosis
    ruling: Ruling | None = None  # set when the worker was stuck and the governor was asked
    actions: tuple[Action, ...] = ()
    # The rules at any depth: the queues' head waits and the workers to ask before the next
    # sample (active, reserved, scheduled).
    stalls: Stalls = field(default_factory=Stalls)

    def describe(self) -> str:
        text = f"{self.diagnosis.verdict.value}: {self.diagnosis.reason}"
        if self.ruling is not None:
            text += f" [{self.ruling.gate.value}: {self.ruling.reason}]"
        return text


def step(
    policy: Policy, state: EngineState, sample: Sample, now: float
) -> tuple[EngineState, Decision]:
    """Observe one sample at `now`; return the new state and the decision with its actions.
    Replicas that can be told apart are judged one by one (replicas.py); a target that is one
    worker, or whose replicas cannot be told apart, is judged as a whole."""
    last_restart = state.governor.last_restart
    run, diagnosis = detector.observe(state.run, sample, policy.detect, last_restart)
    state = replace(state, run=run)
    containers: tuple[str, ...] = ()
    if sample.ok and replicas.separable(sample.replicas):
        judged = replicas.judge(dict(state.replicas), sample, policy.detect, last_restart)
        state = replace(state, replicas=judged.runs)
        if judged.stuck:
            containers = tuple(c for c, _ in judged.stuck)
            first = judged.stuck[0][1]
            diagnosis = replace(
                first, reason=replicas.reason(sample, judged.stuck), depth=sample.depth
            )
        elif diagnosis.verdict is Verdict.STUCK:
            # The whole looks stuck, but no replica on its own: one of them is progressing.
            diagnosis = replace(
                diagnosis,
                verdict=Verdict.NOT_STUCK,
                reason=f"{diagnosis.reason}, but a replica is progressing",
            )
    stall_state, seen_stalls = stalls.observe(state.stalls, sample, policy.detect, last_restart)
    state = replace(state, stalls=stall_state)
    if diagnosis.verdict is not Verdict.STUCK and seen_stalls.found:
        # The chapter's rule needs the queue over its threshold; these find a worker that
        # takes nothing, or whose every slot is hung, at any depth.
        chosen = stalls.containers(seen_stalls.found, sample)
        since = min(f.since for f in seen_stalls.found)
        diagnosis = Diagnosis(
            Verdict.STUCK,
            stalls.reason(seen_stalls.found),
            sample.depth,
            Point(since, sample.depth or 0),
            sample.t - since,
        )
        if chosen is None:
            return _unmapped(policy, state, sample, now, diagnosis=diagnosis, seen=seen_stalls)
        containers = chosen
    if state.unmapped and not seen_stalls.found:
        state = replace(state, unmapped=False)  # said again if it comes back
    state, decision = _decide(
        policy, state, sample, now, diagnosis=diagnosis, containers=containers
    )
    return state, replace(decision, stalls=seen_stalls)


def _unmapped(
    policy: Policy,
    state: EngineState,
    sample: Sample,
    now: float,
    *,
    diagnosis: Diagnosis,
    seen: Stalls,
) -> tuple[EngineState, Decision]:
    """A stuck worker of a target with several containers, none of them known to be its:
    a person decides (once, until it is no longer stuck), nothing is restarted."""
    n = max(len(sample.replicas), len(sample.containers or ()))
    reason = (
        f"{diagnosis.reason}; the stuck worker is not mapped to one of the target's {n} "
        "containers: not restarting them all (a healthy replica's running tasks would be lost)"
    )
    state, decision = _escalate_once(
        policy, state, now, diagnosis, "the stuck worker's container is not known", reason,
        flag="unmapped",
    )  # fmt: skip
    return state, replace(decision, stalls=seen)


def _escalate_once(  # noqa: PLR0917 - the decision's parts
    policy: Policy,
    state: EngineState,
    now: float,
    diagnosis: Diagnosis,
    why: str,
    reason: str,
    *,
    flag: Literal["blind", "unmapped"],
) -> tuple[EngineState, Decision]:
    """A stuck worker no restart is made for: a person is told once (`flag` set), until it is
    no longer stuck."""
    ruling = Ruling(Gate.BUDGET, why)
    if getattr(state, flag):
        return state, Decision(diagnosis, ruling)
    action = Action(ActionKind.ESCALATE, now, policy.name, reason, depth=diagnosis.depth)
    told = replace(state, blind=True) if flag == "blind" else replace(state, unmapped=True)
    return told, Decision(diagnosis, ruling, (action,))


def _decide(
    policy: Policy,
    state: EngineState,
    sample: Sample,
    now: float,
    *,
    diagnosis: Diagnosis,
    containers: tuple[str, ...],
) -> tuple[EngineState, Decision]:
    last_restart = state.governor.last_restart
    unconsumed = _cannot_help(policy, sample)
    if unconsumed:
        # Judged on depth alone: the target's workers progress on other queues.
        depth_only = policy.detect.model_copy(update={"require_no_progress": False})
        orphan, seen = detector.observe(state.orphan, sample, depth_only, last_restart)
        state = replace(state, orphan=orphan)
        if seen.verdict is Verdict.STUCK:
            reason = (
                f"no consumer for queue {', '.join(unconsumed)}: {seen.reason}; the target's "
                "workers are alive and do not consume it, so restarting them cannot help: "
                "check the worker's -Q list (or the policy's queues)"
            )
            ruling = Ruling(Gate.BUDGET, "no restart can help")
            seen = replace(seen, reason=reason)
            if state.governor.escalated:
                return state, Decision(seen, ruling)
            action = Action(ActionKind.ESCALATE, now, policy.name, reason, depth=seen.depth)
            gov = governor.record_escalation(state.governor)
            return replace(state, governor=gov), Decision(seen, ruling, (action,))
    elif state.orphan.start is not None:
        state = replace(state, orphan=RunState())
    if diagnosis.verdict is not Verdict.STUCK:
        return (replace(state, blind=False) if state.blind else state), Decision(diagnosis)
    if _blind(policy, sample, containers):
        # when_progress_unknown = "escalate": depth alone cannot tell stuck from busy, and a
        # person decided not to pay a busy worker's in-flight tasks for the difference.
        reason = (
            f"{diagnosis.reason}; the worker's progress cannot be seen "
            f"({sample.progress_unknown or 'unknown'}), and when_progress_unknown = escalate: "
            "not restarting a worker that may be busy (a restart would lose its in-flight tasks)"
        )
        why = "progress unknown: when_progress_unknown = escalate"
        return _escalate_once(policy, state, now, diagnosis, why, reason, flag="blind")

    ruling = governor.rule(state.governor, policy.restart, now)
    if ruling.gate is Gate.ALLOW:
        gov = governor.record_restart(state.governor, policy.restart, now)
        action = Action(
            ActionKind.RESTART,
            now,
            policy.name,
            diagnosis.reason,
            depth=diagnosis.depth,
            streak=gov.streak,
            containers=containers,
        )
        fresh = replace(
            state,
            governor=gov,
            run=RunState(),
            replicas=(),
            stalls=state.stalls.after_restart(),
        )
        return fresh, Decision(diagnosis, ruling, (action,))
    if ruling.gate is Gate.BUDGET and not state.governor.escalated:
        action = Action(
            ActionKind.ESCALATE,
            now,
            policy.name,
            f"{diagnosis.reason}; restart refused, {ruling.reason}: a human is needed",
            depth=diagnosis.depth,
        )
        gov = governor.record_escalation(state.governor)
        return replace(state, governor=gov), Decision(diagnosis, ruling, (action,))
    return state, Decision(diagnosis, ruling)


def trigger(
    policy: Policy, state: EngineState, now: float, reason: str = "manual trigger"
) -> tuple[EngineState, Action]:
    """A restart asked for by a person: it skips detection, cooldown, backoff and the budget,
    and counts for all of them afterwards."""
    gov = governor.record_restart(state.governor, policy.restart, now)
    action = Action(
        ActionKind.RESTART, now, policy.name, reason, trigger=Trigger.MANUAL, streak=gov.streak
    )
    return EngineState(run=RunState(), governor=gov, stalls=state.stalls.after_restart()), action


def _blind(policy: Policy, sample: Sample, replicas_chosen: tuple[str, ...]) -> bool:
    """Stuck by depth alone, and the policy says a person decides then."""
    return (
        policy.detect.when_progress_unknown == "escalate"
        and policy.detect.require_no_progress
        and sample.processed is None
        and not replicas_chosen
    )


def _cannot_help(policy: Policy, sample: Sample) -> tuple[str, ...]:
    """The queues holding the backlog that no live worker consumes, when a restart of the
    target cannot change that: its own workers are alive (one reports progress) and the queues
    they do consume are not over the threshold. Empty when a restart may help (the target's
    workers are down, hung or unknown: starting them may be what the queue needs)."""
    if not sample.unconsumed or not any(r.processed is not None for r in sample.replicas):
        return ()
    consumed = sum(d for q, d in sample.queues.items() if q not in sample.unconsumed)
    if consumed > policy.detect.threshold:
        return ()
    return tuple(q for q in sample.unconsumed if sample.queues.get(q, 0) > 0)
