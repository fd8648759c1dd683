"""Samples a policy's queues from the Celery broker in one pipelined round trip.

Never raises for a Redis problem: a refused connection, a timeout, a failed AUTH or a key of the
wrong type all give a failed `Sample` with the reason, which the engine treats as missing data.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from operator import itemgetter
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


# A redis-py pipeline method and its positional arguments: equal commands of several probes
# on one connection are sent once.
Command = tuple[str, tuple[Any, ...]]


class RedisProbe:
    """One sample is one round trip holding only what a decision needs: the length of every
    priority list of the watched queues, the size of `unacked` and its oldest entry. Whether
    the queues have kombu bindings on this database (a wrong-database check, which changes
    only when a deployment does) rides along once every BINDINGS_EVERY seconds while they all
    are bound, and in every sample while one is not or when the watched queues change.
    The head of every list that was not empty at the previous sample rides along too
    (`LINDEX key -1`: kombu's next message is the list's tail), read as a short digest, so how
    long the oldest message has waited (core/waiting.py) costs nothing while the queues are
    empty and one command per non-empty list otherwise (a list's head is seen from the second
    sample it is non-empty: the wait is a lower bound by one interval at most).

    Probes of one broker connection (`group`) are sampled together in one round trip
    (`sample_group`): a daemon watching 100 targets on one Redis makes one round trip a pass,
    not 100, and sends the commands they share (`unacked`) once."""

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
        self._commands: _Commands | None = None
        self._unbound: tuple[str, ...] = ()
        self._bindings_of: tuple[str, ...] | None = None  # the queues last checked
        self._bindings_at = 0.0
        self._nonempty: tuple[str, ...] = ()  # the lists not empty at the last sample
        b = broker
        # Everything client_for connects with: equal groups reach the same server as the same
        # user, so one probe's connection may carry another's commands.
        self.group: Hashable = (
            b.url, b.timeout, b.master_name, b.sentinel_password,
            b.ssl_cert_reqs, b.ssl_ca_certs, b.ssl_certfile, b.ssl_keyfile,
        )  # fmt: skip

    def _commands_of(self, watched: tuple[str, ...]) -> _Commands:
        """The commands of a sample of `watched` (cached: the set rarely changes)."""
        if self._commands is None or self._commands.watched != watched:
            b = self._broker
            lists = [b.redis_keys(q) for q in watched]
            self._commands = _Commands(
                watched,
                tuple(len(x) for x in lists),
                [
                    *(("llen", (k,)) for x in lists for k in x),
                    ("hlen", (b.unacked_key,)),
                    ("zrange", (b.unacked_index_key, 0, 0, False, True)),  # the oldest, scored
                ],
                [("exists", (b.binding_key(q),)) for q in watched],
            )
        return self._commands

    @property
    def where(self) -> str:
        return redact(self._broker.url)

    def sample(self, queues: Sequence[str] | None = None) -> Sample:
        """One sample of `queues` (default: the policy's listed ones)."""
        return self.sample_group([(self, queues if queues is not None else self._broker.queues)])[0]

    def sample_group(self, requests: Sequence[tuple[Any, Sequence[str]]]) -> list[Sample]:
        """A sample for each (probe, queues) of this probe's group, in one round trip on this
        probe's connection. A connection failure fails them all; a failing command (a key of
        the wrong type) fails only the samples that asked for it."""
        now = self._clock()
        plans: list[_Plan] = []
        for probe, queues in requests:
            assert isinstance(probe, RedisProbe) and probe.group == self.group
            plans.append(probe._plan(tuple(queues)))
        if len(plans) == 1:
            unique = plans[0].commands
        else:  # where each probe's answers are: a command several ask is sent once
            slots: dict[Command, int] = {}
            for plan in plans:
                plan.slots = itemgetter(*(slots.setdefault(c, len(slots)) for c in plan.commands))
            unique = list(slots)
        try:
            follow_master(self._client)
            pipe = self._client.pipeline(transaction=False)
            for name, args in unique:
                getattr(pipe, name)(*args)
            # Failing commands come back as exceptions, for the samples that asked for them.
            results: list[Any] = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            failed = Sample.failed(now, f"redis at {self.where}: {_describe(exc)}")
            return [failed] * len(plans)
        failing = any(isinstance(r, Exception) for r in results)
        return [
            plan.probe._read(plan, plan.slots(results) if plan.slots else results, now, failing)
            for plan in plans
        ]

    def _plan(self, watched: tuple[str, ...]) -> _Plan:
        commands = self._commands_of(watched)
        bindings = (
            watched != self._bindings_of
            or bool(self._unbound)  # until every queue is bound: a worker may be starting
            or self._monotonic() - self._bindings_at >= self.BINDINGS_EVERY
        )
        sent = commands.sample + commands.bindings if bindings else commands.sample
        keys = {k for q in watched for k in self._broker.redis_keys(q)}
        heads = tuple(k for k in self._nonempty if k in keys)
        sent = sent + [("lindex", (k, -1)) for k in heads]
        return _Plan(self, watched, commands.counts, bindings, sent, heads)

    def _read(self, plan: _Plan, results: Sequence[Any], now: float, failing: bool) -> Sample:
        for command, result in zip(plan.commands, results, strict=True) if failing else ():
            if isinstance(result, Exception) and command[0] != "lindex":
                name, args = command
                error = _describe(result, f"{name.upper()} {args[0]}")
                return Sample.failed(now, f"redis at {self.where}: {error}")
        watched = plan.watched
        depths: dict[str, int] = {}
        nonempty: list[str] = []
        i = 0
        for queue, n in zip(watched, plan.counts, strict=True):
            depths[queue] = sum(results[i : i + n])
            keys = self._broker.redis_keys(queue)
            nonempty += [k for k, d in zip(keys, results[i : i + n], strict=True) if d]
            i += n
        self._nonempty = tuple(nonempty)
        ids = dict(zip(plan.heads, results[len(results) - len(plan.heads) :], strict=True))
        heads: dict[str, tuple[str, ...]] | None = None
        # An ACL user without LINDEX (deploy/redis/acl.txt before issue 26) is refused it:
        # the depths stand, the waits are unknown.
        if not any(isinstance(r, Exception) for r in ids.values()):
            heads = {
                q: tuple(_digest(ids[k]) for k in self._broker.redis_keys(q) if ids.get(k))
                for q in watched
            }
        if plan.bindings:
            bound = results[i + 2 : i + 2 + len(watched)]
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
            heads=heads,
        )

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class _Commands:
    """A probe's commands for the queues it watches: the sample's, and the bindings check's."""

    watched: tuple[str, ...]
    counts: tuple[int, ...]  # how many priority lists each queue has
    sample: list[Command]
    bindings: list[Command]


@dataclass
class _Plan:
    """What one probe asks in a group's round trip, and how to read the answers."""

    probe: RedisProbe
    watched: tuple[str, ...]
    counts: tuple[int, ...]
    bindings: bool
    commands: list[Command]
    heads: tuple[str, ...] = ()  # the lists whose head (LINDEX -1) it reads, last
    # Its answers out of the group's (None: the group is this probe alone).
    slots: Callable[[list[Any]], tuple[Any, ...]] | None = None


def _digest(message: bytes | str) -> str:
    """A short id of a message: equal messages are one message (each has its own delivery
    tag), and the sample keeps 16 characters, not the body."""
    raw = message.encode() if isinstance(message, str) else message
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def _describe(exc: BaseException, command: str = "") -> str:
    text = str(exc).strip() or type(exc).__name__
    if command:  # the command that failed, and the key it named
        text = f"{text} ({command})"
    if isinstance(exc, MasterNotFoundError):
        # redis-py appends every sentinel client's repr: the first sentence says it all.
        text = text.split(" : ", 1)[0] + " (no sentinel answered, or none knows it)"
    # A key in the message may hold kombu's priority separator: shown escaped, as in a repr.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return f"{type(exc).__name__}: {text}"
