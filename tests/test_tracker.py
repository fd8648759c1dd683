"""The per-target tracker: the guards around a restart, one rule at a time, then all of them at
once over random interleavings of samples, triggers and results (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core import events as ev
from supervisor.core import tracker
from supervisor.core.engine import Trigger
from supervisor.core.governor import GovernorState
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.core.tracker import Call, DryRun, EnsureRunning, Intent, Restart, TrackerState
from supervisor.sample import Sample
from supervisor.sinks.render import text
from tests.helpers import make_policy

POLICY = make_policy(
    detect={
        "interval": 1,
        "window": 3,
        "threshold": 10,
        "max_gap": 3,
        "require_no_progress": False,
    },
    restart={
        "cooldown": 5,
        "backoff_initial": 5,
        "backoff_max": 20,
        "max_restarts": 2,
        "budget_window": 100,
    },
)
DONE = RestartResult(Outcome.DONE, "cold", ("w",), 1.0)


def kinds(step: tracker.Step) -> list[str]:
    return [e.kind.value for e in step.events]


def stuck_until_restart(state: TrackerState, t0: float = 0.0) -> tuple[TrackerState, Any, float]:
    """Feed growing depths until the tracker asks for a restart; the state, command and time."""
    t = t0
    for i in range(20):
        state, step = tracker.on_sample(POLICY, state, Sample(t, 20 + i), dry_run=False)
        if step.commands:
            [command] = step.commands
            return state, command, t
        t += 1
    raise AssertionError("never restarted")


def test_a_decided_restart_is_an_intent_saved_before_the_command() -> None:
    state, command, t = stuck_until_restart(TrackerState())
    assert isinstance(command, Restart)
    assert state.call is Call.RESTART
    assert state.intent == Intent(t, Trigger.AUTOMATIC, command.action.reason)
    assert state.history.last_restart == t  # counted when decided


def test_no_sample_is_judged_and_no_trigger_taken_while_a_restart_is_in_flight() -> None:
    state, _, t = stuck_until_restart(TrackerState())
    for i in range(30):  # still stuck, long past cooldown
        state, step = tracker.on_sample(POLICY, state, Sample(t + 1 + i, 100 + i), dry_run=False)
        assert step.commands == () and step.decision is None
    state, step = tracker.on_trigger(POLICY, state, t + 40, dry_run=False)
    assert step.commands == () and kinds(step) == ["trigger_refused"]
    assert "already in flight" in text(step.events[0])


def test_a_confirmed_restart_clears_the_intent_and_recovery_is_told_once() -> None:
    state, command, t = stuck_until_restart(TrackerState())
    state, step = tracker.on_result(POLICY, state, command, DONE, t + 1)
    assert kinds(step) == ["restart"] and step.persist
    assert state.intent is None and state.call is None
    state, step = tracker.on_sample(POLICY, state, Sample(t + 2, 50), dry_run=False)
    assert "recovery" not in kinds(step)
    state, step = tracker.on_sample(POLICY, state, Sample(t + 3, 10), dry_run=False)
    assert kinds(step) == ["recovery", "consuming_again"]  # the queue fell: 50 -> 10
    state, step = tracker.on_sample(POLICY, state, Sample(t + 4, 0), dry_run=False)
    assert kinds(step) == []


def test_consuming_again_is_told_once_with_the_restart_apart_from_the_workers_start() -> None:
    """A stock Dify migrates for about 30 s before its worker consumes: the record says how
    long the restart took and how long the worker's start took after it."""
    state, command, t = stuck_until_restart(TrackerState())
    done = RestartResult(Outcome.DONE, "cold", ("w",), 0.3, changed=True)
    state, _ = tracker.on_result(POLICY, state, command, done, t + 1)
    for i in range(2, 32):  # migrating: the new worker counts 0 started tasks
        state, step = tracker.on_sample(
            POLICY, state, Sample(t + i, 500, processed=0), dry_run=False
        )
        assert "consuming_again" not in kinds(step)
    state, step = tracker.on_sample(POLICY, state, Sample(t + 33, 500, processed=1), dry_run=False)
    [told] = [e for e in step.events if isinstance(e, ev.ConsumingAgain)]
    assert told.restart_seconds == 0.3 and told.after_restart == 32.0
    assert told.after_decision == round(t + 33 - command.action.t, 3)
    assert "a task started (0 -> 1" in told.evidence
    state, step = tracker.on_sample(POLICY, state, Sample(t + 34, 499, processed=2), dry_run=False)
    assert "consuming_again" not in kinds(step) and state.resuming is None


def test_a_restart_that_failed_after_stopping_the_worker_is_completed_at_every_sample() -> None:
    state, command, t = stuck_until_restart(TrackerState())
    failed = RestartResult(Outcome.FAILED, "cold", ("w",), 30.0, "engine unreachable", changed=True)
    state, step = tracker.on_result(POLICY, state, command, failed, t + 1)
    assert kinds(step) == ["restart_failed"] and state.intent is not None
    # Next sample, well inside the cooldown: start it, do not wait.
    state, step = tracker.on_sample(POLICY, state, Sample(t + 2, 500), dry_run=False)
    [ensure] = step.commands
    assert isinstance(ensure, EnsureRunning)
    down = StartResult(error="engine unreachable")
    state, step = tracker.on_result(POLICY, state, ensure, down, t + 3)
    assert kinds(step) == ["start_error_begin"]
    state, step = tracker.on_sample(POLICY, state, Sample(t + 4, 500), dry_run=False)
    state, step = tracker.on_result(POLICY, state, step.commands[0], down, t + 5)
    assert kinds(step) == []  # told once when it begins failing
    state, step = tracker.on_sample(POLICY, state, Sample(t + 6, 500), dry_run=False)
    up = StartResult(started=("w",), running=("w",))
    state, step = tracker.on_result(POLICY, state, step.commands[0], up, t + 7)
    assert kinds(step) == ["restart_completed"] and step.persist
    assert step.events[0].facts()["started"] == ["w"]
    assert step.events[0].facts()["failed_for"] == 4.0
    assert state.intent is None
    assert state.history.recent == (t,)  # completing it counted nothing new


def test_a_restart_that_failed_before_changing_anything_leaves_nothing_to_complete() -> None:
    state, command, t = stuck_until_restart(TrackerState())
    missing = RestartResult(Outcome.FAILED, "cold", (), 0.1, "container 'w' not found")
    state, _ = tracker.on_result(POLICY, state, command, missing, t + 1)
    assert state.intent is None and state.call is None


def test_resume_completes_an_intent_left_by_a_previous_run_without_counting_it() -> None:
    history = GovernorState(last_restart=100.0, streak=1, recent=(100.0,))
    state = tracker.new(history, Intent(100.0, Trigger.MANUAL, "manual trigger"))
    state, step = tracker.resume(POLICY, state)
    assert kinds(step) == ["restart_resumed"]
    assert step.commands == (EnsureRunning(state.intent),)  # type: ignore[arg-type]
    state, step = tracker.on_result(POLICY, state, step.commands[0], StartResult(), 101.0)
    assert state.history == history and state.intent is None


def test_nothing_to_resume_without_an_intent() -> None:
    state, step = tracker.resume(POLICY, TrackerState())
    assert step == tracker.Step() and state == TrackerState()


def test_dry_run_decides_and_counts_but_records_no_intent() -> None:
    state = TrackerState()
    t = 0.0
    for i in range(20):
        state, step = tracker.on_sample(POLICY, state, Sample(t, 20 + i), dry_run=True)
        if step.commands:
            break
        t += 1
    [command] = step.commands
    assert isinstance(command, DryRun) and state.intent is None and state.call is Call.DRY_RUN
    state, step = tracker.on_result(POLICY, state, command, LookupResult(("w",)), t)
    assert kinds(step) == ["dry_run_restart"] and step.events[0].facts()["containers"] == ["w"]
    assert state.history.recent == (t,)


def test_sampling_outage_is_told_when_it_begins_and_when_it_ends() -> None:
    state = TrackerState()
    seen = []
    for t, ok in enumerate([True, False, False, False, True, True]):
        sample = Sample(float(t), 1) if ok else Sample.failed(float(t), "refused")
        state, step = tracker.on_sample(POLICY, state, sample, dry_run=False)
        seen += kinds(step)
    assert seen == ["sample_error_begin", "sample_error_end"]


def test_a_reload_with_another_broker_starts_the_run_afresh_and_keeps_the_history() -> None:
    state = TrackerState()
    for t in range(3):
        state, _ = tracker.on_sample(POLICY, state, Sample(float(t), 20 + t), dry_run=False)
    state = replace(state, engine=replace(state.engine, governor=GovernorState(1.0, 1, (1.0,))))
    other = make_policy(broker={"url": "redis://elsewhere:6379/1"})
    moved = tracker.reconfigure(POLICY, other, state)
    assert moved.engine.run.start is None and moved.recent == ()
    assert moved.history == state.history
    assert tracker.reconfigure(POLICY, POLICY, state) is state


# -- every guard at once ---------------------------------------------------------------------

inputs = st.lists(
    st.one_of(
        st.tuples(st.just("sample"), st.integers(0, 60), st.booleans()),
        st.tuples(st.just("trigger"), st.just(0), st.just(True)),
        st.tuples(
            st.just("finish"), st.sampled_from(["done", "failed", "failed_early"]), st.booleans()
        ),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(inputs, st.booleans())
def test_one_call_at_a_time_and_every_intent_change_is_saved(
    script: list[tuple[str, Any, bool]], dry_run: bool
) -> None:
    state = TrackerState()
    pending: list[tracker.Command] = []
    automatic: list[float] = []
    t = 0.0
    for kind, value, flag in script:
        t += 1.0
        before = state
        if kind == "sample":
            sample = Sample(t, value) if flag else Sample.failed(t, "down")
            state, step = tracker.on_sample(POLICY, state, sample, dry_run)
        elif kind == "trigger":
            state, step = tracker.on_trigger(POLICY, state, t, dry_run)
        elif pending:
            command = pending.pop()
            if isinstance(command, Restart):
                outcome = Outcome.DONE if value == "done" else Outcome.FAILED
                result: tracker.Result = RestartResult(
                    outcome, "cold", changed=value != "failed_early"
                )
            elif isinstance(command, DryRun):
                result = LookupResult()
            else:
                result = StartResult() if flag else StartResult(error="down")
            state, step = tracker.on_result(POLICY, state, command, result, t)
        else:
            continue
        # One call per target: a command only when none is outstanding, and at most one.
        assert len(step.commands) <= 1
        if step.commands:
            assert not pending, "a second call while one is in flight"
            pending.extend(step.commands)
        assert (state.call is not None) == bool(pending)
        # A restart is never started over an unfinished one.
        for command in step.commands:
            if isinstance(command, Restart | DryRun):
                assert before.intent is None
                if command.action.trigger is Trigger.AUTOMATIC:
                    automatic.append(command.action.t)
            if isinstance(command, Restart):
                assert state.intent is not None
        # What must survive a crash is saved before any command runs.
        if state.intent != before.intent or state.history != before.history:
            assert step.persist
        # Dry-run never leaves an intent: it changes nothing that would need completing.
        if dry_run:
            assert state.intent is None
    # Automatic restarts stay within the budget and the cooldown.
    for i, at in enumerate(automatic):
        assert len([a for a in automatic[: i + 1] if at - a < 100]) <= 2
        if i:
            assert at - automatic[i - 1] >= 5


# -- progress unknown ------------------------------------------------------------------------

WATCHED = make_policy(
    detect={"interval": 1, "window": 30, "threshold": 10, "max_gap": 3, "require_no_progress": True}
)
NO_SOURCE = "the worker sends no heartbeats and does not answer remote control"


def feed(policy: Any, samples: list[Sample]) -> list[str]:
    state, seen = TrackerState(), []
    for sample in samples:
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        seen += [f"{e.kind.value}@{sample.t:g}" for e in step.events]
    return seen


def unknown(t: float) -> Sample:
    return Sample(t, 5, progress_unknown=NO_SOURCE)


def known(t: float) -> Sample:
    return Sample(t, 5, processed=7, progress_source="remote control")


def test_progress_unknown_is_told_once_after_the_grace_and_known_again_once() -> None:
    grace = tracker.progress_grace(WATCHED)
    assert grace == 5.0
    samples = [unknown(float(t)) for t in range(0, 25)] + [known(float(t)) for t in range(25, 30)]
    assert feed(WATCHED, samples) == ["progress_unknown@5", "progress_known@25"]


def test_a_start_that_hears_the_workers_within_the_grace_says_nothing() -> None:
    samples = [unknown(float(t)) for t in range(0, 5)] + [known(float(t)) for t in range(5, 30)]
    assert feed(WATCHED, samples) == []


def test_progress_is_not_reported_on_when_the_policy_does_not_use_it() -> None:
    ignores = make_policy(detect={"require_no_progress": False})
    assert feed(ignores, [unknown(float(t)) for t in range(0, 60)]) == []


def test_the_progress_unknown_event_says_why_and_what_it_means() -> None:
    state = TrackerState()
    texts = []
    for t in range(0, 12):
        state, step = tracker.on_sample(WATCHED, state, unknown(float(t)), dry_run=False)
        texts += [text(e) for e in step.events]
    [said] = texts
    assert NO_SOURCE in said and "busy worker may be restarted" in said


# -- misconfiguration ------------------------------------------------------------------------


def test_a_queue_without_consumer_is_told_once_it_held_and_again_when_it_changes() -> None:
    policy = make_policy(broker={"queues": ["dataset", "mail"]}, detect={"interval": 1})
    seen = []
    state = TrackerState()
    script = [None] * 3 + [("dataset",)] * 15 + [("dataset", "mail")] * 3 + [()] * 12
    for t, unconsumed in enumerate(script):
        sample = Sample(float(t), 5, unconsumed=unconsumed)
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        seen += [(e.kind.value, e.facts()["queues"], t) for e in step.events]
    # told 5 s after it began; the 3 s blip with mail too is shorter than the grace
    assert seen == [("no_consumer", ["dataset"], 8), ("no_consumer", [], 26)]
    assert state.warnings(policy) == ()


def test_a_database_without_any_binding_is_probably_the_wrong_one() -> None:
    policy = make_policy(broker={"queues": ["dataset", "mail"]}, detect={"interval": 1})
    state, texts = TrackerState(), []
    for t in range(12):
        sample = Sample(float(t), 0, unbound=("dataset", "mail"))
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        texts += [text(e) for e in step.events]
    [said] = texts
    assert said.startswith("wrong database?") and "dataset, mail" in said
    assert state.warnings(policy) == ("wrong database? no kombu binding for dataset, mail",)
    # One queue bound: it is the right database, the other queue is just idle.
    state = TrackerState()
    for t in range(12):
        sample = Sample(float(t), 0, unbound=("mail",))
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        assert step.events == ()


def test_no_misconfiguration_is_told_while_the_target_is_being_restarted() -> None:
    state, _, t = stuck_until_restart(TrackerState())
    for i in range(30):
        sample = Sample(t + 1 + i, 50, unconsumed=("celery",))
        state, step = tracker.on_sample(POLICY, state, sample, dry_run=False)
        assert step.events == ()


# -- queues discovered from the target's workers ---------------------------------------------

DISCOVERS = make_policy(broker={"queues": ["celery"], "discover_queues": True})


def test_discovered_queues_join_the_listed_ones_and_a_change_is_audited_once() -> None:
    state, step = tracker.on_discovered(DISCOVERS, TrackerState(), ("mail", "dataset"))
    assert tracker.watched(DISCOVERS, state) == ("celery", "dataset", "mail")
    assert kinds(step) == ["queues_changed"] and step.persist
    assert step.events[0].facts()["queues"] == ["celery", "dataset", "mail"]
    assert step.events[0].facts()["previous"] == ["celery"]
    again, step = tracker.on_discovered(DISCOVERS, state, ("dataset", "mail"))
    assert again == state and step == tracker.Step()


def test_when_no_worker_tells_the_last_known_queues_stay() -> None:
    state, _ = tracker.on_discovered(DISCOVERS, TrackerState(), ("dataset",))
    kept, step = tracker.on_discovered(DISCOVERS, state, None)  # heartbeats stopped
    assert kept == state and step.events == ()
    assert tracker.watched(DISCOVERS, kept) == ("celery", "dataset")


def test_another_set_of_queues_starts_the_run_afresh() -> None:
    state = TrackerState()
    for t in range(5):
        state, _ = tracker.on_sample(DISCOVERS, state, Sample(float(t), 500 + t), dry_run=False)
    assert state.engine.run.start is not None
    state, _ = tracker.on_discovered(DISCOVERS, state, ("dataset",))
    assert state.engine.run.start is None and state.recent == ()


def test_without_discover_queues_nothing_is_learnt() -> None:
    state, step = tracker.on_discovered(POLICY, TrackerState(), ("dataset",))
    assert state == TrackerState() and step.events == ()
    assert tracker.watched(POLICY, state) == ("celery",)


def test_learnt_queues_all_in_the_floor_change_nothing_watched() -> None:
    """A stock Dify: its worker consumes queues all in the recipe's floor. On main every start
    said `queues_changed` with the same list before and after, and began the run afresh."""
    floor = make_policy(broker={"queues": ["celery", "mail"], "discover_queues": True})
    state = TrackerState()
    for t in range(5):
        state, _ = tracker.on_sample(floor, state, Sample(float(t), 500 + t), dry_run=False)
    run = state.engine.run
    state, step = tracker.on_discovered(floor, state, ("mail", "celery"))
    assert step.events == () and step.persist  # the learnt set is kept, silently
    assert state.engine.run == run and state.discovered == ("celery", "mail")
    assert tracker.watched(floor, state) == ("celery", "mail")
