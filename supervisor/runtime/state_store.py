"""Each target's restart history and unfinished restart, persisted so that a restarted
supervisor keeps honouring cooldown, backoff and budget, and completes a restart it died in.

One JSON file per *target* (`state/targets/<target key, %-quoted>.json`), replaced atomically:
the history belongs to the worker it counts restarts of, not to the policy's name, so renaming
a policy keeps it. Files of format 2 and before were named after the policy; one whose target
is the policy's own is read once and moved to its target's name.

Its times are on the daemon's stepless clock (supervisor/clock.py), and the file says in which
frame (`frame`: boot id, offset, the wall clock's skew): `in_frame` brings them into the
reader's, so a restarted supervisor keeps cooldown and budget whatever the wall clock did.
Files without a frame (formats 1-3 as written before) hold wall-clock times.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from supervisor import clock
from supervisor.clock import Here, Saved
from supervisor.core.engine import Trigger
from supervisor.core.governor import GovernorState
from supervisor.core.tracker import Intent, TrackerState
from supervisor.errors import StateError, StateRefusedError
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

    def __init__(
        self, directory: Path, here: Callable[[], Here] | None = None, dry_run: bool = False
    ) -> None:
        self.directory = directory / "state"  # made on the first save: reading creates nothing
        self.here = here or clock.process().here  # the clock its times are read and written on
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
            live = StateStore(self.directory.parent, self.here).peek(target, policy)
            return None if live is None else replace(live, intent=None)
        stored = self._read(self.legacy_path(policy))
        if stored is not None and stored.target in (None, target):
            return stored
        dry = self._read(self.path(target, dry_run=True))  # only what a dry run learnt
        if dry is None:
            return None
        return Stored(dry.target, GovernorState(), None, dry.discovered, dry.known)

    def _read(self, path: Path) -> Stored | None:
        """None when there is no file; StateRefusedError when it must be left as it is (a newer
        or unknown format, or it cannot be read now); StateError when it does not parse."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # EACCES, EIO, ...: the file may be fine; its history is kept
            raise StateRefusedError(
                f"{path}: cannot read the state file: {exc.strerror or exc}; make it readable "
                "(its owner, its mode, the disk) and start again, or move it aside to start "
                "this target afresh (its restart history and any unfinished restart are lost)"
            ) from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise StateError(f"{path}: unreadable state: {exc}") from None
        known_format(path, data)
        try:
            stored = decode(data)
            saved = Saved.from_json(data.get("frame"))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path}: invalid state: {exc}") from None
        return in_frame(stored, saved, self.here())

    def discard(self, target: str, policy: str, suffix: str) -> Path:
        """Move the unusable state file `peek` read aside, keeping it for a person to read.
        A dry run moves only its own: a live file it started from is left as it is (its path
        is returned), since a dry run changes nothing the live supervisor keeps."""
        own, other = self.path(target), self.path(target, dry_run=not self.dry_run)
        if self.dry_run:
            candidates = [own, other, self.legacy_path(policy)]
        else:
            candidates = [own, self.legacy_path(policy), other]
        path = next((c for c in candidates if c.exists()), own)
        if self.dry_run and path != own:
            return path
        aside = path.with_name(f"{path.name}.{suffix}")
        os.replace(path, aside)
        return aside

    def save(self, target: str, policy: str, state: TrackerState) -> None:
        data = framed(encode(policy, target, state), self.here())
        write_atomic(self.path(target), json.dumps(data).encode())


def framed(data: dict[str, Any], here: Here) -> dict[str, Any]:
    """Encoded state, saying which frame its times are in."""
    return {**data, "frame": Saved.at(here).to_json()}


def retimed(stored: Stored, move: Callable[[float], float]) -> Stored:
    """`stored` with every time in it (restarts, the intent, the workers' facts) moved."""
    h = stored.history
    history = replace(
        h,
        last_restart=None if h.last_restart is None else move(h.last_restart),
        recent=tuple(move(t) for t in h.recent),
    )
    intent = None if stored.intent is None else replace(stored.intent, t=move(stored.intent.t))
    known = tuple(replace(f, t=move(f.t)) for f in stored.known)
    return replace(stored, history=history, intent=intent, known=known)


def in_frame(stored: Stored, saved: Saved | None, here: Here) -> Stored:
    """`stored`, written in `saved` (None: wall-clock times), on the clock read as `here`:
    exact within one boot, through the wall clock after a reboot, and never later than now."""
    return retimed(stored, lambda t: clock.translate(t, saved, here))


def on_wall(state: TrackerState, here: Here) -> TrackerState:
    """`state` with its persisted times on the wall clock: for other hosts (leasing.py)."""
    stored = retimed(
        Stored(None, state.history, state.intent, known=state.known),
        lambda t: clock.to_wall(t, here),
    )
    engine = replace(state.engine, governor=stored.history)
    return replace(state, engine=engine, intent=stored.intent, known=stored.known)


KNOWN_FORMATS = (1, 2, FORMAT)


def known_format(path: Path, data: Any) -> None:
    """StateRefusedError for a file whose `format` this version does not know: a newer one
    (after a downgrade) holds what this version cannot read, and must not be lost."""
    if not isinstance(data, dict) or "format" not in data:
        return  # no state file's shape: decode says it does not parse
    found = data["format"]
    if type(found) is int and found in KNOWN_FORMATS:
        return
    if type(found) is int and found > FORMAT:
        what = f"format {found}, written by a newer supervisor (this one reads up to {FORMAT})"
    else:
        what = f"an unknown format {found!r} (this supervisor reads formats 1 to {FORMAT})"
    raise StateRefusedError(
        f"{path}: the state file has {what}: run the version that wrote it, or move the file "
        "aside to start this target afresh (its restart history and any unfinished restart "
        "are lost)"
    )


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
