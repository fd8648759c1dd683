"""Poison messages: a message that hangs every worker that runs it.

With `acks_late`, the hung task's message is given back after the restart, the new worker
takes it and hangs again, and the supervisor restarts it again until the budget runs out. With
`[restart] quarantine_after = N`, a task id that was running at N hang restarts in a row of the
same target is not given back at the N-th: its message is parked in a dead-letter list (the
adapter moves it atomically), and the other messages go back as always.

"In a row": the streak of a task id counts the consecutive automatic restarts at which it was
running; a restart at which it was not running ends its streak. A manual restart (a person
asked) neither counts nor ends one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Streaks = Mapping[str, int]  # task id -> consecutive hang restarts it was running at


def to_park(running: Iterable[str], streaks: Streaks, after: int) -> frozenset[str]:
    """The task ids whose messages this restart parks instead of giving back: those running
    now whose streak reaches `after` with this restart (0: never)."""
    if after <= 0:
        return frozenset()
    return frozenset(i for i in running if streaks.get(i, 0) + 1 >= after)


def reason(after: int, target: str) -> str:
    """Why a message was parked, as the dead-letter entry and the audit say it."""
    return f"running at {after} hang restarts of {target} in a row"


def next_streaks(running: Iterable[str], streaks: Streaks, automatic: bool) -> dict[str, int]:
    """The streaks after a restart at which `running` were running."""
    if not automatic:
        return dict(streaks)
    return {i: streaks.get(i, 0) + 1 for i in sorted(set(running))}


ENTRY_FORMAT = 1
KEY_PREFIX = "iti-supervisor:quarantine:"  # + the target's key: one dead-letter list per target


def key_for(target_key: str, broker_prefix: str = "") -> str:
    """The target's dead-letter list. Behind the broker's kombu `global_keyprefix` like
    every key of that install: installs that share one Redis through their prefixes (Dify's
    REDIS_KEY_PREFIX) may name their targets alike."""
    return f"{broker_prefix}{KEY_PREFIX}{target_key}"


@dataclass(frozen=True)
class Entry:
    """One parked message, as the dead-letter list holds it (JSON, versioned): the message
    exactly as kombu keeps it in `unacked` (payload, exchange, routing key), and why it is
    there. The daemon writes it; `supervisor quarantine` reads, requeues and drops it."""

    task_id: str
    name: str
    queue: str | None
    policy: str
    reason: str
    parked_at: float  # epoch seconds
    message: tuple[Any, str, str]  # kombu's (payload, exchange, routing_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ENTRY_FORMAT,
            "task_id": self.task_id,
            "name": self.name,
            "queue": self.queue,
            "policy": self.policy,
            "reason": self.reason,
            "parked_at": self.parked_at,
            "message": list(self.message),
        }

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        if not isinstance(data, dict) or data.get("format") != ENTRY_FORMAT:
            raise ValueError(f"not a quarantine entry of format {ENTRY_FORMAT}")
        payload, exchange, routing_key = data["message"]
        return cls(
            task_id=str(data["task_id"]),
            name=str(data["name"]),
            queue=data["queue"],
            policy=str(data["policy"]),
            reason=str(data["reason"]),
            parked_at=float(data["parked_at"]),
            message=(payload, str(exchange), str(routing_key)),
        )
