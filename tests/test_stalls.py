"""The rules at any depth in the engine and the tracker (core/stalls.py): the hang-to-decision
figures of issue 26 with the shipped policy, one replica at a time, and what is left alone."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from harness.hangs import chapter_only, decision_at
from harness.hangs import samples as hang_samples
from harness.parts import REPO
from supervisor.core import replay
from supervisor.core.engine import ActionKind
from supervisor.policy import load_policy
from supervisor.sample import Answer, Load, Progress, Replica, Running, Sample
from supervisor.trace import HistoryWriter, Row, history_path, read_trace

from .helpers import make_policy
from .inprocess import FakeMonitor, Harness

SHIPPED = load_policy(REPO / "policies" / "dify-worker.toml")


def test_the_chapters_rule_alone_takes_hours_at_low_traffic_as_the_issue_measured() -> None:
    chapter = chapter_only(SHIPPED)
    assert decision_at(chapter, 1.0, "idle") == 405.0  # 6m45s: fill to 100, then 5 min
    assert decision_at(chapter, 60.0, "idle") == 6365.0  # 1h46m
    assert decision_at(chapter, 600.0, "idle") == 61205.0  # 17h


def test_the_idle_worker_is_restarted_idle_window_after_the_first_message_waits() -> None:
    # The first message comes `rate` after the hang; then 2 min idle, one sample to ask.
    assert decision_at(SHIPPED, 1.0, "idle") == 135.0  # 2m15s (was 6m45s)
    assert decision_at(SHIPPED, 60.0, "idle") == 195.0  # 3m15s (was 1h46m)
    assert decision_at(SHIPPED, 600.0, "idle") == 735.0  # 12m15s (was 17h)


def test_hung_slots_are_restarted_once_every_task_is_past_its_limit() -> None:
    # The mail tasks' limit is 15 min; at 1 a second the chapter's rule comes first.
    assert decision_at(SHIPPED, 1.0, "hung") == 405.0
    assert decision_at(SHIPPED, 60.0, "hung") == 905.0  # 15m5s (was 1h46m)
    assert decision_at(SHIPPED, 600.0, "hung") == 905.0  # 15m5s (was 17h)


POLICY = make_policy(detect={"idle_window": 10, "max_task_runtime": 30})
A, B = "celery@aaaa", "celery@bbbb"


def two_replicas(t: float, answer: Answer | None = None) -> Sample:
    idle = Load(A, 4, 0, 7, ("celery",), answer=answer)
    busy = Load(B, 4, 4, 100 + int(t), ("celery",))
    return Sample(
        t,
        3,
        queues={"celery": 3},
        processed=107 + int(t),
        progress_source="heartbeats",
        loads=(idle, busy),
        replicas=(Replica("worker-1", A, 7, "heartbeats"), Replica("worker-2", B, 100, "h")),
    )


def test_only_the_idle_replica_is_restarted_while_its_sibling_works() -> None:
    samples = [two_replicas(float(t)) for t in range(11)]
    steps = list(replay.replay(POLICY, samples))
    assert steps[10].decision is not None and steps[10].decision.stalls.asks == (A,)
    steps = list(replay.replay(POLICY, [*samples, two_replicas(11.0, Answer(10.5))]))
    (action,) = steps[-1].actions
    assert action.kind is ActionKind.RESTART and action.containers == ("worker-1",)
    assert action.reason.startswith(f"idle rule: worker {A} idle: 0 of 4 slots busy")


def test_a_stuck_worker_not_mapped_to_one_of_several_containers_is_escalated_once() -> None:
    """Review mend: the idle replica's worker is not mapped (its queues not known yet, so not
    in `replicas`): restarting every container would kill the healthy one's tasks."""

    def unmapped(t: float, answer: Answer | None = None) -> Sample:
        return replace(
            two_replicas(t, answer),
            replicas=(Replica("worker-2", B, 100, "h"),),
            containers=("worker-1", "worker-2"),
        )

    samples = [unmapped(float(t)) for t in range(11)] + [unmapped(11.0, Answer(10.5))]
    samples += [unmapped(float(t)) for t in range(12, 30)]
    actions = [a for step in replay.replay(POLICY, samples) for a in step.actions]
    assert [a.kind for a in actions] == [ActionKind.ESCALATE], actions
    assert "not mapped to one of the target's 2 containers" in actions[0].reason

    # Its container known from the shell's mapping of the loads (review of the mend): it alone.
    def by_load(s: Sample) -> Sample:
        return replace(s, loads=(replace(s.loads[0], container="worker-1"), *s.loads[1:]))

    actions = [a for step in replay.replay(POLICY, map(by_load, samples)) for a in step.actions]
    assert [(a.kind, a.containers) for a in actions] == [(ActionKind.RESTART, ("worker-1",))]


def test_a_long_task_under_its_limit_is_left_alone_with_one_slot() -> None:
    # Dify through 1.13.2: one slot, indexing a large document for hours; mail waits behind it.
    policy = SHIPPED
    index = Running("tasks.document_indexing_task.document_indexing_task", "doc", 0.0)
    samples = []
    for i in range(3 * 360):  # 3 h, every 10 s
        t = 5.0 + 10 * i
        answer = Answer(t - 5, (index,)) if i == 2 else None
        load = Load(A, 1, 1, 50, ("dataset", "mail"), "gevent", None, answer)
        samples.append(
            Sample(
                t,
                3,
                queues={"dataset": 0, "mail": 3},
                processed=50,
                progress_source="heartbeats",
                loads=(load,),
            )
        )
    assert not list(replay.actions(replay.replay(policy, samples)))


def test_the_rules_change_nothing_of_the_chapters_decisions() -> None:
    growing = [
        Sample(float(t), 101 + t, queues={"celery": 101 + t}, processed=5) for t in range(40)
    ]
    with_rules = [a.to_json() for a in replay.actions(replay.replay(POLICY, growing))]
    without = [a.to_json() for a in replay.actions(replay.replay(make_policy(), growing))]
    assert with_rules == without and with_rules


def test_a_recorded_history_replays_the_rules_decisions_and_old_traces_still_read(
    tmp_path: Path,
) -> None:
    asked = [False]
    recorded, decided = [], []
    for step in replay.replay(SHIPPED, hang_samples(SHIPPED, 60.0, "idle", 400.0, asked)):
        asked[0] = bool(step.decision and step.decision.stalls.asks)
        recorded.append(step.sample)
        decided += [a.to_json() for a in step.actions]
    assert decided and decided[0]["reason"].startswith("idle rule: worker celery@hung idle")
    writer = HistoryWriter(tmp_path)
    for s in recorded:
        writer.append("p", Row(s))
    writer.close()
    with history_path(tmp_path, "p").open() as f:
        again = [a.to_json() for a in replay.actions(replay.replay(SHIPPED, read_trace(f, "p")))]
    assert again == decided
    old = io.StringIO("t,depth,processed\n0,5,1\n10,6,\n")
    assert [s.depth for s in read_trace(old, "old")] == [5, 6]


def test_a_history_file_of_the_older_format_is_rotated_not_appended_to(tmp_path: Path) -> None:
    path = history_path(tmp_path, "p")
    path.parent.mkdir(parents=True)
    path.write_text("t,depth,processed,stuck,threshold\n1.000,5,,0,100\n")
    writer = HistoryWriter(tmp_path)
    writer.append("p", Row(Sample(2.0, 6, {"celery": 6})))
    writer.close()
    assert path.with_name("p.csv.1").read_text().startswith("t,depth,processed,stuck,threshold\n")
    with path.open() as f:
        assert [s.depth for s in read_trace(f, "p")] == [6]


def test_the_daemon_asks_the_idle_worker_and_restarts_it_on_its_answer(tmp_path: Path) -> None:
    """In process, fakes at the edges only: the rule's ask reaches the progress monitor at the
    next tick, the answer comes with a later sample, and the restart's record says why."""
    h = Harness(tmp_path, detect={"idle_window": 10})
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": frozenset({"celery"})}
    monitor.workers = {"celery@abc123": Progress(7, "heartbeats")}
    monitor.live = (Load("celery@abc123", 4, 0, 7, ("celery",)),)
    h.start(monitor=monitor)
    try:
        for _ in range(14):
            h.tick(3)  # 3 messages wait: far under the chapter's threshold of 100
            if any(monitor.inquired):
                break
        assert ["celery@abc123"] in monitor.inquired and h.actuator.calls == []
        monitor.live = (replace(monitor.live[0], answer=Answer(h.clock.t)),)
        h.tick(3)
        h.settle()
        assert h.actuator.calls == ["restart w"]
        [done] = h.audit("restart")
        assert done["reason"].startswith(
            "idle rule: worker celery@abc123 idle: 0 of 4 slots busy, 0 started in"
        )
        assert done["reason"].endswith("it answered 0 active, 0 reserved, 0 scheduled")
    finally:
        h.stop()


def test_the_oldest_wait_is_a_gauge_per_queue_and_in_the_heartbeat_for_status() -> None:
    from supervisor.clock import Frame, Here
    from supervisor.core import engine
    from supervisor.core.tracker import TrackerState
    from supervisor.runtime.heartbeat import _waits
    from supervisor.sinks.metrics import Metrics

    policy = make_policy(broker={"queues": ["mail", "dataset"]})
    state = engine.EngineState()
    m = Metrics()
    for t, heads in ((0.0, ("m1",)), (130.0, ("m1",))):
        s = Sample(t, 1, {"mail": 1, "dataset": 0}, heads={"mail": heads, "dataset": ()})
        state, decision = engine.step(policy, state, s, t)
        m.observe(policy, s, TrackerState(), decision, Here(Frame("boot", 0.0), t, t))
    name = "iti_supervisor_queue_oldest_wait_seconds"
    assert m.registry.get_sample_value(name, {"policy": "test-worker", "queue": "mail"}) == 130.0
    assert m.registry.get_sample_value(name, {"policy": "test-worker", "queue": "dataset"}) == 0
    assert _waits(decision) == {"dataset": 0.0, "mail": 130.0}
    unread = Sample(140.0, 1, {"mail": 1, "dataset": 0})  # heads not read: no series
    state, decision = engine.step(policy, state, unread, 140.0)
    m.observe(policy, unread, TrackerState(), decision, Here(Frame("boot", 0.0), 140.0, 140.0))
    assert m.registry.get_sample_value(name, {"policy": "test-worker", "queue": "mail"}) is None


def test_the_restarts_record_keeps_each_queues_oldest_wait() -> None:
    from supervisor.core import tracker

    policy = make_policy(detect={"idle_window": 10})
    state = tracker.TrackerState()
    step = None
    for t in range(13):
        answer = Answer(float(t)) if t == 12 else None
        s = Sample(
            float(t),
            3,
            {"celery": 3},
            processed=7,
            loads=(Load(A, 4, 0, 7, ("celery",), answer=answer),),
            heads={"celery": ("m1",)},
        )
        state, step = tracker.on_sample(policy, state, s, dry_run=False)
    assert step is not None
    [command] = step.commands
    assert isinstance(command, tracker.Restart)  # its `why` is audited with the restart
    why = command.why
    assert why.oldest_wait == {"celery": 12.0}
    assert why.reason.startswith(f"idle rule: worker {A} idle: 0 of 4 slots busy")
    assert "oldest 12s" in why.reason


def test_a_worker_whose_queues_are_not_known_yet_counts_by_its_container(tmp_path: Path) -> None:
    """The catatonic worker after a broker restart: no remote-control answers (so no queues),
    heartbeats with a frozen count naming a host that maps to the target's container. Its
    heartbeats are the progress, not "progress unknown: the workers' queues are not known"."""
    h = Harness(tmp_path)
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": None}
    monitor.live = (Load("celery@abc123", None, 0, 41, None),)
    h.start(monitor=monitor)
    try:
        for _ in range(3):
            h.tick(150)
        assert h.daemon is not None
        [item] = h.daemon.supervised.values()
        assert item.last_sample is not None and item.last_sample.processed == 41
        assert item.last_sample.progress_source == "heartbeats of the target's containers"
    finally:
        h.stop()
