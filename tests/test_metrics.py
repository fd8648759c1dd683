"""The per-tick gauges, read back from the registry as Prometheus would scrape them."""

from __future__ import annotations

import dataclasses

from supervisor.clock import Frame, Here
from supervisor.core.tracker import TrackerState
from supervisor.sample import Sample
from supervisor.sinks.metrics import Metrics
from tests.helpers import make_policy


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(f"iti_supervisor_{name}", labels)


def at(t: float, wall_ahead: float = 0.0) -> Here:
    return Here(Frame("boot", 0.0), t, t + wall_ahead)


def series_of(m: Metrics, policy: str) -> set[str]:
    return {
        f"{s.name}{sorted(s.labels.items())}"
        for family in m.registry.collect()
        for s in family.samples
        if s.labels.get("policy") == policy
    }


def test_unknown_is_no_series_not_zero_and_a_removed_policy_leaves_none() -> None:
    m = Metrics()
    policy = make_policy()
    known = Sample(1.0, 7, {"celery": 4, "found": 3}, unacked=2, processed=40, unconsumed=())
    m.observe(policy, known, TrackerState(), None, at(1.0))
    assert value(m, "worker_started_tasks", policy="test-worker") == 40
    assert value(m, "queue_depth", policy="test-worker", queue="found") == 3  # a discovered queue
    assert value(m, "queue_without_consumer", policy="test-worker", queue="celery") == 0
    unknown = dataclasses.replace(known, t=2.0, processed=None, unconsumed=None)
    m.observe(policy, unknown, TrackerState(), None, at(2.0))
    assert value(m, "worker_started_tasks", policy="test-worker") is None
    assert value(m, "queue_without_consumer", policy="test-worker", queue="celery") is None
    m.observe(
        policy, dataclasses.replace(known, t=3.0, processed=41), TrackerState(), None, at(3.0)
    )
    assert value(m, "worker_started_tasks", policy="test-worker") == 41  # shown again
    assert value(m, "last_sample_timestamp_seconds", policy="test-worker") == 3.0
    assert value(m, "samples_total", policy="test-worker") == 3
    m.observe(make_policy(name="other"), known, TrackerState(), None, at(3.0))
    m.forget("test-worker")
    assert series_of(m, "test-worker") == set()  # the discovered queue's and cannot_judge's too
    assert value(m, "depth", policy="other") == 7


def test_the_last_sample_timestamp_is_on_the_wall_clock() -> None:
    """Prometheus compares it with its own time(): a stepless time is shown on the wall clock."""
    m = Metrics()
    sample = Sample(100.0, 3, {"celery": 3})
    m.observe(make_policy(), sample, TrackerState(), None, at(100.0, wall_ahead=-3 * 3600))
    assert value(m, "last_sample_timestamp_seconds", policy="test-worker") == 100.0 - 3 * 3600
