"""Samples a policy's queues from the Celery broker in one pipelined round trip.

Never raises for a Redis problem: a refused connection, a timeout, a failed AUTH or a key of the
wrong type all give a failed `Sample` with the reason, which the engine treats as missing data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from supervisor.broker_url import redact
from supervisor.policy import Broker
from supervisor.sample import Sample


def client_for(broker: Broker) -> redis.Redis:
    """A client for the policy's broker and nothing else, bounded by its timeout. Built from
    the parsed URL (broker_url.py), the same one `check` validated. Behind sentinels, the client
    asks them for the current master at every new connection, so it follows a failover and
    never writes to a replica."""
    url = broker.endpoint()
    common: dict[str, Any] = {
        "socket_timeout": broker.timeout,
        "socket_connect_timeout": broker.timeout,
        # One attempt per call: the next tick is the retry, and a tick must stay bounded.
        "retry": Retry(NoBackoff(), 0),
        # No CLIENT SETINFO or MAINT_NOTIFICATIONS on connect: a least-privilege ACL user
        # needs only the commands it uses.
        "driver_info": None,
        "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        "username": url.username,
        "password": url.password,
        "db": url.db,
    }
    if url.sentinel:
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            [(e.host, e.port) for e in url.endpoints],
            sentinel_kwargs={
                "password": broker.sentinel_password,
                "socket_timeout": broker.timeout,
                "socket_connect_timeout": broker.timeout,
                "retry": Retry(NoBackoff(), 0),  # one question per sentinel, then the next
                **url.tls,
            },
            **url.tls,
        )
        assert broker.master_name is not None  # the policy requires it with sentinel://
        master = sentinels.master_for(broker.master_name, **common)  # type: ignore[no-untyped-call]
        return cast(redis.Redis, master)
    if url.scheme == "unix":
        return redis.Redis(unix_socket_path=url.path, **common)
    endpoint = url.endpoints[0]
    return redis.Redis(
        host=endpoint.host, port=endpoint.port, ssl=url.scheme == "rediss", **url.tls, **common
    )


def follow_master(client: redis.Redis) -> None:
    """Behind sentinels: ask them which server is the master now, and drop idle connections
    to one that no longer is (a demoted master still answers reads, with stale data). One
    round trip to a sentinel; nothing for a plain Redis. Raises a RedisError like any call."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        pool.get_master_address()  # type: ignore[no-untyped-call]


class RedisProbe:
    """One sample is one round trip holding only what a decision needs: the length of every
    priority list of the watched queues, the size of `unacked` and its oldest entry. Whether
    the queues have kombu bindings on this database (a wrong-database check, which changes
    only when a deployment does) rides along once every BINDINGS_EVERY seconds while they all
    are bound, and in every sample while one is not or when the watched queues change."""

    BINDINGS_EVERY = 60.0

    def __init__(
        self,
        broker: Broker,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._monotonic = monotonic
        self._client = client_for(broker)
        self._keys: dict[tuple[str, ...], tuple[tuple[int, ...], list[str]]] = {}
        self._unbound: tuple[str, ...] = ()
        self._bindings_of: tuple[str, ...] | None = None  # the queues last checked
        self._bindings_at = 0.0

    def keys_of(self, queues: tuple[str, ...]) -> tuple[tuple[int, ...], list[str]]:
        """Every priority list of `queues`, and how many lists each queue has (cached: the
        set rarely changes)."""
        if queues not in self._keys:
            lists = [self._broker.redis_keys(q) for q in queues]
            self._keys = {queues: (tuple(len(x) for x in lists), [k for x in lists for k in x])}
        return self._keys[queues]

    @property
    def where(self) -> str:
        return redact(self._broker.url)

    def sample(self, queues: Sequence[str] | None = None) -> Sample:
        """One sample of `queues` (default: the policy's listed ones)."""
        now = self._clock()
        watched = tuple(queues if queues is not None else self._broker.queues)
        counts, keys = self.keys_of(watched)
        bindings = (
            watched != self._bindings_of
            or bool(self._unbound)  # until every queue is bound: a worker may be starting
            or self._monotonic() - self._bindings_at >= self.BINDINGS_EVERY
        )
        broker = self._broker
        try:
            follow_master(self._client)
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.llen(key)
            pipe.hlen(broker.unacked_key)
            pipe.zrange(broker.unacked_index_key, 0, 0, withscores=True)
            if bindings:
                for queue in watched:
                    pipe.exists(broker.binding_key(queue))
            # The first failing command raises, named with its key by redis-py.
            results: list[Any] = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return Sample.failed(now, f"redis at {self.where}: {_describe(exc)}")

        depths: dict[str, int] = {}
        i = 0
        for queue, n in zip(watched, counts, strict=True):
            depths[queue] = sum(results[i : i + n])
            i += n
        if bindings:
            bound = results[i + 2 :]
            self._unbound = tuple(q for q, b in zip(watched, bound, strict=True) if not b)
            self._bindings_of, self._bindings_at = watched, self._monotonic()
        oldest = results[i + 1]
        return Sample(
            t=now,
            depth=sum(depths.values()),
            queues=depths,
            unacked=int(results[i]),
            oldest_unacked_age=max(0.0, now - float(oldest[0][1])) if oldest else None,
            unbound=self._unbound,
        )

    def close(self) -> None:
        self._client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, MasterNotFoundError):
        # redis-py appends every sentinel client's repr: the first sentence says it all.
        text = text.split(" : ", 1)[0] + " (no sentinel answered, or none knows it)"
    # A key in the message may hold kombu's priority separator: shown escaped, as in a repr.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"{type(exc).__name__}: {text}"
