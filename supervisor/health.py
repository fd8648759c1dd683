"""`supervisor health`: is the daemon alive, and is its loop turning? For the container's
HEALTHCHECK, so it runs every few seconds and must stay cheap (under 50 ms, bench/health_cost.py):
it imports only `os`, `sys`, `json`, `fcntl` and `time`, and `entry.py` sends a plain
`supervisor health` here without building the whole command line.

Alive: a process holds the state directory's lock (the kernel drops it the moment the daemon
dies, so a SIGKILLed daemon is "not running" at once). Turning: its heartbeat file is fresh,
measured on the boot clock when the heartbeat was written in this boot (a step of the wall
clock neither hides a hung loop nor fails a live one), on the wall clock otherwise.
"""

from __future__ import annotations

import os
import time

from supervisor import clock
from supervisor.runtime import heartbeat, lock

MIN_STALE_AFTER = 30.0
STATE_DIR_ENV = "SUPERVISOR_STATE_DIR"
DEFAULT_STATE_DIR = "state"


class Health:
    __slots__ = ("healthy", "message")

    def __init__(self, healthy: bool, message: str) -> None:
        self.healthy = healthy
        self.message = message


def stale_after(beat: heartbeat.Heartbeat) -> float:
    """A loop that has not passed for three of its longest intervals (at least 30 s) is stuck."""
    longest = max((p.interval for p in beat.policies.values()), default=0.0)
    return max(MIN_STALE_AFTER, 3 * longest)


def unwritable(state_dir: str | os.PathLike[str]) -> str | None:
    """Why nothing can be written in the state directory now (a full disk, a read-only
    volume), or None: one byte written and removed again."""
    probe = os.path.join(state_dir, f".health.{os.getpid()}.probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return f"cannot write the state directory {state_dir}: {exc.strerror or exc}"
    return None


def age(beat: heartbeat.Heartbeat, wall: float, boot: float, boot_id: str) -> float:
    """How old the heartbeat is: on the boot clock within its boot, else on the wall clock."""
    if beat.boot_id and beat.boot_id == boot_id:
        return boot - beat.boot
    return wall - beat.wall


def check(
    state_dir: str | os.PathLike[str],
    now: float,
    max_age: float | None = None,
    boot: float | None = None,
) -> Health:
    """`now`: the wall clock; `boot`: the boot clock (None: read now)."""
    pid = lock.holder(state_dir)
    if pid is None:
        where = os.path.join(state_dir, lock.LOCK_FILE)
        return Health(False, f"unhealthy: not running: no supervisor holds {where}")
    try:
        beat = heartbeat.read(state_dir)
    except heartbeat.HeartbeatError as exc:
        return Health(False, f"unhealthy: {exc}")
    if beat.stopped:
        return Health(False, f"unhealthy: the supervisor (pid {beat.pid}) has stopped")
    limit = max_age if max_age is not None else stale_after(beat)
    boot_now = clock.boottime() if boot is None else boot
    old = age(beat, now, boot_now, clock.boot_id())
    if old > limit:
        cannot = unwritable(state_dir)  # then the heartbeat itself could not be written
        if cannot is not None:
            return Health(False, f"unhealthy: {cannot}; no restart is made until it can")
        return Health(
            False,
            f"unhealthy: the loop last ticked {old:.0f}s ago (limit {limit:.0f}s); "
            f"pid {pid} is hung",
        )
    if beat.state_error:  # it restarts nothing it could not record first
        return Health(False, f"unhealthy: {beat.state_error}; no restart is made until it can")
    blind = [f"{n} cannot judge: {p.cannot_judge}" for n, p in sorted(beat.policies.items())
             if p.cannot_judge]  # fmt: skip
    if blind:  # watching nothing it can judge is not healthy: `docker ps` should show it
        return Health(False, "unhealthy: " + "; ".join(blind))
    notes = []
    for name, policy in sorted(beat.policies.items()):
        notes.append(
            f"{name} depth {policy.depth}" if policy.sampling else f"{name} cannot sample Redis"
        )
    if beat.docker_error:
        notes.append(f"Docker unreachable: {beat.docker_error}")
    mode = " (dry-run)" if beat.dry_run else ""
    return Health(True, f"healthy{mode}: loop ticked {old:.1f}s ago; " + "; ".join(notes))


def plain_call(argv: list[str]) -> tuple[str, float | None] | None:
    """(state dir, max age) when argv is `health [--state-dir DIR] [--max-age SECONDS]`; None
    for anything else (help, a typo, a bad number), which the full command line then handles."""
    if not argv or argv[0] != "health":
        return None
    state_dir: str | None = None
    max_age: float | None = None
    rest = argv[1:]
    while rest:
        if len(rest) < 2 or rest[0] not in ("--state-dir", "--max-age"):
            return None
        option, value, rest = rest[0], rest[1], rest[2:]
        if option == "--state-dir":
            state_dir = value
        else:
            try:
                max_age = float(value)
            except ValueError:
                return None
    state_dir = state_dir or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR
    if os.path.exists(state_dir) and not os.path.isdir(state_dir):
        return None  # the full command line names the setting
    return state_dir, max_age


def run(state_dir: str, max_age: float | None) -> int:
    result = check(state_dir, time.time(), max_age)
    print(result.message)
    return 0 if result.healthy else 1
