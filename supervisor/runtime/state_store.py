"""Each target's restart history and unfinished restart, persisted so that a restarted
supervisor keeps honouring cooldown, backoff and budget, and completes a restart it died in.

One JSON file per *target* (`state/targets/<target key, %-quoted>.json`), replaced atomically:
the history belongs to the worker it counts restarts of, not to the policy's name, so renaming
a policy keeps it. Files of format 2 and before were named after the policy; one whose target
is the policy's own is read once and moved to its target's name.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from supervisor.core.engine import Trigger
from supervisor.core.governor import GovernorState
from supervisor.core.tracker import Intent, TrackerState
from supervisor.errors import StateError
from supervisor.runtime.files import write_atomic
from supervisor.sample import WorkerFacts

FORMAT = 3  # 1: no target, no intent (read as the policy's current target); 2: by policy name


@dataclass(frozen=True)
class Stored:
    target: str | None  # None: written by format 1, before targets were recorded
    history: GovernorState
    intent: Intent | None = None
    discovered: tuple[str, ...] = ()  # discover_queues: the queues last learnt
    known: tuple[WorkerFacts, ...] = ()  # what the target's workers said while they answered
    streaks: tuple[tuple[str, int], ...] = ()  # poison messages' hang restarts in a row


class StateStore:
    """`dry_run`: a dry-run supervisor's own files (`TARGET.dry-run.json`). What a dry run
    decides never spends the live budget or starts a live cooldown, even on the same state
    directory: it starts from the live file (so it judges as the live supervisor would) and
    writes only its own. A live supervisor with no file of its own yet takes from a dry run's
    only what its workers said of themselves and the queues learnt, never its history."""

    def __init__(self, directory: Path, dry_run: bool = False) -> None:
        self.directory = directory / "state"  # made on the first save: reading creates nothing
        self.dry_run = dry_run

    def path(self, target: str, dry_run: bool | None = None) -> Path:
        own = self.dry_run if dry_run is None else dry_run
        suffix = ".dry-run.json" if own else ".json"
        return self.directory / "targets" / f"{quote(target, safe='')}{suffix}"

    def legacy_path(self, policy: str) -> Path:
        return self.directory / f"{policy}.json"

    def load(self, target: str, policy: str) -> Stored | None:
        """What was saved for `target`, None when nothing was; StateError when unusable. A file
        from before (named after `policy`) counts when its target is this one, and is moved."""
        path, legacy = self.path(target), self.legacy_path(policy)
        stored = self.peek(target, policy)
        if stored is not None and not self.dry_run and not path.exists() and legacy.exists():
            try:  # it came from the old name: moved to the target's
                write_atomic(path, legacy.read_bytes())
                legacy.unlink()
            except OSError:
                pass  # read again from the old name next time; the first save writes the new one
        return stored

    def peek(self, target: str, policy: str) -> Stored | None:
        """As `load`, read-only (for `status`): a file from before is read, not moved."""
        stored = self._read(self.path(target))
        if stored is not None:
            return stored
        if self.dry_run:  # the live state as the dry run's starting point, never its intent
            live = StateStore(self.directory.parent).peek(target, policy)
            return None if live is None else replace(live, intent=None)
        stored = self._read(self.legacy_path(policy))
        if stored is not None and stored.target in (None, target):
            return stored
        dry = self._read(self.path(target, dry_run=True))  # only what a dry run learnt
        if dry is None:
            return None
        return Stored(dry.target, GovernorState(), None, dry.discovered, dry.known)

    @staticmethod
    def _read(path: Path) -> Stored | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StateError(f"{path}: unreadable state: {exc}") from None
        try:
            return decode(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: invalid state: {exc}") from None

    def discard(self, target: str, policy: str, suffix: str) -> Path:
        """Move an unusable state file aside, keeping it for a person to read."""
        path = self.path(target)
        if not path.exists():
            path = self.legacy_path(policy)
        aside = path.with_name(f"{path.name}.{suffix}")
        os.replace(path, aside)
        return aside

    def save(self, target: str, policy: str, state: TrackerState) -> None:
        write_atomic(self.path(target), json.dumps(encode(policy, target, state)).encode())


def encode(policy: str, target: str, state: TrackerState) -> dict[str, Any]:
    history, intent = state.history, state.intent
    return {
        "format": FORMAT,
        "policy": policy,
        "target": target,
        "last_restart": history.last_restart,
        "streak": history.streak,
        "recent": list(history.recent),
        "escalated": history.escalated,
        "intent": None
        if intent is None
        else {"t": intent.t, "trigger": intent.trigger.value, "reason": intent.reason},
        "discovered": list(state.discovered),
        "workers": [f.to_json() for f in state.known],
        "streaks": dict(state.streaks),
    }


def decode(data: Any) -> Stored:
    if not isinstance(data, dict) or data.get("format") not in (1, 2, FORMAT):
        raise ValueError(f"expected format {FORMAT}")
    last = data["last_restart"]
    recent = tuple(float(t) for t in data["recent"])
    streak = int(data["streak"])
    if last is not None:
        last = float(last)
    if streak < 0 or any(not math.isfinite(t) for t in recent):
        raise ValueError("streak or restart times out of range")
    history = GovernorState(last, streak, recent, bool(data["escalated"]))
    if data["format"] == 1:
        return Stored(None, history)
    raw = data["intent"]
    intent = (
        None
        if raw is None
        else Intent(float(raw["t"]), Trigger(raw["trigger"]), str(raw["reason"]))
    )
    discovered = tuple(str(q) for q in data.get("discovered") or ())
    known = tuple(WorkerFacts.from_json(f) for f in data.get("workers") or ())
    streaks = tuple(sorted((str(i), int(n)) for i, n in (data.get("streaks") or {}).items()))
    return Stored(str(data["target"]), history, intent, discovered, known, streaks)
