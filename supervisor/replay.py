"""`supervisor replay`: the daemon's tracker run over a recorded trace with a virtual clock.

The same `tracker.on_sample` the daemon calls decides here; only the executor differs: a restart
is taken to be carried out and confirmed at once, at the sample that decided it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from supervisor.core import tracker
from supervisor.core.engine import Action, Decision
from supervisor.core.results import LookupResult, Outcome, RestartResult
from supervisor.core.tracker import DryRun, Restart, TrackerState
from supervisor.errors import TraceError
from supervisor.policy import Policy
from supervisor.sample import Sample
from supervisor.trace import read_trace


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


def run_replay(policy: Policy, trace: str, plot: Path | None = None) -> int:
    """`supervisor replay POLICY TRACE`: JSON lines of the actions on stdout, counts on stderr;
    with `plot`, a picture of them in that PNG file."""
    import json
    import logging
    import sys

    log = logging.getLogger("supervisor.replay")
    source = "<stdin>" if trace == "-" else trace
    stream: TextIO
    try:
        stream = sys.stdin if trace == "-" else open(trace, newline="")  # noqa: SIM115
    except OSError as exc:
        raise TraceError(f"{source}: cannot read: {exc.strerror or exc}") from None
    counts = {"samples": 0, "failed": 0, "restart": 0, "escalate": 0}
    steps: list[ReplayStep] = []
    try:
        for step in replay(policy, read_trace(stream, source)):
            if plot is not None:
                steps.append(step)
            counts["samples"] += 1
            counts["failed"] += not step.sample.ok
            if step.decision is not None:
                log.debug(
                    "t=%g depth=%s %s", step.sample.t, step.sample.depth, step.decision.describe()
                )
            for action in step.actions:
                counts[action.kind.value] += 1
                log.info("t=%g %s: %s", action.t, action.kind.value, action.reason)
                print(json.dumps(action.to_json()), flush=True)
    finally:
        if stream is not sys.stdin:
            stream.close()
    log.info(
        "%s: replayed %d samples (%d failed): %d restarts, %d escalations",
        policy.name,
        counts["samples"],
        counts["failed"],
        counts["restart"],
        counts["escalate"],
    )
    if plot is not None:
        from supervisor.picture import from_replay
        from supervisor.plot import render

        render([from_replay(policy.name, policy.detect.threshold, steps)], plot)
        log.info("wrote %s", plot)
    return 0
