"""Which reserved messages to give back after a worker was killed.

A Celery worker on Redis reserves messages into kombu's `unacked` hash; a cold shutdown gives
them back, a SIGKILL does not, and kombu itself restores them only after the visibility timeout
(1 hour by default). After a restart that had to SIGKILL, the supervisor gives back at once the
messages the killed worker held, and no one else's: those whose task ids the worker reported as
reserved or active just before the kill; or, when it could not answer (a blocked event loop),
every message of the policy's queues, but only when no other live worker consumes those queues
(then nobody else can be holding them).
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


def to_restore(
    held: Iterable[Held],
    queues: Iterable[str],
    held_ids: frozenset[str] | None,
    others_consume: bool,
) -> tuple[str, ...]:
    """The delivery tags to give back. `held_ids`: the task ids the killed worker reported
    (None: it did not answer); `others_consume`: another live worker consumes the queues."""
    watched = set(queues)
    mine = [h for h in held if h.queue in watched]
    if held_ids is not None:
        return tuple(h.tag for h in mine if h.task_id in held_ids)
    if others_consume:
        return ()
    return tuple(h.tag for h in mine)
