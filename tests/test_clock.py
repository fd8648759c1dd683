"""Time that cannot step (supervisor/clock.py): the frame translation, request staleness, and
the tracker and governor driven through the stepless clock while the wall clock steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import clock
from supervisor.clock import Frame, Here, Saved, Stepless
from supervisor.core import requests, tracker
from supervisor.core.engine import ActionKind, Trigger
from supervisor.core.governor import GovernorState
from supervisor.core.results import Outcome, RestartResult
from supervisor.core.tracker import Intent, Restart, TrackerState
from supervisor.runtime import state_store, trigger
from supervisor.sample import Sample
from tests.helpers import make_policy

HOUR = 3600.0


# -- the frame translation ------------------------------------------------------------------


def test_within_one_boot_a_time_translates_exactly_whatever_the_wall_clock_did() -> None:
    saved = Saved(Frame("boot-1", 1_000_000.0), skew=0.0)
    # The supervisor restarts after a 3 h backward step: its new anchor is 3 h behind.
    here = Here(Frame("boot-1", 1_000_000.0 - 3 * HOUR), now=1_000_500.0 - 3 * HOUR, wall=0.0)
    # 10 s after boot on the old frame is 10 s after boot on the new one.
    assert clock.translate(1_000_010.0, saved, here) == 1_000_010.0 - 3 * HOUR


def test_after_a_reboot_only_the_wall_clock_links_the_two() -> None:
    saved = Saved(Frame("boot-1", 1_000_000.0), skew=50.0)  # that wall clock was 50 s ahead
    here = Here(Frame("boot-2", 2_000_000.0), now=2_000_100.0, wall=2_000_120.0)
    # Written at 1_000_010 on the old clock = 1_000_060 on the wall = 1_000_040 on this clock.
    assert clock.translate(1_000_010.0, saved, here) == 1_000_040.0


def test_a_time_without_a_frame_is_a_wall_clock_time() -> None:
    here = Here(Frame("boot-1", 0.0), now=500.0, wall=500.0 - 3 * HOUR)
    assert clock.translate(100.0 - 3 * HOUR, None, here) == 100.0


@given(
    st.floats(-1e9, 1e9),
    st.floats(-1e5, 1e5),
    st.booleans(),
    st.floats(0, 1e9),
)
def test_a_loaded_time_is_never_later_than_now(
    t: float, skew: float, same: bool, now: float
) -> None:
    saved = Saved(Frame("boot-1", 17.0), skew)
    here = Here(Frame("boot-1" if same else "boot-2", 4.0), now=now, wall=now + 3 * HOUR)
    assert clock.translate(t, saved, here) <= now


def test_the_state_file_carries_its_frame_and_a_reload_keeps_cooldown_to_the_second(
    tmp_path: object,
) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    boot, wall = [100.0], [1_700_000_000.0]
    first = Stepless(lambda: boot[0], lambda: wall[0], lambda: "boot-1")
    policy = make_policy()
    history = tracker.new(
        GovernorState(first(), 1, (first(),), False),
        Intent(first(), Trigger.AUTOMATIC, "stuck"),
    )
    state_store.StateStore(directory, first.here).save(policy.target.key, policy.name, history)
    data = json.loads(state_store.StateStore(directory).path(policy.target.key).read_text())
    assert data["frame"] == {"boot_id": "boot-1", "offset": 1_700_000_000.0 - 100.0, "skew": 0.0}
    boot[0], wall[0] = 160.0, 1_700_000_060.0 - 3 * HOUR  # a minute later, 3 h stepped back
    second = Stepless(lambda: boot[0], lambda: wall[0], lambda: "boot-1")
    loaded = state_store.StateStore(directory, second.here).load(policy.target.key, policy.name)
    assert loaded is not None and loaded.history.last_restart is not None
    assert second() - loaded.history.last_restart == 60.0  # not 60 s - 3 h: exactly a minute ago
    assert loaded.intent is not None and second() - loaded.intent.t == 60.0


def test_a_state_file_from_the_future_is_clamped_to_now(tmp_path: object) -> None:
    from pathlib import Path

    directory = Path(str(tmp_path))
    ahead = Here(Frame("boot-1", 0.0), now=10_000.0 + 5 * HOUR, wall=10_000.0 + 5 * HOUR)
    policy = make_policy()
    state = tracker.new(GovernorState(ahead.now, 1, (ahead.now,), False))
    state_store.StateStore(directory, lambda: ahead).save(policy.target.key, policy.name, state)
    after_reboot = Here(Frame("boot-2", 0.0), now=10_000.0, wall=10_000.0)  # NTP fixed it
    loaded = state_store.StateStore(directory, lambda: after_reboot).load(
        policy.target.key, policy.name
    )
    assert loaded is not None and loaded.history.recent == (10_000.0,)


# -- trigger requests -----------------------------------------------------------------------


def test_a_request_is_dated_on_the_boot_clock_and_not_stale_while_the_wall_is_behind() -> None:
    daemon = Here(Frame("boot-1", 1_700_000_000.0), now=1_700_000_100.0, wall=0.0)
    started = 1_700_000_050.0  # 50 s after its anchor
    stepped = {"t": 1_700_000_090.0 - 3 * HOUR, "boot": 90.0, "boot_id": "boot-1"}
    made = trigger.made_at(stepped, daemon)
    assert made == 1_700_000_090.0 and not requests.stale(made, started)
    # Main's rule compared the wall-clock stamp with the daemon's wall-clock start: stale.
    assert requests.stale(float(stepped["t"]), started)


def test_a_request_of_another_boot_or_of_before_boot_stamps_is_dated_by_the_wall() -> None:
    daemon = Here(Frame("boot-2", 1_000.0), now=2_000.0, wall=2_500.0)
    assert trigger.made_at({"t": 2_400.0}, daemon) == 1_900.0
    assert trigger.made_at({"t": 2_400.0, "boot": 5.0, "boot_id": "boot-1"}, daemon) == 1_900.0
    assert trigger.made_at({"t": 9_999.0}, daemon) == 2_000.0  # from the future: now


def test_the_fan_out_discards_only_what_was_made_before_the_start() -> None:
    fan = requests.fan_out(
        [requests.Asked("w", 99.0), requests.Asked("w", 100.0)], started=100.0, supervised=["w"]
    )
    assert fan.restart == ("w",) and fan.stale == (requests.Asked("w", 99.0),)


# -- the tracker under a stepping wall clock ------------------------------------------------


@dataclass
class Machine:
    """A fake boot clock and wall clock; `steps` moves the wall clock at given boot times."""

    boot: float = 1_000.0
    base: float = 1_700_000_000.0
    steps: list[tuple[float, float]] = field(default_factory=list)  # (from boot time, by)
    boot_id: str = "boot-1"

    def wall(self) -> float:
        return self.base + self.boot + sum(by for at, by in self.steps if self.boot >= at)

    def clock(self) -> Stepless:
        return Stepless(lambda: self.boot, self.wall, lambda: self.boot_id)


def drive(
    depths: list[int], machine: Machine, restart_supervisor_at: int | None, on_wall: bool = False
) -> list[tuple[float, str]]:
    """A supervisor sampling every 5 s; each restart it decides (boot time, trigger). At
    `restart_supervisor_at` it is restarted: its state goes through the state file's encoding
    and comes back on the new process's clock. `on_wall`: main's clock, time.time()."""
    policy = make_policy(
        detect={"interval": 5, "window": 20, "max_gap": 15, "threshold": 10},
        restart={"cooldown": 600, "backoff_initial": 600, "max_restarts": 3,
                 "budget_window": 6 * HOUR},
    )  # fmt: skip
    now = machine.clock()
    state, out = TrackerState(), []
    for i, depth in enumerate(depths):
        machine.boot += 5.0
        if i == restart_supervisor_at:
            saved = state_store.framed(
                state_store.encode(policy.name, policy.target.key, state), now.here()
            )
            now = machine.clock()  # a new process, anchored on the wall clock of now
            stored = state_store.decode(json.loads(json.dumps(saved)))
            if not on_wall:
                stored = state_store.in_frame(stored, Saved.from_json(saved["frame"]), now.here())
            state = tracker.new(stored.history, stored.intent)
        t = machine.wall() if on_wall else now()
        sample = Sample(t, depth, {"celery": depth})
        state, step = tracker.on_sample(policy, state, sample, dry_run=False)
        for command in step.commands:
            if isinstance(command, Restart):
                out.append((machine.boot, command.action.trigger.value))
                done = RestartResult(Outcome.DONE, policy.restart.method, seconds=0.0)
                state, _ = tracker.on_result(policy, state, command, done, t)
        escalated = [a for a in (step.decision.actions if step.decision else ())
                     if a.kind is ActionKind.ESCALATE]  # fmt: skip
        out.extend((machine.boot, "escalate") for _ in escalated)
    return out


def growing(n: int) -> list[int]:
    return [20 + i for i in range(n)]  # stuck all along: a restart whenever allowed


def test_main_delays_the_next_restart_by_the_step_and_the_stepless_clock_does_not() -> None:
    """The figure: a 3 h backward step after a restart. On the wall clock (main 421711a) the
    next restart came 3 h 10 min after the first; on the stepless clock, after the cooldown."""
    samples = growing(int(4 * HOUR / 5))
    first_restart = drive(samples, Machine(), None)[0][0]

    def gap(on_wall: bool) -> float:
        machine = Machine(steps=[(first_restart + 60, -3 * HOUR)])
        restarts = [b for b, kind in drive(samples, machine, None, on_wall) if kind != "escalate"]
        return restarts[1] - restarts[0]

    assert gap(on_wall=False) <= 600 + 30  # the cooldown (and a window to be stuck again)
    assert gap(on_wall=True) >= 3 * HOUR + 600  # what main did: 3 h 10 min


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 1600),
    st.floats(-10 * HOUR, 10 * HOUR).filter(lambda by: abs(by) >= HOUR),
    st.one_of(st.none(), st.integers(0, 1600)),
    st.lists(st.sampled_from([0, 30, 1000]), min_size=1, max_size=8),
)
def test_a_step_of_hours_at_any_point_changes_no_decision(
    step_at: int, by: float, restart_at: int | None, pattern: list[int]
) -> None:
    """Stuck runs, restarts, cooldown, backoff, budget and escalations: the same decisions at
    the same boot times with the wall clock stepped by hours at any sample (and the supervisor
    restarted at any sample, before or after the step) as without the step."""
    blocks = [pattern[(i // 200) % len(pattern)] for i in range(1600)]
    depths = [d and d + i % 200 for i, d in enumerate(blocks)]  # stuck, growing; or drained
    plain = drive(depths, Machine(), restart_at)
    stepped = drive(depths, Machine(steps=[(1_000.0 + 5 * step_at, by)]), restart_at)
    assert stepped == plain


def test_main_emptied_the_budget_on_a_forward_step_and_the_stepless_clock_does_not() -> None:
    """A forward step of `budget_window` (6 h) once the budget is spent: on the wall clock the
    old restarts fell out of the window and restarts went on; stepless, the due restart is
    still refused and escalated, as without the step."""
    samples = growing(int(2 * HOUR / 5))
    plain = drive(samples, Machine(), None)
    spent = next(b for b, kind in plain if kind == "escalate")
    machine = Machine(steps=[(spent + 5, 6 * HOUR)])
    assert [k for _, k in drive(samples, machine, None)] == [k for _, k in plain]
    assert [k for _, k in plain].count("automatic") == 3
    on_wall = drive(samples, Machine(steps=[(spent + 5, 6 * HOUR)]), None, on_wall=True)
    assert [k for _, k in on_wall].count("automatic") > 3  # main: the budget emptied
