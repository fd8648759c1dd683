"""The restart procedure (core/procedure.py) over random interleavings: 1-3 containers
restarted one after another, some ignoring SIGQUIT (and giving part of their reservations back
on it), Docker's restart policy starting a stopped container at any moment, restarted workers
and a sibling outside the restart reserving messages between any two steps (a message given
back by a cold shutdown is reserved again under the same tag), workers that do not answer, and
a supervisor crash between any two steps (then EnsureRunning, as at its next start)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core import procedure
from supervisor.core.plan import ColdShutdown, Plan
from supervisor.policy import Target
from supervisor.runtime.restarting import _carry
from tests.world import Box, World, tag

TARGET = Target(container="unused")
SIBLING = "sibling"


def carry(step: procedure.Step, world: World) -> procedure.Report:
    return _carry(step, world, TARGET, world, lambda _: None)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, Plan, set[str], bool]:
    n = draw(st.integers(1, 3))
    names = [f"w{i}" for i in range(n)]
    boxes = {
        name: Box(
            name,
            ignores_sigquit=draw(st.booleans()),
            gives_up=draw(st.integers(0, 2)),
            restart_policy=draw(st.booleans()),
            running=draw(st.sampled_from([True, True, True, False])),  # found stopped
        )
        for name in names
    }
    sibling = draw(st.booleans())
    if sibling:
        boxes[SIBLING] = Box(SIBLING)
    world = World(boxes, queue=[f"m{i}" for i in range(12)])
    for _ in range(draw(st.integers(0, 8))):  # what the workers hold before the restart
        world.reserve(draw(st.sampled_from(sorted(boxes))))
    silent = set(draw(st.sets(st.sampled_from(names))))
    plan = Plan(
        tuple(names),
        tuple(names),
        sibling,  # others_consume: the sibling outside the plan
        ("celery",),
        ColdShutdown(draw(st.booleans()), "drawn"),
        tuple((name, name) for name in names),
    )
    return world, plan, silent, sibling


def move(world: World, data: st.DataObject) -> None:
    """Between two steps: the world moves a little."""
    for _ in range(data.draw(st.integers(0, 2), label="moves")):
        name = data.draw(st.sampled_from(sorted(world.boxes)), label="who")
        kind = data.draw(st.sampled_from(["reserve", "finish", "policy_start"]), label="what")
        getattr(world, kind)(name)


@settings(max_examples=400, deadline=None)
@given(worlds(), st.data())
def test_nothing_given_back_twice_or_while_held_and_nothing_left_stopped(
    case: tuple[World, Plan, set[str], bool], data: st.DataObject
) -> None:
    world, plan, silent, _ = case
    names = list(plan.containers)
    holding = world.holding(names, silent)
    reported = {
        name: {(tag(r["id"]), world.unacked[tag(r["id"])].score) for r in holding.reserved[name]}
        for name in names
        if name not in silent
    }
    crash_at = data.draw(st.none() | st.integers(0, 60), label="crash after step")
    clock = 0.0
    state, step = procedure.begin(plan, holding, method="cold", stop_timeout=3, poll=1, now=clock)
    done: procedure.Done | None = None
    for count in range(10_000):
        if isinstance(step, procedure.Done):
            done = step
            break
        if crash_at is not None and count == crash_at:
            break
        report = carry(step, world)
        if isinstance(step, procedure.Inspect):
            clock += step.after or 0.1
        move(world, data)
        state, step = procedure.advance(state, report, clock)
    assert world.broken == []
    if done is None:  # the supervisor died: its next start completes the restart
        world.ensure_running(names)
    else:
        assert done.result.error is None, done.result
        assert done.result.restored == (len(world.given_back) if done.result.killed else None)
    assert all(world.boxes[n].running for n in names), world.boxes
    # One restart is one new start: a container running again by its restart policy is not
    # started a second time by the supervisor.
    if done is not None:
        for name in done.result.by_restart_policy:
            assert name not in world.starts, (name, world.starts)
    # What a killed worker reported holding, and nobody holds since (the same delivery is
    # still in unacked, its holder dead), came back.
    if done is not None:
        for name in done.result.killed:
            for t, score in reported.get(name, set()):
                entry = world.unacked.get(t)
                still_its = entry is not None and entry.score == score
                assert not still_its or world.alive(entry.holder), (name, t, world.unacked)
        # Restarted last and killed, with no consumer outside: every delivery unchanged since
        # before the restart is a dead worker's, reported or not, and came back.
        if (
            not plan.others_consume
            and done.result.killed[-1:] == names[-1:]
            and all(c.running for c in state.containers)
        ):
            before = dict(state.before)
            for t, e in world.unacked.items():
                stale = before.get(t) == float(e.score)
                assert not stale or world.alive(e.holder), (t, e, world.unacked)
    world.drain()
    assert max(world.executed.values(), default=0) <= 1, world.executed


def test_a_hung_replica_restarted_after_another_keeps_the_first_ones_fresh_reservations() -> None:
    """The issue's case: two replicas that ignore SIGQUIT, restarted in one restart; the
    first one, running again, reserves messages before the second is killed. Only what each
    killed one reported goes back: never the first one's fresh reservations."""
    boxes = {n: Box(n, ignores_sigquit=True) for n in ("a", "b")}
    world = World(boxes, queue=[f"m{i}" for i in range(10)])
    for name in ("a", "a", "b", "b"):
        world.reserve(name)
    plan = Plan(("a", "b"), ("a", "b"), False, ("celery",), placement=(("a", "a"), ("b", "b")))
    holding = world.holding(["a", "b"], set())
    clock = 0.0
    state, step = procedure.begin(plan, holding, method="cold", stop_timeout=2, poll=1, now=clock)
    while not isinstance(step, procedure.Done):
        report = carry(step, world)
        clock += 1.0
        if isinstance(step, procedure.Signal) and step.container == "b":
            world.reserve("a")  # the restarted a takes two more before b is killed
            world.reserve("a")
        state, step = procedure.advance(state, report, clock)
    result = step.result
    assert result.killed == ("a", "b") and result.restored == 4, result
    assert world.broken == []
    assert {e.holder for e in world.unacked.values()} == {("a", 1)}
    world.drain()
    assert set(world.executed.values()) == {1} and len(world.executed) == 10


def test_alone_every_entry_of_the_watched_queues_goes_back_even_unreported() -> None:
    world = World({"w": Box("w", ignores_sigquit=True)}, queue=["m0", "m1", "m2"])
    for _ in range(3):
        world.reserve("w")
    plan = Plan(("w",), ("w",), False, ("celery",), placement=(("w", "w"),))
    holding = world.holding(["w"], {"w"})  # it did not answer
    state, step = procedure.begin(plan, holding, method="cold", stop_timeout=1, poll=1, now=0.0)
    clock = 0.0
    steps: list[Any] = []
    while not isinstance(step, procedure.Done):
        steps.append(step)
        clock += 1.0
        state, step = procedure.advance(state, carry(step, world), clock)
    assert step.result.restored == 3 and step.result.unacked_left == 0
    kinds = [type(s).__name__ for s in steps]
    # The read for the killed one is made while it is stopped, and checked after: still the
    # same stopped run; then given back, then started.
    i = kinds.index("GiveBack")
    assert kinds[i - 2 : i + 2] == ["ReadHeld", "Inspect", "GiveBack", "Start"], kinds


def test_a_container_started_by_someone_between_its_stop_and_the_read_keeps_its_fresh_ones() -> (
    None
):
    """Seen stopped, then started again (a restart policy) and reserving before unacked is
    read: the look after the read tells, and only what the killed worker reported goes back."""
    world = World({"w": Box("w", ignores_sigquit=True, restart_policy=True)}, queue=["m0", "m1"])
    world.reserve("w")
    plan = Plan(("w",), ("w",), False, ("celery",), placement=(("w", "w"),))
    holding = world.holding(["w"], set())
    state, step = procedure.begin(plan, holding, method="cold", stop_timeout=1, poll=1, now=0.0)
    clock = 0.0
    while not isinstance(step, procedure.Done):
        report = carry(step, world)
        if isinstance(step, procedure.Inspect) and not world.boxes["w"].running:
            world.policy_start("w")  # right after the look that saw it stopped
            world.reserve("w")
        clock += 1.0
        state, step = procedure.advance(state, report, clock)
    assert world.broken == [] and step.result.restored == 1, step.result
    assert step.result.by_restart_policy == ("w",) and world.starts == []
    assert [e.task for e in world.unacked.values()] == ["m1"]


def test_a_container_restarted_before_its_turn_is_signalled_in_the_run_it_runs_now() -> None:
    """Review of issue 25: Find sees w1 in run B0; Docker's restart policy starts it anew (B1)
    before its turn, and B1 ignores SIGQUIT. The procedure signalled "B0", took B1 for a start
    by the restart policy and confirmed at once: the hung worker was never killed. It looks
    again on its turn and signals B1, so B1 is killed after stop_timeout."""
    from supervisor.core.procedure import Found, Inspect, Ok, Read, Seen, Signal

    plan = Plan(("w0", "w1"), (), False, ("celery",), ColdShutdown(True, "SIGQUIT"))
    t = 0.0
    s, step = procedure.begin(plan, None, method="cold", stop_timeout=5, poll=0.2, now=t)
    s, step = procedure.advance(s, Found((Seen("w0", True, "A0"), Seen("w1", True, "B0"))), t)
    s, step = procedure.advance(s, Read(()), t)  # `before`
    # w0: looked at, SIGQUIT, stops, started, runs anew
    assert step == Inspect("w0")
    script: list[Any] = [Seen("w0", True, "A0"), Ok(), Seen("w0", False, "A0"), Ok(),
                         Seen("w0", True, "A1")]  # fmt: skip
    for report in script:
        s, step = procedure.advance(s, report, t)
    assert step == Inspect("w1")  # its turn: looked at again
    s, step = procedure.advance(s, Seen("w1", True, "B1", restart_count=1), t)  # started anew
    assert step == Signal("w1", "SIGQUIT") and s.moved
    s, step = procedure.advance(s, Ok(), t)
    while not isinstance(step, Signal):  # B1 ignores SIGQUIT: still running, same run
        t += 1.0
        s, step = procedure.advance(s, Seen("w1", True, "B1", restart_count=1), t)
    assert step == Signal("w1", "SIGKILL") and t >= 5
    assert "w1" in s.killed and "w1" not in s.by_restart_policy
