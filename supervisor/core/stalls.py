"""The rules that find a stuck worker at any depth, together: the head waits (core/waiting.py),
the idle worker (core/idle.py) and the hung slots (core/hung.py), over one sample. Pure.

The chapter's rule (core/detector.py) needs the queue over its threshold; these do not, and
each is off until its limit is given. The engine asks them when the chapter's rule does not
find the worker stuck; their findings name the rule and its evidence, and the workers to ask
(`asks`: active, reserved and scheduled, at once) go to the shell, whose answers come back in
the next sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from supervisor.core import hung, idle, waiting
from supervisor.core.idle import Finding
from supervisor.core.waiting import HeadState
from supervisor.policy import Detect
from supervisor.sample import Sample


@dataclass(frozen=True)
class StallState:
    heads: HeadState = field(default_factory=HeadState)
    idle: idle.Runs = ()
    hung: hung.Runs = ()

    def after_restart(self) -> StallState:
        """A restart ends every run (the heads keep waiting: a restart does not take them)."""
        return StallState(self.heads)


@dataclass(frozen=True)
class Stalls:
    waits: Mapping[str, float] | None = None  # per watched queue, its oldest message's wait
    found: tuple[Finding, ...] = ()
    asks: tuple[str, ...] = ()


def observe(
    state: StallState, sample: Sample, detect: Detect, last_restart: float | None
) -> tuple[StallState, Stalls]:
    heads, waits = waiting.observe(state.heads, sample)
    idle_runs, idle_found, idle_asks = idle.observe(state.idle, sample, waits, detect, last_restart)
    hung_runs, hung_found, hung_asks = hung.observe(state.hung, sample, waits, detect, last_restart)
    asks = tuple(sorted(set(idle_asks) | set(hung_asks)))
    return StallState(heads, idle_runs, hung_runs), Stalls(waits, idle_found + hung_found, asks)


def containers(found: tuple[Finding, ...], sample: Sample) -> tuple[str, ...] | None:
    """The containers of the stuck workers, when the target has several (one replica at a
    time); empty: the whole target (it has one container). None: it has several and a stuck
    worker is not mapped to one of them, so which to restart is not known (restarting them
    all would kill a healthy replica's running tasks)."""
    mapped = {r.worker: r.container for r in sample.replicas}
    mapped.update({x.worker: x.container for x in sample.loads if x.container is not None})
    several = len(sample.replicas) >= 2 or len(sample.containers or ()) >= 2
    if not several:
        return ()
    if any(f.worker not in mapped for f in found):
        return None
    return tuple(sorted({mapped[f.worker] for f in found}))


def reason(found: tuple[Finding, ...]) -> str:
    return "; ".join(f"{f.rule} rule: {f.reason}" for f in found)
