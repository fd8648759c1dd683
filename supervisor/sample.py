"""One observation of a supervised worker's queues, as the probe took it and the engine reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
            "error": self.error,
        }
