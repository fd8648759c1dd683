"""How long each watched queue's oldest message has waited: pure, O(1) per list.

kombu's Redis transport pushes on the left and pops from the right, so the message a worker
takes next from a list is its tail (`LINDEX key -1`), and it is the oldest of that list. A queue
is several lists (its priority steps); its oldest message is the oldest of their tails. The
probe reads an id of each non-empty list's tail (`Sample.heads`); a head has waited at least
since the first sample of the trailing stretch of samples that saw it at the head. That is a
lower bound (the message may have waited before the supervisor first looked), exact to an
interval once the supervisor has watched the queue since it was empty.

A failed sample changes nothing; a sample whose heads were not read (None) forgets them, so a
wait is never claimed across a stretch the supervisor did not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.sample import Sample

Since = tuple[tuple[str, float], ...]  # (head id, first seen at the head), per list of a queue


@dataclass(frozen=True)
class HeadState:
    since: tuple[tuple[str, Since], ...] = ()  # per queue, sorted by queue name


def observe(state: HeadState, sample: Sample) -> tuple[HeadState, Mapping[str, float] | None]:
    """The new state and, per queue of `sample.heads`, how long its oldest message has waited
    (0 for an empty queue); None when the heads were not read."""
    if not sample.ok:
        return state, None
    if sample.heads is None:
        return HeadState(), None
    old = dict(state.since)
    new: list[tuple[str, Since]] = []
    waits: dict[str, float] = {}
    for queue in sorted(sample.heads):
        seen = dict(old.get(queue, ()))
        since = tuple((head, seen.get(head, sample.t)) for head in sample.heads[queue])
        new.append((queue, since))
        waits[queue] = max((sample.t - t for _, t in since), default=0.0)
    return HeadState(tuple(new)), waits


def oldest(
    waits: Mapping[str, float] | None, queues: tuple[str, ...] | None = None
) -> float | None:
    """The longest wait among `queues` (all of them when None); None when not known."""
    if waits is None:
        return None
    chosen = [w for q, w in waits.items() if queues is None or q in queues]
    return max(chosen, default=0.0)
