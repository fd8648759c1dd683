"""One replica at a time: mapping workers to containers, and judging each replica on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core import engine
from supervisor.core.engine import ActionKind, EngineState
from supervisor.core.replicas import Container, match_workers
from supervisor.sample import Replica, Sample

from .helpers import make_policy

POLICY = make_policy(detect={"interval": 1, "window": 10, "threshold": 100, "max_gap": 3})


def test_workers_map_to_containers_by_hostname_or_name() -> None:
    containers = [Container("iti-dify-worker-1", "3f2a9c1b7d4e"), Container("worker-2", "h2")]
    mapped = match_workers(
        ["celery@3f2a9c1b7d4e", "worker@worker-2", "celery@elsewhere", "plain"], containers
    )
    assert mapped == {"celery@3f2a9c1b7d4e": "iti-dify-worker-1", "worker@worker-2": "worker-2"}


def run(rows: list[tuple[int, int | None, int | None]]) -> list[engine.Action]:
    """Samples every second: (depth, progress of replica a, progress of replica b)."""
    state, out = EngineState(), []
    for t, (depth, a, b) in enumerate(rows):
        replicas = (
            Replica("a", "celery@a", a, "heartbeats" if a is not None else None),
            Replica("b", "celery@b", b, "heartbeats" if b is not None else None),
        )
        total = None if a is None and b is None else (a or 0) + (b or 0)
        sample = Sample(float(t), depth, processed=total, replicas=replicas)
        state, decision = engine.step(POLICY, state, sample, now=float(t))
        out += decision.actions
    return out


def test_only_the_hung_replica_is_restarted_while_the_other_progresses() -> None:
    rows = [(150, 40, 10 + t) for t in range(15)]  # a frozen at 40, b moving; backlog flat
    [restart] = run(rows)
    assert restart.kind is ActionKind.RESTART and restart.containers == ("a",)
    assert "replica a (worker celery@a)" in restart.reason
    assert "its progress stuck at 40 started tasks, from heartbeats" in restart.reason


def test_a_replica_that_stopped_reporting_while_the_other_reports_is_stuck() -> None:
    rows = [(150 + t, None, 10 + t) for t in range(15)]
    [restart] = run(rows)
    assert restart.containers == ("a",)
    assert "stopped reporting while another replica reports" in restart.reason


def test_progress_hidden_by_a_sum_no_longer_masks_a_hung_replica() -> None:
    # The sum moves, so the whole target is not stuck; replica a is.
    [restart] = run([(150 + t, 7, t) for t in range(15)])
    assert restart.containers == ("a",)


def test_replicas_that_cannot_be_told_apart_fall_back_to_the_whole_target() -> None:
    [restart] = run([(150 + t, None, None) for t in range(15)])
    assert restart.containers == ()  # the whole target, as the policy's rule says


def test_both_frozen_both_restarted_in_one_restart() -> None:
    [restart] = run([(150 + t, 3, 4) for t in range(15)])
    assert restart.containers == ("a", "b")


progress = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(progress, st.lists(st.booleans(), min_size=60, max_size=60))
def test_a_replica_whose_progress_moved_within_the_window_is_never_restarted(
    steps: list[tuple[int, int]], silent: list[bool]
) -> None:
    """Each replica's counter moves by 0-2 a second (sometimes unreported): whatever happens,
    a restart never names a replica whose own reported count changed during the window."""
    a = b = 0
    rows, history = [], []
    for i, (da, db) in enumerate(steps):
        a, b = a + da, b + db
        ra = None if silent[i] and i % 2 else a
        rows.append((150, ra, b))
        history.append((ra, b))
    state = EngineState()
    for t, (depth, ra, rb) in enumerate(rows):
        replicas = (Replica("a", "celery@a", ra), Replica("b", "celery@b", rb))
        sample = Sample(float(t), depth, processed=(ra or 0) + rb, replicas=replicas)
        state, decision = engine.step(POLICY, state, sample, now=float(t))
        for action in decision.actions:
            window = history[max(0, t - 10) : t + 1]
            for index, name in enumerate(("a", "b")):
                if name in action.containers:
                    seen = {h[index] for h in window if h[index] is not None}
                    assert len(seen) <= 1, (name, window)


def no_consumer(t: float, depth: int, worker_progress: int | None) -> Sample:
    """`nobody` holds the backlog; the target's one worker consumes `celery` only."""
    return Sample(
        t,
        depth,
        queues={"celery": 2, "nobody": depth - 2},
        processed=worker_progress,
        unconsumed=("nobody",),
        replicas=(Replica("w", "celery@w", worker_progress, "heartbeats"),),
    )


def test_a_growing_queue_nobody_consumes_is_escalated_once_not_restarted() -> None:
    state, actions = EngineState(), []
    for t in range(40):
        state, decision = engine.step(POLICY, state, no_consumer(float(t), 150 + t, t), float(t))
        actions += decision.actions
    [escalate] = actions
    assert escalate.kind is ActionKind.ESCALATE
    assert escalate.reason.startswith("no consumer for queue nobody")
    assert "restarting them cannot help" in escalate.reason


def test_a_target_whose_worker_is_silent_is_restarted_it_may_be_what_the_queue_needs() -> None:
    state, actions = EngineState(), []
    for t in range(15):
        sample = no_consumer(float(t), 150 + t, None)
        state, decision = engine.step(POLICY, state, sample, float(t))
        actions += decision.actions
    [restart] = actions
    assert restart.kind is ActionKind.RESTART
