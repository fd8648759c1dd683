"""What one of the target's workers has waiting for it: the messages in the queues it consumes.

Shared by the rules that find a stuck worker at any depth (core/idle.py, core/hung.py). A
worker whose queues are not known yet is the target's by its container (its node name's host),
so the watched queues are taken as its own: its heartbeats count from the first sample.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.core import waiting
from supervisor.sample import Load, Sample


def queues_of(load: Load, sample: Sample) -> tuple[str, ...]:
    """The watched queues the worker consumes."""
    if load.queues is None:
        return tuple(sorted(sample.queues))
    return tuple(q for q in sorted(sample.queues) if q in load.queues)


def waiting_for(load: Load, sample: Sample) -> int:
    """Messages waiting in the watched queues the worker consumes."""
    return sum(sample.queues.get(q, 0) for q in queues_of(load, sample))


def oldest_for(load: Load, sample: Sample, waits: Mapping[str, float] | None) -> float | None:
    return waiting.oldest(waits, queues_of(load, sample))
