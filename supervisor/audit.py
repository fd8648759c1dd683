"""The audit log: one JSON object per line for every decision that matters, flushed per record.

Append-only; safe to call from the daemon's loop and its restart threads at once.
"""

from __future__ import annotations

import enum
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"  # inside the state directory


class AuditEvent(enum.Enum):
    START = "start"
    STOP = "stop"
    RELOAD = "reload"
    RELOAD_REFUSED = "reload_refused"
    RESTART = "restart"  # automatic or manual; `outcome` is done or failed
    DRY_RUN_RESTART = "dry_run_restart"
    ESCALATE = "escalate"
    TRIGGER_REFUSED = "trigger_refused"
    SAMPLE_ERROR_BEGIN = "sample_error_begin"
    SAMPLE_ERROR_END = "sample_error_end"
    DOCKER_ERROR_BEGIN = "docker_error_begin"
    DOCKER_ERROR_END = "docker_error_end"
    STATE_DISCARDED = "state_discarded"
    RECOVERY = "recovery"  # the queue is back under the threshold after a restart


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, event: AuditEvent, policy: str | None = None, **fields: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        entry: dict[str, Any] = {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "t": round(now.timestamp(), 3),
            "event": event.value,
            "policy": policy,
        }
        entry.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(entry, default=str, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        return entry

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Every record of an audit log, oldest first (a torn last line is skipped)."""
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
