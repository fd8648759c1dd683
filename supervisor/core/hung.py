"""A slot hung past its limit: pure, O(1) state per worker.

A worker of the target is *busy* on a sample when it is alive (in `sample.loads`), every slot
is busy (its active tasks, from heartbeats, are at least its concurrency), its started-task
count is known, messages wait in the watched queues it consumes, and, when the sample carries
its own answer, that answer names at least as many running tasks as it has slots.

A *busy run* is the longest chain of successful samples, ending at the latest, on each of which
the worker is busy, with one started-task count throughout (no task started, so none ended: the
tasks running are the same from the first sample to the last), no two consecutive samples more
than `max_gap` apart, and no restart at or after its first sample. Once a run is `interval` old
the rule asks the worker what it runs (`active`: name, id, time_start), once per run (again
only when no answer came `max_gap` after asking): since no task started during the run, that
one answer stays true for the whole of it.

A task is *hung* when it has run longer than its limit (`limit`): Celery's own time_limit where
the worker's pool cannot enforce it (threads; gevent and eventlet for a call that blocks), else
the policy's per-task-name override, else `max_task_runtime`. A task without a limit, or whose
start is not known, is never hung. The worker is *stuck* when its run holds an answer naming at
least as many tasks as it has slots and every one of them is hung: a worker busy with long
legitimate work (an indexing task under its limit) is left alone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.core.idle import Finding
from supervisor.core.workload import oldest_for, waiting_for
from supervisor.durations import format_duration
from supervisor.policy import Detect
from supervisor.sample import Answer, Load, Running, Sample, WorkerFacts

RULE = "hung"
# Pools in which Celery cannot stop a task at its time_limit (a gevent or eventlet task blocked
# in a call, a thread): there a task past Celery's own limit is hung by Celery's own word.
UNENFORCED = ("threads", "gevent", "eventlet")
SHOWN = 3  # tasks named in a reason; the rest are counted


@dataclass(frozen=True)
class BusyRun:
    start: float
    last: float
    processed: int
    asked: float | None = None
    answer: Answer | None = None  # the worker's answer taken during the run


Runs = tuple[tuple[str, BusyRun], ...]


def enabled(detect: Detect, load: Load | None = None) -> bool:
    """Has the policy turned the rule on (a limit of its own)? Without one the rule is off and
    asks nothing, whatever Celery limits the worker has: a time_limit its pool never enforced
    is no evidence the operator chose (the limits it tells then win, once the rule is on)."""
    del load
    return detect.max_task_runtime is not None or bool(detect.task_runtime)


def limit(name: str, load: Load, detect: Detect) -> tuple[float, str] | None:
    """The task's limit in seconds and where it comes from; None: it has none. The operator's
    own override by task name first (a limit chosen for that task), then Celery's own limit
    where the pool cannot enforce it, then the policy's max_task_runtime."""
    matching = [p for p in detect.task_runtime if fnmatch.fnmatchcase(name, p)]
    if matching:
        pattern = max(matching, key=lambda p: (len(p), p))
        return detect.task_runtime[pattern], f"task_runtime {pattern!r}"
    celery = _celery_limit(name, load)
    if celery is not None:
        return celery
    if detect.max_task_runtime is not None:
        return detect.max_task_runtime, "max_task_runtime"
    return None


def _pool_cannot_enforce(load: Load) -> str | None:
    pool = WorkerFacts(load.worker, load.pool).pool_name
    return pool if pool in UNENFORCED else None


def _celery_limit(name: str, load: Load) -> tuple[float, str] | None:
    """Celery's own limit for the task, as the worker told it: the task's time_limit (its
    attribute or an annotation), else task_time_limit; only where the pool cannot enforce it
    (where it can, Celery ends the task at its limit and the slot frees itself)."""
    pool = _pool_cannot_enforce(load)
    if pool is None:
        return None
    own = dict(load.task_limits).get(name)
    if own is not None:
        return own, f"{name}'s own time_limit, which the {pool} pool cannot enforce"
    if load.time_limit is None:
        return None
    return load.time_limit, f"Celery's task_time_limit, which the {pool} pool cannot enforce"


def busy_now(load: Load, sample: Sample) -> bool:
    """Is every slot of the worker busy on this sample, with messages waiting?"""
    if load.concurrency is None or load.active is None or load.processed is None:
        return False
    if load.active < load.concurrency or waiting_for(load, sample) <= 0:
        return False
    answer = load.answer
    return answer is None or answer.silent or len(answer.active) >= load.concurrency


def observe(
    runs: Runs,
    sample: Sample,
    waits: Mapping[str, float] | None,
    detect: Detect,
    last_restart: float | None,
) -> tuple[Runs, tuple[Finding, ...], tuple[str, ...]]:
    """Each live worker's busy run after `sample`, the workers found stuck, and the workers to
    ask what they run before the next sample."""
    if not sample.ok:
        return runs, (), ()
    old = dict(runs)
    t = sample.t
    new: list[tuple[str, BusyRun]] = []
    found: list[Finding] = []
    asks: list[str] = []
    for load in sorted(sample.loads, key=lambda x: x.worker):
        if not enabled(detect, load) or not busy_now(load, sample):
            continue
        if last_restart is not None and t <= last_restart:
            continue
        assert load.processed is not None
        run = _extend(old.get(load.worker), load, t, detect, last_restart)
        if run.answer is None:
            if t - run.start >= detect.interval and (
                run.asked is None or t - run.asked >= detect.effective_max_gap
            ):
                run = BusyRun(run.start, run.last, run.processed, t)
                asks.append(load.worker)
        else:
            reason = _verdict(run, load, sample, waits, detect)
            if reason is not None:
                found.append(Finding(RULE, load.worker, run.start, reason))
        new.append((load.worker, run))
    return tuple(new), tuple(found), tuple(asks)


def _extend(
    run: BusyRun | None, load: Load, t: float, detect: Detect, last_restart: float | None
) -> BusyRun:
    assert load.processed is not None
    if (
        run is None
        or t - run.last > detect.effective_max_gap
        or run.processed != load.processed
        or (last_restart is not None and run.start <= last_restart)
    ):
        run = BusyRun(t, t, load.processed)
    else:
        run = BusyRun(run.start, t, run.processed, run.asked, run.answer)
    answer = load.answer
    if run.answer is None and answer is not None and not answer.silent and answer.t >= run.start:
        run = BusyRun(run.start, run.last, run.processed, run.asked, answer)
    return run


def _verdict(
    run: BusyRun,
    load: Load,
    sample: Sample,
    waits: Mapping[str, float] | None,
    detect: Detect,
) -> str | None:
    """The reason when every slot holds a hung task; None when one does not."""
    answer = run.answer
    assert load.concurrency is not None and answer is not None
    if len(answer.active) < load.concurrency:
        return None
    hung: list[tuple[Running, float, float, str]] = []
    for task in answer.active:
        bound = limit(task.name, load, detect)
        if bound is None or task.started is None:
            return None
        ran = sample.t - task.started
        if ran <= bound[0]:
            return None
        hung.append((task, ran, bound[0], bound[1]))
    hung.sort(key=lambda h: -h[1])
    shown = ", ".join(
        f"{task.name} ({task.id}) running {format_duration(ran)} > {format_duration(lim)} "
        f"({source})"
        for task, ran, lim, source in hung[:SHOWN]
    )
    if len(hung) > SHOWN:
        shown += f" and {len(hung) - SHOWN} more"
    oldest = oldest_for(load, sample, waits)
    text = (
        f"worker {load.worker}: {len(hung)} of {load.concurrency} slots hung: {shown}; "
        f"0 started in {format_duration(sample.t - run.start)}, "
        f"{waiting_for(load, sample)} waiting"
    )
    if oldest is not None:
        text += f", oldest {format_duration(oldest)}"
    return text
