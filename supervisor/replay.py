"""`supervisor replay`: the daemon's tracker run over a recorded trace with a virtual clock.

The same `tracker.on_sample` the daemon calls decides here; only the executor differs: a restart
is taken to be carried out and confirmed at once, at the sample that decided it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from supervisor.core import tracker
from supervisor.core.engine import Action, Decision
from supervisor.core.results import LookupResult, Outcome, RestartResult
from supervisor.core.tracker import DryRun, Restart, TrackerState
from supervisor.errors import TraceError
from supervisor.policy import Policy
from supervisor.sample import Sample

COLUMNS = ("t", "depth", "processed")
FAILED_SAMPLE = "failed sample in trace"


def read_trace(stream: TextIO, source: str) -> Iterator[Sample]:
    """Samples from a CSV trace: header `t,depth[,processed]`; an empty depth is a failed sample."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise TraceError(f"{source}: empty trace, expected a header line 't,depth[,processed]'")
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise TraceError(
            f"{source}: line 1: unknown column {unknown[0]!r} (columns are t, depth, processed)"
        )
    for needed in ("t", "depth"):
        if needed not in names:
            raise TraceError(f"{source}: line 1: missing column {needed!r}")
    index = {n: i for i, n in enumerate(names)}
    previous_t = -math.inf
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise TraceError(f"{source}: line {line}: {len(row)} fields, expected {len(names)}")
        t = _number(row[index["t"]], source, line, "t")
        if t < previous_t:
            raise TraceError(f"{source}: line {line}: t={t:g} is before the previous row's t")
        previous_t = t
        depth = _count(row[index["depth"]], source, line, "depth")
        processed = (
            _count(row[index["processed"]], source, line, "processed")
            if "processed" in index
            else None
        )
        if depth is None:
            yield Sample.failed(t, FAILED_SAMPLE)
        else:
            yield Sample(t=t, depth=depth, queues={}, processed=processed)


def _number(cell: str, source: str, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(f"{source}: line {line}: {column}={cell!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{source}: line {line}: {column}={cell!r} is not finite")
    return value


def _count(cell: str, source: str, line: int, column: str) -> int | None:
    text = cell.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise TraceError(
            f"{source}: line {line}: {column}={cell!r} is not a whole number"
        ) from None
    if value < 0:
        raise TraceError(f"{source}: line {line}: {column}={value} is negative")
    return value


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


def run_replay(policy: Policy, trace: str) -> int:
    """`supervisor replay POLICY TRACE`: JSON lines of the actions on stdout, counts on stderr."""
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
    try:
        for step in replay(policy, read_trace(stream, source)):
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
    return 0
