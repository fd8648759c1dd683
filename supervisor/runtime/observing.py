"""What one tick sees of a target, put together for the tracker: the sample of its queues,
with the workers' progress, the replicas (the target's containers mapped to their workers), the
live consumers of the watched queues, what the target's workers said of themselves, and the
target's containers as last read from Docker. Reading only: nothing here decides."""

from __future__ import annotations

import dataclasses
from typing import Any

from supervisor.core import replicas
from supervisor.runtime.wiring import ProgressSource, Supervised
from supervisor.sample import Load, Progress, Replica, Sample


def enrich(
    sample: Sample, item: Supervised, monitor: ProgressSource | None, queues: tuple[str, ...]
) -> Sample:
    """`sample` with what the monitor and Docker tell of the target now."""
    if not sample.ok:
        return sample
    seen: dict[str, Any] = {}  # one copy of the sample for all of it
    if monitor is not None:
        wanted = list(queues)
        progress = monitor.progress(wanted)
        seen.update(
            processed=progress.processed,
            progress_source=progress.source,
            progress_unknown=progress.unknown,
            unconsumed=progress.unconsumed,
            replicas=mapped_replicas(item, monitor, queues),
            consumers=monitor.live_consumers(wanted),
            facts=monitor.facts(target_workers(item, monitor)),
            loads=target_loads(item, monitor),
        )
        seen.update(by_container(progress, seen["loads"]))
    if item.identified:
        seen["containers"] = tuple(c.name for c in item.containers)
    if item.identify_error is not None:
        seen["target_error"] = item.identify_error
    return dataclasses.replace(sample, **seen) if seen else sample


def by_container(progress: Progress, loads: tuple[Load, ...]) -> dict[str, Any]:
    """The progress of the target's own live workers when the queues' progress is not known
    because their queues are not known yet (a catatonic worker after a broker restart answers
    no remote control, but its heartbeats name a host that maps to the target's container):
    their heartbeats count, rather than "progress unknown"."""
    if progress.processed is not None or not loads:
        return {}
    if any(x.processed is None for x in loads) or any(x.queues is not None for x in loads):
        return {}
    return {
        "processed": sum(x.processed or 0 for x in loads),
        "progress_source": "heartbeats of the target's containers",
        "progress_unknown": None,
    }


def asks(item: Supervised) -> list[str]:
    """The workers the rules at any depth asked about at the last tick (core/stalls.py): asked
    now, in the background, so their answers come with a later sample."""
    decision = item.last_decision
    return list(decision.stalls.asks) if decision is not None else []


def discovered(item: Supervised, monitor: ProgressSource) -> tuple[str, ...] | None:
    """The queues the target's own workers consume, or None when none of them tells."""
    consumers = monitor.consumers()
    mapped = replicas.match_workers(consumers, item.containers)
    known = [queues for w in mapped if (queues := consumers[w]) is not None]
    if not known:
        return None
    return tuple(sorted(frozenset[str]().union(*known)))


def target_workers(item: Supervised, monitor: ProgressSource) -> list[str]:
    """Every worker known on the broker that runs in one of the target's containers."""
    return sorted(replicas.match_workers(monitor.consumers(), item.containers))


def target_loads(item: Supervised, monitor: ProgressSource) -> tuple[Load, ...]:
    """The target's live workers, each with the container it runs in (a stuck one is
    restarted alone, even while its queues are not known yet)."""
    mapped = replicas.match_workers(monitor.consumers(), item.containers)
    return tuple(
        dataclasses.replace(load, container=mapped.get(load.worker))
        for load in monitor.loads(sorted(mapped), asks(item))
    )


def mapped_replicas(
    item: Supervised, monitor: ProgressSource, queues: tuple[str, ...]
) -> tuple[Replica, ...]:
    """The target's containers mapped to their workers' progress."""
    workers = monitor.by_worker(list(queues))
    mapped = replicas.match_workers(workers, item.containers)
    return tuple(
        Replica(container, worker, workers[worker].processed, workers[worker].source)
        for worker, container in sorted(mapped.items())
    )
