"""What the daemon is wired from: the edges it talks through (probe, progress monitor,
actuator, kombu's unacked hash), the factories that make the real ones lazily (a command that
does not run the daemon never imports Redis, Celery or docker-py), and one supervised target.
Tests replace the factories with fakes at these edges."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from supervisor.core.engine import Decision
from supervisor.core.evidence import Holding
from supervisor.core.procedure import Seen
from supervisor.core.replicas import Container
from supervisor.core.results import LookupResult, RestartResult, StartResult
from supervisor.core.tracker import TrackerState
from supervisor.policy import Policy, Target
from supervisor.sample import Load, Progress, Sample, WorkerFacts


class Probe(Protocol):
    # Probes of one group share a connection: the first samples them all in one round trip.
    group: Hashable

    def sample(self, queues: Sequence[str] | None = None) -> Sample: ...
    def sample_group(self, requests: Sequence[tuple[Probe, Sequence[str]]]) -> list[Sample]: ...
    def close(self) -> None: ...


class ProgressSource(Protocol):
    def progress(self, queues: list[str]) -> Progress: ...
    def consumers(self) -> dict[str, frozenset[str] | None]: ...
    def holding(self, workers: list[str]) -> Holding | None: ...
    def by_worker(self, queues: list[str]) -> dict[str, Progress]: ...
    def live_consumers(self, queues: list[str]) -> tuple[str, ...]: ...
    def facts(self, workers: list[str]) -> tuple[WorkerFacts, ...]: ...
    def loads(self, workers: list[str], ask: list[str]) -> tuple[Load, ...]: ...
    def poll_at_least_every(self, seconds: float) -> None: ...
    def request_stop(self) -> None: ...
    def stop(self, timeout: float = 3.0) -> None: ...


class Steps(Protocol):
    """What a cold restart's steps (core/procedure.py) are carried out on: containers, each
    addressed by its name."""

    def replicas(self, target: Target, only: tuple[str, ...] = ()) -> tuple[Seen, ...]: ...
    def inspect(self, name: str) -> Seen: ...
    def signal(self, name: str, signal: str) -> None: ...
    def start(self, name: str) -> None: ...


class Actuator(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...
    # None: the target is restarted in one call (`restart`), e.g. a Swarm service.
    def steps(self, target: Target) -> Steps | None: ...
    def identify(self, target: Target) -> tuple[Container, ...]: ...
    def stacks(self, names: tuple[str, ...], wait: float = 1.0) -> str: ...
    def names(self) -> list[str]: ...
    def lookup(self, target: Target) -> LookupResult: ...
    def ensure_running(self, target: Target) -> StartResult: ...
    def ping(self) -> str | None: ...
    def close(self) -> None: ...


ProbeFactory = Callable[[Policy, Callable[[], float]], Probe]
ProgressFactory = Callable[[Policy, Callable[[], float]], ProgressSource]
UnackedFactory = Callable[[Policy], Any]


@dataclass
class Supervised:
    """One policy's target as the loop keeps it between ticks."""

    policy: Policy
    probe: Probe
    state: TrackerState
    monitor: ProgressSource | None = None  # its broker's, when the policy watches progress
    next_due: float = 0.0
    last_decision: Decision | None = None
    last_sample: Sample | None = None  # what the last tick saw (the heartbeat tells of it)
    containers: tuple[Container, ...] = ()  # the target's, to map workers to (every minute)
    identified: bool = False  # `containers` was read from Docker at least once
    identify_error: str | None = None  # why the target's containers are not found now
    identifying: Future[tuple[Container, ...]] | None = None
    next_identify: float = 0.0


def redis_probe(policy: Policy, clock: Callable[[], float]) -> Probe:
    from supervisor.adapters.redis_probe import RedisProbe

    return RedisProbe(policy.broker, clock)


def progress_monitor(policy: Policy, clock: Callable[[], float]) -> ProgressSource:
    from supervisor.adapters.progress_probe import ProgressMonitor

    # On the samples' clock (the daemon's stepless one): the workers' answers it stamps are
    # compared with the samples' times, and its facts are persisted with the daemon's frame.
    every = policy.detect.interval
    monitor = ProgressMonitor(policy.broker, poll_every=every, clock=clock)
    monitor.start()
    return monitor


def unacked_store(policy: Policy) -> Any:
    from supervisor.adapters.unacked_store import UnackedStore

    return UnackedStore(policy.broker)


def docker_actuator(retry_seconds: float = 30.0) -> Actuator:
    """The Docker actuator; a transient failure is retried for `retry_seconds` (0: one try)."""
    from supervisor.adapters.docker_actuator import DockerActuator

    if retry_seconds <= 0:
        return DockerActuator(retry_attempts=1, retry_seconds=0.0)
    return DockerActuator(retry_seconds=retry_seconds)
