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


def fan_out(
    requests: Sequence[Asked], started: float, supervised: Iterable[str], *, plain: bool = False
) -> Fanout:
    """What one pass's manual triggers ask, all handled together. `plain`: a SIGUSR1 came
    (`docker compose kill -s SIGUSR1`): every policy. `requests`: the request files
    `supervisor trigger` left, taken once when its SIGUSR2s came; a request without a name is
    every policy, named ones restart those policies, each once. The two signals are told apart
    by the kernel, never by counting them (signals of one kind merge), so a trigger of one
    policy never reads as a plain SIGUSR1. Requests older than the supervisor were meant for
    another run of it and are carried out by none."""
    running = list(supervised)
    old = tuple(r for r in requests if stale(r.t, started))
    fresh = [r for r in requests if not stale(r.t, started)]
    if plain or any(r.name is None for r in fresh):
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


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does to the running targets, matched by target key (the identity of
    everything a target owns: history, intent, lease, a call in flight)."""

    problems: tuple[str, ...]  # why it may not be carried out at all (then nothing changes)
    keep: tuple[tuple[str, str], ...] = ()  # (running name, reloaded name): the same target
    remove: tuple[str, ...] = ()  # running names whose target no reloaded policy has
    add: tuple[str, ...] = ()  # reloaded names whose target nothing running has
    moved: tuple[tuple[str, str], ...] = ()  # (name, old target key): a policy retargeted


def reload_plan(running: Mapping[str, Running], reloaded: Iterable[tuple[str, str]]) -> ReloadPlan:
    """How the reloaded policies (name, target key) replace the running ones.

    A running target that a reloaded policy names again is kept, whatever that policy is
    called now (a rename keeps its history, its lease and a restart in flight). A running
    target that no reloaded policy names is given up; one whose restart is in flight or left
    unfinished may not be: the containers it stopped are started again by the supervisor
    that stopped them, and its result is recorded. Such a reload is refused as a whole,
    with the reason, and may be made again when the restart is done."""
    wanted = list(reloaded)
    by_target = {target: name for name, target in wanted}
    keep, remove, problems = [], [], []
    for name, now in running.items():
        if now.target in by_target:
            keep.append((name, by_target[now.target]))
            continue
        remove.append(name)
        if not now.unfinished:
            continue
        moved_to = next((t for n, t in wanted if n == name), None)
        if moved_to is not None:
            problems.append(
                f"{name}: target: cannot change from {now.target} while a restart of it is "
                "not finished; reload again when it is"
            )
        else:
            problems.append(
                f"{name}: cannot be removed while a restart of {now.target} is not finished; "
                "reload again when it is"
            )
    kept_targets = {running[n].target for n, _ in keep}
    add = [name for name, target in wanted if target not in kept_targets]
    moved = [(n, running[n].target) for n in remove if n in add]
    if problems:
        return ReloadPlan(tuple(problems))
    return ReloadPlan((), tuple(keep), tuple(remove), tuple(add), tuple(moved))
