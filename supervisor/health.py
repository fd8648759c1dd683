"""`supervisor health`: is the daemon's loop alive? Read from the heartbeat file it writes after
every pass, so the check works from another process (the container's HEALTHCHECK)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_FILE = "heartbeat.json"
MIN_STALE_AFTER = 30.0


@dataclass(frozen=True)
class Health:
    healthy: bool
    message: str


def stale_after(heartbeat: dict[str, Any]) -> float:
    """A loop that has not passed for three of its longest intervals (at least 30 s) is stuck."""
    intervals = [float(p.get("interval", 0)) for p in heartbeat.get("policies", {}).values()]
    return max(MIN_STALE_AFTER, 3 * max(intervals, default=0.0))


def check(state_dir: Path, now: float, max_age: float | None = None) -> Health:
    path = state_dir / HEARTBEAT_FILE
    try:
        heartbeat = json.loads(path.read_text(encoding="utf-8"))
        last = float(heartbeat["t"])
    except FileNotFoundError:
        return Health(False, f"unhealthy: {path} does not exist (has the supervisor started?)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Health(False, f"unhealthy: {path} is unreadable: {exc}")
    if heartbeat.get("stopped"):
        return Health(False, f"unhealthy: the supervisor (pid {heartbeat.get('pid')}) has stopped")
    limit = max_age if max_age is not None else stale_after(heartbeat)
    age = now - last
    if age > limit:
        return Health(
            False,
            f"unhealthy: the loop last ticked {age:.0f}s ago (limit {limit:.0f}s); "
            f"pid {heartbeat.get('pid')} is hung or gone",
        )
    notes = []
    for name, policy in sorted(heartbeat.get("policies", {}).items()):
        if policy.get("sampling", True):
            notes.append(f"{name} depth {policy.get('depth')}")
        else:
            notes.append(f"{name} cannot sample Redis")
    if heartbeat.get("docker_error"):
        notes.append(f"Docker unreachable: {heartbeat['docker_error']}")
    mode = " (dry-run)" if heartbeat.get("dry_run") else ""
    return Health(True, f"healthy{mode}: loop ticked {age:.1f}s ago; " + "; ".join(notes))
