"""The idle worker that takes nothing: pure, O(1) state per worker.

A worker of the target is *idle* on a sample when it is alive (it is in `sample.loads`), has
free slots (fewer active tasks than its concurrency, both known), its started-task count is
known, messages wait in the watched queues it consumes, and, when the sample carries its own
answer, that answer agrees: fewer active tasks than slots and nothing reserved or scheduled (a
worker holding ETA tasks, rate-limited tasks or a full prefetch is waiting on purpose).

An *idle run* is the longest chain of successful samples, ending at the latest, on each of
which the worker is idle, with one started-task count throughout, no two consecutive samples
more than `max_gap` apart, and no restart at or after its first sample. A healthy worker with a
free slot takes a waiting message within a second, so a run `idle_window` old is a worker that
stopped consuming (kombu#2629, celery#10204, #10346: it answers `ping` and sends heartbeats).
Before acting the rule asks the worker itself (`asks`: active, reserved, scheduled, at once);
the worker is *stuck* on the sample carrying an answer taken during the run (which, being idle,
agrees), or on the second sign in the run that it gave none within the wait (`SILENCES`): then
its heartbeats' evidence stands. After one silence it asks again at once; otherwise it asks
again when no answer has come `max_gap` after asking. A request the supervisor itself could not
make (the shell's fault, not the worker's) brings no answer at all.

A worker Celery rate-limits tasks on holds their messages until their turn, where `reserved`
does not show them: its run must be longer by the slowest rate's interval (a task of a 2/m
limit starts within 30 s of the last), so `window` is `idle_window` plus that interval.

Per worker: a replica that starts nothing while messages wait at every sample of the window is
stuck even when a sibling keeps the queue short. A replica idle because its sibling takes every
message at low traffic is not: the queue is then empty at most samples, and one empty sample
ends the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.core.workload import oldest_for, waiting_for
from supervisor.durations import format_duration
from supervisor.policy import Detect
from supervisor.sample import Load, Sample

RULE = "idle"
# Silence is taken for the worker's own only when it is said twice in a run: one missed reply
# (a loaded host, a slow broker) must not confirm a restart.
SILENCES = 2


@dataclass(frozen=True)
class IdleRun:
    start: float
    last: float
    processed: int
    asked: float | None = None  # when the rule last asked the worker for its answer
    silences: int = 0  # answers of this run that were silence (no reply within the wait)


@dataclass(frozen=True)
class Finding:
    """A worker a rule of the core found stuck, and on what evidence."""

    rule: str
    worker: str
    since: float  # the first sample of the evidence
    reason: str


Runs = tuple[tuple[str, IdleRun], ...]


def idle_now(load: Load, sample: Sample) -> bool:
    """Is the worker idle on this sample? (See the module's docstring.)"""
    if load.concurrency is None or load.active is None or load.processed is None:
        return False
    if not load.limits_known:  # a rate limit it holds messages for may not be known yet
        return False
    if load.active >= load.concurrency or waiting_for(load, sample) <= 0:
        return False
    answer = load.answer
    return (
        answer is None
        or answer.silent
        or (not answer.holds_back and len(answer.active) < load.concurrency)
    )


def observe(
    runs: Runs,
    sample: Sample,
    waits: Mapping[str, float] | None,
    detect: Detect,
    last_restart: float | None,
) -> tuple[Runs, tuple[Finding, ...], tuple[str, ...]]:
    """Each live worker's idle run after `sample`, the workers found stuck, and the workers to
    ask (active, reserved, scheduled) before the next sample."""
    if detect.idle_window is None:
        return (), (), ()
    if not sample.ok:
        return runs, (), ()
    old = dict(runs)
    t = sample.t
    new: list[tuple[str, IdleRun]] = []
    found: list[Finding] = []
    asks: list[str] = []
    for load in sorted(sample.loads, key=lambda x: x.worker):
        if not idle_now(load, sample) or (last_restart is not None and t <= last_restart):
            continue
        assert load.processed is not None
        run = _extend(old.get(load.worker), t, load.processed, detect, last_restart)
        age = t - run.start
        if age >= window(load, detect.idle_window):
            answer = load.answer
            fresh = answer is not None and answer.t >= run.start
            silences = run.silences + (1 if fresh and answer and answer.silent else 0)
            if fresh and (not answer or not answer.silent or silences >= SILENCES):
                reason = _reason(load, sample, waits, age)
                found.append(Finding(RULE, load.worker, run.start, reason))
            elif silences > run.silences:  # silent once: ask again at once
                run = IdleRun(run.start, run.last, run.processed, t, silences)
                asks.append(load.worker)
            elif run.asked is None or t - run.asked >= detect.effective_max_gap:
                run = IdleRun(run.start, run.last, run.processed, t, run.silences)
                asks.append(load.worker)
        new.append((load.worker, run))
    return tuple(new), tuple(found), tuple(asks)


def window(load: Load, idle_window: float) -> float:
    """How long the worker must start nothing while idle: longer by its slowest rate limit."""
    return idle_window + load.slowest_rate


def _extend(
    run: IdleRun | None, t: float, processed: int, detect: Detect, last_restart: float | None
) -> IdleRun:
    if (
        run is None
        or t - run.last > detect.effective_max_gap
        or run.processed != processed
        or (last_restart is not None and run.start <= last_restart)
    ):
        return IdleRun(t, t, processed)
    return IdleRun(run.start, t, processed, run.asked, run.silences)


def _reason(load: Load, sample: Sample, waits: Mapping[str, float] | None, age: float) -> str:
    oldest = oldest_for(load, sample, waits)
    text = (
        f"worker {load.worker} idle: {load.active} of {load.concurrency} slots busy, "
        f"0 started in {format_duration(age)}, {waiting_for(load, sample)} waiting"
    )
    if oldest is not None:
        text += f", oldest {format_duration(oldest)}"
    if load.rate_limits:
        text += f" (a rate limit lets one start every {format_duration(load.slowest_rate)})"
    answer = load.answer
    if answer is not None and answer.silent:
        return text + "; it gave no answer to inspect, judged on its heartbeats"
    if answer is not None:
        return text + (
            f"; it answered {len(answer.active)} active, {answer.reserved} reserved, "
            f"{answer.scheduled} scheduled"
        )
    return text
