"""A slot hung past its limit (core/hung.py): cases, then the brute-force definition.
Policy: interval 1 s, max_gap 3 s, max_task_runtime 30 s unless said otherwise."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core import hung
from supervisor.core.hung import Runs
from supervisor.policy import Detect
from supervisor.sample import Answer, Load, Running, Sample

from .helpers import make_policy

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DETECT = make_policy(detect={"max_task_runtime": 30}).detect
W = "celery@a1b2"


def load(
    active: int | None = 2,
    processed: int | None = 5,
    *,
    answer: Answer | None = None,
    concurrency: int | None = 2,
    pool: str | None = "prefork",
    time_limit: float | None = None,
) -> Load:
    return Load(W, concurrency, active, processed, ("mail",), pool, time_limit, answer)


def sample(t: float, *loads: Load, depth: int = 7) -> Sample:
    return Sample(t, depth, queues={"mail": depth}, loads=loads)


def tasks(started: float, *names: str) -> tuple[Running, ...]:
    return tuple(Running(n, f"id-{i}", started) for i, n in enumerate(names))


def run(samples: list[Sample], detect: Detect = DETECT) -> list[tuple[tuple, tuple]]:
    runs: Runs = ()
    out = []
    for s in samples:
        runs, found, asks = hung.observe(runs, s, None, detect, None)
        out.append((found, asks))
    return out


def test_every_slot_busy_asks_once_then_stuck_when_every_task_is_past_its_limit() -> None:
    answer = Answer(1.5, tasks(-10.0, "tasks.mail.send", "tasks.mail.send"))
    samples = [sample(0.0, load()), sample(1.0, load()), sample(2.0, load(answer=answer))]
    samples += [sample(float(t), load()) for t in range(3, 25)]
    steps = run(samples)
    assert [i for i, (_, a) in enumerate(steps) if a] == [1]  # asked once, answered once
    stuck = [i for i, (f, _) in enumerate(steps) if f]
    assert stuck[0] == 21  # 21 - (-10) = 31 s > 30 s
    reason = steps[21][0][0].reason
    assert reason.startswith(
        f"worker {W}: 2 of 2 slots hung: tasks.mail.send (id-0) running 31s > 30s "
        "(max_task_runtime), tasks.mail.send (id-1) running 31s > 30s (max_task_runtime); "
        "0 started in 21s, 7 waiting"
    )


def test_a_task_under_its_limit_is_never_a_reason() -> None:
    # One slot of two holds a long indexing task under its own limit: left alone.
    detect = make_policy(
        detect={"max_task_runtime": 30, "task_runtime": {"tasks.index.*": 3600}}
    ).detect
    answer = Answer(1.5, (*tasks(-100.0, "tasks.mail.send"), Running("tasks.index.doc", "x", -100)))
    samples = [sample(0.0, load()), sample(1.0, load()), sample(2.0, load(answer=answer))]
    samples += [sample(float(t), load()) for t in range(3, 200)]
    assert not any(f for f, _ in run(samples, detect))


def test_overrides_celerys_limit_and_off_without_any() -> None:
    detect = make_policy(
        detect={"max_task_runtime": 30, "task_runtime": {"a.*": 5, "a.b*": 7}}
    ).detect
    ld = load()
    assert hung.limit("a.bc", ld, detect) == (7, "task_runtime 'a.b*'")
    assert hung.limit("a.x", ld, detect) == (5, "task_runtime 'a.*'")
    assert hung.limit("z", ld, detect) == (30, "max_task_runtime")
    gevent = load(pool="celery.concurrency.gevent:TaskPool", time_limit=600)
    # The operator's override by name wins; then Celery's own, where the pool cannot enforce it.
    assert hung.limit("a.bc", gevent, detect) == (7, "task_runtime 'a.b*'")
    assert hung.limit("z", gevent, detect) == (
        600,
        "Celery's task_time_limit, which the gevent pool cannot enforce",
    )
    # A task's own time_limit (its attribute, or an annotation) wins over task_time_limit.
    own = dataclasses.replace(gevent, task_limits=(("q.r", 90.0),))
    assert hung.limit("q.r", own, detect) == (
        90.0,
        "q.r's own time_limit, which the gevent pool cannot enforce",
    )
    assert hung.limit("q.s", own, detect) == (600, hung.limit("z", gevent, detect)[1])  # type: ignore[index]
    only_own = dataclasses.replace(own, time_limit=None)
    assert not hung.enabled(make_policy().detect, only_own)
    assert hung.limit("q.s", only_own, make_policy().detect) is None
    off = make_policy().detect
    assert not hung.enabled(off, load(time_limit=600))  # prefork enforces it itself
    # Off until the policy gives a limit, even with Celery limits the pool cannot enforce.
    assert not hung.enabled(off, gevent) and hung.limit("z", load(), off) is None
    assert run([sample(float(t), load()) for t in range(10)], off) == [((), ())] * 10


def test_a_task_that_ends_or_a_new_one_starting_ends_the_run() -> None:
    answer = Answer(1.5, tasks(-100.0, "t", "t"))
    base = [sample(0.0, load()), sample(1.0, load()), sample(2.0, load(answer=answer))]
    assert run([*base, sample(3.0, load())])[-1][0]  # hung
    for last in (
        sample(3.0, load(active=1)),  # a slot freed
        sample(3.0, load(processed=6)),  # a task started: the answer is stale, ask again
        sample(3.0, load(), depth=0),  # nothing waits
    ):
        assert run([*base, last])[-1] == ((), ())


def test_an_answer_naming_fewer_tasks_than_slots_is_not_all_hung() -> None:
    answer = Answer(1.5, tasks(-100.0, "t"))
    steps = run([sample(0.0, load()), sample(1.0, load()), sample(2.0, load(answer=answer))])
    assert steps[-1] == ((), ())


# The brute-force definition over random traces of one worker with 2 slots.


@dataclass(frozen=True)
class Row:
    dt: float
    failed: bool
    active: int | None
    processed: int | None
    depth: int
    started: float | None  # how long before the answer its tasks started
    count: int  # how many tasks its answer names
    silent: bool
    unasked: bool


rows = st.lists(
    st.builds(
        Row,
        dt=st.sampled_from([0.5] + [1.0] * 8 + [2.0, 2.0, 4.0]),
        failed=st.sampled_from([False] * 15 + [True]),
        active=st.sampled_from([2] * 20 + [1, None]),
        processed=st.sampled_from([5] * 20 + [6, None]),
        depth=st.sampled_from([3] * 30 + [0]),
        started=st.sampled_from([0.0, 10.0, 25.0, None]),
        count=st.sampled_from([2, 2, 2, 1]),
        silent=st.sampled_from([False] * 5 + [True]),
        unasked=st.sampled_from([False] * 15 + [True]),
    ),
    min_size=20,
    max_size=100,
)


def make(t: float, row: Row, asked: bool) -> Sample:
    if row.failed:
        return Sample.failed(t, "x")
    answer = None
    if asked or row.unasked:
        started = None if row.started is None else t - row.started
        answer = (
            Answer(t, silent=True)
            if row.silent
            else Answer(t, tuple(Running("t", str(i), started) for i in range(row.count)))
        )
    return sample(t, load(row.active, row.processed, answer=answer), depth=row.depth)


def busy_by_definition(s: Sample) -> bool:
    ld = s.loads[0]
    if ld.active is None or ld.processed is None or ld.active < 2 or s.queues["mail"] == 0:
        return False
    return ld.answer is None or ld.answer.silent or len(ld.answer.active) >= 2


@SETTINGS
@given(rows, st.sampled_from([None, 5.25]))
def test_the_incremental_rule_matches_its_definition(
    trace: list[Row], restart: float | None
) -> None:
    runs: Runs = ()
    ok: list[Sample] = []
    asked: list[float] = []
    t = 0.0
    asks: tuple[str, ...] = ()
    for row in trace:
        t += row.dt
        s = make(t, row, bool(asks))
        runs, found, asks = hung.observe(runs, s, None, DETECT, restart)
        if not s.ok:
            assert not found and not asks
            continue
        ok.append(s)
        start = None
        if busy_by_definition(s) and (restart is None or t > restart):
            i = len(ok) - 1
            while i > 0:
                prev, cur = ok[i - 1], ok[i]
                if not busy_by_definition(prev) or prev.loads[0].processed != s.loads[0].processed:
                    break
                if cur.t - prev.t > DETECT.effective_max_gap:
                    break
                if restart is not None and prev.t <= restart:
                    break
                i -= 1
            start = ok[i].t
        in_run = [x for x in ok if start is not None and x.t >= start]
        answers = [
            x.loads[0].answer
            for x in in_run
            if x.loads[0].answer is not None
            and not x.loads[0].answer.silent
            and start is not None
            and x.loads[0].answer.t >= start
        ]
        first = answers[0] if answers else None
        expected = (
            first is not None
            and len(first.active) >= 2
            and all(r.started is not None and t - r.started > 30 for r in first.active)
        )
        assert bool(found) == expected
        last_ask = max((a for a in asked if start is not None and a >= start), default=None)
        should_ask = (
            start is not None
            and first is None
            and t - start >= DETECT.interval
            and (last_ask is None or t - last_ask >= DETECT.effective_max_gap)
        )
        assert bool(asks) == should_ask
        if asks:
            asked.append(t)


def test_celerys_limits_are_read_from_conf_and_registered() -> None:
    from supervisor.adapters.progress_probe import Limits, limits_from

    registered = [
        "tasks.mail [rate_limit=2/m time_limit=600]",
        "tasks.index [time_limit=21600.0]",
        "tasks.ping [rate_limit=10]",
        "tasks.slow [rate_limit=3/h]",
        "tasks.odd [rate_limit=x/m time_limit=-1]",
        "tasks.d [e] [rate_limit=1/m]",
        "tasks.plain",
    ]
    conf = {"task_time_limit": 3600, "task_default_rate_limit": "1/s"}
    assert limits_from(conf, registered) == Limits(
        3600.0,
        (("tasks.index", 21600.0), ("tasks.mail", 600.0)),
        (
            ("*", 1.0),
            ("tasks.d [e]", 60.0),
            ("tasks.mail", 30.0),
            ("tasks.ping", 0.1),
            ("tasks.slow", 1200.0),
        ),
    )
    off = {"worker_disable_rate_limits": True, "task_default_rate_limit": "1/s"}
    assert limits_from(off, registered).rate_limits == ()
    assert limits_from(None, None) == Limits()


def test_an_autoscaling_workers_slots_are_its_autoscalers_max() -> None:
    from supervisor.adapters.progress_probe import facts_from

    stats = {
        "pool": {"implementation": "celery.concurrency.prefork:TaskPool", "max-concurrency": 1},
        "autoscaler": {"max": 3, "min": 1, "current": 1, "qty": 0},
    }
    assert facts_from("w", stats, None, 0.0).concurrency == 3
    del stats["autoscaler"]
    assert facts_from("w", stats, None, 0.0).concurrency == 1
