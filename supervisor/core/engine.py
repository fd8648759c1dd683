"""The decision engine: detector and governor composed into one pure step.

`step` takes the engine state, a sample and `now`, and returns the new state and a decision with
the actions to carry out. `supervisor replay` and the live daemon both drive exactly this; only
where samples come from, and what is done with the actions, differs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.core import detector, governor
from supervisor.core.detector import Diagnosis, RunState, Verdict
from supervisor.core.governor import Gate, GovernorState, Ruling
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

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "action": self.kind.value,
            "policy": self.policy,
            "reason": self.reason,
            "trigger": self.trigger.value,
            "depth": self.depth,
            "streak": self.streak,
        }


@dataclass(frozen=True)
class EngineState:
    run: RunState = field(default_factory=RunState)
    governor: GovernorState = field(default_factory=GovernorState)


@dataclass(frozen=True)
class Decision:
    diagnosis: Diagnosis
    ruling: Ruling | None = None  # set when the worker was stuck and the governor was asked
    actions: tuple[Action, ...] = ()

    def describe(self) -> str:
        text = f"{self.diagnosis.verdict.value}: {self.diagnosis.reason}"
        if self.ruling is not None:
            text += f" [{self.ruling.gate.value}: {self.ruling.reason}]"
        return text


def step(
    policy: Policy, state: EngineState, sample: Sample, now: float
) -> tuple[EngineState, Decision]:
    """Observe one sample at `now`; return the new state and the decision with its actions."""
    run, diagnosis = detector.observe(state.run, sample, policy.detect, state.governor.last_restart)
    state = replace(state, run=run)
    if diagnosis.verdict is not Verdict.STUCK:
        return state, Decision(diagnosis)

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
        )
        return replace(state, governor=gov, run=RunState()), Decision(diagnosis, ruling, (action,))
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
    return EngineState(run=RunState(), governor=gov), action
