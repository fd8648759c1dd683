"""One replica at a time: which of a target's containers is stuck, judged on its own progress.

A target found by compose labels may have several containers (`--scale`, `deploy.replicas`),
each running a Celery worker that consumes the same queues. Summed, a healthy replica's
progress hides a hung one; restarted together, the healthy one loses its in-flight tasks. So
when at least two replicas are mapped to workers and at least one of them reports progress,
each is judged on its own: it is stuck when the policy's queues have stayed over the threshold
and not drained for the window while its own started-task count did not move, or while it
stopped reporting at all while another replica reports. Otherwise the whole target is judged
as one, as before.

Workers are mapped to containers by the host part of their node name (`celery@HOST`) against
each container's hostname (Docker's default: the short container id) or name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from supervisor.core import detector
from supervisor.core.detector import Diagnosis, RunState, Verdict
from supervisor.policy import Detect
from supervisor.sample import Replica, Sample

# Stands for the progress of a replica that stopped reporting while another reports: a value
# that never changes, so its run goes on as a worker that starts nothing.
SILENT = -1


@dataclass(frozen=True)
class Container:
    name: str
    hostname: str


def match_workers(workers: Iterable[str], containers: Iterable[Container]) -> dict[str, str]:
    """Worker node name -> container name, for the workers whose host part is a container's
    hostname or name (the hostname wins where both could match)."""
    by_hostname = {c.hostname: c.name for c in containers if c.hostname}
    by_name = {c.name: c.name for c in containers}
    out = {}
    for worker in workers:
        host = worker.rpartition("@")[2]
        found = by_hostname.get(host) or by_name.get(host)
        if found is not None:
            out[worker] = found
    return out


def separable(replicas: tuple[Replica, ...]) -> bool:
    """Can the replicas be told apart? At least two, and at least one reporting progress."""
    return len(replicas) >= 2 and any(r.processed is not None for r in replicas)


@dataclass(frozen=True)
class Judged:
    runs: tuple[tuple[str, RunState], ...]
    stuck: tuple[tuple[str, Diagnosis], ...]  # (container, why), in container order


def judge(
    runs: Mapping[str, RunState],
    sample: Sample,
    detect: Detect,
    last_restart: float | None,
) -> Judged:
    """Each replica's run after `sample`, and which replicas are stuck."""
    new_runs, stuck = [], []
    per_replica = detect.model_copy(update={"require_growth": False, "require_no_progress": True})
    for replica in sorted(sample.replicas, key=lambda r: r.container):
        processed = SILENT if replica.processed is None else replica.processed
        own = replace(
            sample,
            processed=processed,
            progress_source=replica.source if replica.processed is not None else None,
            progress_unknown=None if replica.processed is not None else "stopped reporting",
        )
        run, diagnosis = detector.observe(
            runs.get(replica.container, RunState()), own, per_replica, last_restart
        )
        new_runs.append((replica.container, run))
        if diagnosis.verdict is Verdict.STUCK:
            stuck.append((replica.container, diagnosis))
    return Judged(tuple(new_runs), tuple(stuck))


def reason(sample: Sample, stuck: tuple[tuple[str, Diagnosis], ...]) -> str:
    """Why these replicas are restarted: the queue's run, and each one's own progress."""
    replicas = {r.container: r for r in sample.replicas}
    parts = []
    for container, diagnosis in stuck:
        run = diagnosis.reason.split("; ")[0]  # depth over threshold, not draining, since when
        r = replicas[container]
        own = (
            f"its progress stuck at {r.processed} started tasks, from {r.source}"
            if r.processed is not None
            else "it stopped reporting while another replica reports"
        )
        parts.append(f"replica {container} (worker {r.worker}): {run}; {own}")
    return "; ".join(parts)
