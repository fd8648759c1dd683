"""A small world of worker containers and kombu's unacked hash, for the restart procedure's
tests: the steps of core/procedure.py are carried out on it, and between any two of them the
world moves (workers reserve and finish messages, Docker's restart policy starts a container,
a sibling outside the restart runs throughout). It records what would break: a message given
back while a running worker holds it, and every task's executions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from supervisor.adapters.unacked_store import Restored
from supervisor.core.evidence import Holding
from supervisor.core.procedure import Seen
from supervisor.core.unacked import Held
from supervisor.policy import Target

QUEUE = "celery"


@dataclass
class Box:
    """One container and the worker in it."""

    name: str
    ignores_sigquit: bool = False  # hung: a cold shutdown gives back `gives_up` and stays up
    gives_up: int = 0  # of its reservations, how many a SIGQUIT it ignores still gives back
    restart_policy: bool = False  # Docker starts it again when it stops
    running: bool = True
    run: int = 0  # which run of the container (StartedAt)
    restarts: int = 0  # Docker's RestartCount

    def seen(self) -> Seen:
        return Seen(self.name, self.running, f"run-{self.run}", self.restarts)


@dataclass
class Entry:
    task: str
    score: int
    holder: tuple[str, int]  # (container, run) it was delivered to


@dataclass
class World:
    boxes: dict[str, Box]
    queue: list[str] = field(default_factory=list)
    unacked: dict[str, Entry] = field(default_factory=dict)  # tag -> entry
    clock: int = 0  # kombu's time(): every delivery a new score
    executed: Counter[str] = field(default_factory=Counter)
    given_back: list[tuple[str, int]] = field(default_factory=list)  # (tag, score)
    broken: list[str] = field(default_factory=list)
    signals: list[tuple[str, str]] = field(default_factory=list)
    starts: list[str] = field(default_factory=list)

    # -- the world moving ---------------------------------------------------------------------

    def alive(self, holder: tuple[str, int]) -> bool:
        box = self.boxes[holder[0]]
        return box.running and box.run == holder[1]

    def reserve(self, name: str) -> None:
        """A running worker takes the next message (same tag as ever, a new score)."""
        box = self.boxes[name]
        if box.running and self.queue:
            task = self.queue.pop(0)
            self.clock += 1
            self.unacked[tag(task)] = Entry(task, self.clock, (name, box.run))

    def finish(self, name: str) -> None:
        """A running worker that is not hung runs one of its messages and acknowledges it."""
        box = self.boxes[name]
        if not box.running or box.ignores_sigquit:
            return
        for t, e in sorted(self.unacked.items()):
            if e.holder == (name, box.run):
                self.executed[e.task] += 1
                del self.unacked[t]
                return

    def policy_start(self, name: str) -> None:
        """Docker's restart policy starts a stopped container (at any moment, stronger than
        Docker, which leaves a container killed through the API stopped)."""
        box = self.boxes[name]
        if box.restart_policy and not box.running:
            box.running, box.run, box.restarts = True, box.run + 1, box.restarts + 1

    def holding(self, names: list[str], silent: set[str]) -> Holding:
        """What each asked worker reports it holds (its container is named like it)."""
        reserved = {
            n: tuple(
                {"id": e.task}
                for e in self.unacked.values()
                if e.holder == (n, self.boxes[n].run) and self.boxes[n].running
            )
            for n in names
            if n not in silent
        }
        return Holding(dict.fromkeys(reserved, ()), reserved, tuple(sorted(silent & set(names))))

    def _release(self, name: str, run: int, count: int | None) -> None:
        """A cold shutdown: its reservations (`count` of them, None: all) back to the queue."""
        mine = sorted(t for t, e in self.unacked.items() if e.holder == (name, run))
        for t in mine[:count] if count is not None else mine:
            self.queue.insert(0, self.unacked.pop(t).task)

    # -- the Steps the procedure acts on ------------------------------------------------------

    def replicas(self, target: Target, only: tuple[str, ...] = ()) -> tuple[Seen, ...]:
        return tuple(self.boxes[n].seen() for n in only)

    def inspect(self, name: str) -> Seen:
        return self.boxes[name].seen()

    def signal(self, name: str, signal: str) -> None:
        self.signals.append((name, signal))
        box = self.boxes[name]
        if not box.running:
            return
        if signal == "SIGQUIT":
            if box.ignores_sigquit:
                self._release(name, box.run, box.gives_up)
                return
            self._release(name, box.run, None)
        box.running = False

    def start(self, name: str) -> None:
        self.starts.append(name)
        box = self.boxes[name]
        if not box.running:
            box.running, box.run = True, box.run + 1
            box.ignores_sigquit = False  # the fresh worker is not hung

    # -- kombu's unacked hash -----------------------------------------------------------------

    def held(self) -> list[Held]:
        return [Held(t, e.task, QUEUE, float(e.score)) for t, e in sorted(self.unacked.items())]

    def give_back(self, entries: tuple[Held, ...]) -> Restored:
        count = 0
        for h in entries:
            e = self.unacked.get(h.tag)
            if e is None or float(e.score) != h.at:
                continue  # taken since, or delivered again: not the entry read
            if self.alive(e.holder):
                self.broken.append(f"{h.tag} given back while {e.holder} holds it")
            if (h.tag, e.score) in self.given_back:
                self.broken.append(f"{h.tag} given back twice")
            self.given_back.append((h.tag, e.score))
            del self.unacked[h.tag]
            self.queue.append(e.task)
            count += 1
        return Restored(count, len(self.unacked))

    def left(self) -> int:
        return len(self.unacked)

    def close(self) -> None:
        pass

    # -- the resume path ----------------------------------------------------------------------

    def ensure_running(self, names: list[str]) -> None:
        """EnsureRunning after a supervisor crash: the stopped ones started, nothing given
        back."""
        for name in names:
            self.start(name)

    def drain(self) -> None:
        """Afterwards: every running worker runs what it holds and what is queued."""
        for _ in range(1000):
            before = (len(self.queue), len(self.unacked))
            for name, box in self.boxes.items():
                if box.running and not box.ignores_sigquit:
                    self.reserve(name)
                    self.finish(name)
            if (len(self.queue), len(self.unacked)) == before:
                return


def tag(task: str) -> str:
    return f"tag-{task}"
