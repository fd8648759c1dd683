"""A cold restart of a target's containers as steps the core decides, one at a time, each
outcome fed back (docs/design.md, "Restarts that lose nothing"); the executor's loop
(runtime/restarting.py) only carries each step out and reports what happened, with the
monotonic time, from which the core decides every wait (`stop_timeout`, the SIGKILL's, the
confirmation's).

Per container, one after another: SIGQUIT (unless the plan says its cold shutdown breaks), poll
until the very run that was signalled has stopped, or Docker's restart policy has started it
again, or `stop_timeout` has passed (then SIGKILL and poll again); when it had to be killed,
read `unacked` while it is stopped, look once more that it still is (same run, not running:
the read was made with it stopped), give back what core/unacked.py picks from that read, then
start it and poll until it runs with a new StartedAt. A container Docker started again by
itself is neither killed nor started a second time. Nothing is given back from a read made
while a worker that may hold the entries runs unless its own workers reported them.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from supervisor.core import unacked
from supervisor.core.evidence import Holding
from supervisor.core.plan import Plan
from supervisor.core.results import Outcome, RestartResult
from supervisor.core.unacked import Held

KILL_WAIT = 10.0  # seconds a SIGKILLed container has to stop
CONFIRM_WAIT = 60.0  # seconds a started container has to run again


# -- what the core asks for --------------------------------------------------------------------


@dataclass(frozen=True)
class Find:
    """Look the plan's containers up (all of the target's when it names none)."""

    only: tuple[str, ...]


@dataclass(frozen=True)
class ReadHeld:
    """Read kombu's unacked hash (and index). `container`: the stopped one it is read for;
    None: the read before any signal, when the workers have just said what they hold."""

    container: str | None


@dataclass(frozen=True)
class Signal:
    container: str
    signal: str  # SIGQUIT or SIGKILL


@dataclass(frozen=True)
class Inspect:
    container: str
    after: float = 0.0  # seconds to wait before looking (the poll interval)


@dataclass(frozen=True)
class Start:
    container: str


@dataclass(frozen=True)
class GiveBack:
    """Give these entries back, each only if it is still there with the same score."""

    container: str
    entries: tuple[Held, ...]


@dataclass(frozen=True)
class CountLeft:
    """How many entries are left in unacked (the audit's `unacked_left`)."""


@dataclass(frozen=True)
class Done:
    result: RestartResult


Step = Find | ReadHeld | Signal | Inspect | Start | GiveBack | CountLeft | Done


# -- what the loop reports ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A container as inspect saw it."""

    name: str
    running: bool
    started_at: str | None = None
    restart_count: int = 0
    restarting: bool = False

    @property
    def run(self) -> tuple[str | None, int]:
        """Which run of the container this is."""
        return self.started_at, self.restart_count


@dataclass(frozen=True)
class Found:
    containers: tuple[Seen, ...]


@dataclass(frozen=True)
class Read:
    entries: tuple[Held, ...]


@dataclass(frozen=True)
class GaveBack:
    count: int
    left: int | None
    error: str | None = None


@dataclass(frozen=True)
class Ok:
    """A signal sent, a start made."""


@dataclass(frozen=True)
class Left:
    count: int | None


@dataclass(frozen=True)
class Failed:
    error: str


Report = Found | Read | Seen | GaveBack | Ok | Left | Failed


# -- the state of one restart in flight --------------------------------------------------------


class Phase(enum.Enum):
    BEGIN = "begin"  # Find asked
    BEFORE = "before"  # the read before any signal asked
    NEXT = "next"  # about to take on the next container
    LOOKING = "looking"  # its turn: inspected once more, to signal the run that runs now
    STOPPING = "stopping"  # SIGQUIT sent: polling until stopped, restarted, or the deadline
    KILLING = "killing"  # SIGKILL sent: polling until stopped or restarted
    READING = "reading"  # killed and stopped: unacked read asked
    RECHECK = "recheck"  # read: is it still the same stopped run?
    GIVING = "giving"  # what to give back asked
    STARTING = "starting"  # start asked
    CONFIRMING = "confirming"  # polling until it runs again with a new StartedAt
    COUNTING = "counting"  # every container done: how many are left in unacked
    DONE = "done"


@dataclass(frozen=True)
class Settings:
    """What the plan and the policy fix for the whole restart."""

    method: str
    stop_timeout: float
    poll: float
    sigquit: bool
    queues: tuple[str, ...]
    others_consume: bool  # a live worker outside the plan consumes the queues
    # Per container, the task ids its workers reported (None: unknown, or one did not answer).
    held_ids: tuple[tuple[str, frozenset[str] | None], ...]


@dataclass(frozen=True)
class State:
    settings: Settings
    began: float
    phase: Phase = Phase.BEGIN
    containers: tuple[Seen, ...] = ()  # as found (each as looked at on its turn), in order
    index: int = 0  # the container being restarted
    # A container was restarted by someone else between Find and its turn: a worker that
    # started before the read `before` may hold deliveries unchanged since, so an unchanged
    # delivery no longer proves that its holder is dead (no `unclaimed` give-back).
    moved: bool = False
    before: tuple[tuple[str, float | None], ...] = ()  # unacked's scores before any signal
    signalled: tuple[str | None, int] | None = None  # the run that was signalled
    deadline: float = 0.0
    killed: tuple[str, ...] = ()
    by_restart_policy: tuple[str, ...] = ()
    started_at: tuple[str, ...] = ()
    changed: bool = False
    read: tuple[Held, ...] = ()
    restored: int | None = None
    unacked_left: int | None = None
    restore_error: str | None = None

    @property
    def current(self) -> Seen:
        return self.containers[self.index]


def held_ids(plan: Plan, holding: Holding | None) -> tuple[tuple[str, frozenset[str] | None], ...]:
    """Per container of the plan, the task ids its own workers reported holding: a sibling's
    reservations are never taken for this one's. None where a worker of it did not answer or
    none is known (then nothing unreported is taken as its own while others may run)."""
    out: list[tuple[str, frozenset[str] | None]] = []
    for container in plan.containers:
        workers = [w for w, c in plan.placement if c == container]
        if not workers and len(plan.containers) == 1:
            workers = list(plan.workers)
        ids: frozenset[str] | None = None
        if holding is not None and workers and not set(workers) & set(holding.silent):
            ids = frozenset(
                str(r.get("id"))
                for answer in (holding.active, holding.reserved)
                for w in workers
                for r in answer.get(w, ())
            )
        out.append((container, ids))
    return tuple(out)


def begin(
    plan: Plan,
    holding: Holding | None,
    *,
    method: str,
    stop_timeout: float,
    poll: float,
    now: float,
) -> tuple[State, Step]:
    settings = Settings(
        method,
        stop_timeout,
        poll,
        plan.cold.sigquit,
        plan.queues,
        plan.others_consume,
        held_ids(plan, holding),
    )
    return State(settings, now), Find(plan.containers)


def advance(state: State, report: Report, now: float) -> tuple[State, Step]:
    """The next step, from what the last one did. Pure: the loop reports, this decides."""
    s, phase = state, state.phase
    if isinstance(report, Failed):
        return _failure(s, report.error, now)
    if phase is Phase.BEGIN:
        assert isinstance(report, Found)
        s = dataclasses.replace(s, containers=report.containers, phase=Phase.BEFORE)
        return s, ReadHeld(None)
    if phase is Phase.BEFORE:
        assert isinstance(report, Read)
        before = tuple(sorted(unacked.scores(report.entries).items()))
        return _take_on(dataclasses.replace(s, before=before), now)
    if phase is Phase.NEXT:
        return _take_on(s, now)
    if phase is Phase.COUNTING:
        assert isinstance(report, Left)
        return _finish(dataclasses.replace(s, unacked_left=report.count), now)
    name = s.current.name
    if phase is Phase.LOOKING:
        assert isinstance(report, Seen)
        found = s.current
        moved = s.moved or report.run != found.run or report.restarting
        containers = (*s.containers[: s.index], report, *s.containers[s.index + 1 :])
        return _signal(dataclasses.replace(s, containers=containers, moved=moved), now)
    if phase is Phase.STOPPING or phase is Phase.KILLING:
        if isinstance(report, Ok):  # the signal went: look at it
            return s, Inspect(name)
        assert isinstance(report, Seen)
        if report.run != s.signalled or report.restarting:
            # Docker's restart policy started it again: not killed, not started by us.
            s = dataclasses.replace(s, by_restart_policy=(*s.by_restart_policy, name))
            if phase is Phase.KILLING:  # killed, then started by Docker: what its dead
                return dataclasses.replace(s, phase=Phase.READING), ReadHeld(name)  # held
            return _confirming(s, now)
        if not report.running:
            if phase is Phase.KILLING:
                return dataclasses.replace(s, phase=Phase.READING), ReadHeld(name)
            return dataclasses.replace(s, phase=Phase.STARTING), Start(name)
        if now < s.deadline:
            return s, Inspect(name, s.settings.poll)
        if phase is Phase.STOPPING:
            return _kill(s, now)
        return _finish(s, now, f"container {name!r} did not stop after SIGKILL")
    if phase is Phase.READING:
        assert isinstance(report, Read)
        s = dataclasses.replace(s, read=report.entries, phase=Phase.RECHECK)
        return s, Inspect(name)
    if phase is Phase.RECHECK:
        assert isinstance(report, Seen)
        # Still the run that was signalled, stopped: the read was made while it was.
        same_stop = not report.running and not report.restarting and report.run == s.signalled
        if (report.running or report.restarting) and name not in s.by_restart_policy:
            # Started meanwhile by someone else: the read may hold its fresh reservations.
            s = dataclasses.replace(s, by_restart_policy=(*s.by_restart_policy, name))
        # Nobody else may hold what was read: no sibling outside the plan, no other
        # container of this restart (each may run: not yet signalled, started again, or
        # started by its restart policy), and this one stopped throughout the read.
        alone = same_stop and not s.settings.others_consume and len(s.containers) == 1
        # The last container: every worker that ran before the restart has stopped (each
        # earlier one was seen stopped or started anew, this one too), so a delivery that
        # has not changed since is held by a dead worker, reported or not. Not when one was
        # found stopped: its restart policy may have started it before the read `before`.
        last = (
            not s.settings.others_consume
            and not s.moved
            and s.index == len(s.containers) - 1
            and all(c.running for c in s.containers)
        )
        ids = dict(s.settings.held_ids).get(name)
        picked = unacked.to_give_back(
            s.read, s.settings.queues, ids, dict(s.before), not alone, unclaimed=last
        )
        s = dataclasses.replace(s, read=(), phase=Phase.GIVING)
        return s, GiveBack(name, picked)
    if phase is Phase.GIVING:
        if isinstance(report, GaveBack):
            s = dataclasses.replace(
                s,
                restored=(s.restored or 0) + report.count,
                unacked_left=report.left,
                restore_error=report.error or s.restore_error,
            )
        if name in s.by_restart_policy:
            return _confirming(s, now)
        return dataclasses.replace(s, phase=Phase.STARTING), Start(name)
    if phase is Phase.STARTING:
        return _confirming(s, now)
    if phase is Phase.CONFIRMING:
        assert isinstance(report, Seen)
        if report.running and report.started_at != s.current.started_at:
            s = dataclasses.replace(
                s,
                started_at=(*s.started_at, str(report.started_at)),
                index=s.index + 1,
                phase=Phase.NEXT,
            )
            return _take_on(s, now)
        if now < s.deadline:
            return s, Inspect(name, s.settings.poll)
        return _finish(s, now, f"container {name!r} is not running again after the restart")
    raise AssertionError(f"no step after {phase}")


def _take_on(s: State, now: float) -> tuple[State, Step]:
    """The next container, looked at once more before it is signalled (Find may have seen it
    long before its turn), or the count of what is left once every one runs again."""
    if s.index >= len(s.containers):
        return dataclasses.replace(s, phase=Phase.COUNTING), CountLeft()
    return dataclasses.replace(s, phase=Phase.LOOKING), Inspect(s.current.name)


def _signal(s: State, now: float) -> tuple[State, Step]:
    """Signal the run of the current container that runs now (SIGQUIT, or SIGKILL where its
    cold shutdown breaks); a container found stopped is only started."""
    seen = s.current
    s = dataclasses.replace(s, changed=True, signalled=seen.run)
    if not seen.running:  # stopped already: only started
        return dataclasses.replace(s, phase=Phase.STARTING), Start(seen.name)
    if not s.settings.sigquit:
        return _kill(s, now)
    s = dataclasses.replace(s, phase=Phase.STOPPING, deadline=now + s.settings.stop_timeout)
    return s, Signal(seen.name, "SIGQUIT")


def _kill(s: State, now: float) -> tuple[State, Step]:
    name = s.current.name
    s = dataclasses.replace(
        s, phase=Phase.KILLING, deadline=now + KILL_WAIT, killed=(*s.killed, name)
    )
    return s, Signal(name, "SIGKILL")


def _confirming(s: State, now: float) -> tuple[State, Step]:
    s = dataclasses.replace(s, phase=Phase.CONFIRMING, deadline=now + CONFIRM_WAIT)
    return s, Inspect(s.current.name)


def _failure(s: State, error: str, now: float) -> tuple[State, Step]:
    """A step that failed. Docker's fail the restart (the intent left behind completes it:
    containers started, nothing given back); unacked's do not: the restart goes on, and the
    audit says why nothing (more) was given back."""
    phase = s.phase
    if phase is Phase.BEFORE:  # no read before the signals: only the alone case gives back
        return _take_on(dataclasses.replace(s, restore_error=error), now)
    if phase is Phase.READING or phase is Phase.GIVING:
        s = dataclasses.replace(s, restore_error=error, read=())
        if s.current.name in s.by_restart_policy:
            return _confirming(s, now)
        return dataclasses.replace(s, phase=Phase.STARTING), Start(s.current.name)
    if phase is Phase.COUNTING:
        return _finish(s, now)
    return _finish(s, now, error)


def _finish(s: State, now: float, error: str | None = None) -> tuple[State, Step]:
    result = RestartResult(
        Outcome.FAILED if error else Outcome.DONE,
        s.settings.method,
        tuple(c.name for c in s.containers),
        now - s.began,
        error=error,
        started_at=s.started_at if error is None else (),
        changed=s.changed,
        by_restart_policy=s.by_restart_policy,
        killed=s.killed,
        sigquit=s.settings.sigquit,
        restored=s.restored if s.killed else None,
        unacked_left=s.unacked_left,
        restore_error=s.restore_error,
    )
    return dataclasses.replace(s, phase=Phase.DONE), Done(result)
