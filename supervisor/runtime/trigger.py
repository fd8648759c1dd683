"""Manual restarts: `supervisor trigger [NAME]` leaves a request for the daemon and wakes it.

The daemon is found by its lock on the state directory, and only the process holding that lock
is ever signalled. A request is a small JSON file written atomically; the daemon carries out only
requests made while it runs, and discards (and audits) older ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import SupervisorError, UsageError
from supervisor.runtime import heartbeat, lock
from supervisor.runtime.files import write_atomic

TRIGGER_DIR = "triggers"


@dataclass(frozen=True)
class Request:
    name: str | None  # None: every policy
    t: float  # when it was made (epoch seconds)
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
    now = time.time()
    path = state_dir / TRIGGER_DIR / f"{time.time_ns()}-{os.getpid()}.request"
    write_atomic(path, json.dumps({"name": name, "t": now, "pid": os.getpid()}).encode())
    if lock.holder(state_dir) != pid:  # it stopped in between: leave no request behind
        path.unlink(missing_ok=True)
        raise SupervisorError(f"the supervisor (pid {pid}) stopped before it could be asked")
    os.kill(pid, signal.SIGUSR1)
    return pid


def take(state_dir: Path) -> list[Request]:
    """Every request waiting, oldest first; each is removed as it is read."""
    folder = state_dir / TRIGGER_DIR
    found: list[Request] = []
    for path in sorted(folder.glob("*.request")):
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(path.read_text(encoding="utf-8"))
            name = data["name"]
            found.append(Request(None if name is None else str(name), float(data["t"]), path))
        with contextlib.suppress(OSError):
            path.unlink()
    return found
