"""`supervisor run`: the loop. It wires the probes, the pure tracker, the executor and the sinks,
and decides nothing itself: every rule that decides or guards a restart is in core/.

Each pass: handle signals, feed finished calls back to the tracker, sample the policies that are
due and feed the samples to the tracker, check Docker now and then, write the heartbeat. A step's
durable part is saved before its commands go to the executor, so a crash never loses a decided
restart; its events go to every sink (audit, log, metrics, notifications).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from supervisor import deployment
from supervisor.core import claims, events, outage, replicas, requests, tracker
from supervisor.core.detector import Verdict
from supervisor.core.engine import Decision
from supervisor.core.events import Event, EventKind
from supervisor.core.outage import Outage
from supervisor.core.replicas import Container
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.core.tracker import Command, DryRun, Restart, Result, TrackerState
from supervisor.errors import PolicyError, StateError, UsageError
from supervisor.policy import Policy, Target
from supervisor.runtime import lock, restarting, trigger
from supervisor.runtime.executor import Done, Executor
from supervisor.runtime.heartbeat import Heartbeat, PolicyBeat
from supervisor.runtime.leasing import Leases
from supervisor.runtime.state_store import StateStore
from supervisor.runtime.waker import Waker
from supervisor.sample import Progress, Replica, Sample, WorkerFacts
from supervisor.sinks import log as log_sink
from supervisor.sinks.audit import AUDIT_FILE, AuditLog
from supervisor.sinks.metrics import Metrics
from supervisor.sinks.notify import Notifier
from supervisor.trace import HistoryWriter, Row

log = logging.getLogger("supervisor.daemon")

DOCKER_CHECK_EVERY = 30.0
IDENTIFY_EVERY = 60.0  # how often the target's containers are read, to map workers to them
TREND_SAMPLES = 30  # depths kept in the heartbeat for `supervisor status`


class Probe(Protocol):
    def sample(self, queues: Sequence[str] | None = None) -> Sample: ...
    def close(self) -> None: ...


class ProgressSource(Protocol):
    def progress(self, queues: list[str]) -> Progress: ...
    def consumers(self) -> dict[str, frozenset[str] | None]: ...
    def held_by(self, workers: list[str]) -> frozenset[str] | None: ...
    def by_worker(self, queues: list[str]) -> dict[str, Progress]: ...
    def live_consumers(self, queues: list[str]) -> tuple[str, ...]: ...
    def facts(self, workers: list[str]) -> tuple[WorkerFacts, ...]: ...
    def poll_at_least_every(self, seconds: float) -> None: ...
    def stop(self) -> None: ...


class Actuator(Protocol):
    def restart(
        self, target: Target, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult: ...
    def identify(self, target: Target) -> tuple[Container, ...]: ...
    def lookup(self, target: Target) -> LookupResult: ...
    def ensure_running(self, target: Target) -> StartResult: ...
    def ping(self) -> str | None: ...
    def close(self) -> None: ...


@dataclass
class Supervised:
    policy: Policy
    probe: Probe
    state: TrackerState
    next_due: float = 0.0
    last_decision: Decision | None = None
    progress: str | None = None  # what the last sample knew of the workers' progress
    containers: tuple[Container, ...] = ()  # the target's, to map workers to (every minute)
    identified: bool = False  # `containers` was read from Docker at least once
    identifying: Future[tuple[Container, ...]] | None = None
    next_identify: float = 0.0


def _redis_probe(policy: Policy, clock: Callable[[], float]) -> Probe:
    from supervisor.adapters.redis_probe import RedisProbe

    return RedisProbe(policy.broker, clock)


def _progress_monitor(policy: Policy) -> ProgressSource:
    from supervisor.adapters.progress_probe import ProgressMonitor

    monitor = ProgressMonitor(policy.broker, poll_every=policy.detect.interval)
    monitor.start()
    return monitor


def _unacked_store(policy: Policy) -> Any:
    from supervisor.adapters.unacked_store import UnackedStore

    return UnackedStore(policy.broker)


def _docker_actuator() -> Actuator:
    from supervisor.adapters.docker_actuator import DockerActuator

    return DockerActuator()


class Daemon:
    def __init__(
        self,
        policy_paths: list[Path],
        state_dir: Path,
        *,
        dry_run: bool = False,
        actuator: Actuator | None = None,
        probe_factory: Callable[[Policy, Callable[[], float]], Probe] = _redis_probe,
        progress_factory: Callable[[Policy], ProgressSource] | None = _progress_monitor,
        metrics_address: str | None = None,
        metrics_port: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        leases: Leases | None = None,
        unacked_factory: Callable[[Policy], Any] = _unacked_store,
    ) -> None:
        self.policy_paths = policy_paths
        self.unacked_factory = unacked_factory
        self.leases = leases  # several supervisors of the same policies: only a holder acts
        self.state_dir = state_dir
        self.dry_run = dry_run
        self.actuator = actuator
        self.probe_factory = probe_factory
        self.progress_factory = progress_factory
        self.metrics_address = metrics_address or "0.0.0.0"
        self.metrics_port = metrics_port
        self.clock = clock
        self.monotonic = monotonic
        self.supervised: dict[str, Supervised] = {}
        self.monitors: dict[tuple[str, str], ProgressSource] = {}
        self.waker = Waker()
        self.executor: Executor[str, Command, Result] = Executor(self.waker.wake)
        self.pinger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ping")
        self.docker_check: Future[str | None] | None = None
        self.next_docker_check = 0.0
        self.docker = Outage()
        self.stopping = False
        self.started = 0.0
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.store = StateStore(state_dir)
        self.history = HistoryWriter(state_dir)
        self.history_failing = False
        self.audit: AuditLog | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT. Raises PolicyError or UsageError (nothing started) or
        AlreadyRunningError."""
        policies = deployment.load(self.policy_paths)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"state directory {self.state_dir}: {exc.strerror or exc}") from None
        with lock.Held(self.state_dir):
            # Handlers first: once `start` is audited, a signal must find them in place.
            self.waker.install([signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
            try:
                self.serve_metrics()
                try:
                    self.open(policies)
                    frozen = False
                    while not self.stopping:
                        self.pass_once()
                        if not frozen:
                            # What is loaded by now (modules, policies, clients) lives as long
                            # as the daemon: out of the collector's sight, collections stay cheap.
                            gc.freeze()
                            frozen = True
                        if not self.stopping:
                            self.waker.wait(self.next_wake() - self.monotonic())
                finally:
                    self.close()
            finally:
                self.waker.uninstall()
        return 0

    def serve_metrics(self) -> None:
        if self.metrics_port is None:
            return
        try:
            port = self.metrics.serve(self.metrics_address, self.metrics_port)
        except OSError as exc:
            raise UsageError(
                f"metrics port (--metrics-port / SUPERVISOR_METRICS_PORT): cannot listen on "
                f"{self.metrics_address}:{self.metrics_port}: {exc.strerror or exc}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", self.metrics_address, port)

    def open(self, policies: list[Policy]) -> None:
        """Start supervising: sinks, one tracker per policy, stale requests discarded."""
        if self.actuator is None:
            self.actuator = _docker_actuator()
        self.audit = AuditLog(self.state_dir / AUDIT_FILE)
        self.started = self.clock()
        self.emit(events.started([p.name for p in policies], self.dry_run, os.getpid()))
        for request in trigger.take(self.state_dir):
            self.emit(events.trigger_discarded(request.name, request.t))
        for policy in policies:
            self._add(policy)
        self.write_heartbeat()

    def close(self) -> None:
        if self.executor.in_flight:
            log.info("waiting for %d call(s) in flight", self.executor.in_flight)
        for done in self.executor.shutdown():
            self._finish(done)
        if self.leases is not None:
            self.leases.close([s.policy for s in self.supervised.values()])
        self.pinger.shutdown(wait=False, cancel_futures=True)
        for item in self.supervised.values():
            item.probe.close()
        for monitor in self.monitors.values():
            monitor.stop()
        if self.actuator is not None:
            self.actuator.close()
        self.write_heartbeat(stopped=True)
        self.notifier.close()
        self.metrics.close()
        self.emit(events.stopped(os.getpid()))
        if self.audit is not None:
            self.audit.close()
        self.waker.close()

    def pass_once(self) -> None:
        """One pass of the loop; never raises (an error is reported and the loop goes on)."""
        self._guard("signals", self._handle_signals)
        self._guard("results", self._drain)
        if self.leases is not None:
            for item in list(self.supervised.values()):
                self._guard(f"lease of {item.policy.name}", partial(self._refresh_lease, item))
        now = self.monotonic()
        for item in list(self.supervised.values()):
            if self.stopping or self.waker.pending:
                break
            if item.next_due <= now:
                self._guard(f"tick of {item.policy.name}", partial(self._tick, item))
                # Keep the cadence; after a long stall, resume from now rather than burst.
                item.next_due = max(item.next_due + item.policy.detect.interval, now)
        self._guard("docker check", self._check_docker)
        self._guard("results", self._drain)
        self.metrics.loop.set(self.clock())
        self.write_heartbeat()

    def next_wake(self) -> float:
        due = min((s.next_due for s in self.supervised.values()), default=self.monotonic() + 1)
        renew = self.leases.next_try() if self.leases is not None else None
        return due if renew is None else min(due, renew)

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - nothing vanishes, and the loop goes on
            log.error("internal error in %s:\n%s", what, traceback.format_exc().rstrip())
            self.emit(events.internal_error(None, what, f"{type(exc).__name__}: {exc}"))

    # -- sinks --------------------------------------------------------------------------------

    def emit(self, *evs: Event) -> None:
        sinks: list[tuple[str, Callable[[Event], None]]] = [
            ("log", log_sink.log_event),
            ("metrics", self.metrics.on_event),
            ("notifications", self._notify),
        ]
        if self.audit is not None:
            sinks.insert(0, ("audit", self.audit))
        for ev in evs:
            for name, sink in sinks:
                try:
                    sink(ev)
                except Exception:  # noqa: BLE001 - a broken sink must not lose the others
                    log.error(
                        "the %s sink failed on %s:\n%s",
                        name,
                        ev.kind.value,
                        traceback.format_exc().rstrip(),
                    )

    def _notify(self, ev: Event) -> None:
        item = self.supervised.get(ev.policy or "")
        self.notifier.on_event(ev, item.policy if item else None, self.dry_run)

    # -- one target ---------------------------------------------------------------------------

    def _apply(self, item: Supervised, state: TrackerState, step: tracker.Step) -> None:
        """Take a step of the tracker: save what must survive a crash, report, then act."""
        item.state = state
        if step.decision is not None:
            item.last_decision = step.decision
        if step.persist:
            self._save(item)
        self.emit(*step.events)
        for command in step.commands:
            self.executor.submit(item.policy.name, command, self._caller(item))

    def _caller(self, item: Supervised) -> Callable[[Command], Result]:
        actuator, policy = self.actuator, item.policy
        assert actuator is not None
        monitor = self._monitor_for(policy)
        leases = self.leases

        def call(command: Command) -> Result:
            if isinstance(command, Restart) and leases is not None:
                lost = leases.fence(policy)
                if lost is not None:  # another supervisor may be acting: touch nothing
                    error = f"not restarted, {lost} (checked right before the restart)"
                    return RestartResult(Outcome.FAILED, policy.restart.method, error=error)
            if isinstance(command, Restart):
                store = self.unacked_factory
                return restarting.restart(policy, command.plan, actuator, monitor, store)
            if isinstance(command, DryRun):
                return actuator.lookup(policy.target)
            return actuator.ensure_running(policy.target)

        return call

    def _tick(self, item: Supervised) -> None:
        policy = item.policy
        monitor = self._monitor_for(policy)
        # Once per tick (read off the loop every minute): discovery, replicas, the restart's
        # plan and the one-container-one-policy rule all use the same containers.
        self._identify(item)
        if monitor is not None and policy.broker.discover_queues:
            self._apply(
                item, *tracker.on_discovered(policy, item.state, self._found(item, monitor))
            )
        self._apply(item, *tracker.on_claims(policy, item.state, self._refused(item)))
        queues = tracker.watched(policy, item.state)
        sample = item.probe.sample(queues)
        if sample.ok and monitor is not None:
            progress = monitor.progress(list(queues))
            sample = dataclasses.replace(
                sample,
                processed=progress.processed,
                progress_source=progress.source,
                progress_unknown=progress.unknown,
                unconsumed=progress.unconsumed,
            )
            item.progress = (
                f"{progress.processed} started tasks, from {progress.source}"
                if progress.processed is not None
                else f"unknown: {progress.unknown}"
            )
            mapped = self._replicas(item, monitor, queues)
            sample = dataclasses.replace(
                sample,
                replicas=mapped,
                consumers=monitor.live_consumers(list(queues)),
                facts=monitor.facts(self._target_workers(item, monitor)),
            )
        if sample.ok and item.identified:
            sample = dataclasses.replace(sample, containers=tuple(c.name for c in item.containers))
        state, step = tracker.on_sample(
            policy, item.state, sample, self.dry_run, standby=self._standby(item)
        )
        self.metrics.observe(policy, sample, state, step.decision, self.clock())
        self._record(policy, sample, step.decision)
        if step.decision is not None:
            log_sink.for_policy(log, policy.name).debug(
                "depth=%s processed=%s %s", sample.depth, sample.processed, step.decision.describe()
            )
        self._apply(item, state, step)

    def _record(self, policy: Policy, sample: Sample, decision: Decision | None) -> None:
        """The sample in the policy's history, for `report`; a full disk is logged once."""
        stuck = None if decision is None else decision.diagnosis.verdict is Verdict.STUCK
        try:
            self.history.append(policy.name, Row(sample, stuck, policy.detect.threshold))
        except OSError as exc:
            if not self.history_failing:
                log.warning("cannot record %s's history: %s", policy.name, exc)
            self.history_failing = True
        else:
            self.history_failing = False

    def _found(self, item: Supervised, monitor: ProgressSource) -> tuple[str, ...] | None:
        """The queues the target's own workers consume, or None when none of them tells."""
        consumers = monitor.consumers()
        mapped = replicas.match_workers(consumers, item.containers)
        known = [queues for w in mapped if (queues := consumers[w]) is not None]
        if not known:
            return None
        return tuple(sorted(frozenset[str]().union(*known)))

    def _identify(self, item: Supervised) -> None:
        """The target's containers, read from Docker every minute off the loop; a tick uses
        the last ones it has."""
        if item.identifying is not None and item.identifying.done():
            try:
                item.containers = item.identifying.result()
                item.identified = True
            except Exception as exc:  # noqa: BLE001 - Docker or the target is reported elsewhere
                log_sink.for_policy(log, item.policy.name).debug("identify failed: %s", exc)
            item.identifying = None
        now = self.monotonic()
        if item.identifying is None and now >= item.next_identify and self.actuator is not None:
            item.next_identify = now + IDENTIFY_EVERY
            item.identifying = self.pinger.submit(self.actuator.identify, item.policy.target)

    def _refused(self, item: Supervised) -> dict[str, str]:
        """The target's containers another policy found first (core/claims.py)."""
        found = [(s.policy.name, [c.name for c in s.containers]) for s in self.supervised.values()]
        return claims.claims(found).get(item.policy.name, {})

    def _target_workers(self, item: Supervised, monitor: ProgressSource) -> list[str]:
        """Every worker known on the broker that runs in one of the target's containers."""
        return sorted(replicas.match_workers(monitor.consumers(), item.containers))

    def _replicas(
        self, item: Supervised, monitor: ProgressSource, queues: tuple[str, ...]
    ) -> tuple[Replica, ...]:
        """The target's containers mapped to their workers' progress."""
        workers = monitor.by_worker(list(queues))
        mapped = replicas.match_workers(workers, item.containers)
        return tuple(
            Replica(container, worker, workers[worker].processed, workers[worker].source)
            for worker, container in sorted(mapped.items())
        )

    def _drain(self) -> None:
        for done in self.executor.completed():
            self._finish(done)

    def _finish(self, done: Done[str, Command, Result]) -> None:
        result = done.result
        if done.error is not None or result is None:
            error = done.error or "no result"
            self.emit(events.internal_error(done.key, type(done.command).__name__, error))
            result = tracker.failure(done.command, f"internal error: {error}")
        item = self.supervised.get(done.key)
        if item is None:
            log.warning("%s finished for a policy no longer supervised", done.key)
            return
        state, step = tracker.on_result(item.policy, item.state, done.command, result, self.clock())
        self._apply(item, state, step)

    def _monitor_for(self, policy: Policy) -> ProgressSource | None:
        if self.progress_factory is None or not policy.detect.require_no_progress:
            return None
        key = (policy.broker.url, policy.broker.key_prefix)
        if key not in self.monitors:
            self.monitors[key] = self.progress_factory(policy)
        self.monitors[key].poll_at_least_every(policy.detect.interval)
        return self.monitors[key]

    def _add(self, policy: Policy) -> None:
        found: tuple[Event, ...] = ()
        state = TrackerState()
        try:
            stored = self.store.load(policy.target.key, policy.name)
        except StateError as exc:
            suffix = f"unusable-{int(self.clock())}"
            aside = self.store.discard(policy.target.key, policy.name, suffix)
            found, stored = (events.state_discarded(policy.name, str(exc), str(aside)),), None
        if stored is not None:
            state, found = tracker.restore(
                policy,
                stored.target,
                stored.history,
                stored.intent,
                discovered=stored.discovered,
                known=stored.known,
            )
        item = Supervised(policy, self.probe_factory(policy, self.clock), state, self.monotonic())
        self.supervised[policy.name] = item
        self._apply(item, state, tracker.Step(found, persist=bool(found)))
        if self.leases is None:
            self._apply(item, *tracker.resume(policy, item.state))  # first: the worker may be down
        else:
            self._refresh_lease(item, force=True)  # a holder resumes; a standby leaves it
        self._monitor_for(policy)

    def _standby(self, item: Supervised) -> bool:
        return self.leases is not None and not self.leases.holds(item.policy, self.monotonic())

    def _refresh_lease(self, item: Supervised, force: bool = False) -> None:
        """Try or renew the target's lease; on a takeover, adopt the history the holders shared
        (cooldown, backoff, budget, an unfinished restart) and complete what is unfinished."""
        assert self.leases is not None
        policy = item.policy
        evs, took_over = self.leases.refresh(policy, self.monotonic(), force)
        self.emit(*evs)
        self.metrics.lease.labels(policy.name).set(0 if self._standby(item) else 1)
        if not took_over:
            return
        shared, error = self.leases.shared(policy)
        if error is not None:
            log_sink.for_policy(log, policy.name).warning("shared state: %s", error)
        history = shared.history if shared is not None else None
        intent = shared.intent if shared is not None else None
        self._apply(item, tracker.adopt(item.state, history, intent), tracker.Step(persist=True))
        self._apply(item, *tracker.resume(policy, item.state))

    def _save(self, item: Supervised) -> None:
        try:
            self.store.save(item.policy.target.key, item.policy.name, item.state)
        except OSError as exc:
            path = self.store.path(item.policy.target.key)
            self.emit(events.internal_error(item.policy.name, f"writing {path}", str(exc)))
        if self.leases is not None and self.leases.holds(item.policy, self.monotonic()):
            error = self.leases.share(item.policy, item.state)
            if error is not None:
                log_sink.for_policy(log, item.policy.name).warning(
                    "cannot share the restart history in Redis: %s", error
                )

    # -- signals ------------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.waker.pending:
            signum = self.waker.pending.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info(
                    "%s: finishing what is in flight, then stopping", signal.Signals(signum).name
                )
                self.stopping = True
            elif signum == signal.SIGHUP:
                self.reload()
            elif signum == signal.SIGUSR1:
                self.manual_trigger()

    def manual_trigger(self) -> None:
        taken = trigger.take(self.state_dir)
        asked = [requests.Asked(r.name, r.t) for r in taken]
        fanout = requests.fan_out(asked, self.started, self.supervised)
        for stale in fanout.stale:
            self.emit(events.trigger_discarded(stale.name, stale.t))
        for name in fanout.unknown:
            self.emit(events.unknown_policy(name, list(self.supervised)))
        for name in fanout.restart:
            item = self.supervised[name]
            standby = self._standby(item)
            self._apply(
                item,
                *tracker.on_trigger(item.policy, item.state, self.clock(), self.dry_run, standby),
            )

    def reload(self) -> None:
        try:
            policies = deployment.load(self.policy_paths)
            running = {
                name: requests.Running(s.policy.target.key, tracker.unfinished(s.state))
                for name, s in self.supervised.items()
            }
            problems = requests.reload_problems(running, [(p.name, p.target.key) for p in policies])
            if problems:
                raise PolicyError(problems)
        except PolicyError as exc:
            self.emit(events.reload_refused(exc.problems))
            return
        wanted = {p.name for p in policies}
        for name in [n for n in self.supervised if n not in wanted]:
            removed = self.supervised.pop(name)
            self._save(removed)
            if self.leases is not None:
                self.leases.forget(removed.policy)
            removed.probe.close()
            self.metrics.forget(name, removed.policy.broker.queues)
        for policy in policies:
            item = self.supervised.get(policy.name)
            if item is None:
                self._add(policy)
                continue
            old, item.policy = item.policy, policy
            if old.broker != policy.broker:
                item.probe.close()
                item.probe = self.probe_factory(policy, self.clock)
            self._apply(item, *tracker.retarget(old, policy, item.state))
            self._monitor_for(policy)
        in_use = {
            (s.policy.broker.url, s.policy.broker.key_prefix) for s in self.supervised.values()
        }
        for key in [k for k in self.monitors if k not in in_use]:
            self.monitors.pop(key).stop()
        self.emit(events.reloaded(list(self.supervised)))

    # -- Docker reachability ------------------------------------------------------------------

    def _check_docker(self) -> None:
        check = self.docker_check
        if check is not None and check.done():
            self.docker_check = None
            error = check.result()
            self.docker, change = outage.observe(self.docker, error, self.clock())
            self.metrics.docker_up.set(1 if error is None else 0)
            kinds = (EventKind.DOCKER_ERROR_BEGIN, EventKind.DOCKER_ERROR_END)
            self.emit(*events.outage(change, kinds, None, "restarts would fail", "Docker back"))
        now = self.monotonic()
        if self.docker_check is None and now >= self.next_docker_check and self.actuator:
            self.next_docker_check = now + DOCKER_CHECK_EVERY
            self.docker_check = self.pinger.submit(self.actuator.ping)
            self.docker_check.add_done_callback(lambda _: self.waker.wake())

    # -- heartbeat ----------------------------------------------------------------------------

    def write_heartbeat(self, stopped: bool = False) -> None:
        beat = Heartbeat(
            t=self.clock(),
            pid=os.getpid(),
            stopped=stopped,
            dry_run=self.dry_run,
            started=self.started,
            policies={name: self._beat(s) for name, s in self.supervised.items()},
            docker_error=self.docker.error,
            policy_paths=tuple(str(p.resolve()) for p in self.policy_paths),
        )
        try:
            beat.write(self.state_dir)
        except OSError as exc:
            log.error("cannot write the heartbeat in %s: %s", self.state_dir, exc)

    @staticmethod
    def _beat(s: Supervised) -> PolicyBeat:
        decision = s.last_decision
        return PolicyBeat(
            s.policy.detect.interval,
            sampling=not s.state.sampling.active,
            depth=s.state.recent[-1][1] if s.state.recent else None,
            trend=tuple(d for _, d in s.state.recent[-TREND_SAMPLES:]),
            verdict=decision.diagnosis.verdict.value if decision else None,
            why=decision.describe() if decision else None,
            call=s.state.call.value if s.state.call else None,
            progress=s.progress,
            warnings=s.state.warnings(s.policy),
        )
