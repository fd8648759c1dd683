"""The audit log: one JSON object per line for every event, flushed and fsynced per record.

Append-only; the record's `event` is the event's name in the one vocabulary (core/events.py).
Written from the loop thread only; the lock keeps it safe if that ever changes.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor.broker_url import redact_tree
from supervisor.core.events import Event
from supervisor.sinks.render import record

AUDIT_FILE = "audit.jsonl"  # inside the state directory


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, ev: Event) -> None:
        now = datetime.now(UTC)
        entry: dict[str, Any] = {
            "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "t": round(now.timestamp(), 3),
            **record(ev),
        }
        # The one redaction (broker_url.py): no password or secret value reaches the file.
        line = json.dumps(redact_tree(entry), default=str, ensure_ascii=False)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())

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
