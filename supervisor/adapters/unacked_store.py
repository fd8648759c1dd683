"""kombu's unacked hash on the broker: read it, and give entries back to their queues the way
kombu's own restore does it: one transaction per delivery tag, WATCHing `unacked` and
`unacked_index`, that takes the entry out of both and pushes the message, marked redelivered,
onto its queue's priority list. kombu's `restore_by_tag` is a WATCH transaction on `unacked`
too, so whichever of the two commits second finds the entry gone and pushes nothing: no lock is
needed, and none is taken. kombu's `unacked_mutex` only keeps kombu's workers from sweeping at
once; the supervisor never writes it, and its ACL users may not (deploy/redis/acl.txt), so
nobody holding their password can keep kombu's own restore from running. `give_back` does so
only for an entry that is still the delivery that was read (same tag, same `unacked_index`
score): a message given back and delivered again since keeps its tag, and is never taken from
its new holder."""

from __future__ import annotations

import dataclasses
import json
from bisect import bisect
from dataclasses import dataclass
from typing import Any

import redis

from supervisor.adapters.redis_probe import client_for, follow_master
from supervisor.core import quarantine
from supervisor.core.unacked import Held
from supervisor.policy import Broker

MUTEX_KEY = "unacked_mutex"  # kombu's Channel.unacked_mutex_key: never written here
SEPARATOR = "\x06\x16"  # kombu's Redis binding separator


@dataclass(frozen=True)
class Restored:
    count: int
    left: int | None  # entries still in unacked afterwards
    error: str | None = None


@dataclass(frozen=True)
class Parked:
    task_ids: tuple[str, ...]  # those moved to the dead-letter list
    key: str
    error: str | None = None


class UnackedStore:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._client = client_for(broker)

    def close(self) -> None:
        self._client.close()

    def held(self) -> list[Held]:
        follow_master(self._client)  # after a failover, the new master's unacked hash
        raw = self._client.hgetall(self._broker.unacked_key)
        index: list[tuple[bytes, float]] = self._client.zrange(  # type: ignore[assignment]
            self._broker.unacked_index_key, 0, -1, withscores=True
        )
        delivered = {t.decode(): float(score) for t, score in index}
        out = []
        for field, value in raw.items():
            tag = field.decode() if isinstance(field, bytes) else str(field)
            try:
                payload, exchange, routing_key = json.loads(value)
                task_id = (payload.get("headers") or {}).get("id")
            except (ValueError, TypeError, AttributeError):
                continue
            queue = self._queue_of(exchange, routing_key)
            out.append(Held(tag, task_id, queue, delivered.get(tag)))
        return out

    def left(self) -> int | None:
        """Entries in unacked now; None when Redis cannot tell."""
        try:
            return int(self._client.hlen(self._broker.unacked_key))
        except redis.RedisError:
            return None

    def restore(self, tags: tuple[str, ...]) -> Restored:
        """Give the entries back; never raises for a Redis fault (an ACL refusal included)."""
        if not tags:
            return Restored(0, self.left())
        count = 0
        try:
            for tag in tags:
                count += self._restore_one(tag)
        except redis.RedisError as exc:
            return Restored(count, self.left(), f"{type(exc).__name__}: {exc}")
        return Restored(count, self.left())

    def give_back(self, entries: tuple[Held, ...]) -> Restored:
        """Give back each entry that is still the one read: present under its tag with the
        same unacked_index score, checked in the transaction that restores it. Never raises
        for a Redis fault."""
        if not entries:
            return Restored(0, self.left())
        count = 0
        try:
            for entry in entries:
                count += self._restore_one(entry.tag, same_as=entry)
        except redis.RedisError as exc:
            return Restored(count, self.left(), f"{type(exc).__name__}: {exc}")
        return Restored(count, self.left())

    def park(self, entries: dict[str, quarantine.Entry], key: str) -> Parked:
        """Move the messages of these task ids from `unacked` to the dead-letter list `key`,
        each in one transaction WATCHing `unacked` (so neither kombu's restore nor a worker's cold
        shutdown can give it back meanwhile). An entry's `message` is filled in
        from unacked. Never raises for a Redis fault."""
        done: list[str] = []
        try:
            by_id = {h.task_id: h.tag for h in self.held() if h.task_id in entries}
            for task_id, entry in entries.items():
                tag = by_id.get(task_id)
                if tag is not None and self._park_one(tag, entry, key):
                    done.append(task_id)
        except redis.RedisError as exc:
            return Parked(tuple(done), key, f"{type(exc).__name__}: {exc}")
        missing = sorted(set(entries) - set(done))
        error = (
            f"not in unacked: {', '.join(missing)} (acknowledged early: lost with the restart)"
            if missing
            else None
        )
        return Parked(tuple(done), key, error)

    def _park_one(self, tag: str, entry: quarantine.Entry, key: str) -> bool:
        unacked, index = self._broker.unacked_key, self._broker.unacked_index_key
        parked = False

        def transaction(pipe: Any) -> None:
            nonlocal parked
            raw = pipe.hget(unacked, tag)
            pipe.multi()
            parked = False
            if raw is None:
                return
            payload, exchange, routing_key = json.loads(raw)
            kept = dataclasses.replace(entry, message=(payload, exchange, routing_key))
            pipe.zrem(index, tag)
            pipe.hdel(unacked, tag)
            pipe.rpush(key, json.dumps(kept.to_json()))
            parked = True

        self._client.transaction(transaction, unacked)
        return parked

    def requeue(self, key: str, task_id: str) -> quarantine.Entry | None:
        """Put a parked message back on its queue, as kombu's restore delivers it (next to be
        taken), and out of the dead-letter list, in one transaction."""
        return self._take(key, task_id, requeue=True)

    def drop(self, key: str, task_id: str) -> quarantine.Entry | None:
        return self._take(key, task_id, requeue=False)

    def parked(self, key: str) -> list[tuple[quarantine.Entry | None, bytes]]:
        """The dead-letter list: each entry (None when it cannot be read) and its raw text."""
        return self.parked_in(self._client, key)

    def _take(self, key: str, task_id: str, requeue: bool) -> quarantine.Entry | None:
        taken: quarantine.Entry | None = None

        def transaction(pipe: Any) -> None:
            nonlocal taken
            taken = None
            found = [(e, raw) for e, raw in self.parked_in(pipe, key) if e and e.task_id == task_id]
            pipe.multi()
            if not found:
                return
            entry, raw = found[0]
            pipe.lrem(key, 1, raw)
            if requeue:
                payload, exchange, routing_key = entry.message
                queue = entry.queue or self._queue_of(exchange, routing_key)
                if queue is None:
                    raise redis.RedisError(f"no queue bound for {exchange!r}/{routing_key!r}")
                pipe.rpush(self._list_for(queue, payload), json.dumps(payload))
            taken = entry

        self._client.transaction(transaction, key)
        return taken

    @staticmethod
    def parked_in(pipe: Any, key: str) -> list[tuple[quarantine.Entry | None, bytes]]:
        out: list[tuple[quarantine.Entry | None, bytes]] = []
        for raw in pipe.lrange(key, 0, -1):
            try:
                out.append((quarantine.Entry.from_json(json.loads(raw)), raw))
            except (ValueError, TypeError, KeyError):
                out.append((None, raw))
        return out

    def _restore_one(self, tag: str, same_as: Held | None = None) -> int:
        unacked, index = self._broker.unacked_key, self._broker.unacked_index_key
        restored = 0

        def transaction(pipe: Any) -> None:
            nonlocal restored
            raw = pipe.hget(unacked, tag)
            restored = 0
            if same_as is not None:
                score = pipe.zscore(index, tag)
                at = float(score) if score is not None else None
                if raw is None or at != same_as.at:  # taken since, or delivered again
                    pipe.multi()
                    return
            pipe.multi()
            pipe.zrem(index, tag)
            pipe.hdel(unacked, tag)
            restored = 0
            if raw is None:
                return
            payload, exchange, routing_key = json.loads(raw)
            queue = self._queue_of(exchange, routing_key)
            if queue is None:
                raise redis.RedisError(f"no queue bound for {exchange!r}/{routing_key!r}")
            try:
                payload["headers"]["redelivered"] = True
                payload["properties"]["delivery_info"]["redelivered"] = True
            except (KeyError, TypeError):
                pass
            pipe.rpush(self._list_for(queue, payload), json.dumps(payload))
            restored = 1

        self._client.transaction(transaction, unacked, index)
        return restored

    def _queue_of(self, exchange: str, routing_key: str) -> str | None:
        if not exchange:  # the default exchange: the routing key is the queue, as for kombu
            return routing_key or None
        members = self._client.smembers(f"{self._broker.key_prefix}_kombu.binding.{exchange}")
        for member in members:
            text = member.decode() if isinstance(member, bytes) else str(member)
            parts = text.split(SEPARATOR)
            if len(parts) == 3 and (parts[0] == routing_key or not parts[0]):
                return parts[2]
        return None

    def _list_for(self, queue: str, payload: dict[str, Any]) -> str:
        """The list of the message's priority step, as kombu names it."""
        try:
            priority = int(payload["properties"].get("priority") or 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            priority = 0
        steps = sorted(self._broker.priority_steps)
        step = steps[max(0, bisect(steps, priority) - 1)]
        return self._broker.redis_keys(queue)[self._broker.priority_steps.index(step)]
