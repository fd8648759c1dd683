"""Manual triggers and reloads, as pure rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.requests import Asked, Running, fan_out, reload_problems

NAMES = st.sampled_from(["a", "b", "c", "ghost"])


def test_a_plain_signal_restarts_every_policy_once() -> None:
    assert fan_out([], 10.0, ["b", "a"]).restart == ("a", "b")


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
    elif fresh or not asked:
        assert out.restart == ("a", "b", "c")
    else:
        assert out.restart == ()  # only stale requests: nothing


def test_a_reload_may_not_move_a_target_while_its_restart_is_unfinished() -> None:
    running = {"w": Running("container:w", True), "v": Running("container:v", False)}
    assert reload_problems(running, [("w", "container:w"), ("v", "container:x")]) == []
    [problem] = reload_problems(running, [("w", "container:other")])
    assert problem.startswith("w: target: cannot change from container:w")
