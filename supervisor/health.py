"""`supervisor health`: is the daemon alive, and is its loop turning? For the container's
HEALTHCHECK, so it runs every few seconds: standard library only, nothing else imported.

Alive: a process holds the state directory's lock (the kernel drops it the moment the daemon
dies, so a SIGKILLed daemon is "not running" at once). Turning: its heartbeat file is fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.runtime import heartbeat, lock

MIN_STALE_AFTER = 30.0


@dataclass(frozen=True)
class Health:
    healthy: bool
    message: str


def stale_after(beat: heartbeat.Heartbeat) -> float:
    """A loop that has not passed for three of its longest intervals (at least 30 s) is stuck."""
    longest = max((p.interval for p in beat.policies.values()), default=0.0)
    return max(MIN_STALE_AFTER, 3 * longest)


def check(state_dir: Path, now: float, max_age: float | None = None) -> Health:
    pid = lock.holder(state_dir)
    if pid is None:
        return Health(
            False,
            f"unhealthy: not running: no supervisor holds {state_dir / lock.LOCK_FILE}",
        )
    try:
        beat = heartbeat.read(state_dir)
    except heartbeat.HeartbeatError as exc:
        return Health(False, f"unhealthy: {exc}")
    if beat.stopped:
        return Health(False, f"unhealthy: the supervisor (pid {beat.pid}) has stopped")
    limit = max_age if max_age is not None else stale_after(beat)
    age = now - beat.t
    if age > limit:
        return Health(
            False,
            f"unhealthy: the loop last ticked {age:.0f}s ago (limit {limit:.0f}s); "
            f"pid {pid} is hung",
        )
    notes = []
    for name, policy in sorted(beat.policies.items()):
        notes.append(
            f"{name} depth {policy.depth}" if policy.sampling else f"{name} cannot sample Redis"
        )
    if beat.docker_error:
        notes.append(f"Docker unreachable: {beat.docker_error}")
    mode = " (dry-run)" if beat.dry_run else ""
    return Health(True, f"healthy{mode}: loop ticked {age:.1f}s ago; " + "; ".join(notes))
