"""The daemon's side of the leases (core/lease.py), for several supervisors of the same
policies: one lease per target, tried and renewed from the loop, the shared history read on a
takeover and written by the holder, and the fencing check right before a restart.

The shared history is read by other hosts, whose stepless clocks share nothing with this one's:
it is shared on the wall clock and brought back onto this supervisor's clock (never later than
now) when adopted. The leases' own timing is on the monotonic clock (core/lease.py)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from supervisor import clock
from supervisor.clock import Here
from supervisor.core import events as ev
from supervisor.core import lease, tracker
from supervisor.core.events import Event
from supervisor.core.lease import Answer, Lease
from supervisor.core.tracker import TrackerState
from supervisor.errors import StateRefusedError
from supervisor.policy import Broker, Policy
from supervisor.runtime.state_store import (
    Stored,
    decode,
    encode,
    in_frame,
    known_format,
    on_wall,
)

log = logging.getLogger("supervisor.lease")


class Store(Protocol):
    def hold(
        self, target: str, token: str, period: float
    ) -> tuple[Answer | None, str | None, str | None]: ...
    def still_mine(self, target: str, token: str, period: float) -> str | None: ...
    def release(self, target: str, token: str) -> None: ...
    def load(self, target: str) -> tuple[dict[str, Any] | None, str | None]: ...
    def save(self, target: str, data: dict[str, Any]) -> str | None: ...
    def close(self) -> None: ...


def _lease_store(broker: Broker) -> Store:
    from supervisor.adapters.lease_store import LeaseStore

    return LeaseStore(broker)


def new_token() -> str:
    """Who holds a lease, as a person reads it in the audit: host, pid and a nonce."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


class NewerSharedStateError(Exception):
    """The target's shared state was written by a newer supervisor (a rolling upgrade)."""


class Leases:
    def __init__(
        self,
        period: float,
        token: str | None = None,
        store_factory: Callable[[Broker], Store] = _lease_store,
        here: Callable[[], Here] | None = None,
    ) -> None:
        self.period = period
        self.here = here or clock.process().here
        self.token = token or new_token()
        self._store_factory = store_factory
        self._stores: dict[str, Store] = {}  # by broker URL and key prefix
        self._leases: dict[str, Lease] = {}  # by target key: a lease is the target's
        self._refused: dict[str, str] = {}  # target key -> why its shared state is not ours

    def _store(self, policy: Policy) -> Store:
        key = f"{policy.broker.key_prefix} {policy.broker.url}"  # the prefix is in the keys
        if key not in self._stores:
            self._stores[key] = self._store_factory(policy.broker)
        return self._stores[key]

    def refresh(
        self, policy: Policy, now: float, force: bool = False
    ) -> tuple[tuple[Event, ...], bool]:
        """Try or renew the policy's lease when due: (its events, whether it was taken over)."""
        key = policy.target.key
        current = self._leases.get(key, Lease())
        if not force and not lease.due(current, now):
            return (), False
        answer, holder, error = self._store(policy).hold(policy.target.key, self.token, self.period)
        current, evs, took = lease.observe(
            current,
            answer,
            holder,
            error,
            sent=now,
            period=self.period,
            policy=policy.name,
            target=policy.target.describe(),
        )
        self._leases[key] = current
        return evs, took

    def holds(self, policy: Policy, now: float) -> bool:
        return lease.holds(self._leases.get(policy.target.key, Lease()), now)

    def next_try(self) -> float | None:
        return min((x.next_try for x in self._leases.values()), default=None)

    def shared(self, policy: Policy) -> tuple[Stored | None, str | None]:
        """The target's state as the holders saved it in Redis: (it, or None; error)."""
        data, error = self._store(policy).load(policy.target.key)
        if error is not None or data is None:
            return None, error
        try:
            known_format(Path(f"redis:{policy.target.key}"), data)  # a newer one is not ours
            stored = decode(data)
        except StateRefusedError as exc:
            raise NewerSharedStateError(str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"the shared state of {policy.target.key} is invalid: {exc}"
        if stored.target not in (None, policy.target.key):
            return None, None
        return in_frame(stored, None, self.here()), None

    def share(self, policy: Policy, state: TrackerState) -> str | None:
        """The holder saves the target's state where the others can read it."""
        wall = on_wall(state, self.here())
        data = encode(policy.name, policy.target.key, wall)
        return self._store(policy).save(policy.target.key, data)

    def fence(self, policy: Policy) -> str | None:
        """Right before a container is changed: None when the lease is still this
        supervisor's, on the master that Redis has now."""
        return self._store(policy).still_mine(policy.target.key, self.token, self.period)

    def forget(self, policy: Policy) -> None:
        if self._leases.pop(policy.target.key, Lease()).holding:
            self._store(policy).release(policy.target.key, self.token)

    def close(self, policies: list[Policy]) -> None:
        """A clean stop: give back every lease held, so that another takes over at once."""
        for policy in policies:
            self.forget(policy)
        for store in self._stores.values():
            store.close()

    def refresh_target(
        self, policy: Policy, state: TrackerState, now: float, force: bool = False
    ) -> tuple[tuple[Event, ...], TrackerState | None]:
        """Try or renew the target's lease: the events, and on a takeover the state to go on
        from, which adopts the history the holders shared (cooldown, backoff, budget, an
        unfinished restart) instead of the one this supervisor made up while standing by."""
        evs, took_over = self.refresh(policy, now, force)
        if not took_over:
            return evs, None
        try:
            shared, error = self.shared(policy)
        except NewerSharedStateError as exc:
            # A newer supervisor's history (a rolling upgrade): never replaced by a blank one.
            # The lease goes back at once, and this one stands by, saying so once.
            self.forget(policy)
            said = self._refused.get(policy.target.key) == str(exc)
            self._refused[policy.target.key] = str(exc)
            holder = f"none: standing by, the shared state is a newer supervisor's ({exc})"
            lost = ev.LeaseLost(policy=policy.name, target=policy.target.describe(), holder=holder)
            return (*evs, *(() if said else (lost,))), None
        self._refused.pop(policy.target.key, None)
        if error is not None:
            log.warning("%s: shared state: %s", policy.name, error)
        history = shared.history if shared is not None else None
        intent = shared.intent if shared is not None else None
        return evs, tracker.adopt(state, history, intent)

    def share_if_held(self, policy: Policy, state: TrackerState, now: float) -> None:
        """The holder's saved state, shared where a standby taking over reads it."""
        if self.holds(policy, now):
            error = self.share(policy, state)
            if error is not None:
                log.warning("%s: cannot share the restart history in Redis: %s", policy.name, error)
