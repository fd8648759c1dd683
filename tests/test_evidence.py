"""What hung (core/evidence.py) and the poison rule (core/quarantine.py): pure functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor import broker_url
from supervisor.core import quarantine
from supervisor.core.evidence import ARGS_LIMIT, Holding, hung_tasks, summary


def request(i: str, name: str, started: float | None, acked: bool, **more: object) -> dict:
    return {
        "id": i,
        "name": name,
        "time_start": started,
        "acknowledged": acked,
        "delivery_info": {"routing_key": "dataset"},
        "args": [1],
        "kwargs": {},
        **more,
    }


def test_running_tasks_longest_first_with_what_comes_back_and_what_is_lost() -> None:
    holding = Holding(
        active={
            "celery@a": (request("x", "tasks.index", 100.0, acked=True),),
            "celery@b": (request("y", "tasks.parse", 40.0, acked=False),),
        },
        reserved={"celery@a": ({"id": "r"},), "celery@b": ()},
    )
    tasks = hung_tasks(holding, now=940.0)
    assert [(t.id, t.worker, t.running_for, t.comes_back) for t in tasks] == [
        ("y", "celery@b", 900.0, True),
        ("x", "celery@a", 840.0, False),
    ]
    assert tasks[0].queue == "dataset" and tasks[0].args is None  # arguments only when asked
    assert holding.ids == frozenset({"x", "y", "r"})
    said = summary([t.to_json() for t in tasks])
    assert said == (
        "hung in tasks.parse for 15 min (id y) and 1 more running; "
        "1 task(s) lost with the restart: tasks.index (x)"
    )


def test_a_worker_that_does_not_answer_is_named_and_nothing_is_taken_as_held() -> None:
    holding = Holding({"celery@a": ()}, {"celery@a": ()}, silent=("celery@b",))
    assert holding.ids is None
    assert hung_tasks(holding, 0.0) == ()
    assert summary([], ["celery@b"]) == "no answer from celery@b: what it ran is unknown"


def test_arguments_are_cut_and_masked_when_the_policy_asks() -> None:
    broker_url.register_secret_value("hunter2-secret")
    long = request("z", "tasks.call", 0.0, acked=False, args=["x" * 500, "hunter2-secret"])
    [task] = hung_tasks(Holding({"w": (long,)}, {"w": ()}), 5.0, record_args=True)
    assert task.args is not None and len(task.args) == ARGS_LIMIT
    short = request("s", "tasks.call", 0.0, acked=False, args=["hunter2-secret"])
    [task] = hung_tasks(Holding({"w": (short,)}, {"w": ()}), 5.0, record_args=True)
    assert task.args is not None and "hunter2" not in task.args and "***" in task.args


def test_quarantine_is_off_by_default_and_parks_at_the_nth_restart_in_a_row() -> None:
    assert quarantine.to_park(["p"], {"p": 5}, 0) == frozenset()
    streaks: dict[str, int] = {}
    parked_at = None
    for restart in range(1, 4):
        if quarantine.to_park(["p", f"other{restart}"], streaks, 2):
            parked_at = restart
            break
        streaks = quarantine.next_streaks(["p", f"other{restart}"], streaks, automatic=True)
    assert parked_at == 2
    # A restart at which it did not run ends its streak; a manual one changes nothing.
    assert quarantine.next_streaks(["q"], {"p": 1}, automatic=True) == {"q": 1}
    assert quarantine.next_streaks(["q"], {"p": 1}, automatic=False) == {"p": 1}


@given(
    st.lists(st.lists(st.sampled_from("abcd"), max_size=3), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=4),
)
def test_a_message_is_parked_exactly_when_it_ran_at_n_automatic_restarts_in_a_row(
    runs: list[list[str]], n: int
) -> None:
    """Brute force: replay the restarts, count each id's consecutive runs by hand."""
    streaks: dict[str, int] = {}
    for k, running in enumerate(runs):
        parked = quarantine.to_park(running, streaks, n)
        for task in set(running):
            in_a_row = 0
            for earlier in reversed(runs[: k + 1]):
                if task not in earlier:
                    break
                in_a_row += 1
            assert (task in parked) == (in_a_row >= n)
        streaks = quarantine.next_streaks(running, streaks, automatic=True)


def test_a_dead_letter_entry_is_one_versioned_json_shape() -> None:
    entry = quarantine.Entry("i", "tasks.p", "q", "w", "why", 1.5, ({"body": "x"}, "", "q"))
    assert quarantine.Entry.from_json(entry.to_json()) == entry
    assert entry.to_json()["format"] == quarantine.ENTRY_FORMAT
    assert quarantine.key_for("container:w") == "iti-supervisor:quarantine:container:w"
