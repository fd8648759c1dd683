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
    INTERNAL_ERROR = "internal_error"
    PROGRESS_UNKNOWN = "progress_unknown"  # the depth rule decides alone: busy may look stuck
    PROGRESS_KNOWN = "progress_known"


_WARNING = {
    EventKind.RESTART,
    EventKind.DRY_RUN_RESTART,
    EventKind.RESTART_RESUMED,
    EventKind.TRIGGER_REFUSED,
    EventKind.TRIGGER_DISCARDED,
    EventKind.TARGET_CHANGED,
    EventKind.PROGRESS_UNKNOWN,
}
_ERROR = {
    EventKind.RESTART_FAILED,
    EventKind.START_ERROR_BEGIN,
    EventKind.ESCALATE,
    EventKind.RELOAD_REFUSED,
    EventKind.SAMPLE_ERROR_BEGIN,
    EventKind.DOCKER_ERROR_BEGIN,
    EventKind.STATE_DISCARDED,
    EventKind.INTERNAL_ERROR,
}

# What a person may want pushed to a phone; the policy's [notify] events picks among these.
NOTIFIABLE: tuple[EventKind, ...] = (
    EventKind.RESTART,
    EventKind.RESTART_FAILED,
    EventKind.DRY_RUN_RESTART,
    EventKind.RESTART_RESUMED,
    EventKind.RESTART_COMPLETED,
    EventKind.START_ERROR_BEGIN,
    EventKind.ESCALATE,
    EventKind.RECOVERY,
    EventKind.INTERNAL_ERROR,
)


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
