"""`supervisor run`: the live loop. Everything impure lives here: clocks, signals, Redis, Docker,
files. Each tick samples a policy's queues, feeds the sample to the same pure engine that
`replay` uses, and carries out the actions it returns.

Restarts run in worker threads so one slow restart never delays the other policies' ticks. The
engine records a restart when it decides it, and sees no sample of that target until the restart
is over, so there is never a second restart of a target while one is in flight.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from supervisor import engine, governor, logs
from supervisor.audit import AUDIT_FILE, AuditEvent, AuditLog
from supervisor.detector import Verdict
from supervisor.docker_actuator import DockerActuator, Outcome, RestartResult
from supervisor.engine import Action, ActionKind, Decision, EngineState, Trigger
from supervisor.errors import (
    AlreadyRunningError,
    PolicyError,
    StateError,
    SupervisorError,
    TargetError,
)
from supervisor.health import HEARTBEAT_FILE
from supervisor.metrics import Metrics
from supervisor.notifier import Notice, Notifier, settings_for
from supervisor.policy import Policy, load_policies, redact_url
from supervisor.progress_probe import ProgressMonitor
from supervisor.redis_probe import RedisProbe
from supervisor.sample import Sample
from supervisor.state_store import StateStore

log = logging.getLogger("supervisor.daemon")

PID_FILE = "supervisor.pid"
LOCK_FILE = "supervisor.lock"
TRIGGER_DIR = "triggers"
DOCKER_CHECK_EVERY = 30.0
TREND_SAMPLES = 30  # depths kept in the heartbeat for `supervisor status`


class Waker:
    """An interruptible wait: signals and other threads end it at once (a self-pipe, so a
    signal handler never touches a lock the interrupted code may hold)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self.pending: deque[int] = deque()
        self._previous: dict[int, Any] = {}

    def install(self, signals: list[signal.Signals]) -> None:
        signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(-1)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._w.send(b"\0")

    def wait(self, timeout: float) -> None:
        if self.pending:
            return
        readable, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if readable:
            with contextlib.suppress(BlockingIOError):
                while self._r.recv(4096):
                    pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


@dataclass
class Supervised:
    """The live state of one policy."""

    policy: Policy
    probe: RedisProbe
    state: EngineState
    recent: deque[tuple[float, int | None]] = field(default_factory=deque)
    next_due: float = 0.0
    failing_since: float | None = None
    last_error: str | None = None
    in_flight: Future[None] | None = None
    last_decision: Decision | None = None
    awaiting_recovery: bool = False  # a restart happened; tell when the queue is back under

    @property
    def log(self) -> logging.LoggerAdapter[Any]:
        return logs.for_policy(log, self.policy.name)

    @property
    def busy(self) -> bool:
        return self.in_flight is not None and not self.in_flight.done()

    def window_depths(self) -> list[list[float | int | None]]:
        return [[round(t, 3), d] for t, d in self.recent]


class Daemon:
    def __init__(
        self,
        policy_paths: list[Path],
        state_dir: Path,
        *,
        dry_run: bool = False,
        actuator: DockerActuator | None = None,
        watch_progress: bool = True,
        metrics_address: str | None = None,
        metrics_port: int | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_paths = policy_paths
        self.state_dir = state_dir
        self.dry_run = dry_run
        self.actuator = actuator or DockerActuator()
        self.watch_progress = watch_progress
        self.clock = clock
        self.monotonic = monotonic
        self.supervised: dict[str, Supervised] = {}
        self.monitors: dict[tuple[str, str], ProgressMonitor] = {}
        self.waker = Waker()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="act")
        self.stopping = False
        self.docker_error: str | None = None
        self.docker_check: Future[str | None] | None = None
        self.next_docker_check = 0.0
        self.metrics = Metrics()
        self.metrics_address = metrics_address
        self.metrics_port = metrics_port
        self.notifier = Notifier()
        self.store: StateStore
        self.audit: AuditLog

    # -- life cycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT. Raises PolicyError (nothing started) or AlreadyRunningError."""
        policies = load_policies(self.policy_paths)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._exclusive():
            self.store = StateStore(self.state_dir)
            self.audit = AuditLog(self.state_dir / AUDIT_FILE)
            (self.state_dir / TRIGGER_DIR).mkdir(exist_ok=True)
            for policy in policies:
                self._add(policy)
            self.waker.install([signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
            if self.metrics_port is not None:
                port = self.metrics.serve(self.metrics_address or "0.0.0.0", self.metrics_port)
                log.info("metrics on http://%s:%d/metrics", self.metrics_address or "0.0.0.0", port)
            pid_path = self.state_dir / PID_FILE
            pid_path.write_text(f"{os.getpid()}\n")
            self.audit.record(
                AuditEvent.START,
                dry_run=self.dry_run,
                pid=os.getpid(),
                policies=sorted(self.supervised),
            )
            log.info(
                "supervising %s%s",
                ", ".join(sorted(self.supervised)),
                " (dry-run: no Docker call that changes anything)" if self.dry_run else "",
            )
            try:
                self._loop()
            finally:
                self._shutdown()
                pid_path.unlink(missing_ok=True)
                self.waker.uninstall()
        return 0

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        lock_path = self.state_dir / LOCK_FILE
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AlreadyRunningError(
                    f"{self.state_dir}: another supervisor is running with this state directory"
                ) from None
            yield

    def _loop(self) -> None:
        while True:
            self._handle_signals()
            if self.stopping:
                return
            now = self.monotonic()
            for item in list(self.supervised.values()):
                if item.next_due <= now:
                    self._tick(item)
                    # Keep the cadence; after a long stall, resume from now rather than burst.
                    item.next_due = max(item.next_due + item.policy.detect.interval, now)
                    if self.pending_signals():
                        break
            self._maybe_check_docker()
            self._write_heartbeat()
            self.metrics.loop.set(self.clock())
            due = min((s.next_due for s in self.supervised.values()), default=now + 1.0)
            self.waker.wait(due - self.monotonic())

    def pending_signals(self) -> bool:
        return bool(self.waker.pending)

    def _shutdown(self) -> None:
        in_flight = [s.in_flight for s in self.supervised.values() if s.busy]
        if in_flight:
            log.info("waiting for %d restart(s) in flight", len(in_flight))
        self.pool.shutdown(wait=True)
        for item in self.supervised.values():
            self._save(item)
            item.probe.close()
        for monitor in self.monitors.values():
            monitor.stop()
        self.actuator.close()
        self._write_heartbeat(stopped=True)
        self.notifier.close()
        self.metrics.close()
        self.audit.record(AuditEvent.STOP, pid=os.getpid())
        self.audit.close()
        self.waker.close()
        log.info("stopped")

    # -- signals ----------------------------------------------------------------------------

    def _handle_signals(self) -> None:
        while self.waker.pending:
            signum = self.waker.pending.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info(
                    "%s: finishing what is in flight, then stopping", signal.Signals(signum).name
                )
                self.stopping = True
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGUSR1:
                self._manual_trigger()

    def _reload(self) -> None:
        try:
            policies = load_policies(self.policy_paths)
        except PolicyError as exc:
            for problem in exc.problems:
                log.error("reload refused, the running policies stay: %s", problem)
            self.audit.record(AuditEvent.RELOAD_REFUSED, problems=exc.problems)
            return
        new_names = {p.name for p in policies}
        for name in list(self.supervised):
            if name not in new_names:
                self._save(self.supervised[name])
                removed = self.supervised.pop(name)
                removed.probe.close()
                self.metrics.forget(name, removed.policy.broker.queues)
        for policy in policies:
            current = self.supervised.get(policy.name)
            if current is None:
                self._add(policy)
            else:
                if current.policy.broker != policy.broker:
                    current.probe.close()
                    current.probe = RedisProbe(policy.broker, self.clock)
                    self._monitor_for(policy)
                current.policy = policy
        in_use = {
            (s.policy.broker.url, s.policy.broker.key_prefix) for s in self.supervised.values()
        }
        for key in [k for k in self.monitors if k not in in_use]:
            self.monitors.pop(key).stop()
        self.audit.record(AuditEvent.RELOAD, policies=sorted(self.supervised))
        log.info("reloaded: %s", ", ".join(sorted(self.supervised)))

    def _manual_trigger(self) -> None:
        requested = self._take_trigger_requests()
        names = requested or sorted(self.supervised)
        for name in names:
            item = self.supervised.get(name)
            if item is None:
                reason = (
                    f"no policy named {name!r}; supervised: {', '.join(sorted(self.supervised))}"
                )
                log.error("manual trigger refused: %s", reason)
                self.audit.record(AuditEvent.TRIGGER_REFUSED, name, reason=reason)
                continue
            if item.busy:
                reason = "a restart of this target is already in flight"
                item.log.warning("manual trigger refused: %s", reason)
                self.audit.record(
                    AuditEvent.TRIGGER_REFUSED,
                    name,
                    target=item.policy.target.describe(),
                    reason=reason,
                )
                continue
            item.state, action = engine.trigger(item.policy, item.state, self.clock())
            self._carry_out(item, action)

    def _take_trigger_requests(self) -> list[str]:
        names: list[str] = []
        folder = self.state_dir / TRIGGER_DIR
        for path in sorted(folder.glob("*.request")):
            with contextlib.suppress(OSError):
                name = path.read_text(encoding="utf-8").strip()
                path.unlink()
                if name and name not in names:
                    names.append(name)
        return names

    # -- one policy -------------------------------------------------------------------------

    def _add(self, policy: Policy) -> None:
        try:
            governor = self.store.load(policy.name)
        except StateError as exc:
            aside = self.store.discard(policy.name, f"unusable-{int(self.clock())}")
            log.error("%s; moved to %s, starting with an empty restart history", exc, aside)
            self.audit.record(
                AuditEvent.STATE_DISCARDED, policy.name, reason=str(exc), kept_as=str(aside)
            )
            governor = EngineState().governor
        self.supervised[policy.name] = Supervised(
            policy,
            RedisProbe(policy.broker, self.clock),
            EngineState(governor=governor),
            next_due=self.monotonic(),
        )
        self._monitor_for(policy)

    def _monitor_for(self, policy: Policy) -> ProgressMonitor | None:
        if not (self.watch_progress and policy.detect.require_no_progress):
            return None
        key = (policy.broker.url, policy.broker.key_prefix)
        if key not in self.monitors:
            monitor = ProgressMonitor(policy.broker)
            monitor.start()
            self.monitors[key] = monitor
        return self.monitors[key]

    def _tick(self, item: Supervised) -> None:
        policy = item.policy
        sample = item.probe.sample()
        monitor = self._monitor_for(policy)
        if sample.ok and monitor is not None:
            sample = dataclasses.replace(sample, processed=monitor.processed(policy.broker.queues))
        self._track_sampling(item, sample.error)
        item.recent.append((sample.t, sample.depth))
        while item.recent and sample.t - item.recent[0][0] > policy.detect.window:
            item.recent.popleft()
        self._observe_sample(item, sample)
        if item.busy:
            # The target is being restarted: what its queue does meanwhile says nothing about
            # the restarted worker, so the engine sees no sample until the restart is over.
            item.log.debug("depth=%s, not judged: restart in flight", sample.depth)
            return
        item.state, decision = engine.step(policy, item.state, sample, now=sample.t)
        item.last_decision = decision
        d = decision.diagnosis
        item.log.debug(
            "depth=%s processed=%s %s", sample.depth, sample.processed, decision.describe()
        )
        self._observe_decision(item, sample, decision)
        for action in decision.actions:  # the engine changes the history only with an action
            self._carry_out(item, action, d.run_start.t if d.run_start else None)

    def _observe_sample(self, item: Supervised, sample: Sample) -> None:
        """Metrics of the sample and of the restart history, and the recovery notice once the
        queue is back under."""
        name, m = item.policy.name, self.metrics
        at = governor.allowed_at(item.state.governor, item.policy.restart, sample.t)
        m.set_restart_allowed_in(name, None if at is None else at - sample.t)
        m.samples.labels(name).inc()
        m.redis_up.labels(name).set(1 if sample.ok else 0)
        if not sample.ok:
            m.sample_failures.labels(name).inc()
            return
        m.last_sample.labels(name).set(sample.t)
        m.depth.labels(name).set(sample.depth or 0)
        for queue, depth in sample.queues.items():
            m.queue_depth.labels(name, queue).set(depth)
        if sample.unacked is not None:
            m.unacked.labels(name).set(sample.unacked)
        if sample.processed is None:
            with contextlib.suppress(KeyError):
                m.progress.remove(name)
        else:
            m.progress.labels(name).set(sample.processed)
        threshold = item.policy.detect.threshold
        recovered = sample.depth is not None and sample.depth <= threshold
        if item.awaiting_recovery and recovered and not item.busy:
            item.awaiting_recovery = False
            text = f"recovered: queue depth {sample.depth} is back under {threshold}"
            item.log.info(text)
            self.audit.record(AuditEvent.RECOVERY, name, depth=sample.depth, reason=text)
            self._notify(item.policy, "recovery", text)

    def _observe_decision(self, item: Supervised, sample: Sample, decision: Decision) -> None:
        name, m = item.policy.name, self.metrics
        m.stuck.labels(name).set(1 if decision.diagnosis.verdict is Verdict.STUCK else 0)
        m.run_seconds.labels(name).set(decision.diagnosis.run_seconds)

    def _notify(self, policy: Policy, event: str, text: str, **details: Any) -> None:
        prefix = f"[{policy.name}] " + ("DRY-RUN " if self.dry_run else "")
        self.notifier.submit(
            settings_for(policy),
            Notice(
                event, policy.name, policy.target.describe(), prefix + text, self.dry_run, details
            ),
        )

    def _track_sampling(self, item: Supervised, error: str | None) -> None:
        name = item.policy.name
        if error is not None and item.failing_since is None:
            item.failing_since = self.clock()
            item.last_error = error
            item.log.error("cannot sample, deciding nothing until it can: %s", error)
            self.audit.record(AuditEvent.SAMPLE_ERROR_BEGIN, name, reason=error)
        elif error is None and item.failing_since is not None:
            lasted = self.clock() - item.failing_since
            item.log.info("sampling again after %.1fs", lasted)
            self.audit.record(
                AuditEvent.SAMPLE_ERROR_END, name, seconds=round(lasted, 3), reason=item.last_error
            )
            item.failing_since = None
            item.last_error = None

    # -- actions ----------------------------------------------------------------------------

    def _carry_out(self, item: Supervised, action: Action, run_start: float | None = None) -> None:
        """Audit and carry out a fresh action; no restart of this target is in flight."""
        policy = item.policy
        self._save(item)  # the history counts this action even if we die while carrying it out
        common: dict[str, Any] = {
            "target": policy.target.describe(),
            "decided_at": round(action.t, 3),
            "run_start": round(run_start, 3) if run_start is not None else None,
            "reason": action.reason,
            "trigger": action.trigger.value,
            "depths": item.window_depths(),
            "streak": action.streak,
            "broker": redact_url(policy.broker.url),
        }
        if action.kind is ActionKind.ESCALATE:
            item.log.error("ESCALATE: %s", action.reason)
            self.audit.record(AuditEvent.ESCALATE, policy.name, **common)
            self.metrics.escalations.labels(policy.name).inc()
            self._notify(policy, "escalate", f"ESCALATION, a person is needed: {action.reason}")
            return
        manual = action.trigger is Trigger.MANUAL
        item.awaiting_recovery = True
        item.log.warning(
            "%s%s restart of %s: %s",
            "dry-run " if self.dry_run else "",
            "manual" if manual else "automatic",
            policy.target.describe(),
            action.reason,
        )
        if self.dry_run:
            item.in_flight = self.pool.submit(self._dry_run_restart, item.policy, common)
        else:
            item.in_flight = self.pool.submit(self._restart, item.policy, common)

    def _dry_run_restart(self, policy: Policy, common: dict[str, Any]) -> None:
        # Read-only: find the containers it would restart, so the audit names them.
        containers: list[str] = []
        error = None
        try:
            containers = [c.name for c in self.actuator.find(policy.target)]
        except TargetError as exc:
            error = f"target: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported, never raised in a worker thread
            error = f"docker: {exc}"
        self.audit.record(
            AuditEvent.DRY_RUN_RESTART,
            policy.name,
            outcome="dry_run",
            containers=containers,
            error=error,
            **common,
        )
        self.metrics.restarts.labels(policy.name, "dry_run", common["trigger"]).inc()
        self._notify(
            policy,
            "restart",
            f"would restart {', '.join(containers) or policy.target.describe()} "
            f"({common['trigger']}): {common['reason']}",
        )

    def _restart(self, policy: Policy, common: dict[str, Any]) -> None:
        called_at = self.clock()
        result: RestartResult = self.actuator.restart(policy.target, policy.restart)
        self.audit.record(
            AuditEvent.RESTART,
            policy.name,
            outcome=result.outcome.value,
            method=result.method,
            containers=list(result.containers),
            seconds=round(result.seconds, 3),
            error=result.error,
            started_at=list(result.started_at) or None,
            called_at=round(called_at, 3),
            **common,
        )
        plog = logs.for_policy(log, policy.name)
        self.metrics.restarts.labels(policy.name, result.outcome.value, common["trigger"]).inc()
        if result.outcome is Outcome.DONE:
            text = (
                f"restarted {', '.join(result.containers)} ({common['trigger']}, "
                f"{result.method}, {result.seconds:.1f}s): {common['reason']}"
            )
            plog.warning(text)
            self._notify(policy, "restart", text)
        else:
            text = (
                f"restart of {common['target']} FAILED after {result.seconds:.1f}s: {result.error}"
            )
            plog.error(text)
            self._notify(policy, "restart_failed", text)
        self.waker.wake()

    # -- Docker reachability ----------------------------------------------------------------

    def _maybe_check_docker(self) -> None:
        if self.docker_check is not None and self.docker_check.done():
            error = self.docker_check.result()
            self.docker_check = None
            if error is not None and self.docker_error is None:
                log.error("restarts would fail: %s", error)
                self.audit.record(AuditEvent.DOCKER_ERROR_BEGIN, reason=error)
            elif error is None and self.docker_error is not None:
                log.info("Docker engine reachable again")
                self.audit.record(AuditEvent.DOCKER_ERROR_END, reason=self.docker_error)
            self.docker_error = error
            self.metrics.docker_up.set(1 if error is None else 0)
        now = self.monotonic()
        if self.docker_check is None and now >= self.next_docker_check:
            self.next_docker_check = now + DOCKER_CHECK_EVERY
            self.docker_check = self.pool.submit(self.actuator.ping)

    # -- files ------------------------------------------------------------------------------

    def _save(self, item: Supervised) -> None:
        try:
            self.store.save(item.policy.name, item.state.governor)
        except OSError as exc:
            item.log.error("cannot write state to %s: %s", self.store.path(item.policy.name), exc)

    def _write_heartbeat(self, stopped: bool = False) -> None:
        data = {
            "t": self.clock(),
            "stopped": stopped,
            "pid": os.getpid(),
            "dry_run": self.dry_run,
            "policies": {
                name: {
                    "interval": s.policy.detect.interval,
                    "sampling": s.failing_since is None,
                    "depth": s.recent[-1][1] if s.recent else None,
                    "trend": [d for _, d in list(s.recent)[-TREND_SAMPLES:]],
                    "verdict": s.last_decision.diagnosis.verdict.value if s.last_decision else None,
                    "why": s.last_decision.describe() if s.last_decision else None,
                }
                for name, s in self.supervised.items()
            },
            "docker_error": self.docker_error,
            "policy_paths": [str(p.resolve()) for p in self.policy_paths],
        }
        path = self.state_dir / HEARTBEAT_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write %s: %s", path, exc)


def request_trigger(state_dir: Path, name: str | None) -> int:
    """`supervisor trigger [NAME]`: leave a request and signal the daemon. Returns its pid."""
    pid_path = state_dir / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        raise SupervisorError(
            f"{pid_path}: no running supervisor found (is --state-dir the daemon's?)"
        ) from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise SupervisorError(f"{pid_path}: supervisor pid {pid} is not running") from None
    if name:
        folder = state_dir / TRIGGER_DIR
        folder.mkdir(exist_ok=True)
        request = folder / f"{time.time_ns()}-{os.getpid()}.request"
        tmp = request.with_suffix(".tmp")
        tmp.write_text(name + "\n", encoding="utf-8")
        os.replace(tmp, request)
    os.kill(pid, signal.SIGUSR1)
    return pid
