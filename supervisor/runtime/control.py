"""What a person asks of the running daemon, by signal: stop (SIGTERM, SIGINT), reload the
policies (SIGHUP), restart now (SIGUSR1, `supervisor trigger`). Which policies a trigger
restarts and whether a reload may replace the running policies are pure rules
(core/requests.py); this only carries them out on the daemon."""

from __future__ import annotations

import logging
import signal
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from supervisor import deployment
from supervisor.core import events, requests, tracker
from supervisor.core.events import Event
from supervisor.errors import PolicyError, StateRefusedError
from supervisor.policy import Policy
from supervisor.runtime import trigger
from supervisor.runtime.leasing import Leases
from supervisor.runtime.targets import Targets
from supervisor.runtime.wiring import Supervised
from supervisor.sinks.metrics import Metrics


class _Waker(Protocol):
    @property
    def pending(self) -> deque[int]: ...


class Daemon(Protocol):
    """What of the daemon (runtime/daemon.py) a request touches."""

    @property
    def waker(self) -> _Waker: ...

    stopping: bool
    state_dir: Path
    policy_paths: list[Path]
    started: float
    dry_run: bool
    supervised: dict[str, Supervised]
    targets: Targets
    leases: Leases | None
    metrics: Metrics
    clock: Callable[[], float]

    def emit(self, *evs: Event) -> None: ...
    def apply(self, item: Supervised, state: tracker.TrackerState, step: tracker.Step) -> None: ...
    def add(self, policy: Policy) -> None: ...
    def save(self, item: Supervised) -> None: ...
    def standby(self, item: Supervised) -> bool: ...


log = logging.getLogger("supervisor.daemon")


def handle_signals(d: Daemon) -> None:
    while d.waker.pending:
        signum = d.waker.pending.popleft()
        if signum in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(signum).name
            log.info("%s: finishing what is in flight, then stopping", name)
            d.stopping = True
        elif signum == signal.SIGHUP:
            reload(d)
        elif signum == signal.SIGUSR1:
            manual_trigger(d)


def _reads_state(item: Supervised | None, policy: Policy) -> bool:
    return item is None or item.policy.target.key != policy.target.key


def manual_trigger(d: Daemon) -> None:
    asked = [requests.Asked(r.name, r.t) for r in trigger.take(d.state_dir)]
    fanout = requests.fan_out(asked, d.started, d.supervised)
    for stale in fanout.stale:
        d.emit(events.TriggerDiscarded(policy=stale.name, requested_at=round(stale.t, 3)))
    for name in fanout.unknown:
        reason = f"no policy named {name!r}; supervised: {', '.join(sorted(d.supervised))}"
        d.emit(events.TriggerRefused(reason=reason))
    for name in fanout.restart:
        item = d.supervised[name]
        standby = d.standby(item)
        step = tracker.on_trigger(item.policy, item.state, d.clock(), d.dry_run, standby)
        d.apply(item, *step)


def reload(d: Daemon) -> None:
    try:
        policies = deployment.load(d.policy_paths)
        running = {
            name: requests.Running(s.policy.target.key, tracker.unfinished(s.state))
            for name, s in d.supervised.items()
        }
        problems = requests.reload_problems(running, [(p.name, p.target.key) for p in policies])
        if problems:
            raise PolicyError(problems)
        # A state file the reload would read (a new policy's, or a new target's) that must be
        # left as it is (a newer format, a read error) refuses the reload, before any change.
        fresh = [p for p in policies if _reads_state(d.supervised.get(p.name), p)]
        try:
            d.targets.check(fresh)
        except StateRefusedError as exc:
            raise PolicyError([str(exc)]) from None
    except PolicyError as exc:
        d.emit(events.ReloadRefused(problems=tuple(exc.problems)))
        return
    wanted = {p.name for p in policies}
    for name in [n for n in d.supervised if n not in wanted]:
        d.save(d.supervised[name])
        removed = d.targets.remove(name)
        if d.leases is not None:
            d.leases.forget(removed.policy)
        d.metrics.forget(name)
    for policy in policies:
        item = d.supervised.get(policy.name)
        if item is None:
            d.add(policy)
            continue
        old = d.targets.reconfigure(item, policy)
        d.apply(item, *tracker.retarget(old, policy, item.state))
    d.emit(events.Reloaded(policies=tuple(sorted(d.supervised))))
