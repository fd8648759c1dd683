"""Manual triggers and reloads, as pure rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.requests import Asked, Running, fan_out, reload_plan

NAMES = st.sampled_from(["a", "b", "c", "ghost"])


def test_a_plain_signal_restarts_every_policy_once() -> None:
    assert fan_out([], 10.0, ["b", "a"], plain=True).restart == ("a", "b")


def test_named_requests_restart_those_once_and_name_the_unknown() -> None:
    out = fan_out([Asked("b", 11), Asked("b", 12), Asked("ghost", 13)], 10.0, ["a", "b"])
    assert out.restart == ("b",) and out.unknown == ("ghost",) and out.stale == ()


def test_requests_older_than_the_daemon_are_discarded_not_carried_out() -> None:
    out = fan_out([Asked("a", 5.0)], 10.0, ["a", "b"])
    assert out.restart == () and out.stale == (Asked("a", 5.0),)


@given(st.lists(st.tuples(st.one_of(st.none(), NAMES), st.floats(0, 20))))
def test_every_request_is_restarted_discarded_or_named_unknown(raw: list) -> None:
    asked = [Asked(n, t) for n, t in raw]
    out = fan_out(asked, 10.0, ["a", "b", "c"])
    assert len(set(out.restart)) == len(out.restart)  # each policy at most once
    assert set(out.restart) <= {"a", "b", "c"}
    assert set(out.stale) == {r for r in asked if r.t < 10.0}
    fresh = [r for r in asked if r.t >= 10.0]
    if fresh and all(r.name is not None for r in fresh):
        assert set(out.restart) == {r.name for r in fresh} - {"ghost"}
    elif fresh:
        assert out.restart == ("a", "b", "c")  # a request for every policy
    else:
        assert out.restart == ()  # none, or only stale requests: nothing


def test_a_reload_may_not_move_a_target_while_its_restart_is_unfinished() -> None:
    running = {"w": Running("container:w", True), "v": Running("container:v", False)}
    assert reload_plan(running, [("w", "container:w"), ("v", "container:x")]).problems == ()
    [problem] = reload_plan(running, [("w", "container:other")]).problems
    assert problem.startswith("w: target: cannot change from container:w")


def test_a_reload_may_not_remove_a_target_while_its_restart_is_unfinished() -> None:
    running = {"w": Running("container:w", True), "v": Running("container:v", False)}
    [problem] = reload_plan(running, [("v", "container:v")]).problems
    assert problem.startswith("w: cannot be removed while a restart of container:w")
    assert reload_plan(running, [("w", "container:w")]).remove == ("v",)


def test_a_reload_matches_targets_not_names() -> None:
    running = {"a": Running("container:x", True), "b": Running("container:y", False)}
    plan = reload_plan(running, [("b", "container:x"), ("a", "container:y"), ("c", "k:z")])
    assert plan.problems == () and plan.remove == () and plan.add == ("c",)
    assert dict(plan.keep) == {"a": "b", "b": "a"}  # swapped names, each target its own
    moved = reload_plan({"a": Running("container:x", False)}, [("a", "container:y")])
    assert moved.remove == ("a",) and moved.add == ("a",) and moved.moved == (("a", "container:x"),)


def test_a_plain_sigusr1_is_every_policy_and_a_request_only_its_own() -> None:
    """Review of issue 25: telling a trigger's signal from a plain one by counting signals
    fails when signals merge or a pass is long; the two are different signals now."""
    names = ["a", "b", "c"]
    assert fan_out([Asked("a", 11), Asked("b", 12)], 10.0, names).restart == ("a", "b")
    assert fan_out([], 10.0, names).restart == ()  # a SIGUSR2 whose file another took
    assert fan_out([], 10.0, names, plain=True).restart == ("a", "b", "c")
    assert fan_out([Asked("a", 11)], 10.0, names, plain=True).restart == ("a", "b", "c")


@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=6), st.data())
def test_named_triggers_never_restart_another_policy_however_passes_fall(
    triggers: list[str], data: st.DataObject
) -> None:
    """Each `trigger NAME` writes a file, then sends SIGUSR2; passes take every file there is
    whenever a SIGUSR2 came, in any split of files and signals across passes."""
    restarted: set[str] = set()
    files: list[Asked] = []
    pending = 0
    for name in triggers:
        files.append(Asked(name, 100.0))
        pending += 1
        if data.draw(st.booleans()):  # a pass runs now
            out = fan_out(files, 10.0, ["a", "b", "c"], plain=False)
            restarted |= set(out.restart)
            files, pending = [], 0
    if pending:
        restarted |= set(fan_out(files, 10.0, ["a", "b", "c"]).restart)
    assert restarted == set(triggers)
