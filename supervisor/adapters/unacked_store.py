"""kombu's unacked hash on the broker: read it, and give entries back to their queues the way
kombu's own restore does it, so the two never race: under kombu's `unacked_mutex` lock, one
transaction per delivery tag that takes the entry out of `unacked` and `unacked_index` and pushes
the message, marked redelivered, onto its queue's priority list."""

from __future__ import annotations

import json
from bisect import bisect
from dataclasses import dataclass
from typing import Any

import redis

from supervisor.adapters.redis_probe import client_for, follow_master
from supervisor.core.unacked import Held
from supervisor.policy import Broker

MUTEX_KEY = "unacked_mutex"  # kombu's Channel.unacked_mutex_key
MUTEX_EXPIRE = 300  # kombu's unacked_mutex_expire, seconds
SEPARATOR = "\x06\x16"  # kombu's Redis binding separator


@dataclass(frozen=True)
class Restored:
    count: int
    left: int | None  # entries still in unacked afterwards
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
            lock = self._client.lock(
                self._broker.key_prefix + MUTEX_KEY, timeout=MUTEX_EXPIRE, blocking_timeout=10
            )
            if not lock.acquire():
                return Restored(0, self.left(), "kombu's unacked_mutex stayed held")
            try:
                for tag in tags:
                    count += self._restore_one(tag)
            finally:
                lock.release()
        except redis.RedisError as exc:
            return Restored(count, self.left(), f"{type(exc).__name__}: {exc}")
        return Restored(count, self.left())

    def _restore_one(self, tag: str) -> int:
        unacked, index = self._broker.unacked_key, self._broker.unacked_index_key
        restored = 0

        def transaction(pipe: Any) -> None:
            nonlocal restored
            raw = pipe.hget(unacked, tag)
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

        self._client.transaction(transaction, unacked)
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
