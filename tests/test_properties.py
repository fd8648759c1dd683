"""Invariants of the engine over generated traces (hypothesis)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core import engine
from supervisor.core.detector import RunState, Verdict, observe
from supervisor.core.engine import ActionKind, EngineState
from supervisor.core.governor import Gate, GovernorState, allowed_at, record_restart, rule
from supervisor.policy import Detect, Policy
from supervisor.sample import Sample

from .helpers import make_policy

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Row:
    dt: float
    depth: int | None
    processed: int | None


rows = st.lists(
    st.builds(
        Row,
        dt=st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0]),
        depth=st.one_of(st.none(), st.integers(95, 140)),
        processed=st.one_of(st.none(), st.integers(0, 2)),
    ),
    max_size=150,
)


def reference_run_start(
    history: list[Sample], detect: Detect, last_restart: float | None
) -> Sample | None:
    """The rule as the issue words it, by brute force over every successful sample so far."""
    ok = [s for s in history if s.depth is not None]
    if not ok:
        return None
    latest = ok[-1]
    assert latest.depth is not None
    if latest.depth <= detect.threshold or (last_restart is not None and latest.t <= last_restart):
        return None
    i = len(ok) - 1
    known = latest.processed if detect.require_no_progress else None
    while i > 0:
        prev, cur = ok[i - 1], ok[i]
        assert prev.depth is not None and cur.depth is not None
        if prev.depth <= detect.threshold or cur.depth < prev.depth:
            break
        if last_restart is not None and prev.t <= last_restart:
            break
        if cur.t - prev.t > detect.effective_max_gap:
            break
        p = prev.processed if detect.require_no_progress else None
        if p is not None:
            if known is not None and known != p:
                break
            known = p
        i -= 1
    return ok[i]


@SETTINGS
@given(rows, st.lists(st.integers(0, 149), max_size=4), st.booleans(), st.booleans())
def test_incremental_detector_matches_the_rule_as_written(
    trace: list[Row], restart_at: list[int], require_no_progress: bool, require_growth: bool
) -> None:
    detect = make_policy(
        detect={"require_no_progress": require_no_progress, "require_growth": require_growth}
    ).detect
    run, history, t, last_restart = RunState(), [], 0.0, None
    for i, row in enumerate(trace):
        t += row.dt
        sample = (
            Sample.failed(t, "x")
            if row.depth is None
            else Sample(t, row.depth, processed=row.processed)
        )
        history.append(sample)
        run, diagnosis = observe(run, sample, detect, last_restart)
        if sample.depth is None:
            assert diagnosis.verdict is Verdict.UNKNOWN
        else:
            start = reference_run_start(history, detect, last_restart)
            got = diagnosis.run_start
            assert (got.t if got else None) == (start.t if start else None)
            # With require_growth = false, a run whose every sample knew the worker's
            # progress (which then did not move, or the run would have been cut) is stuck
            # without growing.
            run_samples = [s for s in history if s.depth is not None and start and s.t >= start.t]
            frozen = (
                not require_growth
                and require_no_progress
                and all(s.processed is not None for s in run_samples)
            )
            expected_stuck = (
                start is not None
                and t - start.t >= detect.window
                and (sample.depth > (start.depth or 0) or frozen)
            )
            assert (diagnosis.verdict is Verdict.STUCK) == expected_stuck
        if i in restart_at:
            last_restart = t + 0.25  # a manual restart between two samples
            run = RunState()


flat_rows = st.lists(
    st.builds(
        Row,
        dt=st.sampled_from([1.0, 1.0, 1.0, 2.0]),
        depth=st.sampled_from([120, 120, 120, 120, 121, 119, None]),
        processed=st.sampled_from([5, 5, 5, 5, 5, None, 6]),
    ),
    min_size=5,
    max_size=60,
)


@SETTINGS
@given(flat_rows, st.booleans())
def test_a_flat_backlog_is_stuck_only_when_progress_was_known_throughout(
    trace: list[Row], require_growth: bool
) -> None:
    """Flat backlogs behind a worker whose progress is fixed, sometimes unknown: where the rule
    for `require_growth = false` matters, against the brute-force reference."""
    test_incremental_detector_matches_the_rule_as_written.hypothesis.inner_test(  # type: ignore[attr-defined]
        trace, [], True, require_growth
    )


def restart_policies() -> st.SearchStrategy[Policy]:
    return st.builds(
        lambda cooldown, initial, factor, bmax, reset, max_restarts, budget: make_policy(
            detect={"window": 5, "max_gap": 4},
            restart={
                "cooldown": cooldown,
                "backoff_initial": initial,
                "backoff_factor": factor,
                "backoff_max": max(initial, bmax),
                "reset_after": reset,
                "max_restarts": max_restarts,
                "budget_window": budget,
            },
        ),
        st.integers(0, 30),
        st.integers(0, 30),
        st.sampled_from([1.0, 1.5, 2.0, 3.0]),
        st.integers(0, 60),
        st.integers(1, 200),
        st.integers(0, 4),
        st.integers(1, 200),
    )


# Mostly-growing traces over the threshold, so that restarts actually happen.
stuckish = st.lists(
    st.tuples(st.sampled_from([0.5, 1.0, 2.0]), st.integers(-3, 20), st.booleans()),
    min_size=1,
    max_size=400,
)


def drive(policy: Policy, steps: list[tuple[float, int, bool]]) -> list[engine.Action]:
    state, t, depth, out = EngineState(), 0.0, 101, []
    for dt, delta, ok in steps:
        t += dt
        depth = max(0, depth + delta)
        sample = Sample(t, depth) if ok else Sample.failed(t, "x")
        state, decision = engine.step(policy, state, sample, now=t)
        out.extend(decision.actions)
    return out


@SETTINGS
@given(restart_policies(), stuckish)
def test_budget_and_cooldown_are_never_exceeded(
    policy: Policy, steps: list[tuple[float, int, bool]]
) -> None:
    restarts = [a.t for a in drive(policy, steps) if a.kind is ActionKind.RESTART]
    budget, window = policy.restart.max_restarts, policy.restart.budget_window
    for i, first in enumerate(restarts):
        assert len([r for r in restarts[i:] if r - first < window]) <= budget
    for before, after in itertools.pairwise(restarts):
        assert after - before >= policy.restart.cooldown


@SETTINGS
@given(restart_policies(), stuckish)
def test_escalation_only_when_the_budget_blocks_and_once_per_streak_of_refusals(
    policy: Policy, steps: list[tuple[float, int, bool]]
) -> None:
    kinds = [a.kind for a in drive(policy, steps)]
    for a, b in itertools.pairwise(kinds):
        assert not (a is ActionKind.ESCALATE and b is ActionKind.ESCALATE)
    if policy.restart.max_restarts > 0 and ActionKind.ESCALATE in kinds:
        assert kinds.count(ActionKind.RESTART) >= policy.restart.max_restarts


@SETTINGS
@given(
    restart_policies(),
    st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.sampled_from([0.1, 0.5, 1.0]), st.integers(0, 30)),
                min_size=0,
                max_size=4,
            ),
            st.integers(1, 50),
        ),
        max_size=60,
    ),
)
def test_no_restart_when_every_window_holds_a_decrease(
    policy: Policy, chunks: list[tuple[list[tuple[float, int]], int]]
) -> None:
    # window = 5 s; each chunk is at most 4 rises of at most 1 s, then a fall: any 5 s holds one.
    steps: list[tuple[float, int, bool]] = []
    for rises, fall in chunks:
        steps.extend((dt, delta, True) for dt, delta in rises)
        steps.append((0.5, -fall, True))
    assert drive(policy, steps) == []


@SETTINGS
@given(
    restart_policies(),
    st.lists(st.integers(0, 400), max_size=6).map(sorted),
    st.integers(0, 600),
    st.integers(0, 300),
)
def test_allowed_at_is_exactly_when_the_governor_first_allows(
    policy: Policy, times: list[int], now_offset: int, probe: int
) -> None:
    state = GovernorState()
    for t in times:
        state = record_restart(state, policy.restart, float(t))
    now = float((times[-1] if times else 0) + now_offset)
    at = allowed_at(state, policy.restart, now)
    if at is None:
        assert rule(state, policy.restart, now + probe).gate is not Gate.ALLOW
        return
    assert rule(state, policy.restart, at).gate is Gate.ALLOW
    t = now + probe
    assert (rule(state, policy.restart, t).gate is Gate.ALLOW) == (t >= at)
