"""Replay: the daemon's tracker run over recorded samples with a virtual clock (pure).

The same `tracker.on_sample` the daemon calls decides here; only the executor differs: a restart
is taken to be carried out and confirmed at once, at the sample that decided it.
`supervisor replay` (supervisor/replay.py) and the decision pictures both read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from supervisor.core import tracker
from supervisor.core.engine import Action, Decision
from supervisor.core.results import LookupResult, Outcome, RestartResult
from supervisor.core.tracker import DryRun, Restart, TrackerState
from supervisor.policy import Policy
from supervisor.sample import Sample


@dataclass(frozen=True)
class ReplayStep:
    sample: Sample
    decision: Decision | None
    actions: tuple[Action, ...] = ()


def replay(policy: Policy, samples: Iterable[Sample]) -> Iterator[ReplayStep]:
    """Drive the tracker exactly as the daemon does, `now` being each sample's time."""
    state = TrackerState()
    for sample in samples:
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        actions = tuple(c.action for c in step.commands if isinstance(c, Restart | DryRun))
        escalations = tuple(
            a for a in (step.decision.actions if step.decision else ()) if a not in actions
        )
        for command in step.commands:
            if isinstance(command, Restart):
                done = RestartResult(Outcome.DONE, policy.restart.method, seconds=0.0)
                state, _ = tracker.on_result(policy, state, command, done, sample.t)
            elif isinstance(command, DryRun):
                state, _ = tracker.on_result(policy, state, command, LookupResult(), sample.t)
        yield ReplayStep(sample, step.decision, escalations + actions)


def actions(steps: Iterable[ReplayStep]) -> Iterator[Action]:
    for step in steps:
        yield from step.actions
