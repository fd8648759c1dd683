"""The one vocabulary of what the supervisor does and sees.

An event has one name everywhere: the audit record's `event`, the notification's `event`, the
`event` label of `iti_supervisor_events_total`, and the log line's first word. The pure core
returns events; the sinks (audit, log, metrics, notifications) only render them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core.outage import Change, Transition
from supervisor.policy import NOTIFY_EVENTS


class EventKind(enum.Enum):
    START = "start"
    STOP = "stop"
    RELOAD = "reload"
    RELOAD_REFUSED = "reload_refused"
    RESTART = "restart"  # a restart carried out and confirmed
    RESTART_FAILED = "restart_failed"
    DRY_RUN_RESTART = "dry_run_restart"  # what a restart would have done
    RESTART_RESUMED = "restart_resumed"  # a restart left unfinished by a previous run
    RESTART_COMPLETED = "restart_completed"  # the target runs again after an unfinished restart
    START_ERROR_BEGIN = "start_error_begin"  # starting the target after a restart keeps failing
    ESCALATE = "escalate"
    RECOVERY = "recovery"  # the queue is back under the threshold after a restart
    TRIGGER_REFUSED = "trigger_refused"
    TRIGGER_DISCARDED = "trigger_discarded"  # a request older than this daemon
    SAMPLE_ERROR_BEGIN = "sample_error_begin"
    SAMPLE_ERROR_END = "sample_error_end"
    DOCKER_ERROR_BEGIN = "docker_error_begin"
    DOCKER_ERROR_END = "docker_error_end"
    STATE_DISCARDED = "state_discarded"
    TARGET_CHANGED = "target_changed"
    TARGET_CONFLICT = "target_conflict"  # a container of the target is another policy's
    RESTART_REFUSED = "restart_refused"  # a due restart had no container left to act on
    INTERNAL_ERROR = "internal_error"
    PROGRESS_UNKNOWN = "progress_unknown"  # the depth rule decides alone: busy may look stuck
    PROGRESS_KNOWN = "progress_known"
    NO_CONSUMER = "no_consumer"  # `queues`: those no live worker consumes ([]: all consumed)
    QUEUES_CHANGED = "queues_changed"  # discover_queues: the target's workers' queues changed
    NO_BINDINGS = "no_bindings"  # `queues`: none bound on this database ([]: bound again)
    # Several supervisors, one lease per target in the broker's Redis (core/lease.py):
    LEASE_ACQUIRED = "lease_acquired"  # this supervisor acts for the target from now on
    LEASE_LOST = "lease_lost"  # another holds it: this one only decides, as standby
    LEASE_ERROR_BEGIN = "lease_error_begin"  # Redis does not answer: not acting, not knowing
    LEASE_ERROR_END = "lease_error_end"
    STANDBY = "standby"  # the restart this supervisor would have made, had it held the lease


_WARNING = {
    EventKind.RESTART,
    EventKind.LEASE_ACQUIRED,
    EventKind.LEASE_LOST,
    EventKind.DRY_RUN_RESTART,
    EventKind.RESTART_RESUMED,
    EventKind.TRIGGER_REFUSED,
    EventKind.TRIGGER_DISCARDED,
    EventKind.TARGET_CHANGED,
    EventKind.PROGRESS_UNKNOWN,
    EventKind.TARGET_CONFLICT,
    EventKind.NO_CONSUMER,
    EventKind.NO_BINDINGS,
}
_ERROR = {
    EventKind.RESTART_FAILED,
    EventKind.RESTART_REFUSED,
    EventKind.START_ERROR_BEGIN,
    EventKind.ESCALATE,
    EventKind.RELOAD_REFUSED,
    EventKind.SAMPLE_ERROR_BEGIN,
    EventKind.DOCKER_ERROR_BEGIN,
    EventKind.LEASE_ERROR_BEGIN,
    EventKind.STATE_DISCARDED,
    EventKind.INTERNAL_ERROR,
}

# What a person may want pushed to a phone; the policy's [notify] events picks among these.
NOTIFIABLE: tuple[EventKind, ...] = tuple(EventKind(name) for name in NOTIFY_EVENTS)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    policy: str | None
    text: str  # one sentence for a person: the log line and the notification
    fields: Mapping[str, Any] = field(default_factory=dict)  # the audit record's details

    @property
    def level(self) -> int:
        if self.kind in _ERROR:
            return logging.ERROR
        if self.kind in _WARNING:
            return logging.WARNING
        return logging.INFO


def event(kind: EventKind, policy: str | None, text: str, **fields: Any) -> Event:
    return Event(kind, policy, text, {k: v for k, v in fields.items() if v is not None})


# -- the events of the supervisor itself (not of one target's restarts) ---------------------


def started(policies: list[str], dry_run: bool, pid: int) -> Event:
    mode = " (dry-run: no Docker call that changes anything)" if dry_run else ""
    text = f"supervising {', '.join(sorted(policies))}{mode}"
    return event(EventKind.START, None, text, dry_run=dry_run, pid=pid, policies=sorted(policies))


def stopped(pid: int) -> Event:
    return event(EventKind.STOP, None, "stopped", pid=pid)


def internal_error(policy: str | None, where: str, error: str) -> Event:
    return event(
        EventKind.INTERNAL_ERROR,
        policy,
        f"internal error in {where}: {error}",
        reason=error,
        where=where,
    )


def reloaded(policies: list[str]) -> Event:
    names = sorted(policies)
    return event(EventKind.RELOAD, None, f"reloaded: {', '.join(names)}", policies=names)


def reload_refused(problems: list[str]) -> Event:
    text = "reload refused, the running policies stay: " + "; ".join(problems)
    return event(EventKind.RELOAD_REFUSED, None, text, problems=problems)


def trigger_discarded(name: str | None, requested_at: float) -> Event:
    text = (
        f"a trigger request for {name or 'every policy'} made before this supervisor started "
        "was discarded, not carried out"
    )
    return event(
        EventKind.TRIGGER_DISCARDED,
        name,
        text,
        requested_at=round(requested_at, 3),
        reason="older than the daemon",
    )


def unknown_policy(name: str, supervised: list[str]) -> Event:
    reason = f"no policy named {name!r}; supervised: {', '.join(sorted(supervised))}"
    return event(
        EventKind.TRIGGER_REFUSED, None, f"manual trigger refused: {reason}", reason=reason
    )


def state_discarded(policy: str, error: str, kept_as: str) -> Event:
    return event(
        EventKind.STATE_DISCARDED,
        policy,
        f"{error}; moved to {kept_as}, starting with an empty restart history",
        reason=error,
        kept_as=kept_as,
    )


def outage(
    change: Transition | None,
    kinds: tuple[EventKind, EventKind],
    policy: str | None,
    failing: str,
    back: str,
) -> tuple[Event, ...]:
    """The event of an outage's begin (`failing: error`) or end (`back after Ns`), if any."""
    if change is None:
        return ()
    if change.change is Change.BEGAN:
        return (event(kinds[0], policy, f"{failing}: {change.error}", reason=change.error),)
    text = f"{back} after {change.seconds:.1f}s"
    return (event(kinds[1], policy, text, reason=change.error, seconds=round(change.seconds, 3)),)
