"""`supervisor replay`: the live engine run over a recorded trace with a virtual clock."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from supervisor import engine
from supervisor.engine import Action, Decision, EngineState
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
    decision: Decision


def replay(policy: Policy, samples: Iterable[Sample]) -> Iterator[ReplayStep]:
    """Drive the engine exactly as the daemon does, `now` being each sample's time: a restart
    is taken to happen at the sample that triggers it."""
    state = EngineState()
    for sample in samples:
        state, decision = engine.step(policy, state, sample, now=sample.t)
        yield ReplayStep(sample, decision)


def actions(steps: Iterable[ReplayStep]) -> Iterator[Action]:
    for step in steps:
        yield from step.decision.actions
