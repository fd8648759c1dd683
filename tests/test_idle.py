"""The idle worker that takes nothing (core/idle.py): cases, then the brute-force definition.
Policy: interval 1 s, max_gap 3 s, idle_window 10 s."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core import idle
from supervisor.core.idle import Runs
from supervisor.policy import Detect
from supervisor.sample import Answer, Load, Running, Sample

from .helpers import make_policy

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DETECT = make_policy(detect={"idle_window": 10}).detect
W = "celery@a1b2"


def load(
    active: int | None = 0,
    processed: int | None = 5,
    *,
    concurrency: int | None = 4,
    answer: Answer | None = None,
    queues: tuple[str, ...] | None = ("mail",),
    worker: str = W,
    rate_limits: tuple[tuple[str, float], ...] = (),
) -> Load:
    return Load(
        worker, concurrency, active, processed, queues, answer=answer, rate_limits=rate_limits
    )


def sample(t: float, depth: int, *loads: Load) -> Sample:
    return Sample(t, depth, queues={"mail": depth}, loads=loads)


def run(
    samples: list[Sample], detect: Detect = DETECT, last_restart: float | None = None
) -> list[tuple[tuple[idle.Finding, ...], tuple[str, ...]]]:
    runs: Runs = ()
    out = []
    for s in samples:
        runs, found, asks = idle.observe(runs, s, None, detect, last_restart)
        out.append((found, asks))
    return out


def test_idle_for_the_window_asks_the_worker_and_is_stuck_on_its_agreeing_answer() -> None:
    samples = [sample(float(t), 7, load()) for t in range(11)]
    steps = run(samples)
    assert all(not f and not a for f, a in steps[:10])
    assert steps[10] == ((), (W,))  # 10 s idle: ask before acting
    answer = Answer(10.5)
    found, _ = run([*samples, sample(11.0, 7, load(answer=answer))])[-1]
    assert [f.worker for f in found] == [W]
    assert found[0].reason == (
        f"worker {W} idle: 0 of 4 slots busy, 0 started in 11s, 7 waiting; "
        "it answered 0 active, 0 reserved, 0 scheduled"
    )


def test_the_reason_names_the_oldest_wait() -> None:
    s = sample(130.0, 7, load(answer=Answer(129.0)))
    runs: Runs = (("celery@a1b2", idle.IdleRun(0.0, 129.0, 5, 120.0)),)
    detect = make_policy(
        detect={"interval": 10, "max_gap": 30, "window": 300, "idle_window": "2m"}
    ).detect
    _, found, _ = idle.observe(runs, s, {"mail": 130.0}, detect, None)
    assert found[0].reason.startswith(
        f"worker {W} idle: 0 of 4 slots busy, 0 started in 2m10s, 7 waiting, oldest 2m10s"
    )


def test_a_worker_that_does_not_answer_is_judged_on_its_heartbeats() -> None:
    samples = [sample(float(t), 7, load()) for t in range(11)]
    once = [*samples, sample(11.0, 7, load(answer=Answer(11.0, silent=True)))]
    assert run(once)[-1] == ((), (W,))  # one silence: not enough, ask again at once
    found, _ = run([*once, sample(12.0, 7, load(answer=Answer(12.0, silent=True)))])[-1]
    assert found and found[0].reason.endswith(
        "it gave no answer to inspect, judged on its heartbeats"
    )
    # A silence from before the run (an earlier question) counts for nothing.
    stale = [*samples, sample(11.0, 7, load(answer=Answer(-1.0, silent=True)))]
    stale.append(sample(12.0, 7, load(answer=Answer(12.0, silent=True))))
    assert run(stale)[-1] == ((), (W,))


def test_holding_eta_reserved_or_rate_limited_tasks_is_not_stuck_and_starts_the_run_afresh() -> (
    None
):
    for held in (Answer(10.5, scheduled=3), Answer(10.5, reserved=1)):
        samples = [sample(float(t), 7, load()) for t in range(11)]
        samples.append(sample(11.0, 7, load(answer=held)))
        samples += [sample(float(t), 7, load()) for t in range(12, 23)]
        steps = run(samples)
        assert not any(f for f, _ in steps)
        assert [t for t, (_, a) in enumerate(steps) if a] == [10, 22]  # again 10 s after 12


def test_a_rate_limited_worker_must_start_nothing_for_longer_by_its_slowest_limit() -> None:
    """Its held messages are not in `reserved`: a 2/m task waits up to 30 s for its turn."""
    rates = (("tasks.a", 0.5), ("tasks.b", 30.0))
    limited = [sample(float(t), 7, load(rate_limits=rates)) for t in range(41)]
    steps = run(limited)
    assert all(not f and not a for f, a in steps[:40])  # 10 s + 30 s
    assert steps[40] == ((), (W,))
    found, _ = run([*limited, sample(41.0, 7, load(answer=Answer(40.5), rate_limits=rates))])[-1]
    assert "(a rate limit lets one start every 30s)" in found[0].reason


def test_free_slots_messages_waiting_and_a_frozen_count_are_all_needed() -> None:
    base = [sample(float(t), 7, load()) for t in range(10)]
    for last in (
        sample(10.0, 7, load(active=4)),  # every slot busy
        sample(10.0, 0, load()),  # nothing waiting
        sample(10.0, 7, load(processed=6)),  # it started a task: back within the window
        sample(10.0, 7, load(concurrency=None)),  # slots unknown
        sample(10.0, 7),  # not alive
        sample(10.0, 7, load(queues=("other",))),  # nothing waits in ITS queues
    ):
        assert run([*base, last])[-1] == ((), ())


def test_a_worker_whose_queues_are_not_known_yet_counts_for_the_watched_queues() -> None:
    steps = run([sample(float(t), 7, load(queues=None)) for t in range(11)])
    assert steps[10][1] == (W,)


def test_an_idle_replica_is_found_while_its_sibling_works() -> None:
    sibling = "celery@c3d4"
    samples = [
        sample(float(t), 2, load(), load(active=4, processed=100 + t, worker=sibling))
        for t in range(11)
    ]
    assert run(samples)[10][1] == (W,)


def test_a_replica_idle_because_its_sibling_takes_every_message_is_not() -> None:
    # One message a minute, taken by the sibling at once: samples see an empty queue.
    samples = [sample(float(t), 1 if t % 60 == 30 else 0, load()) for t in range(200)]
    assert not any(f or a for f, a in run(samples))


def test_a_restart_at_or_after_the_runs_first_sample_ends_it() -> None:
    samples = [sample(float(t), 7, load()) for t in range(11)]
    assert run(samples, last_restart=0.0)[10] == ((), ())
    assert run(samples, last_restart=-0.5)[10] == ((), (W,))


def test_off_without_an_idle_window() -> None:
    detect = make_policy().detect
    assert detect.idle_window is None
    assert run([sample(float(t), 7, load()) for t in range(30)], detect) == [((), ())] * 30


# The brute-force definition over random traces of one worker.


@dataclass(frozen=True)
class Row:
    dt: float
    failed: bool
    alive: bool
    active: int | None
    processed: int | None
    depth: int
    answer: str  # the answer it gives when asked: silent, agree, reserved, scheduled, full
    unasked: bool  # it comes although nobody asked (an answer to an earlier question)
    answer_lag: float


rows = st.lists(
    st.builds(
        Row,
        dt=st.sampled_from([0.5] + [1.0] * 8 + [2.0, 2.0, 4.0]),
        failed=st.sampled_from([False] * 9 + [True]),
        alive=st.sampled_from([True] * 29 + [False]),
        active=st.sampled_from([0] * 20 + [1, 1, 2, None]),
        processed=st.sampled_from([5] * 15 + [6, None]),
        depth=st.sampled_from([3] * 30 + [0]),
        answer=st.sampled_from(["agree", "agree", "silent", "reserved", "scheduled", "full"]),
        unasked=st.sampled_from([False] * 15 + [True]),
        answer_lag=st.sampled_from([0.0, 0.5, 20.0]),
    ),
    min_size=20,
    max_size=120,
)

ANSWERS = {
    "silent": lambda t: Answer(t, silent=True),
    "agree": lambda t: Answer(t, (Running("x", "1", t),)),
    "reserved": lambda t: Answer(t, reserved=2),
    "scheduled": lambda t: Answer(t, scheduled=1),
    "full": lambda t: Answer(t, (Running("x", "1", t), Running("x", "2", t))),
}


def make(t: float, row: Row, asked: bool, rates: tuple[tuple[str, float], ...] = ()) -> Sample:
    """The sample at `t`: with the worker's answer when the rule asked on the sample before
    (as the daemon does), or now and then unasked."""
    if row.failed:
        return Sample.failed(t, "x")
    given = asked or row.unasked
    answer = ANSWERS[row.answer](t - row.answer_lag) if given else None
    one = load(row.active, row.processed, concurrency=2, answer=answer, rate_limits=rates)
    loads = (one,) if row.alive else ()
    return sample(t, row.depth, *loads)


def idle_by_definition(s: Sample) -> bool:
    if not s.loads:
        return False
    ld = s.loads[0]
    if ld.active is None or ld.processed is None or ld.active >= 2 or s.queues["mail"] == 0:
        return False
    a = ld.answer
    return a is None or a.silent or (a.reserved == 0 and a.scheduled == 0 and len(a.active) < 2)


@SETTINGS
@given(rows, st.sampled_from([None, 3.25, 15.25]), st.sampled_from([(), (("t", 6.0),)]))
def test_the_incremental_rule_matches_its_definition(
    trace: list[Row], restart: float | None, rates: tuple[tuple[str, float], ...]
) -> None:
    detect = DETECT
    window = 10 + max((every for _, every in rates), default=0.0)  # a rate limit's turn
    silences: list[float] = []  # when the run, old enough, got a silence of its own
    runs: Runs = ()
    ok: list[Sample] = []
    asked: list[float] = []
    t = 0.0
    asks: tuple[str, ...] = ()
    for row in trace:
        t += row.dt
        s = make(t, row, bool(asks), rates)
        runs, found, asks = idle.observe(runs, s, None, detect, restart)
        if not s.ok:
            assert not found and not asks
            continue
        ok.append(s)
        # The run: the longest idle suffix with one count, no gap over max_gap, after restart.
        start = None
        if idle_by_definition(s) and (restart is None or t > restart):
            i = len(ok) - 1
            while i > 0:
                prev, cur = ok[i - 1], ok[i]
                if not idle_by_definition(prev) or prev.loads[0].processed != s.loads[0].processed:
                    break
                if cur.t - prev.t > detect.effective_max_gap:
                    break
                if restart is not None and prev.t <= restart:
                    break
                i -= 1
            start = ok[i].t
        old_enough = start is not None and t - start >= window
        answer = s.loads[0].answer if s.loads else None
        fresh = old_enough and answer is not None and start is not None and answer.t >= start
        silent_now = fresh and answer is not None and answer.silent
        if silent_now:
            silences.append(t)
        in_run = [x for x in silences if start is not None and x >= start]
        confirmed = fresh and (not silent_now or len(in_run) >= 2)
        assert bool(found) == confirmed
        last_ask = max((a for a in asked if start is not None and a >= start), default=None)
        should_ask = (
            old_enough and not confirmed and (silent_now or last_ask is None or t - last_ask >= 3)
        )
        assert bool(asks) == should_ask
        if asks:
            asked.append(t)
