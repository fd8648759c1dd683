"""May we restart now? A pure function of the restart history, the policy and `now`.

Cooldown and backoff space restarts out: after the k-th restart of a streak the next waits at
least max(cooldown, min(backoff_initial * factor**(k-1), backoff_max)). A restart more than
`reset_after` after the previous one starts a new streak. The budget caps restarts at
`max_restarts` in any `budget_window` (a restart exactly `budget_window` after an older one no
longer counts it). Every restart, automatic, dry-run or manual, counts for all of these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from supervisor.durations import format_duration
from supervisor.policy import Restart


class Gate(enum.Enum):
    ALLOW = "allow"
    WAIT = "wait"  # cooldown or backoff since the last restart has not elapsed
    BUDGET = "budget"  # max_restarts already happened within budget_window


@dataclass(frozen=True)
class GovernorState:
    last_restart: float | None = None
    streak: int = 0  # the last restart was the streak-th of its streak
    recent: tuple[float, ...] = ()  # restart times, oldest first; pruned to the budget window
    escalated: bool = False  # an escalation was emitted since the last restart


@dataclass(frozen=True)
class Ruling:
    gate: Gate
    reason: str
    not_before: float | None = None  # earliest time the gate may open


def next_allowed(state: GovernorState, policy: Restart) -> float | None:
    if state.last_restart is None:
        return None
    return state.last_restart + policy.wait_after(state.streak)


def in_budget_window(state: GovernorState, policy: Restart, now: float) -> tuple[float, ...]:
    return tuple(t for t in state.recent if now - t < policy.budget_window)


def rule(state: GovernorState, policy: Restart, now: float) -> Ruling:
    """Whether an automatic restart may happen at `now`."""
    if state.last_restart is not None:
        allowed_at = state.last_restart + policy.wait_after(state.streak)
        if now < allowed_at:
            return Ruling(
                Gate.WAIT,
                f"cooldown/backoff: restart #{state.streak} of its streak was "
                f"{format_duration(now - state.last_restart)} ago, next allowed in "
                f"{format_duration(allowed_at - now)}",
                allowed_at,
            )
    window = in_budget_window(state, policy, now)
    if len(window) >= policy.max_restarts:
        frees_at = (
            window[len(window) - policy.max_restarts] + policy.budget_window
            if policy.max_restarts > 0
            else None
        )
        return Ruling(
            Gate.BUDGET,
            f"budget spent: {len(window)} restarts within {format_duration(policy.budget_window)} "
            f"(max_restarts = {policy.max_restarts})",
            frees_at,
        )
    return Ruling(Gate.ALLOW, "cooldown, backoff and budget allow a restart")


def record_restart(state: GovernorState, policy: Restart, now: float) -> GovernorState:
    """The history after a restart at `now` (whatever triggered it)."""
    if state.last_restart is None or now - state.last_restart > policy.effective_reset_after:
        streak = 1
    else:
        streak = state.streak + 1
    recent = (*in_budget_window(state, policy, now), now)
    return GovernorState(last_restart=now, streak=streak, recent=recent, escalated=False)


def record_escalation(state: GovernorState) -> GovernorState:
    return replace(state, escalated=True)


def allowed_at(state: GovernorState, policy: Restart, now: float) -> float | None:
    """Earliest time an automatic restart could happen, as far as the history goes (`now` or
    later); None when the budget never allows one (max_restarts = 0)."""
    at = now
    if state.last_restart is not None:
        at = max(at, state.last_restart + policy.wait_after(state.streak))
    window = in_budget_window(state, policy, at)
    if len(window) >= policy.max_restarts:
        if policy.max_restarts == 0:
            return None
        at = max(at, window[len(window) - policy.max_restarts] + policy.budget_window)
    return at
