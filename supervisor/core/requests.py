"""What a person asks of a running supervisor, decided purely: which policies a manual trigger
restarts, and whether a reload may replace the running policies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Asked:
    """One trigger request: a policy's name, or None for every policy; when it was made."""

    name: str | None
    t: float


@dataclass(frozen=True)
class Fanout:
    restart: tuple[str, ...]  # the policies to restart now, each once
    stale: tuple[Asked, ...]  # requests made before this supervisor started: discarded
    unknown: tuple[str, ...]  # names no running policy has


def stale(t: float, started: float) -> bool:
    """A request made before the supervisor started was meant for another run of it. Both on
    the supervisor's stepless clock (supervisor/clock.py): a wall clock stepped back makes no
    fresh request look old."""
    return t < started


def fan_out(requests: Sequence[Asked], started: float, supervised: Iterable[str]) -> Fanout:
    """A plain SIGUSR1 (no request file: `docker compose kill -s SIGUSR1`) or a request without
    a name restarts every policy; named requests restart those policies, each once. Requests
    older than the supervisor were meant for another run of it and are carried out by none."""
    running = list(supervised)
    old = tuple(r for r in requests if stale(r.t, started))
    fresh = [r for r in requests if not stale(r.t, started)]
    if not requests or any(r.name is None for r in fresh):
        return Fanout(tuple(sorted(running)), old, ())
    names = list(dict.fromkeys(r.name for r in fresh if r.name is not None))
    return Fanout(
        tuple(n for n in names if n in running),
        old,
        tuple(n for n in names if n not in running),
    )


@dataclass(frozen=True)
class Running:
    """What a reload must know of a running policy."""

    target: str  # its target key
    unfinished: bool  # a restart of that target is in flight or left unfinished


def reload_problems(
    running: Mapping[str, Running], reloaded: Iterable[tuple[str, str]]
) -> list[str]:
    """Why the reloaded policies (name, target key) may not replace the running ones: a policy
    whose restart is unfinished keeps its target until the restart is done, so the containers
    it stopped are started again by the supervisor that stopped them."""
    return [
        f"{name}: target: cannot change from {now.target} while a restart of it is not "
        "finished; reload again when it is"
        for name, target in reloaded
        if (now := running.get(name)) is not None and now.target != target and now.unfinished
    ]
