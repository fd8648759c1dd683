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

PREFIX = "iti_supervisor"

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
        self.depth = gauge("depth", "Messages waiting in all of the policy's queues", p)
        self.unacked = gauge(
            "unacked_messages", "Messages reserved but not acknowledged (kombu's unacked hash)", p
        )
        self.stuck = gauge("stuck", "1 when the worker is judged stuck, else 0", p)
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
        self._server: Any = None

    def serve(self, address: str, port: int) -> int:
        """Expose /metrics; returns the port (useful with port 0)."""
        self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set_restart_allowed_in(self, policy: str, seconds: float | None) -> None:
        self.restart_allowed_in.labels(policy).set(math.inf if seconds is None else seconds)

    def forget(self, policy: str, queues: list[str]) -> None:
        """Drop a removed policy's series, so a reload leaves no stale ones."""
        for metric in (
            self.depth,
            self.unacked,
            self.stuck,
            self.run_seconds,
            self.restart_allowed_in,
            self.escalations,
            self.samples,
            self.sample_failures,
            self.last_sample,
            self.redis_up,
            self.progress,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(policy)
        for queue in queues:
            with contextlib.suppress(KeyError):
                self.queue_depth.remove(policy, queue)
