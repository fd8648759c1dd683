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
# GETDEL deletes strings only: the Redis 6.2 user, whose commands reach every key, needs no
# DEL (which would reach the queues' bindings too).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('GETDEL', KEYS[1])
  return 1
end
return 0
"""


def lease_key(target: str) -> str:
    return f"{PREFIX}lease:{target}"


def state_key(target: str) -> str:
    return f"{PREFIX}state:{target}"


def _error(exc: redis.RedisError) -> str:
    return f"{type(exc).__name__}: {exc}"


class LeaseStore:
    """One broker's leases. Every call is one round trip; Redis errors come back as text."""

    def __init__(self, broker: Broker) -> None:
        self._client = client_for(broker)

    def hold(
        self, target: str, token: str, period: float
    ) -> tuple[Answer | None, str | None, str | None]:
        """Take or renew the target's lease: (answer, holder's token, error)."""
        try:
            follow_master(self._client)  # a lease lives on the current master only
            got = self._client.eval(_HOLD, 1, lease_key(target), token, int(period * 1000))
        except redis.RedisError as exc:
            return None, None, _error(exc)
        if got == 1:
            return Answer.RENEWED, token, None
        if got == 2:
            return Answer.ACQUIRED, token, None
        holder = got.decode(errors="replace") if isinstance(got, bytes) else str(got)
        return Answer.HELD, holder, None

    def still_mine(self, target: str, token: str) -> str | None:
        """Fencing, right before a restart: None when the lease is still ours, else why not."""
        try:
            held = self._client.get(lease_key(target))
        except redis.RedisError as exc:
            return f"cannot check the lease: {_error(exc)}"
        if held is None:
            return "the lease has lapsed"
        holder = held.decode(errors="replace") if isinstance(held, bytes) else str(held)
        return None if holder == token else f"the lease is held by {holder}"

    def release(self, target: str, token: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else it lapses after the period
            self._client.eval(_RELEASE, 1, lease_key(target), token)

    def load(self, target: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the shared state as saved, or None when none is; error)."""
        try:
            raw = self._client.get(state_key(target))
        except redis.RedisError as exc:
            return None, _error(exc)
        if raw is None:
            return None, None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return None, f"{state_key(target)}: unreadable: {exc}"
        return (data if isinstance(data, dict) else None), None

    def save(self, target: str, data: dict[str, Any]) -> str | None:
        try:
            self._client.set(state_key(target), json.dumps(data))
        except redis.RedisError as exc:
            return _error(exc)
        return None

    def close(self) -> None:
        self._client.close()
