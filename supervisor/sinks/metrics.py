"""Prometheus metrics of the daemon, in a registry of its own (no process or GC collectors mixed
in unless asked). Labels are bounded: policy, queue (from the policy file), outcome, trigger."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.process_collector import ProcessCollector

from supervisor.clock import Here
from supervisor.core import governor
from supervisor.core.detector import Verdict
from supervisor.core.engine import Decision
from supervisor.core.events import DryRunRestart, Event, EventKind, Quarantined, Restarted
from supervisor.core.tracker import TrackerState
from supervisor.errors import UsageError
from supervisor.policy import Policy
from supervisor.sample import Sample

PREFIX = "iti_supervisor"

TRIGGERS = ("automatic", "manual")
_RESTART_OUTCOMES = {
    EventKind.RESTART: "done",
    EventKind.RESTART_FAILED: "failed",
    EventKind.DRY_RUN_RESTART: "dry_run",
}

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: noise here


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(namespace=PREFIX, registry=r)  # its own memory and CPU
        p = ["policy"]

        def gauge(name: str, doc: str, labels: list[str] | None = None) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels or [], registry=r)

        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=r)

        self.queue_depth = gauge(
            "queue_depth",
            "Messages waiting in one Celery queue, all priority lists",
            ["policy", "queue"],
        )
        self.oldest_wait = gauge(
            "queue_oldest_wait_seconds",
            "How long the queue's oldest message has waited, at least (since the supervisor "
            "first saw it at the head of its list); 0 when the queue is empty",
            ["policy", "queue"],
        )
        self.depth = gauge("depth", "Messages waiting in all of the policy's queues", p)
        self.threshold = gauge(
            "threshold", "The policy's threshold: over it and growing is stuck", p
        )
        self.unconsumed = gauge(
            "queue_without_consumer",
            "1 when no live worker consumes the queue, 0 when one does; absent when unknown",
            ["policy", "queue"],
        )
        self.unacked = gauge(
            "unacked_messages", "Messages reserved but not acknowledged (kombu's unacked hash)", p
        )
        self.stuck = gauge("stuck", "1 when the worker is judged stuck, else 0", p)
        self.cannot_judge = gauge(
            "cannot_judge",
            "1 while nothing can be judged: no container found, no queue watched, or no worker "
            "of the target ever heard",
            p,
        )
        self.target_found = gauge(
            "target_found", "1 when the target's containers were found, 0 when not", p
        )
        self.run_seconds = gauge(
            "run_seconds", "How long the depth has been over the threshold and not decreasing", p
        )
        self.restart_allowed_in = gauge(
            "restart_allowed_in_seconds",
            "Seconds until cooldown, backoff and budget allow a restart (0: now; +Inf: never)",
            p,
        )
        self.restarts = counter(
            "restarts",
            "Restarts, by outcome (done, failed, dry_run) and trigger (automatic, manual)",
            ["policy", "outcome", "trigger"],
        )
        self.escalations = counter(
            "escalations", "Due restarts refused by the budget: a person is needed", p
        )
        self.quarantined = counter(
            "quarantined_messages",
            "Poison messages parked instead of given back (quarantine_after)",
            p,
        )
        self.escalated = gauge(
            "escalated",
            "1 from an escalation until the next restart: the budget is spent for this incident",
            p,
        )
        self.samples = counter("samples", "Samples taken", p)
        self.sample_failures = counter(
            "sample_failures", "Samples that failed (Redis unreachable, auth, wrong key type)", p
        )
        self.last_sample = gauge(
            "last_sample_timestamp_seconds", "When the last successful sample was taken", p
        )
        self.redis_up = gauge(
            "redis_up", "1 when the last sample of the policy's broker succeeded", p
        )
        self.docker_up = gauge("docker_up", "1 when the Docker engine answered the last check")
        self.progress = gauge(
            "worker_started_tasks",
            "Tasks started by the policy's workers (heartbeats); absent when unknown",
            p,
        )
        self.loop = gauge("loop_timestamp_seconds", "When the loop last completed a pass")
        self.lease = gauge(
            "lease_held",
            "With --lease: 1 when this supervisor holds the target's lease and acts, 0 when it "
            "stands by (or cannot reach Redis); absent without leases",
            p,
        )
        self.events = counter(
            "events",
            "Every event, by the name it has in the audit log and the notifications",
            ["policy", "event"],
        )
        self._server: Any = None
        self._series: dict[str, _Series] = {}

    def serve(self, address: str, port: int) -> int:
        """Expose /metrics; returns the port (useful with port 0). UsageError when it cannot
        listen there (nothing has started yet: the operator fixes the setting)."""
        try:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise UsageError(
                f"metrics port (--metrics-port / SUPERVISOR_METRICS_PORT): cannot listen on "
                f"{address}:{port}: {exc.strerror or exc}"
            ) from None
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def on_event(self, ev: Event) -> None:
        """The event sink: every event counted under its own name."""
        policy = ev.policy or ""
        self.events.labels(policy, ev.kind.value).inc()
        outcome = _RESTART_OUTCOMES.get(ev.kind)
        if outcome is not None:
            trigger = ev.why.trigger if isinstance(ev, Restarted | DryRunRestart) else "automatic"
            self.restarts.labels(policy, outcome, trigger).inc()
        elif ev.kind is EventKind.ESCALATE:
            self.escalations.labels(policy).inc()
        elif isinstance(ev, Quarantined):
            self.quarantined.labels(policy).inc(len(ev.tasks))

    def observe(
        self,
        policy: Policy,
        sample: Sample,
        state: TrackerState,
        decision: Decision | None,
        here: Here,
    ) -> None:
        """The gauges of one tick: the sample, the verdict and the restart history. `here`:
        the daemon's stepless clock now; timestamps are given on its wall clock."""
        now, skew = here.now, here.skew
        s = self._series.get(policy.name) or self._start(policy.name)
        put = s.put
        put(self.threshold, policy.detect.threshold)
        put(self.cannot_judge, 1 if state.cannot_judge else 0)
        if sample.target_error is not None:
            put(self.target_found, 0)
        elif sample.containers is not None:
            put(self.target_found, 1)
        put(self.escalated, 1 if state.history.escalated else 0)
        at = governor.allowed_at(state.history, policy.restart, now)
        put(self.restart_allowed_in, math.inf if at is None else max(0.0, at - now))
        s.child(self.samples).inc()
        put(self.redis_up, 1 if sample.ok else 0)
        if decision is not None:
            put(self.stuck, 1 if decision.diagnosis.verdict is Verdict.STUCK else 0)
            put(self.run_seconds, decision.diagnosis.run_seconds)
        if not sample.ok:
            s.child(self.sample_failures).inc()
            return
        put(self.last_sample, sample.t + skew)  # on the wall clock: Prometheus compares time()
        put(self.depth, sample.depth or 0)
        for queue, depth in sample.queues.items():
            put(self.queue_depth, depth, queue)
        if sample.unacked is not None:
            put(self.unacked, sample.unacked)
        for queue in sample.queues:
            known = None if sample.unconsumed is None else int(queue in sample.unconsumed)
            put(self.unconsumed, known, queue)
        put(self.progress, sample.processed)
        waits = decision.stalls.waits if decision is not None else None
        for queue in sample.queues:
            put(self.oldest_wait, None if waits is None else waits.get(queue), queue)

    def _start(self, policy: str) -> _Series:
        """A policy's series, with its counters at 0 from its first tick, not from its first
        event: Prometheus's increase() cannot see the step from no series to 1, so a first
        failed restart or escalation would never fire an alert."""
        series = self._series[policy] = _Series(policy)
        for outcome in _RESTART_OUTCOMES.values():
            for trigger in TRIGGERS:
                series.child(self.restarts, outcome, trigger)
        series.child(self.escalations)
        series.child(self.quarantined)
        series.child(self.sample_failures)
        for kind in (EventKind.RESTART_FAILED, EventKind.ESCALATE, EventKind.RESTART):
            series.child(self.events, kind.value)
        return series

    def forget(self, policy: str) -> None:
        """Drop a removed policy's series, so a reload leaves no stale ones: those its ticks
        made, and those its events or its lease may have made before its first tick."""
        series = self._series.pop(policy, None)
        made = series.made() if series is not None else []
        labelled = [*made, (self.lease, ()), (self.escalations, ()), (self.quarantined, ())]
        labelled += [(self.events, (kind.value,)) for kind in EventKind]
        labelled += [
            (self.restarts, (outcome, trigger))
            for outcome in _RESTART_OUTCOMES.values()
            for trigger in TRIGGERS
        ]
        for metric, rest in labelled:
            with contextlib.suppress(KeyError):
                metric.remove(policy, *rest)


class _Series:
    """One policy's series, each looked up once (a `labels()` call takes a lock and checks its
    values) and set only when its value changed (most hold the same value tick after tick); a
    gauge whose value is not known has no series (unknown is not 0)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        # (metric, labels after the policy) -> the series and the value it holds
        self._held: dict[tuple[Gauge | Counter, tuple[str, ...]], tuple[Any, float | None]] = {}

    def child(self, metric: Gauge | Counter, *labels: str) -> Any:
        key = (metric, labels)
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = (metric.labels(self.policy, *labels), None)
        return held[0]

    def put(self, gauge: Gauge, value: float | None, *labels: str) -> None:
        key = (gauge, labels)
        held = self._held.get(key)
        if (held[1] if held is not None else None) == value:
            return  # unchanged, or unknown and not shown
        if value is None:
            del self._held[key]
            with contextlib.suppress(KeyError):
                gauge.remove(self.policy, *labels)
            return
        child = held[0] if held is not None else gauge.labels(self.policy, *labels)
        child.set(value)
        self._held[key] = (child, value)

    def made(self) -> list[tuple[Gauge | Counter, tuple[str, ...]]]:
        return list(self._held)
