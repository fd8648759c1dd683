"""The executor's side of a restart: it carries the plan out and decides nothing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from supervisor.core.evidence import Holding
from supervisor.core.plan import ColdShutdown, Plan
from supervisor.core.results import Outcome, RestartResult
from supervisor.core.unacked import Held
from supervisor.runtime import restarting
from tests.helpers import make_policy
from tests.inprocess import FakeUnacked


class Actuator:
    def __init__(self, killed: tuple[str, ...]) -> None:
        self.killed = killed
        self.calls: list[tuple[tuple[str, ...], bool]] = []

    def restart(
        self, target: Any, policy: Any, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult:
        self.calls.append((only, sigquit))
        return RestartResult(
            Outcome.DONE, "cold", only, 1.0, killed=self.killed, stopped_at=100.0, sigquit=sigquit
        )


class Monitor:
    """Each worker asked holds `answer` (reserved), or none answers (None)."""

    def __init__(self, answer: frozenset[str] | None) -> None:
        self.answer = answer
        self.asked: list[list[str]] = []

    def holding(self, workers: list[str]) -> Holding:
        self.asked.append(workers)
        if self.answer is None:
            return Holding({}, {}, tuple(workers))
        reserved = tuple({"id": i} for i in sorted(self.answer))
        return Holding(dict.fromkeys(workers, ()), dict.fromkeys(workers, reserved))


HELD = [Held("t1", "a", "celery", 1.0), Held("t2", "b", "celery", 2.0)]


def run(plan: Plan, actuator: Actuator, monitor: Monitor | None) -> tuple[Any, FakeUnacked]:
    store = FakeUnacked(list(HELD))
    command = SimpleNamespace(plan=plan, streaks=())  # what the executor reads of a Restart
    result = restarting.restart(make_policy(), command, actuator, monitor, lambda _: store)  # type: ignore[arg-type]
    return result, store


def test_the_plan_is_carried_out_as_it_says() -> None:
    plan = Plan(("w-1",), ("celery@1",), True, ("celery",), ColdShutdown(False, "threads"))
    actuator, monitor = Actuator(killed=("w-1",)), Monitor(frozenset({"a"}))
    result, store = run(plan, actuator, monitor)
    assert actuator.calls == [(("w-1",), False)] and monitor.asked == [["celery@1"]]
    assert store.restored == [("t1",)] and result.restored == 1 and result.unacked_left == 1


def test_nothing_unreported_goes_back_when_others_may_hold_it() -> None:
    plan = Plan(("w",), (), True, ("celery",))
    result, store = run(plan, Actuator(killed=("w",)), None)
    assert store.restored == [()] and result.restored == 0


def test_nobody_else_consumes_so_every_message_delivered_before_the_stop_goes_back() -> None:
    plan = Plan(("w",), ("celery@w",), False, ("celery",))
    result, store = run(plan, Actuator(killed=("w",)), Monitor(None))  # it did not answer
    assert store.restored == [("t1", "t2")] and result.restored == 2


def test_no_sigkill_nothing_is_given_back() -> None:
    plan = Plan(("w",), ("celery@w",), False, ("celery",))
    result, store = run(plan, Actuator(killed=()), Monitor(frozenset()))
    assert store.restored == [] and result.unacked_left == 2
