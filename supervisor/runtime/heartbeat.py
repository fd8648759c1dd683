"""The heartbeat file: what the running daemon tells other commands (`health`, `status`,
`trigger`) about itself. One typed, versioned definition, read and written only here.

`supervisor health` reads it every few seconds and must stay under 50 ms, so this module imports
only `os` and `json`: its records are slotted classes, not dataclasses, because `dataclasses`
imports `inspect`, which alone costs more than health's whole budget on a slow disk.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from supervisor.errors import SupervisorError

if TYPE_CHECKING:  # types only: health must not import the daemon's modules
    from supervisor.clock import Here
    from supervisor.core.engine import Decision
    from supervisor.runtime.wiring import Supervised

HEARTBEAT_FILE = "heartbeat.json"
VERSION = 2


class HeartbeatError(SupervisorError):
    """The heartbeat file is missing or unusable; the message names it and the key."""


class _Record:
    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Record)
            and type(other) is type(self)
            and (self._values() == other._values())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking fields: never a dict key

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


class PolicyBeat(_Record):
    __slots__ = (
        "call", "cannot_judge", "depth", "interval", "progress", "sampling", "trend", "verdict",
        "waits", "warnings", "why", "workers",
    )  # fmt: skip
    interval: float
    sampling: bool
    depth: int | None
    trend: tuple[int | None, ...]
    verdict: str | None
    why: str | None
    call: str | None  # what the executor is doing for the target (restart, start...)
    progress: str | None  # the workers' progress as the last sample knew it, or why unknown
    warnings: tuple[str, ...]  # what is wrong with the policy's configuration now
    # The target's containers as last read from Docker, each with its Celery worker (None: not
    # mapped yet); None when they were never read.
    workers: dict[str, str | None] | None
    cannot_judge: str | None  # why nothing can be judged (health is unhealthy meanwhile)
    # Per watched queue, how long its oldest message has waited (None: not known yet).
    waits: dict[str, float] | None

    def __init__(
        self,
        interval: float,
        *,
        sampling: bool = True,
        depth: int | None = None,
        trend: tuple[int | None, ...] = (),
        verdict: str | None = None,
        why: str | None = None,
        call: str | None = None,
        progress: str | None = None,
        warnings: tuple[str, ...] = (),
        workers: dict[str, str | None] | None = None,
        cannot_judge: str | None = None,
        waits: dict[str, float] | None = None,
    ) -> None:
        self._init(
            interval=interval, sampling=sampling, depth=depth, trend=tuple(trend),
            verdict=verdict, why=why, call=call, progress=progress, warnings=tuple(warnings),
            workers=workers, cannot_judge=cannot_judge, waits=waits,
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {n: getattr(self, n) for n in self.__slots__}
        data["trend"] = list(self.trend)
        data["warnings"] = list(self.warnings)
        return data


class Heartbeat(_Record):
    __slots__ = (
        "boot_id",
        "docker_error",
        "dry_run",
        "offset",
        "pid",
        "policies",
        "policy_paths",
        "started",
        "state_error",
        "stopped",
        "t",
        "wall",
    )  # fmt: skip
    t: float  # when it was written, on the daemon's stepless clock (supervisor/clock.py)
    pid: int
    stopped: bool
    dry_run: bool
    policies: dict[str, PolicyBeat]
    docker_error: str | None
    policy_paths: tuple[str, ...]
    started: float  # on the daemon's stepless clock
    # The daemon's frame: its stepless time is `offset + boot time` on boot `boot_id` ("": not
    # known, a heartbeat of before frames), so that `health` and `trigger` compare on the boot
    # clock; `wall` is the wall clock when it was written, for another boot and for people.
    boot_id: str
    offset: float
    wall: float
    state_error: str | None  # why the daemon cannot write its state files (it restarts nothing)

    def __init__(
        self,
        *,
        t: float,
        pid: int,
        stopped: bool = False,
        dry_run: bool = False,
        policies: dict[str, PolicyBeat] | None = None,
        docker_error: str | None = None,
        policy_paths: tuple[str, ...] = (),
        started: float = 0.0,
        state_error: str | None = None,
        boot_id: str = "",
        offset: float = 0.0,
        wall: float | None = None,
    ) -> None:
        self._init(
            t=t, pid=pid, stopped=stopped, dry_run=dry_run, policies=dict(policies or {}),
            docker_error=docker_error, policy_paths=tuple(policy_paths), started=started,
            state_error=state_error,
            boot_id=boot_id, offset=offset, wall=t if wall is None else wall,
        )  # fmt: skip

    @property
    def boot(self) -> float:
        """When it was written, on the boot clock of `boot_id`."""
        return self.t - self.offset

    def to_json(self) -> dict[str, object]:
        return {
            "version": VERSION,
            "t": self.t,
            "pid": self.pid,
            "stopped": self.stopped,
            "dry_run": self.dry_run,
            "policies": {name: p.to_json() for name, p in self.policies.items()},
            "docker_error": self.docker_error,
            "policy_paths": list(self.policy_paths),
            "started": self.started,
            "state_error": self.state_error,
            "boot_id": self.boot_id,
            "offset": self.offset,
            "wall": self.wall,
        }

    def write(self, state_dir: str | os.PathLike[str]) -> None:
        from supervisor.runtime.files import write_atomic  # the daemon's side only

        path = os.path.join(state_dir, HEARTBEAT_FILE)
        write_atomic(path, json.dumps(self.to_json()).encode(), durable=False)


def stamp(here: Here) -> dict[str, Any]:
    """A heartbeat's times and frame, from one reading of the daemon's clock."""
    return {"t": here.now, "boot_id": here.frame.boot_id, "offset": here.frame.offset,
            "wall": here.wall}  # fmt: skip


def read(state_dir: str | os.PathLike[str]) -> Heartbeat:
    path = os.path.join(state_dir, HEARTBEAT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise HeartbeatError(f"{path} does not exist (has the supervisor started?)") from None
    except (OSError, ValueError) as exc:
        raise HeartbeatError(f"{path} is unreadable: {exc}") from None
    try:
        return _decode(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise HeartbeatError(f"{path}: {type(exc).__name__}: {exc}") from None


def _decode(data: object) -> Heartbeat:
    if not isinstance(data, dict):
        raise TypeError("not a JSON object")
    if data.get("version") != VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
    policies = {
        str(name): PolicyBeat(
            interval=float(p["interval"]),
            sampling=bool(p.get("sampling", True)),
            depth=p.get("depth"),
            trend=tuple(p.get("trend") or ()),
            verdict=p.get("verdict"),
            why=p.get("why"),
            call=p.get("call"),
            progress=p.get("progress"),
            warnings=tuple(str(w) for w in p.get("warnings") or ()),
            workers=p.get("workers"),
            cannot_judge=p.get("cannot_judge"),
            waits=p.get("waits"),
        )
        for name, p in dict(data["policies"]).items()
    }
    return Heartbeat(
        t=float(data["t"]),
        pid=int(data["pid"]),
        stopped=bool(data.get("stopped", False)),
        dry_run=bool(data.get("dry_run", False)),
        policies=policies,
        docker_error=data.get("docker_error"),
        state_error=data.get("state_error"),
        policy_paths=tuple(str(p) for p in data.get("policy_paths") or ()),
        started=float(data.get("started", 0.0)),
        boot_id=str(data.get("boot_id") or ""),
        offset=float(data.get("offset", 0.0)),
        wall=float(data["wall"]) if data.get("wall") is not None else None,
    )


TREND_SAMPLES = 30  # depths kept in the heartbeat for `supervisor status`


def policy_beat(item: Supervised) -> PolicyBeat:
    """What the heartbeat says of one supervised target (the daemon's `Supervised`)."""
    s, decision = item.state, item.last_decision
    verdict = decision.diagnosis.verdict.value if decision else None
    why = decision.describe() if decision else None
    if s.cannot_judge and verdict != "stuck":  # never "not stuck" for what it cannot see
        verdict, why = "cannot_judge", f"cannot judge: {s.cannot_judge}"
    return PolicyBeat(
        item.policy.detect.interval,
        sampling=not s.sampling.active,
        depth=s.recent[-1][1] if s.recent else None,
        trend=tuple(d for _, d in s.recent[-TREND_SAMPLES:]),
        verdict=verdict,
        why=why,
        cannot_judge=s.cannot_judge,
        call=s.call.value if s.call else None,
        progress=_progress(item),
        warnings=s.warnings(item.policy),
        workers=_workers(item),
        waits=_waits(decision),
    )


def _waits(decision: Decision | None) -> dict[str, float] | None:
    waits = decision.stalls.waits if decision is not None else None
    return None if waits is None else {q: round(w, 1) for q, w in sorted(waits.items())}


def _progress(item: Supervised) -> str | None:
    """The workers' progress as the last sample knew it, or why it did not (None: not watched)."""
    sample = item.last_sample
    if sample is None:
        return None
    if sample.processed is not None:
        return f"{sample.processed} started tasks, from {sample.progress_source}"
    return f"unknown: {sample.progress_unknown}" if sample.progress_unknown else None


def _workers(item: Supervised) -> dict[str, str | None] | None:
    view = item.state.view
    if view.containers is None:
        return None
    mapped = {c: w for w, c in view.workers}
    return {c: mapped.get(c) for c in view.containers}


class Pace:
    """When the daemon writes the heartbeat: after a pass that changed something, at most
    about once every `gap` seconds (many policies make many passes a second, and `health`
    reads it in tens of seconds); a change left unwritten is written `gap` after the last
    write. A pass up to `early` seconds before that writes it: with ticks every `gap`, it rides
    along with them instead of waking the loop a moment later on its own."""

    def __init__(self, gap: float = 1.0, early: float = 0.1) -> None:
        self.gap, self.early = gap, early
        self.written_at = -1e18
        self.pending = True

    def due(self, now: float) -> bool:
        return self.pending and now - self.written_at >= self.gap - self.early

    def next_at(self) -> float | None:
        return self.written_at + self.gap if self.pending else None

    def wrote(self, now: float) -> None:
        self.written_at, self.pending = now, False
