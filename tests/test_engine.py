"""The composed engine: what actions a trace produces, including the shipped examples."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from supervisor.core import engine
from supervisor.core.engine import ActionKind, EngineState, Trigger
from supervisor.core.governor import Gate
from supervisor.core.replay import actions, replay
from supervisor.policy import Policy, load_policy
from supervisor.sample import Sample
from supervisor.trace import read_trace

from .helpers import make_policy

REPO = Path(__file__).resolve().parent.parent


def feed(policy: Policy, rows: list[tuple[float, int]], state: EngineState | None = None):
    state = state or EngineState()
    out = []
    for t, depth in rows:
        state, decision = engine.step(policy, state, Sample(t, depth), now=t)
        out.append(decision)
    return state, out


def growing(start: float, end: float, depth0: int = 101) -> list[tuple[float, int]]:
    return [(float(t), depth0 + i) for i, t in enumerate(range(int(start), int(end) + 1))]


def test_restart_when_stuck_then_wait_for_cooldown() -> None:
    policy = make_policy(restart={"cooldown": 30, "backoff_initial": 30, "backoff_max": 30})
    state, decisions = feed(policy, growing(0, 60))
    restarts = [(d.actions[0].t, d.actions[0].streak) for d in decisions if d.actions]
    # stuck at 10; after the restart the run starts again at 11, stuck again at 21 (cooldown
    # until 40), the restart at 40 is the second of its streak
    assert restarts == [(10.0, 1), (40.0, 2)]
    assert decisions[25].ruling is not None and decisions[25].ruling.gate is Gate.WAIT
    assert state.governor.streak == 2


def test_budget_blocks_then_escalates_once_then_restarts_resume() -> None:
    policy = make_policy(
        restart={
            "cooldown": 20,
            "backoff_initial": 20,
            "backoff_max": 20,
            "max_restarts": 2,
            "budget_window": 100,
            "reset_after": 1000,
        }
    )
    _, decisions = feed(policy, growing(0, 130))
    acts = [(a.t, a.kind) for d in decisions for a in d.actions]
    assert acts == [
        (10.0, ActionKind.RESTART),
        (30.0, ActionKind.RESTART),
        (50.0, ActionKind.ESCALATE),  # due at 50 but 2 restarts within 100 s
        (110.0, ActionKind.RESTART),  # the restart at 10 left the window at 110
        (130.0, ActionKind.RESTART),  # the one at 30 left it at 130: no second escalation
    ]


def test_manual_trigger_counts_for_cooldown_and_resets_the_run() -> None:
    policy = make_policy(restart={"cooldown": 30, "backoff_initial": 30, "backoff_max": 30})
    state, _ = feed(policy, growing(0, 5))
    state, action = engine.trigger(policy, state, now=5.5)
    assert action.trigger is Trigger.MANUAL and action.kind is ActionKind.RESTART
    state, decisions = feed(policy, growing(6, 40, depth0=110), state)
    restarts = [a.t for d in decisions for a in d.actions]
    assert restarts == [35.5 + 0.5]  # stuck from 16 on; cooldown ends at 35.5; next sample 36


def test_failed_samples_never_restart() -> None:
    policy = make_policy()
    state, _ = feed(policy, growing(0, 9))
    state, decision = engine.step(policy, state, Sample.failed(10.0, "refused"), now=10.0)
    assert decision.actions == () and decision.diagnosis.verdict.value == "unknown"


def test_shipped_examples_restart_the_stuck_worker_and_spare_the_busy_one() -> None:
    policy = load_policy(REPO / "policies" / "dify-worker.toml")
    with (REPO / "examples" / "stuck-worker.csv").open() as f:
        samples = list(read_trace(f, "stuck"))
    [restart] = list(actions(replay(policy, samples)))
    first_over = next(s.t for s in samples if s.depth is not None and s.depth > 100)
    assert restart.kind is ActionKind.RESTART
    assert first_over + policy.detect.window <= restart.t <= first_over + 2 * policy.detect.window
    with (REPO / "examples" / "busy-worker.csv").open() as f:
        busy = list(read_trace(f, "busy"))
    assert max(s.depth or 0 for s in busy) > 500
    assert list(actions(replay(policy, busy))) == []


def test_a_flat_backlog_restarts_only_with_require_growth_false() -> None:
    shipped = load_policy(REPO / "policies" / "dify-worker.toml")
    with (REPO / "examples" / "flat-backlog.csv").open() as f:
        samples = list(read_trace(f, "flat"))
    assert shipped.detect.require_growth is True  # the chapter's rule
    assert list(actions(replay(shipped, samples))) == []
    flat = shipped.model_copy(
        update={"detect": shipped.detect.model_copy(update={"require_growth": False})}
    )
    # Nothing in the trace recovers, so replay restarts again after each cooldown.
    restart, *later = list(actions(replay(flat, samples)))
    assert restart.kind is ActionKind.RESTART
    assert restart.t == 300 + flat.detect.window  # the backlog landed at 300 s
    assert all(a.t - restart.t >= flat.restart.cooldown for a in later)
    assert "not draining" in restart.reason and "stuck at" in restart.reason
    # Progress unknown throughout: growth is still required.
    unknown = [replace(s, processed=None) for s in samples]
    assert list(actions(replay(flat, unknown))) == []


def test_when_progress_unknown_escalate_reports_once_and_never_restarts() -> None:
    policy = make_policy(detect={"when_progress_unknown": "escalate"})
    state, decisions = feed(policy, growing(0, 60))
    acts = [a for d in decisions for a in d.actions]
    assert [a.kind for a in acts] == [ActionKind.ESCALATE]
    assert "when_progress_unknown = escalate" in acts[0].reason
    assert state.governor.recent == ()  # no restart was counted
    # The backlog drains: a later stuck run is escalated again.
    state, _ = feed(policy, [(61.0, 0)], state)
    state, later = feed(policy, growing(62, 80), state)
    assert [a.kind for d in later for a in d.actions] == [ActionKind.ESCALATE]


def test_when_progress_unknown_escalate_still_restarts_a_worker_it_can_see() -> None:
    policy = make_policy(detect={"when_progress_unknown": "escalate"})
    state = EngineState()
    kinds = []
    for t, depth in growing(0, 12):
        state, decision = engine.step(policy, state, Sample(t, depth, processed=7), now=t)
        kinds += [a.kind for a in decision.actions]
    assert kinds == [ActionKind.RESTART]
