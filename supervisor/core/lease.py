"""Whether this supervisor may act for a target, when several supervise the same policies.

They coordinate through one lease per target in the broker's Redis (`SET key token NX PX`,
renewed by its holder every third of the period, released on a clean stop). Only the holder
restarts; the others keep sampling and deciding, and audit what they would have done as
`standby`. This module is the pure rule: what an answer of Redis (or its silence) means, and
until when the lease may be relied on. The Redis calls are in adapters/lease_store.py.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from supervisor.core import events as ev
from supervisor.core import outage
from supervisor.core.events import Event
from supervisor.core.outage import Outage

RENEW_EVERY = 1 / 3  # of the period: two renewals may fail before the lease lapses
# Of the period, kept back from our view of the expiry: the server counts PX from when it got
# the command, after we sent it, so `sent + period` is already a lower bound; the margin covers
# a slow loop between the check and the act.
MARGIN = 0.2


class Answer(enum.Enum):
    ACQUIRED = "acquired"  # it was free: ours now
    RENEWED = "renewed"  # it was ours, and still is
    HELD = "held"  # another supervisor holds it


@dataclass(frozen=True)
class Lease:
    holding: bool = False
    until: float = 0.0  # monotonic time until which holding may be relied on
    holder: str | None = None  # the token of the holder last seen (ours when holding)
    next_try: float = 0.0  # monotonic
    redis: Outage = field(default_factory=Outage)  # Redis not answering the lease's calls


def holds(lease: Lease, now: float) -> bool:
    """May this supervisor act for the target now?"""
    return lease.holding and now < lease.until


def due(lease: Lease, now: float) -> bool:
    return now >= lease.next_try


def observe(
    lease: Lease,
    answer: Answer | None,
    holder: str | None,
    error: str | None,
    *,
    sent: float,
    period: float,
    policy: str,
    target: str,
) -> tuple[Lease, tuple[Event, ...], bool]:
    """The lease after one try that began at `sent` (monotonic): `answer` and the holder it
    reports, or the error that kept Redis from answering. Returns the new lease, its events,
    and whether this supervisor just took the lease over (then it adopts the shared history)."""
    redis, change = outage.observe(lease.redis, error, sent)
    evs = list(ev.outage(change, (ev.LeaseErrorBegin, ev.LeaseErrorEnd), policy, target))
    after = replace(lease, redis=redis, next_try=sent + period * RENEW_EVERY)
    if answer is None:  # not knowing whether it holds, it does not act
        return replace(after, holding=False, until=0.0), tuple(evs), False
    if answer is Answer.HELD:
        if lease.holding:
            evs.append(ev.LeaseLost(policy=policy, target=target, holder=holder))
        return replace(after, holding=False, until=0.0, holder=holder), tuple(evs), False
    took_over = not lease.holding
    if took_over:
        evs.append(
            ev.LeaseAcquired(policy=policy, target=target, holder=holder, previous=lease.holder)
        )
    until = sent + period * (1 - MARGIN)
    return replace(after, holding=True, until=until, holder=holder), tuple(evs), took_over
