"""Is the worker stuck? A pure function of the previous run state, a sample and the policy.

A *run* is the longest chain of successful samples, ending at the latest one, in which every depth
is above the threshold, no depth is lower than the one before, no two consecutive samples are more
than `max_gap` apart, the worker's progress counter (where known on two samples) did not change,
and no restart happened at or after its first sample. The worker is stuck when the run is at least
`window` old and the depth is now higher than at its start; or, with `require_growth = false`,
when the worker's progress was known on every sample of the run (so it did not move), even if
the depth did not grow: a flat backlog behind a worker that starts nothing.

Only the run's first sample matters for the verdict, so the state is O(1), however long the run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from supervisor.durations import format_duration
from supervisor.policy import Detect
from supervisor.sample import Sample


class Verdict(enum.Enum):
    STUCK = "stuck"
    NOT_STUCK = "not_stuck"
    UNKNOWN = "unknown"  # the sample failed: nothing is decided on missing data


@dataclass(frozen=True)
class Point:
    t: float
    depth: int


@dataclass(frozen=True)
class RunState:
    start: Point | None = None
    last: Point | None = None
    # The progress value every known sample of the run shares (None: none known yet).
    processed: int | None = None
    # First sample of the run's trailing stretch with unknown progress: where a run restarts
    # when a later known progress value differs from `processed`.
    unknown_tail: Point | None = None
    # Some sample of the run had unknown progress: a flat backlog then proves nothing.
    unknown_seen: bool = False

    @property
    def seconds(self) -> float:
        if self.start is None or self.last is None:
            return 0.0
        return self.last.t - self.start.t


@dataclass(frozen=True)
class Diagnosis:
    verdict: Verdict
    reason: str
    depth: int | None = None
    run_start: Point | None = None
    run_seconds: float = 0.0


def observe(
    run: RunState, sample: Sample, detect: Detect, last_restart: float | None
) -> tuple[RunState, Diagnosis]:
    if sample.depth is None:
        return run, Diagnosis(Verdict.UNKNOWN, f"sample failed: {sample.error or 'unknown error'}")

    depth = sample.depth
    point = Point(sample.t, depth)
    if depth <= detect.threshold:
        return RunState(), Diagnosis(
            Verdict.NOT_STUCK, f"depth {depth} is not above threshold {detect.threshold}", depth
        )
    if last_restart is not None and sample.t <= last_restart:
        return RunState(), Diagnosis(
            Verdict.NOT_STUCK, "sample taken at or before the last restart", depth
        )

    progress = sample.processed if detect.require_no_progress else None
    new_run, broke = _extend(run, point, progress, detect, last_restart)
    assert new_run.start is not None
    start = new_run.start
    age = sample.t - start.t
    frozen = (
        not detect.require_growth and new_run.processed is not None and not new_run.unknown_seen
    )
    if age >= detect.window and (depth > start.depth or frozen):
        how = "growing" if depth > start.depth else "not draining, the worker starting nothing,"
        reason = (
            f"depth {depth} > {detect.threshold} and {how} for {format_duration(age)} "
            f"(was {start.depth})"
        )
        reason += _progress_note(sample, detect)
        return new_run, Diagnosis(Verdict.STUCK, reason, depth, start, age)
    if age < detect.window:
        reason = (
            f"depth {depth} above threshold {detect.threshold} for {format_duration(age)}, "
            f"under window {format_duration(detect.window)}"
        )
    else:
        reason = f"depth {depth} not higher than {start.depth} at the run's start"
    if broke:
        reason += f" ({broke})"
    return new_run, Diagnosis(Verdict.NOT_STUCK, reason, depth, start, age)


def _extend(
    run: RunState,
    point: Point,
    progress: int | None,
    detect: Detect,
    last_restart: float | None,
) -> tuple[RunState, str]:
    """The run ending at `point`, and why the previous run was cut (empty when it was not)."""
    unknown = progress is None
    fresh = RunState(point, point, progress, point if unknown else None, unknown)
    if run.start is None or run.last is None:
        return fresh, ""
    if last_restart is not None and run.start.t <= last_restart:
        return fresh, "restart since the run began"
    if point.t - run.last.t > detect.effective_max_gap:
        return fresh, f"gap of {format_duration(point.t - run.last.t)} between samples"
    if point.depth < run.last.depth:
        return fresh, f"depth fell from {run.last.depth}"
    if progress is None:
        return RunState(run.start, point, run.processed, run.unknown_tail or point, True), ""
    if run.processed is None or run.processed == progress:
        return RunState(run.start, point, progress, None, run.unknown_seen), ""
    # The run starts again after the last sample with the old value: if unknown samples
    # came in between, they belong to it.
    start = run.unknown_tail or point
    return RunState(start, point, progress, None, run.unknown_tail is not None), (
        f"worker progressed from {run.processed} to {progress} started tasks"
    )


def _progress_note(sample: Sample, detect: Detect) -> str:
    """What was seen of the worker's progress at the decision: never a stale count."""
    if not detect.require_no_progress:
        return ""
    if sample.processed is not None:
        source = f", from {sample.progress_source}" if sample.progress_source else ""
        return f"; worker progress stuck at {sample.processed} started tasks{source}"
    if sample.progress_unknown:
        return f"; progress unknown: {sample.progress_unknown}"
    return ""
