"""`supervisor run`: the loop. It wires the probes, the pure tracker, the executor and the sinks,
and decides nothing itself: every rule that decides or guards a restart is in core/.

Each pass: handle signals, feed finished calls back to the tracker, sample the policies that are
due and feed the samples to the tracker, check Docker now and then, write the heartbeat. A step's
durable part is saved before its commands go to the executor, so a crash never loses a decided
restart; its events go to every sink (audit, log, metrics, notifications).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path

from supervisor import deployment
from supervisor.clock import Clock, process
from supervisor.core import events, tracker
from supervisor.core.tracker import Command, Result, TrackerState
from supervisor.policy import Policy
from supervisor.runtime import control, files, lock, observing, restarting, stacks, trigger, wiring
from supervisor.runtime.docker_reads import DockerReads
from supervisor.runtime.executor import Done, Executor
from supervisor.runtime.heartbeat import Heartbeat, Pace, policy_beat, stamp
from supervisor.runtime.leasing import Leases
from supervisor.runtime.targets import Targets
from supervisor.runtime.waker import Waker
from supervisor.runtime.wiring import Actuator, Supervised
from supervisor.sample import Sample
from supervisor.sinks import log as log_sink
from supervisor.sinks.audit import AUDIT_FILE, AuditLog
from supervisor.sinks.fanout import Fanout
from supervisor.sinks.metrics import Metrics
from supervisor.sinks.notify import Notifier

log = logging.getLogger("supervisor.daemon")
COALESCE = 0.05  # seconds: ticks due this soon run in the pass at hand, one wake-up for all


class Daemon:
    def __init__(
        self,
        policy_paths: list[Path],
        state_dir: Path,
        *,
        dry_run: bool = False,
        actuator: Actuator | None = None,
        probe_factory: wiring.ProbeFactory = wiring.redis_probe,
        progress_factory: wiring.ProgressFactory | None = wiring.progress_monitor,
        unacked_factory: wiring.UnackedFactory = wiring.unacked_store,
        metrics_address: str | None = None,
        metrics_port: int | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        leases: Leases | None = None,
    ) -> None:
        self.policy_paths, self.state_dir, self.dry_run = policy_paths, state_dir, dry_run
        self.actuator, self.unacked = actuator, unacked_factory
        self.leases = leases  # several supervisors of the same policies: only a holder acts
        self.metrics_address, self.metrics_port = metrics_address or "0.0.0.0", metrics_port
        self.clock, self.monotonic = clock or process(), monotonic  # stepless: clock.py
        self.targets = Targets(
            state_dir, probe_factory, progress_factory, self.clock, monotonic, dry_run=dry_run
        )
        self.supervised = self.targets.by_name
        self.waker = Waker()
        self.executor: Executor[str, Command, Result] = Executor(self.waker.wake)
        self.docker = DockerReads(lambda: self.actuator, self.waker.wake, self.clock, monotonic)
        self.stopping, self.started, self.beats = False, 0.0, Pace()
        self.state_errors: dict[str, str] = {}  # per target: why its state file cannot be written
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.audit: AuditLog | None = None
        sinks = [("log", log_sink.log_event), ("metrics", self.metrics.on_event)]
        self.emit = Fanout(sinks, dry_run=dry_run)  # a dry run's records all say so
        self.emit.add("notifications", self._notify)

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT. Raises PolicyError, UsageError or StateRefusedError
        (nothing started) or AlreadyRunningError."""
        policies = deployment.load(self.policy_paths)
        files.writable_state_dir(self.state_dir)  # UsageError: said, and nothing started
        with lock.Held(self.state_dir):
            self.targets.check(policies)  # StateRefusedError: every file left as it is
            # Handlers first: once `start` is audited, a signal must find them in place.
            signals = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
            self.waker.install(signals)
            try:
                if self.metrics_port is not None:
                    port = self.metrics.serve(self.metrics_address, self.metrics_port)
                    log.info("metrics on http://%s:%d/metrics", self.metrics_address, port)
                try:
                    self.open(policies)
                    self.pass_once()
                    gc.freeze()  # what is loaded by now lives as long as the daemon
                    while not self.stopping:
                        self.waker.wait(self.next_wake() - self.monotonic())
                        self.pass_once()
                finally:
                    self.close()
            finally:
                self.waker.uninstall()
        return 0

    def open(self, policies: list[Policy]) -> None:
        """Start supervising: sinks, one tracker per policy, stale requests discarded."""
        if self.actuator is None:
            self.actuator = wiring.docker_actuator()
        self.audit = AuditLog(self.state_dir / AUDIT_FILE)
        self.emit.add("audit", self.audit, first=True)
        self.started = self.clock()
        names = tuple(sorted(p.name for p in policies))
        self.emit(events.Started(dry_run=self.dry_run, policies=names, pid=os.getpid()))
        for r in trigger.take(self.state_dir, self.clock.here()):
            self.emit(events.TriggerDiscarded(policy=r.name, requested_at=round(r.t, 3)))
        for policy in policies:
            self.add(policy)
        self.write_heartbeat()

    def close(self) -> None:
        if self.executor.in_flight:
            log.info("waiting for %d call(s) in flight", self.executor.in_flight)
        for done in self.executor.shutdown():
            self._finish(done)
        if self.leases is not None:
            self.leases.close([s.policy for s in self.supervised.values()])
        self.docker.close()
        self.targets.close()
        if self.actuator is not None:
            self.actuator.close()
        self.write_heartbeat(stopped=True)
        self.notifier.close()
        self.metrics.close()
        self.emit(events.Stopped(pid=os.getpid()))
        if self.audit is not None:
            self.audit.close()
        self.waker.close()

    def pass_once(self) -> None:
        """One pass of the loop; never raises (an error is reported and the loop goes on)."""
        self._guard("signals", partial(control.handle_signals, self))
        self._guard("results", self._drain)
        for item in list(self.supervised.values()) if self.leases is not None else ():
            self._guard(f"lease of {item.policy.name}", partial(self._refresh_lease, item))
        now = self.monotonic()
        self.targets.new_pass()
        interrupted = lambda: self.stopping or bool(self.waker.pending)  # noqa: E731
        self._tick(self.targets.due(now, COALESCE, interrupted))
        self._guard("docker check", self._check_docker)
        self._guard("results", self._drain)
        self.metrics.loop.set(time.time())  # wall clock: the alert compares Prometheus's time()
        if self.beats.due(self.monotonic()):
            self.write_heartbeat()

    def next_wake(self) -> float:
        due = min((s.next_due for s in self.supervised.values()), default=self.monotonic() + 1)
        renew = self.leases.next_try() if self.leases is not None else None
        return min(t for t in (due, renew, self.beats.next_at()) if t is not None)

    def _guard(self, what: str, fn: Callable[[], None]) -> bool:  # whether fn ran without error
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - nothing vanishes, and the loop goes on
            log.error("internal error in %s:\n%s", what, traceback.format_exc().rstrip())
            self.emit(events.InternalError(where=what, reason=f"{type(exc).__name__}: {exc}"))
            return False
        return True

    def _notify(self, ev: events.Event) -> None:
        item = self.supervised.get(ev.policy or "")
        self.notifier.on_event(ev, item.policy if item else None, self.dry_run)

    # -- one target ---------------------------------------------------------------------------

    def apply(self, item: Supervised, state: TrackerState, step: tracker.Step) -> None:
        """Take a step of the tracker: save what must survive a crash, report, then act."""
        item.state, self.beats.pending = state, True  # the heartbeat shows it
        if step.decision is not None:
            item.last_decision = step.decision
        error = self.save(item) if step.persist else None
        if error is not None and step.commands:  # persist, then act (tracker.unsaved)
            item.state, step = tracker.unsaved(item.policy, item.state, step, error)
        self.emit(*step.events)
        if step.commands:  # taken in the loop's thread: the executor's reads no loop state
            policy, monitor = item.policy, item.monitor
            keep = stacks.keeper(self.state_dir, policy.name)
            parts = (self.actuator, monitor, self.unacked, self.leases, keep)
            call = partial(restarting.carry_out, policy, *parts)
            for command in step.commands:  # keyed by target: a rename in flight keeps it
                self.executor.submit(item.policy.target.key, command, call)

    def _tick(self, due: list[Supervised]) -> None:
        """What each target's workers and containers tell first, then every sample in one
        round trip per broker, then each sample to its tracker."""
        ready = [s for s in due if self._guard(f"tick of {s.policy.name}", partial(self._see, s))]
        samples: dict[str, Sample] = {}
        self._guard("sampling", lambda: samples.update(self.targets.sample(ready)))
        for item in (s for s in ready if s.policy.name in samples):
            sample = item.last_sample = samples[item.policy.name]
            self._guard(f"tick of {item.policy.name}", partial(self._judge, item, sample))
        self._guard("history", self.targets.flush_history)

    def _see(self, item: Supervised) -> None:
        policy, monitor = item.policy, item.monitor
        self.docker.identify(item)  # the target's containers, as last read off the loop
        if monitor is not None and policy.broker.discover_queues:
            found = observing.discovered(item, monitor)
            self.apply(item, *tracker.on_discovered(policy, item.state, found))
        self.apply(item, *tracker.on_claims(policy, item.state, self.targets.refused(item)))

    def _judge(self, item: Supervised, sample: Sample) -> None:
        policy, standby = item.policy, self.standby(item)
        state, step = tracker.on_sample(policy, item.state, sample, self.dry_run, standby)
        self.metrics.observe(policy, sample, state, step.decision, self.clock.here())
        self.targets.record(policy, sample, step.decision)
        self.apply(item, state, step)

    def _drain(self) -> None:
        for done in self.executor.completed():
            self._finish(done)

    def _finish(self, done: Done[str, Command, Result]) -> None:
        result, item = done.result, self.targets.of_target(done.key)
        if done.error is not None or result is None:
            error, where = done.error or "no result", type(done.command).__name__
            name = item.policy.name if item is not None else done.key
            self.emit(events.InternalError(policy=name, where=where, reason=error))
            result = tracker.failure(done.command, f"internal error: {error}")
        if item is None:  # a reload cannot give up a target in flight (core/requests.py)
            log.warning("%s finished for a target no longer supervised", done.key)
            return
        state, step = tracker.on_result(item.policy, item.state, done.command, result, self.clock())
        self.apply(item, state, step)

    def add(self, policy: Policy) -> None:
        item, found = self.targets.add(policy)
        self.apply(item, item.state, tracker.Step(found, persist=bool(found)))
        if self.leases is None:
            self.apply(item, *tracker.resume(policy, item.state))  # first: the worker may be down
        else:
            self._refresh_lease(item, force=True)  # a holder resumes; a standby leaves it

    def standby(self, item: Supervised) -> bool:
        return self.leases is not None and not self.leases.holds(item.policy, self.monotonic())

    def _refresh_lease(self, item: Supervised, force: bool = False) -> None:
        """Try or renew the target's lease; on a takeover, go on from the shared state and
        complete what is unfinished (leasing.py)."""
        assert self.leases is not None
        now = self.monotonic()
        evs, adopted = self.leases.refresh_target(item.policy, item.state, now, force)
        self.emit(*evs)
        self.metrics.lease.labels(item.policy.name).set(0 if self.standby(item) else 1)
        if adopted is not None:
            self.apply(item, adopted, tracker.Step(persist=True))
            self.apply(item, *tracker.resume(item.policy, item.state))

    def save(self, item: Supervised) -> str | None:
        """Save the target's state (and share it while holding its lease); why not, if not."""
        key, error = item.policy.target.key, self.targets.save(item)
        self.state_errors.pop(key, None)
        if error is not None:
            self.state_errors[key] = error
            self.emit(events.InternalError(policy=item.policy.name, where="state", reason=error))
        elif self.leases is not None:
            self.leases.share_if_held(item.policy, item.state, self.monotonic())
        return error

    # -- Docker reachability and the heartbeat ------------------------------------------------

    def _check_docker(self) -> None:
        self.emit(*self.docker.reachability())
        self.metrics.docker_up.set(0 if self.docker.engine.active else 1)

    def write_heartbeat(self, stopped: bool = False) -> None:
        self.beats.wrote(self.monotonic())
        beat = Heartbeat(
            **stamp(self.clock.here()), pid=os.getpid(), stopped=stopped,
            dry_run=self.dry_run, started=self.started, docker_error=self.docker.engine.error,
            state_error="; ".join(sorted(self.state_errors.values())) or None,
            policies={name: policy_beat(s) for name, s in self.supervised.items()},
            policy_paths=tuple(str(p.resolve()) for p in self.policy_paths),
        )  # fmt: skip
        try:
            beat.write(self.state_dir)
        except OSError as exc:
            log.error("cannot write the heartbeat in %s: %s", self.state_dir, exc)
