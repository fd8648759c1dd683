"""The daemon in-process, with fakes only at its edges: a probe that returns the depths a test
sets, an actuator that records calls (and can block, fail or raise), a progress monitor and
kombu's unacked hash as the test fills them, and a clock the test moves. Shared by the
in-process tests; it imports no test module."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait
from pathlib import Path
from typing import Any

from supervisor.clock import Frame, Here
from supervisor.core.evidence import Holding
from supervisor.core.replicas import Container
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.core.unacked import Held
from supervisor.policy import Policy, Restart, Target
from supervisor.runtime.daemon import Daemon
from supervisor.runtime.leasing import Leases
from supervisor.sample import Load, Progress, Sample, WorkerFacts
from supervisor.sinks.audit import read_audit
from tests.helpers import policy_dict


def to_toml(data: dict[str, Any]) -> str:
    lines = [f"name = {json.dumps(data['name'])}"]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


class Clock:
    """A stepless clock the test moves; its wall clock is `t + wall_ahead` (a test steps it)."""

    def __init__(self) -> None:
        self.t = 1_000_000.0
        self.wall_ahead = 0.0
        self.frame = Frame("inprocess-boot", 0.0)

    def __call__(self) -> float:
        return self.t

    def here(self) -> Here:
        return Here(self.frame, self.t, self.t + self.wall_ahead)


class FakeProbe:
    def __init__(self, depths: dict[str, int | None], name: str, clock: Clock) -> None:
        self.depths, self.name, self.clock = depths, name, clock
        self.closed = False
        self.asked: list[tuple[str, ...]] = []
        self.group = object()  # its own: sampled alone

    def sample_group(self, requests: Sequence[tuple[Any, Sequence[str]]]) -> list[Sample]:
        return [probe.sample(queues) for probe, queues in requests]

    def sample(self, queues: Sequence[str] | None = None) -> Sample:
        self.asked.append(tuple(queues or ()))
        depth = self.depths.get(self.name)
        if depth is None:
            return Sample.failed(self.clock(), "connection refused")
        return Sample(self.clock(), depth, {"celery": depth})

    def close(self) -> None:
        self.closed = True


class FakeActuator:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.restart_result: RestartResult | Exception = RestartResult(
            Outcome.DONE, "cold", ("w",), 0.1, changed=True
        )
        self.sigquit: list[bool] = []
        self.start_results: list[StartResult] = []
        self.containers: tuple[Container, ...] = (Container("w", "abc123"),)

    def restart(
        self, target: Target, policy: Restart, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult:
        self.calls.append("restart" if not only else f"restart {','.join(only)}")
        self.sigquit.append(sigquit)
        self.gate.wait(10)
        if isinstance(self.restart_result, Exception):
            raise self.restart_result
        return self.restart_result

    def steps(self, target: Target) -> None:
        return None  # restarted in one call, as a Swarm service is

    def identify(self, target: Target) -> tuple[Container, ...]:
        if not self.containers:
            from supervisor.errors import TargetError

            raise TargetError(f"container {target.container!r} not found")
        return self.containers

    def names(self) -> list[str]:
        return ["docker-worker-1", "docker-api-1"]

    def lookup(self, target: Target) -> LookupResult:
        self.calls.append("lookup")
        return LookupResult(("w",))

    def ensure_running(self, target: Target) -> StartResult:
        self.calls.append("ensure_running")
        return self.start_results.pop(0) if self.start_results else StartResult(running=("w",))

    def ping(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class FakeMonitor:
    """The progress monitor's answers, set by the test: which workers consume what, their
    progress, what each holds (reserved or active) and what they said of themselves."""

    def __init__(self) -> None:
        self.queues: dict[str, frozenset[str] | None] = {}
        self.workers: dict[str, Progress] = {}
        self.reserved: dict[str, set[str]] = {}
        self.running: dict[str, list[dict[str, Any]]] = {}
        self.asked: list[list[str]] = []  # every held_by question, with the workers asked
        self.known: tuple[WorkerFacts, ...] = ()
        self.live: tuple[Load, ...] = ()  # the target's workers, as their heartbeats say
        self.inquired: list[list[str]] = []  # the workers the rules at any depth asked about

    def progress(self, queues: list[str]) -> Progress:
        known = [p.processed for p in self.workers.values() if p.processed is not None]
        if known:
            return Progress(sum(known), "heartbeats")
        return Progress(None, unknown="not watched in this test", unconsumed=None)

    def consumers(self) -> dict[str, frozenset[str] | None]:
        return dict(self.queues)

    def by_worker(self, queues: list[str]) -> dict[str, Progress]:
        return dict(self.workers)

    def live_consumers(self, queues: list[str]) -> tuple[str, ...]:
        return tuple(sorted(w for w, p in self.workers.items() if p.processed is not None))

    def facts(self, workers: list[str]) -> tuple[WorkerFacts, ...]:
        return tuple(f for f in self.known if f.worker in workers)

    def loads(self, workers: list[str], ask: list[str]) -> tuple[Load, ...]:
        self.inquired.append(list(ask))
        return tuple(x for x in self.live if x.worker in workers)

    def request_stop(self) -> None:
        pass

    def stop(self, timeout: float = 3.0) -> None:
        pass

    def holding(self, workers: list[str]) -> Holding | None:
        """`running`: per worker, the requests it runs (Celery's `active`); `reserved`: the ids
        it holds besides (reserved). A worker in neither did not answer."""
        self.asked.append(list(workers))
        answered = [w for w in workers if w in self.reserved or w in self.running]
        return Holding(
            {w: tuple(self.running.get(w, ())) for w in answered},
            {w: tuple({"id": i} for i in sorted(self.reserved.get(w, ()))) for w in answered},
            tuple(w for w in workers if w not in answered),
        )

    def poll_at_least_every(self, seconds: float) -> None:
        pass


class FakeUnacked:
    """kombu's unacked hash as the test fills it; records what was given back."""

    def __init__(self, held: list[Held] | None = None) -> None:
        self.entries = list(held or [])
        self.restored: list[tuple[str, ...]] = []
        self.parked: list[Held] = []

    def held(self) -> list[Held]:
        return list(self.entries)

    def left(self) -> int:
        return len(self.entries)

    def restore(self, tags: tuple[str, ...]) -> Any:
        from supervisor.adapters.unacked_store import Restored

        self.restored.append(tags)
        self.entries = [e for e in self.entries if e.tag not in tags]
        return Restored(len(tags), len(self.entries))

    def give_back(self, entries: tuple[Held, ...]) -> Any:
        """Only those still there as they were read (same tag, same score)."""
        from supervisor.adapters.unacked_store import Restored

        tags = tuple(e.tag for e in entries if e in self.entries)
        self.restored.append(tags)
        self.entries = [e for e in self.entries if e.tag not in tags]
        return Restored(len(tags), len(self.entries))

    def park(self, entries: dict[str, Any], key: str) -> Any:
        from supervisor.adapters.unacked_store import Parked

        moved = [e for e in self.entries if e.task_id in entries]
        self.parked.extend(moved)
        self.entries = [e for e in self.entries if e not in moved]
        return Parked(tuple(sorted(str(e.task_id) for e in moved)), key)

    def close(self) -> None:
        pass


class Harness:
    def __init__(self, tmp: Path, **policy: Any) -> None:
        self.tmp = tmp
        self.clock = Clock()
        self.depths: dict[str, int | None] = {}
        self.actuator = FakeActuator()
        self.probes: list[FakeProbe] = []
        self.policy_file = tmp / "policies" / "w.toml"
        self.write_policy(**policy)
        self.daemon: Daemon | None = None

    def write_policy(self, **sections: Any) -> None:
        data = policy_dict(**{"name": "w", "target": {"container": "w"}, **sections})
        self.policy_file.parent.mkdir(exist_ok=True)
        self.policy_file.write_text(to_toml(data))

    def probe(self, policy: Policy, clock: Callable[[], float]) -> FakeProbe:
        probe = FakeProbe(self.depths, policy.name, self.clock)
        self.probes.append(probe)
        return probe

    def start(
        self,
        dry_run: bool = False,
        monitor: FakeMonitor | None = None,
        leases: Leases | None = None,
        unacked: FakeUnacked | None = None,
    ) -> Daemon:
        from supervisor.policy import load_policies

        if leases is not None:  # the shared history is translated on the test's clock
            leases.here = self.clock.here
        self.daemon = Daemon(
            [self.policy_file.parent],
            self.tmp / "state",
            dry_run=dry_run,
            actuator=self.actuator,
            probe_factory=self.probe,
            progress_factory=None if monitor is None else (lambda policy, clock: monitor),
            clock=self.clock,
            monotonic=self.clock,
            leases=leases,
            unacked_factory=lambda policy: unacked or FakeUnacked(),
        )
        (self.tmp / "state").mkdir(exist_ok=True)
        self.daemon.open(load_policies([self.policy_file.parent]))
        return self.daemon

    def tick(self, depth: int | None, seconds: float = 1.0) -> None:
        """Move the clock, set the depth, and run one pass of the loop."""
        assert self.daemon is not None
        self.clock.t += seconds
        self.depths["w"] = depth
        self.daemon.pass_once()
        # The target's containers are read off the loop: let that read finish, so that the
        # next tick sees it whatever the machine's load (the fake answers at once).
        for item in self.daemon.supervised.values():
            if item.identifying is not None:
                wait([item.identifying], timeout=5)

    def settle(self) -> None:
        """Wait for the executor's calls in flight, then one more pass to take their results."""
        assert self.daemon is not None
        deadline = time.monotonic() + 10
        while self.daemon.executor.in_flight and time.monotonic() < deadline:
            self.daemon.waker.wait(0.05)
            self.daemon.pass_once()

    def audit(self, kind: str | None = None) -> list[dict[str, Any]]:
        records = read_audit(self.tmp / "state" / "audit.jsonl")
        return [r for r in records if kind is None or r["event"] == kind]

    def saved(self, target: str = "container%3Aw") -> dict[str, Any]:
        path = self.tmp / "state" / "state" / "targets" / f"{target}.json"
        return dict(json.loads(path.read_text()))

    def stop(self) -> None:
        if self.daemon is not None:
            self.actuator.gate.set()
            self.daemon.close()
            self.daemon = None
