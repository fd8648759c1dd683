"""What the executor reports back to the core: plain data, whatever adapter produced it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from supervisor.core.evidence import HungTask


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class TaskRef:
    """One task of a Swarm service, as the audit names it."""

    id: str
    slot: int | None  # None for a global service's task
    node: str
    container: str  # its container's name (the task's name)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "slot": self.slot, "node": self.node, "container": self.container}


@dataclass(frozen=True)
class RestartResult:
    outcome: Outcome
    method: str
    containers: tuple[str, ...] = ()
    seconds: float = 0.0
    error: str | None = None
    started_at: tuple[str, ...] = ()  # the new StartedAt of each container, when done
    # A call that changes a container (kill, restart) was made: when the restart fails after
    # that, the target may be left stopped and must be started.
    changed: bool = False
    # Containers that Docker's restart policy started again after the signal (not the
    # supervisor: one restart is one new start).
    by_restart_policy: tuple[str, ...] = ()
    killed: tuple[str, ...] = ()  # containers SIGKILLed (SIGQUIT ignored, or not sent)
    sigquit: bool = True  # False: the workers' cold shutdown is known to break, not tried
    called_at: float | None = None  # epoch seconds when the Docker calls began
    # After a SIGKILL: messages given back from kombu's unacked hash, and what is left there.
    restored: int | None = None
    unacked_left: int | None = None
    restore_error: str | None = None
    # A Swarm service's: the tasks acted on, and those that replaced them.
    tasks: tuple[TaskRef, ...] = ()
    new_tasks: tuple[TaskRef, ...] = ()
    # What the stopped workers were running (core/evidence.py); None: nobody was asked.
    hung: tuple[HungTask, ...] | None = None
    silent: tuple[str, ...] = ()  # workers asked that did not answer
    # Poison messages parked instead of given back (core/quarantine.py): their task ids, the
    # dead-letter list they are in, or why they could not be parked.
    parked: tuple[str, ...] = ()
    parked_in: str | None = None
    park_error: str | None = None
    stacks: str | None = None  # the file of the stacks the workers logged, in the state dir


@dataclass(frozen=True)
class StartResult:
    """Making sure the target's containers run (start those that are stopped, nothing else)."""

    error: str | None = None
    started: tuple[str, ...] = ()  # the containers that were stopped and have been started
    running: tuple[str, ...] = ()  # every container of the target, running now

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class LookupResult:
    """A dry-run restart: which containers a restart would act on, or why it could not."""

    containers: tuple[str, ...] = ()
    error: str | None = None
    tasks: tuple[TaskRef, ...] = ()  # a Swarm service's tasks a restart would act on
    # What the workers a live restart would stop hold, asked as a live restart asks them
    # (None: nobody was asked); the reserved messages that would come back; the running tasks
    # a live restart would park as poison.
    hung: tuple[HungTask, ...] | None = None
    silent: tuple[str, ...] = ()
    reserved: int | None = None
    parked: tuple[str, ...] = ()
