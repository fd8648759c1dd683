"""Manual restarts: `supervisor trigger [NAME]` leaves a request for the daemon and wakes it.

The daemon is found by its lock on the state directory, and only the process holding that lock
is ever signalled. A request is a small JSON file written atomically; the daemon carries out only
requests made while it runs, and discards (and audits) older ones. A request is stamped on the
boot clock with the boot id, and compared with the daemon's start on the daemon's stepless clock
(supervisor/clock.py): a wall clock stepped back makes no request look older than the daemon.
`request` checks that rule itself before it signals, so it never reports success for a request
the daemon would discard.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor import clock
from supervisor.clock import Frame, Here
from supervisor.core import requests
from supervisor.errors import SupervisorError, UsageError
from supervisor.runtime import heartbeat, lock
from supervisor.runtime.files import write_atomic

TRIGGER_DIR = "triggers"


@dataclass(frozen=True)
class Request:
    name: str | None  # None: every policy
    t: float  # when it was made, on the daemon's stepless clock
    path: Path


def request(state_dir: Path, name: str | None) -> int:
    """Ask the daemon of `state_dir` to restart `name` (every policy when None); its pid."""
    pid = lock.holder(state_dir)
    if pid is None:
        raise SupervisorError(
            f"no supervisor is running with state directory {state_dir} (nothing holds "
            f"{state_dir / lock.LOCK_FILE}); is --state-dir the daemon's?"
        )
    try:
        beat = heartbeat.read(state_dir)
    except heartbeat.HeartbeatError as exc:
        raise SupervisorError(f"the supervisor (pid {pid}) is not ready yet: {exc}") from None
    if name is not None and name not in beat.policies:
        raise UsageError(
            f"no policy named {name!r}; the supervisor (pid {pid}) runs "
            f"{', '.join(sorted(beat.policies)) or 'none'}"
        )
    if beat.pid != pid:
        raise SupervisorError(f"the supervisor (pid {pid}) is not ready yet: it is starting")
    wall, boot = time.time(), clock.boottime()
    stamp: dict[str, object] = {"t": wall, "boot": boot, "boot_id": clock.boot_id()}
    daemon = Here(Frame(beat.boot_id, beat.offset), beat.offset + boot, wall)
    # A heartbeat without a frame is a daemon of before stepless clocks: it compares the wall.
    if beat.boot_id and requests.stale(made_at(stamp, daemon), beat.started):
        raise SupervisorError(
            f"the supervisor (pid {pid}) would discard this request as made before it started "
            "(its heartbeat is from another boot or clock); try again once it has written one"
        )
    # Named for the boot clock, so that "oldest first" holds across a step of the wall clock.
    path = state_dir / TRIGGER_DIR / f"{int(boot * 1e9):020d}-{os.getpid()}.request"
    write_atomic(path, json.dumps({"name": name, **stamp, "pid": os.getpid()}).encode())
    if lock.holder(state_dir) != pid:  # it stopped in between: leave no request behind
        path.unlink(missing_ok=True)
        raise SupervisorError(f"the supervisor (pid {pid}) stopped before it could be asked")
    os.kill(pid, signal.SIGUSR2)  # "requests are waiting": SIGUSR1 is every policy's
    return pid


def made_at(data: dict[str, object], here: Here) -> float:
    """When a request was made, on the clock read as `here`: from its boot-clock stamp within
    one boot; from its wall-clock time otherwise (a request of before boot stamps, or of another
    boot), never later than now."""
    boot, ident = data.get("boot"), data.get("boot_id")
    if isinstance(boot, (int, float)) and ident and ident == here.frame.boot_id:
        return here.frame.offset + float(boot)
    t = data["t"]
    if not isinstance(t, (int, float)):
        raise TypeError(f"t: expected a number, got {t!r}")
    return clock.translate(float(t), None, here)


def take(state_dir: Path, here: Here) -> list[Request]:
    """Every request waiting, oldest first, its time on the clock read as `here`; each is
    removed as it is read."""
    folder = state_dir / TRIGGER_DIR
    found: list[Request] = []
    for path in sorted(folder.glob("*.request")):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text(encoding="utf-8"))
            name = data["name"]
            when = made_at(data, here)
            found.append(Request(None if name is None else str(name), when, path))
        with contextlib.suppress(OSError):
            path.unlink()
    return found
