"""Which reserved messages of a SIGKILLed worker to give back, read per container after its
stop is confirmed (docs/design.md, "Restarts that lose nothing").

A Celery worker on Redis reserves messages into kombu's `unacked` hash; a cold shutdown gives
them back, a SIGKILL does not, and kombu itself restores them only after the visibility timeout
(1 hour by default). A message keeps its delivery tag for life: given back and delivered again
(to the restarted worker, a sibling), it sits in `unacked` under the same tag with a new
`unacked_index` score. So an entry is known by its tag *and* its score, compared as values
(never as clocks: the score is the consuming host's `time()`).

What one killed container's entries are, read while it is stopped:
- when no other worker that may consume the queues runs at that moment (no sibling outside the
  plan, no other container of the restart, the container not started again meanwhile), every
  entry of the watched queues: nobody alive can hold them (this covers a worker that could not
  answer, and messages kombu moved to `unacked` that Celery had not reserved yet);
- otherwise only the entries whose score has not changed since the supervisor read `unacked`
  just before the restart (`before`), the same delivery, so held by the worker it was delivered
  to then: those whose task ids this container's workers reported as reserved or active (that
  worker is dead now); and every such entry once no worker that ran before the restart runs
  any more (`unclaimed`: the last container of the restart, and no consumer outside it), which
  also covers what the restarted workers could not or did not report. A fresh delivery (a new
  tag, or an old tag with a new score) may be held by a worker running now: never taken.

What is picked is given back only where the entry is still there with the same score
(adapters/unacked_store.py, in a WATCH transaction): never a message redelivered since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Held:
    """One entry of kombu's unacked hash."""

    tag: str  # the delivery tag: the hash field
    task_id: str | None
    queue: str | None  # the queue it was delivered from, where known
    at: float | None = None  # kombu's unacked_index score: which delivery of the tag this is


def scores(entries: Iterable[Held]) -> dict[str, float | None]:
    """Each tag's score, to tell later whether an entry is still the same delivery."""
    return {h.tag: h.at for h in entries}


def to_give_back(
    read: Iterable[Held],
    queues: Iterable[str],
    held_ids: frozenset[str] | None,
    before: Mapping[str, float | None],
    others_running: bool,
    *,
    unclaimed: bool = False,
) -> tuple[Held, ...]:
    """The entries of `read` (unacked, read while the killed container was stopped) to give
    back. `held_ids`: the task ids its workers reported (None: one did not answer); `before`:
    each tag's score when they reported it; `others_running`: a worker that may consume the
    queues ran while `read` was read (then only deliveries unchanged since `before` may go);
    `unclaimed`: none of the workers that held entries before the restart runs now."""
    watched = set(queues)
    mine = [h for h in read if h.queue in watched]
    if not others_running:
        return tuple(mine)
    unchanged = [h for h in mine if h.tag in before and before[h.tag] == h.at]
    if unclaimed:
        return tuple(unchanged)
    if held_ids is None:
        return ()
    return tuple(h for h in unchanged if h.task_id in held_ids)


def to_restore(
    held: Iterable[Held],
    queues: Iterable[str],
    held_ids: frozenset[str] | None,
    others_consume: bool,
) -> tuple[str, ...]:
    """The tags `to_give_back` picks from one read where nothing has changed since the
    workers reported (`before` is the read itself): for a read made with the worker known
    dead, e.g. the integration tests."""
    entries = list(held)
    picked = to_give_back(entries, queues, held_ids, scores(entries), others_consume)
    return tuple(h.tag for h in picked)
