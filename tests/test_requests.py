"""Manual triggers and reloads, as pure rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.requests import OWED_FOR, Asked, Running, fan_out, reload_plan

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


def test_two_triggers_whose_files_one_signal_took_restart_only_those() -> None:
    # `trigger a` and `trigger b` during one long pass: the first SIGUSR1's handling takes
    # both files; the second SIGUSR1, in the next pass, pays for b's file: not a plain one.
    first = fan_out([Asked("a", 11), Asked("b", 12)], 10.0, ["a", "b", "c"], signals=1, now=50.0)
    assert first.restart == ("a", "b") and first.owed == (50.0,)
    second = fan_out([], 10.0, ["a", "b", "c"], signals=1, owed=first.owed, now=50.5)
    assert second.restart == () and second.owed == ()


def test_signals_of_one_pass_are_handled_together() -> None:
    out = fan_out([Asked("a", 11), Asked("b", 12)], 10.0, ["a", "b", "c"], signals=2)
    assert out.restart == ("a", "b") and out.owed == ()


def test_a_plain_signal_besides_a_request_restarts_every_policy() -> None:
    out = fan_out([Asked("a", 11)], 10.0, ["a", "b", "c"], signals=2)
    assert out.restart == ("a", "b", "c")


def test_a_debt_whose_signal_never_came_lapses() -> None:
    # Two signals may merge into one in the kernel: a file's own signal may never come. After
    # OWED_FOR a plain SIGUSR1 is plain again.
    out = fan_out([], 10.0, ["a", "b"], signals=1, owed=(50.0,), now=50.0 + OWED_FOR + 0.1)
    assert out.restart == ("a", "b") and out.owed == ()


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3)), min_size=1, max_size=6),
    st.data(),
)
def test_named_triggers_never_restart_another_policy_however_signals_fall(
    triggers: list[tuple[str, int]], data: st.DataObject
) -> None:
    """Each `trigger NAME` writes a file, then signals; the loop's passes take files and
    signals in any split (a file taken in the pass before its signal, or with it)."""
    files: list[Asked] = []  # written, not taken yet
    signals = 0  # sent, not handled yet
    pending = [(name, lag) for name, lag in triggers]
    owed: tuple[float, ...] = ()
    restarted: set[str] = set()
    now = 100.0
    events = []  # ("file", name) then ("signal",) later, per trigger
    for name, lag in pending:
        events.append((len(events), ("file", name)))
        events.append((len(events) + lag, ("signal", name)))
    order = [e for _, e in sorted(events, key=lambda x: x[0])]
    i = 0
    while i < len(order) or files or signals:
        step = data.draw(st.integers(1, 3)) if i < len(order) else len(order)
        for kind, name in order[i : i + step]:
            if kind == "file":
                files.append(Asked(name, now))
            else:
                signals += 1
        i += step
        if signals:  # a pass handles the signals that arrived, taking every file there is
            out = fan_out(files, 10.0, ["a", "b", "c"], signals=signals, owed=owed, now=now)
            restarted |= set(out.restart)
            owed, files, signals = out.owed, [], 0
        now += 0.1
        if i >= len(order) and files and not signals:
            break  # a file whose signal is lost: nothing handles it (as in the daemon)
    assert "c" not in restarted
    assert restarted <= {name for name, _ in triggers}
