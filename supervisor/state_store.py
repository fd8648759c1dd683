"""Each policy's restart history, persisted so that a restarted supervisor keeps honouring
cooldown, backoff and budget. One JSON file per policy, replaced atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from supervisor.errors import StateError
from supervisor.governor import GovernorState

FORMAT = 1


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory / "state"  # made on the first save: reading creates nothing

    def path(self, policy: str) -> Path:
        return self.directory / f"{policy}.json"

    def load(self, policy: str) -> GovernorState:
        path = self.path(policy)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return GovernorState()
        except (OSError, ValueError) as exc:
            raise StateError(f"{path}: unreadable state: {exc}") from None
        try:
            return _decode(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: invalid state: {exc}") from None

    def discard(self, policy: str, suffix: str) -> Path:
        """Move an unusable state file aside, keeping it for a person to read."""
        path = self.path(policy)
        aside = path.with_name(f"{path.name}.{suffix}")
        os.replace(path, aside)
        return aside

    def save(self, policy: str, state: GovernorState) -> None:
        data = {
            "format": FORMAT,
            "policy": policy,
            "last_restart": state.last_restart,
            "streak": state.streak,
            "recent": list(state.recent),
            "escalated": state.escalated,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{policy}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(policy))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _decode(data: Any) -> GovernorState:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"expected format {FORMAT}")
    last = data["last_restart"]
    recent = tuple(float(t) for t in data["recent"])
    streak = int(data["streak"])
    if last is not None:
        last = float(last)
    if streak < 0 or any(not math.isfinite(t) for t in recent):
        raise ValueError("streak or restart times out of range")
    return GovernorState(last, streak, recent, bool(data["escalated"]))
