"""When did something start failing, and when did it stop? One transition rule for every
outage the supervisor reports (sampling Redis, reaching Docker, starting a target): a begin
when the first failure is seen, an end with its length when the first success follows."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Change(enum.Enum):
    BEGAN = "began"
    ENDED = "ended"


@dataclass(frozen=True)
class Outage:
    since: float | None = None
    error: str | None = None  # the first error of the outage

    @property
    def active(self) -> bool:
        return self.since is not None


@dataclass(frozen=True)
class Transition:
    change: Change
    error: str  # the first error of the outage, for both ends
    seconds: float = 0.0  # how long it lasted, on the end


def observe(outage: Outage, error: str | None, now: float) -> tuple[Outage, Transition | None]:
    """The outage after a try at `now` that failed with `error` (None: it succeeded)."""
    if error is not None and outage.since is None:
        return Outage(now, error), Transition(Change.BEGAN, error)
    if error is None and outage.since is not None:
        return Outage(), Transition(Change.ENDED, outage.error or "", now - outage.since)
    return outage, None
