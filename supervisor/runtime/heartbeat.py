"""The heartbeat file: what the running daemon tells other commands (`health`, `status`,
`trigger`) about itself. One typed, versioned definition, read and written only here.

Standard library only: `supervisor health` runs every few seconds and must stay cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError
from supervisor.runtime.files import write_atomic

HEARTBEAT_FILE = "heartbeat.json"
VERSION = 2


class HeartbeatError(SupervisorError):
    """The heartbeat file is missing or unusable; the message names it and the key."""


@dataclass(frozen=True)
class PolicyBeat:
    interval: float
    sampling: bool = True
    depth: int | None = None
    trend: tuple[int | None, ...] = ()
    verdict: str | None = None
    why: str | None = None
    call: str | None = None  # what the executor is doing for the target (restart, start...)


@dataclass(frozen=True)
class Heartbeat:
    t: float
    pid: int
    stopped: bool = False
    dry_run: bool = False
    policies: dict[str, PolicyBeat] = field(default_factory=dict)
    docker_error: str | None = None
    policy_paths: tuple[str, ...] = ()
    started: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = VERSION
        return data

    def write(self, state_dir: Path) -> None:
        write_atomic(state_dir / HEARTBEAT_FILE, json.dumps(self.to_json()).encode())


def read(state_dir: Path) -> Heartbeat:
    path = state_dir / HEARTBEAT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HeartbeatError(f"{path} does not exist (has the supervisor started?)") from None
    except (OSError, ValueError) as exc:
        raise HeartbeatError(f"{path} is unreadable: {exc}") from None
    try:
        return _decode(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise HeartbeatError(f"{path}: {exc}") from None


def _decode(data: Any) -> Heartbeat:
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
        policy_paths=tuple(str(p) for p in data.get("policy_paths") or ()),
        started=float(data.get("started", 0.0)),
    )
