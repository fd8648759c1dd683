"""Which reserved messages to give back after a worker was killed.

A Celery worker on Redis reserves messages into kombu's `unacked` hash; a cold shutdown gives
them back, a SIGKILL does not, and kombu itself restores them only after the visibility timeout
(1 hour by default). After a restart that had to SIGKILL, the supervisor gives back at once the
messages the killed worker held, and no one else's: those whose task ids the worker reported as
reserved or active just before the kill; and, when no other live worker consumes the policy's
queues, every message of those queues delivered before the worker stopped (then nobody alive
can be holding them: this also covers a worker that could not answer, and messages kombu had
already moved to `unacked` that Celery had not yet reserved, which `reserved()` does not list).
Messages delivered after the stop belong to the restarted worker and are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Held:
    """One entry of kombu's unacked hash."""

    tag: str  # the delivery tag: the hash field
    task_id: str | None
    queue: str | None  # the queue it was delivered from, where known
    at: float | None = None  # when it was delivered (kombu's unacked_index score)


def to_restore(
    held: Iterable[Held],
    queues: Iterable[str],
    held_ids: frozenset[str] | None,
    others_consume: bool,
    stopped_at: float | None = None,
) -> tuple[str, ...]:
    """The delivery tags to give back. `held_ids`: the task ids the killed worker reported
    (None: it did not answer); `others_consume`: another live worker consumes the queues;
    `stopped_at`: when the killed worker was seen stopped (later deliveries are not its)."""
    watched = set(queues)
    mine = [
        h
        for h in held
        if h.queue in watched and (stopped_at is None or h.at is None or h.at < stopped_at)
    ]
    return tuple(
        h.tag
        for h in mine
        if (held_ids is not None and h.task_id in held_ids) or not others_consume
    )
