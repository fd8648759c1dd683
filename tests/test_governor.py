"""Cooldown, backoff, streaks and budget. Policy numbers chosen so each rule shows on its own."""

from __future__ import annotations

from supervisor.core.governor import Gate, GovernorState, allowed_at, record_restart, rule
from supervisor.policy import Restart

from .helpers import make_policy


def restart_policy(**overrides: object) -> Restart:
    return make_policy(restart=overrides).restart


def history(policy: Restart, *times: float) -> GovernorState:
    state = GovernorState()
    for t in times:
        state = record_restart(state, policy, t)
    return state


def test_first_restart_is_allowed_and_is_the_first_of_its_streak() -> None:
    policy = restart_policy()
    assert rule(GovernorState(), policy, 0.0).gate is Gate.ALLOW
    assert history(policy, 5.0).streak == 1


def test_cooldown_is_a_floor_even_when_backoff_is_shorter() -> None:
    policy = restart_policy(cooldown=100, backoff_initial=10, backoff_max=20)
    state = history(policy, 0.0)
    assert rule(state, policy, 99.999).gate is Gate.WAIT
    assert rule(state, policy, 100.0).gate is Gate.ALLOW


def test_backoff_grows_by_factor_up_to_its_max() -> None:
    policy = restart_policy(
        cooldown=1,
        backoff_initial=100,
        backoff_factor=2.0,
        backoff_max=350,
        reset_after=10_000,
        max_restarts=100,
        budget_window=1,
    )
    assert [policy.wait_after(k) for k in (1, 2, 3, 4)] == [100, 200, 350, 350]
    t, state = 0.0, GovernorState()
    for expected_wait in (100, 200, 350, 350):
        state = record_restart(state, policy, t)
        ruling = rule(state, policy, t + expected_wait - 0.01)
        assert ruling.gate is Gate.WAIT and ruling.not_before == t + expected_wait
        assert rule(state, policy, t + expected_wait).gate is Gate.ALLOW
        t += expected_wait
    assert state.streak == 4


def test_a_restart_more_than_reset_after_later_starts_a_new_streak() -> None:
    policy = restart_policy(reset_after=1000, max_restarts=10)
    assert history(policy, 0.0, 1000.0).streak == 2  # exactly reset_after: same streak
    assert history(policy, 0.0, 1000.001).streak == 1
    assert history(policy, 0.0, 500.0, 1600.0).streak == 1


def test_budget_counts_restarts_within_the_window() -> None:
    policy = restart_policy(
        cooldown=10, backoff_initial=10, backoff_max=10, max_restarts=3, budget_window=100
    )
    state = history(policy, 0.0, 10.0, 20.0)
    ruling = rule(state, policy, 30.0)
    assert ruling.gate is Gate.BUDGET
    assert ruling.not_before == 100.0
    assert rule(state, policy, 99.999).gate is Gate.BUDGET
    assert rule(state, policy, 100.0).gate is Gate.ALLOW  # the restart at 0 is a window old


def test_zero_budget_never_allows() -> None:
    policy = restart_policy(max_restarts=0)
    ruling = rule(GovernorState(), policy, 0.0)
    assert ruling.gate is Gate.BUDGET and ruling.not_before is None


def test_history_is_pruned_to_the_budget_window() -> None:
    policy = restart_policy(
        cooldown=1, backoff_initial=1, backoff_max=1, max_restarts=10, budget_window=100
    )
    state = history(policy, 0.0, 50.0, 120.0, 160.0)
    assert state.recent == (120.0, 160.0)


def test_allowed_at_combines_backoff_and_budget() -> None:
    policy = restart_policy(
        cooldown=10, backoff_initial=10, backoff_max=10, max_restarts=2, budget_window=100
    )
    assert allowed_at(GovernorState(), policy, 5.0) == 5.0
    state = history(policy, 0.0)
    assert allowed_at(state, policy, 3.0) == 10.0  # cooldown
    assert allowed_at(state, policy, 50.0) == 50.0
    state = history(policy, 0.0, 10.0)
    assert allowed_at(state, policy, 20.0) == 100.0  # the restart at 0 leaves the window
    assert allowed_at(GovernorState(), restart_policy(max_restarts=0), 0.0) is None
