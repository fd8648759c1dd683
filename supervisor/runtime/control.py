"""What a person asks of the running daemon, by signal: stop (SIGTERM, SIGINT), reload the
policies (SIGHUP), restart now (SIGUSR1: every policy; SIGUSR2: the requests `supervisor
trigger` left). Which policies a trigger
restarts and whether a reload may replace the running policies are pure rules
(core/requests.py); this only carries them out on the daemon."""

from __future__ import annotations

import logging
import signal
from collections import deque
from pathlib import Path
from typing import Protocol

from supervisor import deployment
from supervisor.clock import Clock
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
    clock: Clock
    state_errors: dict[str, str]  # per target: why its state file cannot be written

    def emit(self, *evs: Event) -> None: ...
    def apply(self, item: Supervised, state: tracker.TrackerState, step: tracker.Step) -> None: ...
    def add(self, policy: Policy) -> None: ...
    def save(self, item: Supervised) -> str | None: ...
    def standby(self, item: Supervised) -> bool: ...


log = logging.getLogger("supervisor.daemon")


def handle_signals(d: Daemon) -> None:
    """Every signal waiting, in order; the manual triggers of the pass together, once, after a
    reload they came with (core/requests.py)."""
    plain = asked = False
    while d.waker.pending:
        signum = d.waker.pending.popleft()
        if signum in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(signum).name
            log.info("%s: finishing what is in flight, then stopping", name)
            d.stopping = True
        elif signum == signal.SIGHUP:
            reload(d)
        elif signum == signal.SIGUSR1:
            plain = True
        elif signum == signal.SIGUSR2:
            asked = True
    if plain or asked:
        manual_trigger(d, plain=plain, asked=asked)


def manual_trigger(d: Daemon, *, plain: bool = False, asked: bool = True) -> None:
    """`plain`: a SIGUSR1 came, every policy; `asked`: a SIGUSR2 came, the requests waiting
    are taken (once for every SIGUSR2 of the pass)."""
    taken = trigger.take(d.state_dir, d.clock.here()) if asked else []
    requests_made = [requests.Asked(r.name, r.t) for r in taken]
    fanout = requests.fan_out(requests_made, d.started, d.supervised, plain=plain)
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
    """The policies read again and put in place of the running ones, matched by target
    (core/requests.py `reload_plan`): all of it, or nothing when a problem is found."""
    try:
        policies = deployment.load(d.policy_paths)
        running = {
            name: requests.Running(s.policy.target.key, tracker.unfinished(s.state))
            for name, s in d.supervised.items()
        }
        plan = requests.reload_plan(running, [(p.name, p.target.key) for p in policies])
        if plan.problems:
            raise PolicyError(list(plan.problems))
        # A state file the reload would read (a new target's) that must be left as it is (a
        # newer format, a read error) refuses the reload, before any change.
        try:
            d.targets.check([p for p in policies if p.name in plan.add])
        except StateRefusedError as exc:
            raise PolicyError([str(exc)]) from None
    except PolicyError as exc:
        d.emit(events.ReloadRefused(problems=tuple(exc.problems)))
        return
    by_name = {p.name: p for p in policies}
    for name in plan.remove:  # saved first: a target given up keeps its history on disk
        d.save(d.supervised[name])
        removed = d.targets.remove(name)
        d.state_errors.pop(removed.policy.target.key, None)  # not supervised: not unhealthy
        if d.leases is not None:
            d.leases.forget(removed.policy)
        d.metrics.forget(name)
    for old_name in d.targets.rename(dict(plan.keep)):
        d.metrics.forget(old_name)
    for _, new_name in plan.keep:
        item = d.supervised[new_name]
        old = d.targets.reconfigure(item, by_name[new_name])
        d.apply(item, tracker.reconfigure(old, item.policy, item.state), tracker.Step())
    moved = dict(plan.moved)
    for name in plan.add:
        policy = by_name[name]
        if name in moved:  # from the new target's own saved state, never a blank one
            d.emit(tracker.target_changed(policy, moved[name]))
        d.add(policy)
    d.emit(events.Reloaded(policies=tuple(sorted(d.supervised))))
