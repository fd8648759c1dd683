"""The leases of several supervisors, and the restart history they share, in the broker's Redis.

Per target (its `key`, e.g. `container:iti-dify-worker`):
  iti-supervisor:lease:KEY   the holder's token, expiring after the lease period (PX)
  iti-supervisor:state:KEY   the target's state as the holder last saved it: the same JSON as
                             the state file (runtime/state_store.py), so cooldown, backoff,
                             budget and an unfinished restart survive a takeover
Compare-and-renew and compare-and-delete are one Lua script each, so that a supervisor never
extends or removes a lease another holds. deploy/redis/acl.txt allows exactly these commands on
these keys.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

from supervisor.adapters.redis_probe import client_for, follow_master
from supervisor.core.lease import Answer
from supervisor.policy import Broker

PREFIX = "iti-supervisor:"

# 1: renewed (ours), 2: acquired (it was free); else the holder's token.
_HOLD = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not held then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return held
"""
# The fence: 1 when ours (renewed), else the holder's token or false. A write, so that a
# demoted master behind sentinels refuses it (READONLY) instead of answering from stale data.
_FENCE = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return held
"""
# GETDEL deletes strings only: the Redis 6.2 user, whose commands reach every key, needs no
# DEL (which would reach the queues' bindings too).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('GETDEL', KEYS[1])
  return 1
end
return 0
"""


def lease_key(target: str, broker_prefix: str = "") -> str:
    """Behind the broker's kombu `global_keyprefix`, like every key of that install (two
    installs sharing one Redis through their prefixes may name their targets alike)."""
    return f"{broker_prefix}{PREFIX}lease:{target}"


def state_key(target: str, broker_prefix: str = "") -> str:
    return f"{broker_prefix}{PREFIX}state:{target}"


def _error(exc: redis.RedisError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _failing_over(client: redis.Redis) -> str | None:
    """Behind sentinels: why the master redis-py follows may not be the master now. While a
    failover is under way the sentinels already name the promoted replica to
    GET-MASTER-ADDR-BY-NAME but still list the old master in SENTINEL MASTERS, which redis-py
    follows, and the old master still takes writes: a fence answered there proves nothing.
    One question to the first sentinel that answers; None for a plain Redis."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    followed = pool.get_master_address()  # type: ignore[no-untyped-call]
    for sentinel in pool.sentinel_manager.sentinels:
        try:
            named = sentinel.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", pool.service_name
            )
        except redis.RedisError:
            continue
        if not named:
            return f"no sentinel names a master for {pool.service_name!r}"
        host = named[0].decode() if isinstance(named[0], bytes) else str(named[0])
        if (host, int(named[1])) != tuple(followed):
            return (
                f"a failover of {pool.service_name!r} is under way (the sentinels name "
                f"{host}:{int(named[1])}, the master list still {followed[0]}:{followed[1]})"
            )
        return None
    return "no sentinel answers"


class LeaseStore:
    """One broker's leases. Every call is one round trip; Redis errors come back as text."""

    def __init__(self, broker: Broker) -> None:
        self._client = client_for(broker)
        self._prefix = broker.key_prefix

    def hold(
        self, target: str, token: str, period: float
    ) -> tuple[Answer | None, str | None, str | None]:
        """Take or renew the target's lease: (answer, holder's token, error)."""
        try:
            follow_master(self._client)  # a lease lives on the current master only
            key = lease_key(target, self._prefix)
            got = self._client.eval(_HOLD, 1, key, token, int(period * 1000))
        except redis.RedisError as exc:
            return None, None, _error(exc)
        if got == 1:
            return Answer.RENEWED, token, None
        if got == 2:
            return Answer.ACQUIRED, token, None
        holder = got.decode(errors="replace") if isinstance(got, bytes) else str(got)
        return Answer.HELD, holder, None

    def still_mine(self, target: str, token: str, period: float) -> str | None:
        """Fencing, right before a container is changed: None when the lease is still ours
        (and renewed for `period`), else why not. Asked of the master the sentinels name now,
        with a write: a master demoted by a failover refuses it rather than answering from
        what it held before (redis-py then drops that connection)."""
        try:
            follow_master(self._client)
            moving = _failing_over(self._client)
            if moving is not None:
                return f"cannot check the lease: {moving}"
            key = lease_key(target, self._prefix)
            held = self._client.eval(_FENCE, 1, key, token, int(period * 1000))
        except redis.RedisError as exc:
            return f"cannot check the lease: {_error(exc)}"
        if held == 1:
            return None
        if not held:
            return "the lease has lapsed"
        holder = held.decode(errors="replace") if isinstance(held, bytes) else str(held)
        return f"the lease is held by {holder}"

    def release(self, target: str, token: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else it lapses after the period
            self._client.eval(_RELEASE, 1, lease_key(target, self._prefix), token)

    def load(self, target: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the shared state as saved, or None when none is; error)."""
        try:
            raw = self._client.get(state_key(target, self._prefix))
        except redis.RedisError as exc:
            return None, _error(exc)
        if raw is None:
            return None, None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return None, f"{state_key(target, self._prefix)}: unreadable: {exc}"
        return (data if isinstance(data, dict) else None), None

    def save(self, target: str, data: dict[str, Any]) -> str | None:
        try:
            self._client.set(state_key(target, self._prefix), json.dumps(data))
        except redis.RedisError as exc:
            return _error(exc)
        return None

    def close(self) -> None:
        self._client.close()
