"""One observation of a supervised worker's queues, as the probe took it and the engine reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Replica:
    """One container of the target and the Celery worker it runs, with that worker's progress."""

    container: str
    worker: str
    processed: int | None  # None: it sends no heartbeat and does not answer now
    source: str | None = None


@dataclass(frozen=True)
class Sample:
    """A sample at time `t` (epoch seconds); `depth is None` means it failed, `error` says why."""

    t: float
    depth: int | None
    queues: Mapping[str, int] = field(default_factory=dict)
    unacked: int | None = None
    oldest_unacked_age: float | None = None
    processed: int | None = None
    error: str | None = None
    progress_source: str | None = None  # where `processed` came from: heartbeats, remote control
    progress_unknown: str | None = None  # why `processed` is not known, when it is not
    unbound: tuple[str, ...] = ()  # queues with no kombu binding on this database
    unconsumed: tuple[str, ...] | None = None  # queues no live worker consumes (None: unknown)
    replicas: tuple[Replica, ...] = ()  # the target's containers mapped to their workers

    @property
    def ok(self) -> bool:
        return self.depth is not None

    @classmethod
    def failed(cls, t: float, error: str) -> Sample:
        return cls(t=t, depth=None, error=error)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "ok": self.ok,
            "depth": self.depth,
            "queues": dict(self.queues),
            "unacked": self.unacked,
            "oldest_unacked_age": self.oldest_unacked_age,
            "processed": self.processed,
            "progress_source": self.progress_source,
            "progress_unknown": self.progress_unknown,
            "unbound": list(self.unbound),
            "unconsumed": None if self.unconsumed is None else list(self.unconsumed),
            "error": self.error,
        }


@dataclass(frozen=True)
class Progress:
    """Tasks started by the live workers of some queues, or why that is not known."""

    processed: int | None
    source: str | None = None  # heartbeats, remote control, or both
    unknown: str | None = None  # why it is not known (None when it is)
    # Queues that no live worker consumes: None when that cannot be told (a live worker whose
    # queues are not known yet, or no worker seen at all on the broker).
    unconsumed: tuple[str, ...] | None = None
