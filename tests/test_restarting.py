"""The executor's side of a restart: it carries the plan's steps out and decides nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from supervisor.core.evidence import Holding
from supervisor.core.plan import ColdShutdown, Plan
from supervisor.core.results import Outcome, RestartResult
from supervisor.errors import ActuatorError
from supervisor.runtime import restarting
from tests.helpers import make_policy
from tests.world import Box, World


class Actuator:
    """The world's containers, restarted step by step (or, `one_call`, as a Swarm service)."""

    def __init__(self, world: World, one_call: RestartResult | None = None) -> None:
        self.world = world
        self.one_call = one_call
        self.calls: list[tuple[tuple[str, ...], bool]] = []

    def steps(self, target: Any) -> World | None:
        return None if self.one_call else self.world

    def restart(
        self, target: Any, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult:
        self.calls.append((only, sigquit))
        assert self.one_call is not None
        for name in self.one_call.killed:
            self.world.signal(name, "SIGKILL")
            self.world.start(name)
        return self.one_call


class Monitor:
    def __init__(self, world: World, silent: frozenset[str] = frozenset()) -> None:
        self.world, self.silent = world, silent
        self.asked: list[list[str]] = []

    def holding(self, workers: list[str]) -> Holding:
        self.asked.append(workers)
        return self.world.holding(workers, set(self.silent))


def hung_world(*names: str, sigquit_ignored: bool = True, sibling: bool = False) -> World:
    boxes = {n: Box(n, ignores_sigquit=sigquit_ignored) for n in names}
    if sibling:
        boxes["s"] = Box("s")
    world = World(boxes, queue=[f"m{i}" for i in range(8)])
    for name in sorted(boxes):
        world.reserve(name)
        world.reserve(name)
    return world


def plan_of(*names: str, others: bool = False, sigquit: bool = True) -> Plan:
    cold = ColdShutdown(sigquit, "test")
    return Plan(names, names, others, ("celery",), cold, tuple((n, n) for n in names))


def run(plan: Plan, actuator: Any, monitor: Monitor | None, **restart: Any) -> RestartResult:
    command = SimpleNamespace(plan=plan, streaks=())  # what the executor reads of a Restart
    policy = make_policy(restart={"stop_timeout": 0.3, **restart})
    return restarting.restart(policy, command, actuator, monitor, lambda _: actuator.world)  # type: ignore[arg-type]


def test_the_plan_is_carried_out_as_it_says() -> None:
    world = hung_world("w-1", "w-2")
    monitor = Monitor(world)
    result = run(plan_of("w-1", others=True, sigquit=False), Actuator(world), monitor)
    assert monitor.asked == [["w-1"]]  # never a worker outside the plan
    assert world.signals == [("w-1", "SIGKILL")] and world.starts == ["w-1"]
    assert result.outcome is Outcome.DONE and result.killed == ("w-1",) and not result.sigquit
    assert result.restored == 2 and result.unacked_left == 2  # w-2's stay with w-2
    assert {e.holder[0] for e in world.unacked.values()} == {"w-2"} and world.broken == []


def test_nothing_unreported_goes_back_when_others_may_hold_it() -> None:
    world = hung_world("w", sibling=True)
    result = run(plan_of("w", others=True), Actuator(world), Monitor(world, frozenset({"w"})))
    assert result.killed == ("w",) and result.restored == 0 and world.given_back == []


def test_nobody_else_consumes_so_what_the_stopped_worker_left_goes_back_unasked() -> None:
    world = hung_world("w")
    result = run(plan_of("w"), Actuator(world), Monitor(world, frozenset({"w"})))  # silent
    assert result.restored == 2 and result.unacked_left == 0


def test_a_cold_shutdown_that_works_gives_back_by_itself_and_nothing_is_taken() -> None:
    world = hung_world("w", sigquit_ignored=False)
    result = run(plan_of("w"), Actuator(world), Monitor(world))
    assert world.signals == [("w", "SIGQUIT")] and result.killed == ()
    assert result.restored is None and result.unacked_left == 0 and world.given_back == []


def test_sigkill_only_after_stop_timeout_measured_by_the_loop() -> None:
    world = hung_world("w")
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    sent: list[tuple[float, str]] = []
    signal = world.signal
    world.signal = lambda name, sig: (sent.append((clock[0], sig)), signal(name, sig))[1]  # type: ignore[method-assign]
    result = restarting.cold_restart(
        world, make_policy().target, world, plan_of("w"), None, 5.0, 0.5, lambda: clock[0], sleep
    )
    assert [s for _, s in sent] == ["SIGQUIT", "SIGKILL"]
    assert sent[1][0] - sent[0][0] >= 5.0 and result.seconds >= 5.0
    assert result.outcome is Outcome.DONE and result.started_at == ("run-1",)


def test_a_docker_step_that_fails_fails_the_restart_and_keeps_what_was_done() -> None:
    world = hung_world("w")

    def refuse(name: str) -> None:
        raise ActuatorError("start refused")

    world.start = refuse  # type: ignore[method-assign]
    result = run(plan_of("w"), Actuator(world), Monitor(world))
    assert result.outcome is Outcome.FAILED and result.error == "start refused"
    # Killed: what it held was given back before the start, which then failed.
    assert result.changed and result.killed == ("w",) and result.restored == 2


def test_a_redis_failure_does_not_fail_the_restart() -> None:
    world = hung_world("w")

    def down() -> list[Any]:
        raise ConnectionError("redis down")

    world.held = down  # type: ignore[method-assign]
    result = run(plan_of("w"), Actuator(world), Monitor(world))
    assert result.outcome is Outcome.DONE and result.killed == ("w",)
    assert result.restore_error is not None and "redis down" in result.restore_error


def test_in_one_call_only_what_the_killed_reported_and_still_the_same_delivery() -> None:
    """A Swarm service: Swarm replaced the killed task, whose new worker may hold entries."""
    world = hung_world("t1", "t2")
    killed = RestartResult(Outcome.DONE, "cold", ("t1",), 1.0, killed=("t1",))
    actuator = Actuator(world, one_call=killed)
    result = run(plan_of("t1", others=True), actuator, Monitor(world))  # t2 runs on
    assert actuator.calls == [(("t1",), True)]
    assert result.restored == 2 and {e.holder[0] for e in world.unacked.values()} == {"t2"}
    assert world.broken == []


def test_in_one_call_every_unchanged_delivery_once_all_the_plan_was_replaced() -> None:
    """The whole service replaced, nothing outside it consumes: every worker that held an
    entry before the restart has stopped, so what nobody reported goes back too."""
    world = hung_world("t1", "t2")
    killed = RestartResult(Outcome.DONE, "cold", ("t1", "t2"), 1.0, killed=("t1", "t2"))
    actuator = Actuator(world, one_call=killed)
    result = run(plan_of("t1", "t2"), actuator, Monitor(world, frozenset({"t1", "t2"})))
    assert result.restored == 4 and result.unacked_left == 0 and world.broken == []
