"""The restart plan and the cold-shutdown choice: pure rules, brute-forced where they can be."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core import unacked
from supervisor.core.plan import View, cold_shutdown, learn, restart_plan
from supervisor.core.unacked import Held
from supervisor.sample import WorkerFacts

THREADS = "celery.concurrency.thread:TaskPool"
GEVENT = "celery.concurrency.gevent:TaskPool"
PREFORK = "celery.concurrency.prefork:TaskPool"


@st.composite
def targets(draw: st.DrawFn) -> tuple[View, tuple[str, ...], dict[str, set[str]]]:
    """Replicas c0..cN with workers w0..wN (some unmapped), some live, some stopped by the
    restart, and what each worker holds."""
    n = draw(st.integers(1, 5))
    containers = tuple(f"c{i}" for i in range(n))
    mapped = [(f"w{i}", f"c{i}") for i in range(n) if draw(st.booleans())]
    live = [w for w, _ in mapped if draw(st.booleans())]
    outsider = draw(st.booleans())
    consumers = (*live, "other@x") if outsider else tuple(live)
    chosen = tuple(c for c in containers if draw(st.booleans()))
    holding = {f"w{i}": {f"t{i}-{j}" for j in range(draw(st.integers(0, 3)))} for i in range(n)}
    return View(containers, tuple(mapped), consumers), chosen, holding


@given(targets())
def test_only_the_stopped_replicas_workers_are_asked_and_only_their_messages_go_back(
    case: tuple[View, tuple[str, ...], dict[str, set[str]]],
) -> None:
    view, chosen, holding = case
    plan = restart_plan(chosen, view, ("celery",))
    stopped = set(plan.containers)
    assert plan.containers == (chosen or view.containers)
    mapping = dict(view.workers)
    assert set(plan.workers) == {w for w, c in mapping.items() if c in stopped}
    # A live worker outside the stopped ones means others consume.
    outside_live = [w for w in view.consumers or () if w not in plan.workers]
    assert plan.others_consume == bool(outside_live)
    # The give-back, with what the asked workers reported: never a message of a live worker
    # that keeps running.
    held_ids = frozenset().union(*(holding[w] for w in plan.workers)) if plan.workers else None
    entries = [Held(f"tag-{t}", t, "celery", 1.0) for ts in holding.values() for t in ts]
    given_back = set(unacked.to_restore(entries, plan.queues, held_ids, plan.others_consume))
    for worker in outside_live:
        if worker in holding:
            assert not given_back & {f"tag-{t}" for t in holding[worker]}


def test_without_a_monitor_only_what_was_reported_goes_back() -> None:
    plan = restart_plan((), View(("w",)), ("celery",))
    assert plan.containers == ("w",) and plan.workers == () and plan.others_consume


def test_the_whole_target_when_no_replica_is_chosen() -> None:
    view = View(("a", "b"), (("wa", "a"), ("wb", "b")), ("wa", "wb"))
    plan = restart_plan((), view, ("q",))
    assert plan.containers == ("a", "b") and plan.workers == ("wa", "wb")
    assert not plan.others_consume


def test_cold_shutdown_is_skipped_where_it_is_known_to_break() -> None:
    assert not cold_shutdown(["w"], [WorkerFacts("w", THREADS)]).sigquit
    assert not cold_shutdown(["w"], [WorkerFacts("w", GEVENT, result_backend=True)]).sigquit
    assert cold_shutdown(["w"], [WorkerFacts("w", GEVENT, result_backend=False)]).sigquit
    assert cold_shutdown(["w"], [WorkerFacts("w", PREFORK, result_backend=True)]).sigquit
    assert cold_shutdown(["w"], [WorkerFacts("w", "celery.concurrency.solo:TaskPool")]).sigquit


def test_cold_shutdown_falls_back_to_the_targets_other_workers_then_to_sigquit() -> None:
    earlier = WorkerFacts("old@x", THREADS)
    choice = cold_shutdown(["new@y"], [earlier])
    assert not choice.sigquit and "learnt earlier" in choice.why
    nothing = cold_shutdown(["new@y"], [])
    assert nothing.sigquit and "nothing is known" in nothing.why


def test_learn_keeps_what_a_worker_no_longer_says_and_bounds_the_memory() -> None:
    first = learn((), [WorkerFacts("w", THREADS, 4, True, False, "5.7.0", ("a",), 1.0)])
    again = learn(first, [WorkerFacts("w", None, None, None, None, "5.7.1", None, 2.0)])
    assert again == (WorkerFacts("w", THREADS, 4, True, False, "5.7.1", ("a",), 2.0),)
    many = learn((), [WorkerFacts(f"w{i}", PREFORK, t=float(i)) for i in range(100)])
    assert len(many) == 32 and "w99" in {f.worker for f in many}


def test_facts_round_trip_and_bad_ones_are_named() -> None:
    facts = WorkerFacts("w", THREADS, 4, True, False, "5.7.0", ("a", "b"), 3.0)
    assert WorkerFacts.from_json(facts.to_json()) == facts
    try:
        WorkerFacts.from_json({"worker": "w", "concurrency": "four"})
    except ValueError as exc:
        assert "concurrency" in str(exc)
    else:
        raise AssertionError("a bad fact was accepted")


def test_a_chosen_replica_that_is_not_the_targets_is_left_out() -> None:
    """The engine judges every replica it sees; one of them another policy keeps (claims.py)
    is not in the view, and the plan never names it."""
    view = View(("a",), (("wa", "a"),), ("wa", "wb"))
    assert restart_plan(("a", "b"), view, ("q",)).containers == ("a",)
    assert restart_plan(("b",), view, ("q",)).containers == ()
    assert restart_plan(("b",), View(None), ("q",)).containers == ("b",)  # never read: as chosen
