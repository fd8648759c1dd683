"""The one vocabulary of what the supervisor does and sees: one frozen dataclass per event kind.

An event carries its facts, the policy and target it is about, and whether the supervisor ran in
dry-run. It has one name everywhere: the audit record's `event`, the notification's `event`, the
`event` label of `iti_supervisor_events_total`, and the log line's first word. The pure core
returns events; the sinks render them (sinks/render.py writes the sentence a person reads).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from supervisor.core.outage import Change, Transition
from supervisor.policy import NOTIFY_EVENTS


class EventKind(enum.Enum):
    START = "start"
    START_REFUSED = "start_refused"  # `run` refused its policies: nothing started
    STOP = "stop"
    RELOAD = "reload"
    RELOAD_REFUSED = "reload_refused"
    RESTART = "restart"  # a restart carried out and confirmed
    RESTART_FAILED = "restart_failed"
    RESTART_REFUSED = "restart_refused"  # a due restart had no container left to act on
    DRY_RUN_RESTART = "dry_run_restart"  # what a restart would have done
    RESTART_RESUMED = "restart_resumed"  # a restart left unfinished by a previous run
    RESTART_COMPLETED = "restart_completed"  # the target runs again after an unfinished restart
    START_ERROR_BEGIN = "start_error_begin"  # starting the target after a restart keeps failing
    ESCALATE = "escalate"
    RECOVERY = "recovery"  # the queue is back under the threshold after a restart
    CONSUMING_AGAIN = "consuming_again"  # the restarted workers take tasks again
    TRIGGER_REFUSED = "trigger_refused"
    TRIGGER_DISCARDED = "trigger_discarded"  # a request older than this daemon
    SAMPLE_ERROR_BEGIN = "sample_error_begin"
    SAMPLE_ERROR_END = "sample_error_end"
    DOCKER_ERROR_BEGIN = "docker_error_begin"
    DOCKER_ERROR_END = "docker_error_end"
    STATE_DISCARDED = "state_discarded"
    TARGET_CHANGED = "target_changed"
    TARGET_CONFLICT = "target_conflict"  # a container of the target is another policy's
    INTERNAL_ERROR = "internal_error"
    CANNOT_JUDGE = "cannot_judge"  # no target, no queue or no worker: nothing can be judged
    JUDGING = "judging"  # it can judge again
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
    QUARANTINED = "quarantined"  # a poison message parked instead of given back


# What a person may want pushed to a phone; the policy's [notify] events picks among these.
NOTIFIABLE: tuple[EventKind, ...] = tuple(EventKind(name) for name in NOTIFY_EVENTS)

_ERROR = frozenset(
    {
        EventKind.RESTART_FAILED,
        EventKind.RESTART_REFUSED,
        EventKind.START_ERROR_BEGIN,
        EventKind.ESCALATE,
        EventKind.RELOAD_REFUSED,
        EventKind.START_REFUSED,
        EventKind.SAMPLE_ERROR_BEGIN,
        EventKind.DOCKER_ERROR_BEGIN,
        EventKind.LEASE_ERROR_BEGIN,
        EventKind.STATE_DISCARDED,
        EventKind.INTERNAL_ERROR,
    }
)
_WARNING = frozenset(
    {
        EventKind.RESTART,
        EventKind.QUARANTINED,
        EventKind.LEASE_ACQUIRED,
        EventKind.LEASE_LOST,
        EventKind.DRY_RUN_RESTART,
        EventKind.RESTART_RESUMED,
        EventKind.TRIGGER_REFUSED,
        EventKind.TRIGGER_DISCARDED,
        EventKind.TARGET_CHANGED,
        EventKind.TARGET_CONFLICT,
        EventKind.CANNOT_JUDGE,
        EventKind.PROGRESS_UNKNOWN,
        EventKind.NO_CONSUMER,
        EventKind.NO_BINDINGS,
    }
)


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every event carries. Subclasses add their facts; `kind` names the class."""

    kind: ClassVar[EventKind]
    policy: str | None = None
    target: str | None = None
    dry_run: bool = False

    @property
    def level(self) -> int:
        if self.kind in _ERROR:
            return logging.ERROR
        if self.kind in _WARNING:
            return logging.WARNING
        return logging.INFO

    def facts(self) -> dict[str, Any]:
        """The audit record's details: every fact but the policy (the record has its own key),
        a decision's facts (`why`) inline, and nothing that is None."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "policy" or value is None:
                continue
            if isinstance(value, Why):
                out.update({k: v for k, v in value.as_dict().items() if v is not None})
            else:
                out[f.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, the way JSON and the audit's readers see them."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Why:
    """Why a restart was decided (or escalated): the facts the audit keeps of the decision."""

    reason: str
    trigger: str
    decided_at: float
    run_start: float | None = None
    depths: tuple[tuple[float, int | None], ...] = ()
    streak: int | None = None
    broker: str | None = None
    plan: Mapping[str, Any] | None = None  # core/plan.py's Plan.to_json()
    replicas: tuple[Mapping[str, Any], ...] | None = None  # per-replica restarts: which
    # Per watched queue, how long its oldest message had waited (core/waiting.py), when known.
    oldest_wait: Mapping[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


# -- the supervisor itself -------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    kind = EventKind.START
    policies: tuple[str, ...]
    pid: int


@dataclass(frozen=True, kw_only=True)
class StartRefused(Event):
    kind = EventKind.START_REFUSED
    problems: tuple[str, ...]
    pid: int


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    kind = EventKind.STOP
    pid: int


@dataclass(frozen=True, kw_only=True)
class Reloaded(Event):
    kind = EventKind.RELOAD
    policies: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReloadRefused(Event):
    kind = EventKind.RELOAD_REFUSED
    problems: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class InternalError(Event):
    kind = EventKind.INTERNAL_ERROR
    where: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class StateDiscarded(Event):
    kind = EventKind.STATE_DISCARDED
    reason: str
    kept_as: str


@dataclass(frozen=True, kw_only=True)
class TriggerDiscarded(Event):
    kind = EventKind.TRIGGER_DISCARDED
    requested_at: float
    reason: str = "older than the daemon"


@dataclass(frozen=True, kw_only=True)
class TriggerRefused(Event):
    kind = EventKind.TRIGGER_REFUSED
    reason: str


# -- restarts --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Restarted(Event):
    """A restart carried out: what the executor did, and why it was decided."""

    kind = EventKind.RESTART
    why: Why
    outcome: str
    method: str
    containers: tuple[str, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    started_at: tuple[str, ...] | None = None
    called_at: float | None = None
    by_restart_policy: tuple[str, ...] | None = None
    killed: tuple[str, ...] | None = None
    sigquit: bool = True
    changed: bool = False  # a container was stopped: a failed restart must start it again
    restored: int | None = None
    unacked_left: int | None = None
    restore_error: str | None = None
    service: str | None = None  # a Swarm service's: which tasks, slots and nodes
    tasks: tuple[Mapping[str, Any], ...] | None = None
    new_tasks: tuple[Mapping[str, Any], ...] | None = None
    # What the stopped workers were running (core/evidence.py): None when none was asked.
    hung: tuple[Mapping[str, Any], ...] | None = None
    silent: tuple[str, ...] | None = None  # asked, did not answer: what they ran is unknown
    parked: tuple[str, ...] | None = None  # task ids whose messages were quarantined
    park_error: str | None = None
    stacks: str | None = None  # file in the state directory with the stacks the workers logged


@dataclass(frozen=True, kw_only=True)
class RestartFailed(Restarted):
    kind = EventKind.RESTART_FAILED


@dataclass(frozen=True, kw_only=True)
class DryRunRestart(Event):
    """What a live restart would have touched (in dry-run)."""

    kind = EventKind.DRY_RUN_RESTART
    why: Why
    outcome: str = "dry_run"
    containers: tuple[str, ...] = ()
    error: str | None = None
    service: str | None = None
    tasks: tuple[Mapping[str, Any], ...] | None = None
    # What a live restart would cost, from the same answer it would ask (core/evidence.py):
    # what hung (each task's `comes_back`: lost, or given back), who did not answer, how many
    # reserved messages would come back, which running tasks would be parked as poison.
    hung: tuple[Mapping[str, Any], ...] | None = None
    silent: tuple[str, ...] | None = None
    reserved: int | None = None
    parked: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class Standby(DryRunRestart):
    """The restart a supervisor without the target's lease would have made."""

    kind = EventKind.STANDBY
    outcome: str = "standby"


@dataclass(frozen=True, kw_only=True)
class Quarantined(Event):
    """Poison messages: tasks running at `after` hang restarts in a row of the target, whose
    messages were moved to the dead-letter list `key` instead of being given back."""

    kind = EventKind.QUARANTINED
    target: str
    tasks: tuple[Mapping[str, Any], ...]
    after: int
    key: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RestartRefused(Event):
    kind = EventKind.RESTART_REFUSED
    why: Why
    refused_because: str


@dataclass(frozen=True, kw_only=True)
class Escalated(Event):
    kind = EventKind.ESCALATE
    why: Why


@dataclass(frozen=True, kw_only=True)
class RestartResumed(Event):
    kind = EventKind.RESTART_RESUMED
    decided_at: float
    trigger: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RestartCompleted(Event):
    kind = EventKind.RESTART_COMPLETED
    started: tuple[str, ...]
    running: tuple[str, ...]
    failed_for: float | None = None
    reason: str | None = None  # the start error it overcame


@dataclass(frozen=True, kw_only=True)
class StartErrorBegin(Event):
    kind = EventKind.START_ERROR_BEGIN
    reason: str


@dataclass(frozen=True, kw_only=True)
class Recovery(Event):
    kind = EventKind.RECOVERY
    depth: int
    threshold: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class ConsumingAgain(Event):
    """After a restart, the first sign that the workers take tasks again: the restart's own
    time (`restart_seconds`, in its record too) apart from the workers' start (a stock Dify
    migrates its database first, about 30 s)."""

    kind = EventKind.CONSUMING_AGAIN
    after_decision: float  # seconds from the decision to this sample
    after_restart: float  # seconds from the restart's confirmation to this sample
    restart_seconds: float  # what the restart itself took
    evidence: str  # what showed it: a task started, or the queue fell


# -- what is seen of the target --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TargetChanged(Event):
    kind = EventKind.TARGET_CHANGED
    old_target: str


@dataclass(frozen=True, kw_only=True)
class TargetConflict(Event):
    kind = EventKind.TARGET_CONFLICT
    containers: Mapping[str, str]  # container -> the policy that keeps it ({}: none any more)


@dataclass(frozen=True, kw_only=True)
class CannotJudge(Event):
    """The supervisor watches nothing it can judge, and says why, rather than "not stuck"."""

    kind = EventKind.CANNOT_JUDGE
    reason: str


@dataclass(frozen=True, kw_only=True)
class Judging(Event):
    kind = EventKind.JUDGING
    reason: str  # why it could not, until now


@dataclass(frozen=True, kw_only=True)
class ProgressUnknown(Event):
    kind = EventKind.PROGRESS_UNKNOWN
    reason: str


@dataclass(frozen=True, kw_only=True)
class ProgressKnown(Event):
    kind = EventKind.PROGRESS_KNOWN
    source: str | None
    seconds: float


@dataclass(frozen=True, kw_only=True)
class NoConsumer(Event):
    kind = EventKind.NO_CONSUMER
    queues: tuple[str, ...]  # (): every watched queue has a live consumer again
    broker: str


@dataclass(frozen=True, kw_only=True)
class NoBindings(Event):
    kind = EventKind.NO_BINDINGS
    queues: tuple[str, ...]  # (): bindings found again
    broker: str


@dataclass(frozen=True, kw_only=True)
class QueuesChanged(Event):
    kind = EventKind.QUEUES_CHANGED
    queues: tuple[str, ...]
    previous: tuple[str, ...]


# -- outages: something the supervisor needs stopped answering, and answers again -------------


@dataclass(frozen=True, kw_only=True)
class OutageBegin(Event):
    reason: str  # the first error


@dataclass(frozen=True, kw_only=True)
class OutageEnd(Event):
    reason: str  # the error the outage began with
    seconds: float


@dataclass(frozen=True, kw_only=True)
class SampleErrorBegin(OutageBegin):
    kind = EventKind.SAMPLE_ERROR_BEGIN


@dataclass(frozen=True, kw_only=True)
class SampleErrorEnd(OutageEnd):
    kind = EventKind.SAMPLE_ERROR_END


@dataclass(frozen=True, kw_only=True)
class DockerErrorBegin(OutageBegin):
    kind = EventKind.DOCKER_ERROR_BEGIN


@dataclass(frozen=True, kw_only=True)
class DockerErrorEnd(OutageEnd):
    kind = EventKind.DOCKER_ERROR_END


@dataclass(frozen=True, kw_only=True)
class LeaseErrorBegin(OutageBegin):
    kind = EventKind.LEASE_ERROR_BEGIN


@dataclass(frozen=True, kw_only=True)
class LeaseErrorEnd(OutageEnd):
    kind = EventKind.LEASE_ERROR_END


@dataclass(frozen=True, kw_only=True)
class LeaseAcquired(Event):
    kind = EventKind.LEASE_ACQUIRED
    holder: str | None
    previous: str | None = None


@dataclass(frozen=True, kw_only=True)
class LeaseLost(Event):
    kind = EventKind.LEASE_LOST
    holder: str | None


def outage(
    change: Transition | None,
    kinds: tuple[type[OutageBegin], type[OutageEnd]],
    policy: str | None,
    target: str | None = None,
) -> tuple[Event, ...]:
    """The event of an outage's begin or end, if any."""
    if change is None:
        return ()
    if change.change is Change.BEGAN:
        return (kinds[0](policy=policy, target=target, reason=change.error),)
    end = kinds[1](
        policy=policy, target=target, reason=change.error, seconds=round(change.seconds, 3)
    )
    return (end,)


def _kinds(cls: type[Event]) -> list[type[Event]]:
    found = [cls] if "kind" in vars(cls) else []
    for sub in cls.__subclasses__():
        found += _kinds(sub)
    return found


# Every event class, one per kind (tests/test_events.py checks that each kind has one).
EVENT_CLASSES: tuple[type[Event], ...] = tuple(_kinds(Event))
