"""The daemon in-process (tests/inprocess.py: fakes only at its edges). Every guard of the
tracker is exercised through the real loop, executor, state files and sinks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.lease import Answer
from supervisor.core.replicas import Container
from supervisor.core.results import Outcome, RestartResult, StartResult
from supervisor.core.unacked import Held
from supervisor.runtime import control, trigger
from supervisor.runtime.leasing import Leases
from supervisor.sample import Progress, WorkerFacts
from tests.helpers import policy_dict
from tests.inprocess import FakeMonitor, FakeUnacked, Harness, to_toml


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.stop()


def make_stuck(h: Harness, start: int = 200, samples: int = 15) -> None:
    for i in range(samples):
        h.tick(start + i)


def test_one_restart_in_flight_and_a_trigger_meanwhile_is_refused(h: Harness) -> None:
    h.start()
    h.actuator.gate.clear()  # the restart blocks until the test lets it go
    make_stuck(h)
    assert h.actuator.calls == ["restart w"]
    assert h.saved()["intent"]["trigger"] == "automatic"  # saved before the Docker call
    for i in range(80):  # stuck, and long past the 60 s cooldown
        h.tick(300 + i)
    trigger.take(h.tmp / "state", h.clock.here())
    assert h.daemon is not None
    control.manual_trigger(h.daemon, plain=True)  # a SIGUSR1
    assert h.actuator.calls == ["restart w"]
    [refused] = h.audit("trigger_refused")
    assert "already in flight" in refused["reason"]
    h.actuator.gate.set()
    h.settle()
    [done] = h.audit("restart")
    assert done["outcome"] == "done" and done["trigger"] == "automatic"
    assert h.saved()["intent"] is None


def test_an_exception_in_a_restart_thread_is_logged_audited_and_the_loop_goes_on(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.start()
    h.actuator.restart_result = KeyError("State")
    make_stuck(h)
    h.settle()
    [internal] = h.audit("internal_error")
    assert "KeyError" in internal["reason"]
    assert "Traceback" in caplog.text and "KeyError: 'State'" in caplog.text
    [failed] = h.audit("restart_failed")
    assert "internal error" in failed["error"]
    h.tick(5)  # the loop still ticks, and completes the restart it cannot vouch for
    h.settle()
    assert h.actuator.calls == ["restart w", "ensure_running"]
    assert h.audit("restart_completed")


def test_a_start_that_keeps_failing_is_retried_every_interval_outside_cooldown(h: Harness) -> None:
    h.start()
    h.actuator.restart_result = RestartResult(
        Outcome.FAILED, "cold", ("w",), 30.0, "Docker engine unreachable", changed=True
    )
    down = StartResult(error="Docker engine unreachable")
    h.actuator.start_results = [down, down, down]
    make_stuck(h)
    h.settle()
    for depth in (400, 401, 402, 403):  # 4 s after the restart: the cooldown is 60 s
        h.tick(depth)
        h.settle()
    assert h.actuator.calls == ["restart w"] + ["ensure_running"] * 4
    assert len(h.audit("start_error_begin")) == 1
    [completed] = h.audit("restart_completed")
    assert completed["started"] == [] and completed["running"] == ["w"]
    assert len(h.saved()["recent"]) == 1 and h.saved()["intent"] is None


def test_an_unfinished_restart_is_completed_at_start_and_counts_once(h: Harness) -> None:
    h.start()
    h.actuator.gate.clear()
    make_stuck(h)
    assert h.saved()["intent"] is not None
    # The supervisor dies mid-restart: nothing of it but its state directory remains.
    h.daemon = None
    second = Harness(h.tmp)
    second.clock.t = h.clock.t + 5
    second.start()
    second.settle()
    assert second.actuator.calls == ["ensure_running"]
    [resumed] = second.audit("restart_resumed")
    assert resumed["trigger"] == "automatic"
    assert second.audit("restart_completed")
    saved = second.saved()
    assert saved["intent"] is None and len(saved["recent"]) == 1
    second.stop()
    h.actuator.gate.set()


def test_requests_older_than_the_daemon_are_discarded_and_audited(h: Harness) -> None:
    state = h.tmp / "state"
    folder = state / trigger.TRIGGER_DIR
    folder.mkdir(parents=True)
    (folder / "1-1.request").write_text(json.dumps({"name": "w", "t": 1.0, "pid": 1}))
    h.start()
    make_stuck(h, start=0, samples=3)
    assert h.actuator.calls == []
    [discarded] = h.audit("trigger_discarded")
    assert discarded["policy"] == "w" and not list(folder.glob("*.request"))


def test_a_named_request_restarts_that_policy_only_once(h: Harness) -> None:
    d = h.start()
    folder = h.tmp / "state" / trigger.TRIGGER_DIR
    folder.mkdir(exist_ok=True)
    (folder / "2-2.request").write_text(json.dumps({"name": "w", "t": h.clock.t, "pid": 2}))
    control.manual_trigger(d)
    h.settle()
    [record] = h.audit("restart")
    assert record["trigger"] == "manual" and h.actuator.calls == ["restart"]


def test_the_history_belongs_to_the_target_across_renames_and_retargets(h: Harness) -> None:
    h.start()
    make_stuck(h)
    h.settle()
    [restarted_at] = h.saved()["recent"]
    h.stop()
    h.write_policy(name="renamed")  # same target, another name: same history and budget
    h.start()
    assert h.daemon is not None
    assert h.daemon.supervised["renamed"].state.history.recent == (restarted_at,)
    h.stop()
    h.write_policy(name="renamed", target={"container": "other"})
    h.start()  # another target: its own, empty, history; w's is kept for w
    assert h.daemon is not None
    assert h.daemon.supervised["renamed"].state.history.recent == ()
    assert len(h.saved()["recent"]) == 1


def test_reload_with_another_broker_restarts_the_run(h: Harness) -> None:
    d = h.start()
    for i in range(8):  # over the threshold and growing, under the 10 s window
        h.tick(200 + i)
    h.write_policy(broker={"url": "redis://127.0.0.1:6380/1"})
    control.reload(d)
    assert h.probes[0].closed and len(h.probes) == 2
    for i in range(8):  # 8 more seconds: 16 in all, but only 8 on this broker
        h.tick(300 + i)
    assert h.actuator.calls == []
    for i in range(4):
        h.tick(310 + i)
    assert h.actuator.calls == ["restart w"]


def test_recovery_is_audited_once_after_a_restart(h: Harness) -> None:
    h.start()
    make_stuck(h)
    h.settle()
    for depth in (300, 50, 3, 2):
        h.tick(depth)
    [recovery] = h.audit("recovery")
    assert recovery["depth"] == 50


def test_sampling_outage_begins_and_ends_once(h: Harness) -> None:
    h.start()
    for depth in (1, None, None, None, 2, 3):
        h.tick(depth)
    assert [r["event"] for r in h.audit() if "sample_error" in r["event"]] == [
        "sample_error_begin",
        "sample_error_end",
    ]


def test_every_event_has_one_name_in_audit_metrics_and_log(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # start and stop are INFO lines
    d = h.start()
    make_stuck(h)
    h.settle()
    names = {r["event"] for r in h.audit()}
    assert {"start", "restart"} <= names
    counted = {
        s.labels["event"]
        for metric in d.metrics.registry.collect()
        if metric.name == "iti_supervisor_events"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert names <= counted
    logged = {r.getMessage().split(":")[0] for r in caplog.records if r.name == "supervisor.events"}
    assert names <= logged


def test_dry_run_looks_up_and_changes_nothing(h: Harness) -> None:
    h.start(dry_run=True)
    make_stuck(h)
    h.settle()
    assert h.actuator.calls == ["lookup"]
    [record] = h.audit("dry_run_restart")
    assert record["containers"] == ["w"] and h.saved("container%3Aw.dry-run")["intent"] is None
    assert not (h.tmp / "state" / "state" / "targets" / "container%3Aw.json").exists()


def test_a_dry_run_never_spends_the_live_budget_and_every_record_says_dry_run(
    h: Harness,
) -> None:
    """The README's switch: a dry run first, then live on the same state directory. On main
    the dry run's would-be restart was the live supervisor's history: its first real restart
    waited out a cooldown and the budget was spent on restarts that never happened."""
    h.write_policy(restart={"max_restarts": 1, "cooldown": 600})
    h.start(dry_run=True)
    make_stuck(h)
    h.settle()
    assert h.audit("dry_run_restart") and h.actuator.calls == ["lookup"]
    dry = h.saved("container%3Aw.dry-run")
    assert len(dry["recent"]) == 1  # the dry run counts its own would-be restarts
    h.stop()
    records = h.audit()
    assert {r["event"] for r in records} >= {"start", "stop", "dry_run_restart"}
    assert all(r.get("dry_run") is True for r in records), [
        r["event"] for r in records if not r.get("dry_run")
    ]
    h.start()  # live now: its budget and cooldown are untouched by the dry run
    assert h.daemon is not None and h.daemon.supervised["w"].state.history.recent == ()
    make_stuck(h, start=300)
    h.settle()
    assert h.actuator.calls == ["lookup", "restart w"]
    [live] = h.audit("restart")
    assert live.get("dry_run") is not True and len(h.saved()["recent"]) == 1


def test_discovered_queues_are_sampled_audited_and_kept_across_a_restart(h: Harness) -> None:
    h.write_policy(broker={"queues": [], "discover_queues": True})
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": None}  # the target's worker, queues not known yet
    h.start(monitor=monitor)
    for _ in range(7):  # past the grace: watching nothing is said, never "not stuck"
        h.tick(0)
    assert h.probes[-1].asked[-1] == ()
    beat = json.loads((h.tmp / "state" / "heartbeat.json").read_text())
    assert beat["policies"]["w"]["warnings"][0].startswith("cannot judge: no queue to watch")
    assert beat["policies"]["w"]["verdict"] == "cannot_judge"
    [blind] = h.audit("cannot_judge")
    assert "no queue to watch" in blind["reason"]
    monitor.queues = {"celery@abc123": frozenset({"dataset", "mail"}), "other@x": frozenset({"q"})}
    h.tick(0)
    assert h.probes[-1].asked[-1] == ("dataset", "mail")  # the target's worker's, not other's
    [changed] = h.audit("queues_changed")
    assert changed["queues"] == ["dataset", "mail"] and changed["previous"] == []
    assert h.saved()["discovered"] == ["dataset", "mail"]
    monitor.queues = {}  # its heartbeats stop: the queues stay
    h.tick(0)
    assert h.probes[-1].asked[-1] == ("dataset", "mail")
    h.stop()
    h.start(monitor=FakeMonitor())  # a restarted supervisor, before any worker tells
    h.tick(0)
    assert h.probes[-1].asked[-1] == ("dataset", "mail")
    assert len(h.audit("queues_changed")) == 1


class FakeLeaseStore:
    """The broker's lease keys, held by whoever the test says; the shared state as saved."""

    def __init__(self) -> None:
        self.holder: str | None = "other/1"
        self.state: dict[str, Any] | None = None
        self.down = False

    def hold(self, target: str, token: str, period: float) -> tuple[Any, Any, Any]:
        if self.down:
            return None, None, "ConnectionError: refused"
        if self.holder is None:
            self.holder = token
            return Answer.ACQUIRED, token, None
        if self.holder == token:
            return Answer.RENEWED, token, None
        return Answer.HELD, self.holder, None

    def still_mine(self, target: str, token: str, period: float) -> str | None:
        return None if self.holder == token else f"the lease is held by {self.holder}"

    def release(self, target: str, token: str) -> None:
        if self.holder == token:
            self.holder = None

    def load(self, target: str) -> tuple[dict[str, Any] | None, str | None]:
        return self.state, None

    def save(self, target: str, data: dict[str, Any]) -> str | None:
        self.state = data
        return None

    def close(self) -> None:
        pass


def lease_held(h: Harness) -> float | None:
    assert h.daemon is not None
    return h.daemon.metrics.registry.get_sample_value("iti_supervisor_lease_held", {"policy": "w"})


def test_a_standby_decides_and_audits_but_acts_only_once_it_holds_the_lease(
    h: Harness,
) -> None:
    h.write_policy(restart={"max_restarts": 1, "cooldown": 5, "backoff_initial": 5})
    store = FakeLeaseStore()
    h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    make_stuck(h)
    h.settle()
    [standby] = h.audit("standby")
    assert standby["outcome"] == "standby" and "another supervisor" in standby["text"]
    assert h.actuator.calls == ["lookup"]  # looked up, never changed
    assert lease_held(h) == 0
    # The holder restarted the worker and shared that; then it died.
    store.state = {
        "format": 2, "policy": "w", "target": "container:w", "last_restart": h.clock.t,
        "streak": 1, "recent": [h.clock.t], "escalated": False, "intent": None,
        "discovered": [],
    }  # fmt: skip
    store.holder = None
    h.tick(300, seconds=3)  # the next try of the lease
    [taken] = h.audit("lease_acquired")
    assert taken["holder"] == "me/1" and taken["previous"] == "other/1"
    assert lease_held(h) == 1
    make_stuck(h, start=320, samples=20)
    h.settle()
    # The budget it adopted is spent by the other's restart: it escalates, never restarts.
    assert h.audit("escalate") and h.audit("restart") == []
    assert h.actuator.calls == ["lookup"]
    assert store.state is not None and store.state["escalated"] is True  # shared back


def test_the_holder_checks_its_lease_right_before_restarting(h: Harness) -> None:
    store = FakeLeaseStore()
    store.holder = None
    h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    assert h.audit("lease_acquired")
    h.actuator.gate.clear()
    store.still_mine = lambda target, token, period: "the lease is held by other/2"  # type: ignore[method-assign]
    make_stuck(h)
    h.actuator.gate.set()
    h.settle()
    [failed] = h.audit("restart_failed")
    assert "not restarted, the lease is held by other/2" in failed["error"]
    assert "restart" not in h.actuator.calls


def test_without_redis_it_cannot_know_and_does_not_act(h: Harness) -> None:
    store = FakeLeaseStore()
    store.holder = None
    h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    store.down = True
    h.tick(200, seconds=3)
    [outage] = h.audit("lease_error_begin")
    assert "not acting" in outage["text"]
    make_stuck(h, start=210)
    h.settle()
    assert h.audit("restart") == [] and h.audit("standby")


def test_a_restarted_replica_never_gives_back_its_healthy_siblings_messages(h: Harness) -> None:
    """Two replicas of one service, w-1 hung (its count frozen), w-2 healthy (its count moves):
    only w-1 is restarted, only its worker is asked what it holds, and after its SIGKILL only
    its message goes back; w-2's prefetched messages stay with w-2, which still runs them."""
    h.write_policy(target={"container": None, "compose_project": "p", "compose_service": "w"})
    h.actuator.containers = (Container("p-w-1", "aaa"), Container("p-w-2", "bbb"))
    monitor = FakeMonitor()
    monitor.queues = {"celery@aaa": frozenset({"celery"}), "celery@bbb": frozenset({"celery"})}
    monitor.reserved = {"celery@aaa": {"hung"}, "celery@bbb": {"b1", "b2"}}
    unacked = FakeUnacked(
        [
            Held("t-hung", "hung", "celery", 1.0),
            Held("t-b1", "b1", "celery", 2.0),
            Held("t-b2", "b2", "celery", 3.0),
        ]
    )
    h.actuator.restart_result = RestartResult(
        Outcome.DONE, "cold", ("p-w-1",), 0.1, changed=True, killed=("p-w-1",)
    )
    h.start(monitor=monitor, unacked=unacked)
    for i in range(15):
        monitor.workers = {"celery@aaa": Progress(7, "heartbeats"), "celery@bbb": Progress(i)}
        h.tick(200 + i)
    h.settle()
    assert h.actuator.calls == ["restart p-w-1"]
    assert monitor.asked == [["celery@aaa"]]  # never the healthy sibling
    assert unacked.restored == [("t-hung",)]
    assert {e.task_id for e in unacked.entries} == {"b1", "b2"}
    [done] = h.audit("restart")
    assert done["plan"]["workers"] == ["celery@aaa"] and done["plan"]["others_consume"] is True


def test_no_sigquit_for_a_worker_known_to_run_the_threads_pool(h: Harness) -> None:
    """Its pool was learnt while it answered; at the restart it is not asked again, and the
    cold shutdown Celery's threads pool cannot do is not tried (no stop_timeout wasted)."""
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": frozenset({"celery"})}
    monitor.known = (WorkerFacts("celery@abc123", "celery.concurrency.thread:TaskPool", 4),)
    monitor.workers = {"celery@abc123": Progress(3, "heartbeats")}
    h.start(monitor=monitor)
    for _ in range(3):  # the target's containers are read from Docker off the loop
        h.tick(150)
    monitor.known = ()  # hung: it says nothing any more
    make_stuck(h)
    h.settle()
    assert h.actuator.sigquit == [False]
    [done] = h.audit("restart")
    assert "threads pool" in done["plan"]["sigquit_why"]
    assert h.saved()["workers"][0]["pool"] == "celery.concurrency.thread:TaskPool"


def test_two_policies_on_one_container_the_second_never_touches_it(h: Harness) -> None:
    """`container = "p-w-1"` in one policy and compose labels matching p-w-1 in another: two
    target keys, one container. The first policy keeps it; the second says so once, naming
    both, and its due restart is refused rather than made."""
    h.write_policy(name="a-first", target={"container": "p-w-1"})
    second = h.policy_file.parent / "x-second.toml"  # loaded after w.toml
    data = policy_dict(
        name="b-second",
        target={"container": None, "compose_project": "p", "compose_service": "w", "all": True},
    )
    second.write_text(to_toml(data))
    h.actuator.containers = (Container("p-w-1", "aaa"),)
    h.start()
    for i in range(15):
        h.clock.t += 1
        h.depths["a-first"] = None  # only the second one's queue is sampled as stuck
        h.depths["b-second"] = 200 + i
        assert h.daemon is not None
        h.daemon.pass_once()
    h.settle()
    [conflict] = h.audit("target_conflict")
    assert conflict["policy"] == "b-second" and conflict["containers"] == {"p-w-1": "a-first"}
    assert "a-first" in conflict["text"] and "b-second" in conflict["text"]
    [refused] = h.audit("restart_refused")
    assert refused["policy"] == "b-second"
    assert "another policy's" in refused["refused_because"]
    assert h.actuator.calls == []


def test_a_target_that_is_not_there_is_said_never_judged_not_stuck(h: Harness) -> None:
    """The shipped policy next to a stock Dify: its container is not there. After the grace it
    is said once (naming the containers there are), the verdict is "cannot judge", health is
    unhealthy and a metric says so; when the container appears, judging resumes, said once."""
    from supervisor import health

    h.actuator.containers = ()
    h.start()
    assert h.daemon is not None
    for _ in range(8):
        h.tick(150)
    [blind] = h.audit("cannot_judge")
    assert blind["reason"] == ("container 'w' not found (found: docker-api-1, docker-worker-1)"), (
        blind["reason"]
    )
    beat = json.loads((h.tmp / "state" / "heartbeat.json").read_text())["policies"]["w"]
    assert beat["verdict"] == "cannot_judge" and beat["why"].startswith("cannot judge: ")
    registry = h.daemon.metrics.registry
    assert registry.get_sample_value("iti_supervisor_cannot_judge", {"policy": "w"}) == 1
    assert registry.get_sample_value("iti_supervisor_target_found", {"policy": "w"}) == 0
    from supervisor.runtime import lock

    with lock.Held(h.tmp / "state"):  # as `run` holds it
        verdict = health.check(h.tmp / "state", h.clock.t)
    assert not verdict.healthy and "w cannot judge: container 'w' not found" in verdict.message
    h.actuator.containers = (Container("w", "abc123"),)
    for _ in range(12):  # looked up again 5 s after a failed read, then the grace
        h.tick(150)
    beat = json.loads((h.tmp / "state" / "heartbeat.json").read_text())["policies"]["w"]
    assert beat["workers"] == {"w": None}  # found now; its worker not heard (no monitor here)
    [judging] = h.audit("judging")
    assert "not found" in judging["reason"] and len(h.audit("cannot_judge")) == 1
    assert registry.get_sample_value("iti_supervisor_cannot_judge", {"policy": "w"}) == 0


def test_a_poison_message_is_parked_at_the_nth_hang_restart_and_each_restart_says_what_hung(
    h: Harness,
) -> None:
    """acks_late: the hung task's message comes back after each restart and hangs the new
    worker. With quarantine_after = 2 the first restart gives it back, the second parks it
    (not given back), says so once, and every restart record names what was running."""
    h.write_policy(
        restart={"quarantine_after": 2, "cooldown": 1, "backoff_initial": 1, "backoff_max": 1}
    )
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": frozenset({"celery"})}
    monitor.workers = {"celery@abc123": Progress(7, "heartbeats")}  # frozen: stuck
    poison = {
        "id": "p",
        "name": "tasks.parse",
        "time_start": 1.0,
        "acknowledged": False,
        "delivery_info": {"routing_key": "celery"},
    }
    monitor.running = {"celery@abc123": [poison]}
    unacked = FakeUnacked([Held("t-p", "p", "celery", 1.0)])
    h.actuator.restart_result = RestartResult(
        Outcome.DONE, "cold", ("w",), 0.1, changed=True, killed=("w",)
    )
    h.start(monitor=monitor, unacked=unacked)
    make_stuck(h, start=200, samples=15)
    h.settle()
    [first] = h.audit("restart")
    assert first["hung"][0]["name"] == "tasks.parse" and first["hung"][0]["comes_back"]
    assert "hung in tasks.parse" in first["text"] and first.get("parked") is None
    assert unacked.restored == [("t-p",)] and unacked.parked == []
    assert h.saved()["streaks"] == {"p": 1}
    unacked.entries = [Held("t-p2", "p", "celery", 2.0)]  # the new worker took it: hung again
    make_stuck(h, start=400, samples=15)
    h.settle()
    restarts = h.audit("restart")
    assert len(restarts) == 2 and restarts[1]["parked"] == ["p"]
    assert [e.tag for e in unacked.parked] == ["t-p2"] and unacked.restored[1:] == [()]
    [parked] = h.audit("quarantined")
    assert parked["tasks"][0]["id"] == "p" and parked["after"] == 2
    assert parked["key"] == "iti-supervisor:quarantine:container:w"
    assert "POISON" in parked["text"] and "supervisor quarantine" in parked["text"]
    assert h.daemon is not None
    registry = h.daemon.metrics.registry
    assert (
        registry.get_sample_value("iti_supervisor_quarantined_messages_total", {"policy": "w"}) == 1
    )


def test_targets_on_one_broker_are_sampled_together_in_one_pass_each_interval(
    h: Harness,
) -> None:
    """Three policies on one Redis: each pass samples them in one call of their group (one
    round trip), and they stay in one pass a second even though adding them took time (which
    used to spread them over several wake-ups a second)."""
    for name in ("b", "c"):
        data = policy_dict(name=name, target={"container": name})
        (h.policy_file.parent / f"{name}.toml").write_text(to_toml(data))
    rounds: list[list[str]] = []
    make = h.probe

    def probe(policy: Any, clock: Any) -> Any:
        made = make(policy, clock)
        made.group = "one broker"
        made.sample_group = lambda requests: (  # type: ignore[method-assign]
            rounds.append([p.name for p, _ in requests]) or [p.sample(q) for p, q in requests]
        )
        h.clock.t += 0.04  # adding a target takes time
        return made

    h.probe = probe  # type: ignore[method-assign]
    h.start()
    assert h.daemon is not None
    for _ in range(5):
        h.daemon.pass_once()
        h.clock.t = h.daemon.next_wake()  # the loop sleeps until then
    assert rounds == [["b", "c", "w"]] * 5
    assert [(p.name, len(p.asked)) for p in h.probes] == [("b", 5), ("c", 5), ("w", 5)]


def _three_policies(h: Harness) -> None:
    for name in ("a", "b"):
        data = policy_dict(name=name, target={"container": name})
        (h.policy_file.parent / f"{name}.toml").write_text(to_toml(data))


def _request(h: Harness, name: str, n: int) -> None:
    folder = h.tmp / "state" / trigger.TRIGGER_DIR
    folder.mkdir(exist_ok=True)
    body = {"name": name, "t": h.clock.t, "pid": n}
    (folder / f"{n}-{n}.request").write_text(json.dumps(body))


@pytest.mark.parametrize("split", [False, True], ids=["one pass", "next pass"])
def test_two_named_triggers_restart_those_two_and_no_other_policy(h: Harness, split: bool) -> None:
    """`trigger a` and `trigger b` land during one long pass: both files are there when the
    first SIGUSR2 is handled. The second SIGUSR2, in that pass or the next, restarts nothing
    more (on main, where triggers sent SIGUSR1, it restarted every policy, w included)."""
    import signal

    _three_policies(h)
    d = h.start()
    _request(h, "a", 1)
    _request(h, "b", 2)
    d.waker.pending.append(signal.SIGUSR2)
    if not split:
        d.waker.pending.append(signal.SIGUSR2)
    h.tick(5)
    if split:
        d.waker.pending.append(signal.SIGUSR2)
        h.tick(5)
    h.settle()
    assert sorted(r["policy"] for r in h.audit("restart")) == ["a", "b"]
    d.waker.pending.append(signal.SIGUSR1)  # a plain one, later: every policy
    h.clock.t += 10
    h.tick(5)
    h.settle()
    assert sorted(r["policy"] for r in h.audit("restart")) == ["a", "a", "b", "b", "w"]


def test_a_retarget_and_back_keeps_each_targets_own_history(h: Harness) -> None:
    """w -> w2 -> w by two reloads: w's restart is still w's (on main the first reload wrote a
    blank history over w2's file and the second over w's: the budget was reset)."""
    d = h.start()
    make_stuck(h)
    h.settle()
    assert len(h.saved()["recent"]) == 1
    h.write_policy(target={"container": "w2"})
    control.reload(d)
    [changed] = h.audit("target_changed")
    assert changed["target"] == "container:w2" and changed["old_target"] == "container:w"
    assert d.supervised["w"].state.history.recent == ()  # w2's own: it never restarted
    assert len(h.saved()["recent"]) == 1  # w's file is untouched
    h.write_policy(target={"container": "w"})
    control.reload(d)
    assert len(d.supervised["w"].state.history.recent) == 1
    assert len(h.saved()["recent"]) == 1


@pytest.mark.parametrize("change", ["remove", "retarget"])
def test_a_policy_whose_restart_is_in_flight_is_neither_removed_nor_retargeted(
    h: Harness, change: str
) -> None:
    """On main the removal was allowed: the restart's result was dropped unrecorded and a
    worker left stopped was never started. Now the reload is refused, naming why, and the
    restart ends recorded; the same reload succeeds once it is done."""
    d = h.start()
    h.actuator.gate.clear()
    make_stuck(h)
    assert h.actuator.calls == ["restart w"]
    if change == "remove":
        h.policy_file.unlink()
        (h.policy_file.parent / "v.toml").write_text(
            to_toml(policy_dict(name="v", target={"container": "v"}))
        )
    else:
        h.write_policy(target={"container": "w2"})
    control.reload(d)
    [refused] = h.audit("reload_refused")
    assert "not finished" in " ".join(refused["problems"])
    assert "w" in d.supervised and d.supervised["w"].policy.target.key == "container:w"
    h.actuator.gate.set()
    h.settle()
    [done] = h.audit("restart")
    assert done["policy"] == "w" and done["outcome"] == "done"
    control.reload(d)
    assert h.audit("reload")
    assert ("w" in d.supervised) is (change == "retarget")


def test_a_rename_while_a_restart_is_in_flight_keeps_its_result(h: Harness) -> None:
    d = h.start()
    h.actuator.gate.clear()
    make_stuck(h)
    h.write_policy(name="renamed")
    control.reload(d)
    assert sorted(d.supervised) == ["renamed"] and not h.audit("reload_refused")
    h.actuator.gate.set()
    h.settle()
    [done] = h.audit("restart")
    assert done["policy"] == "renamed" and h.saved()["intent"] is None


def test_a_standby_never_starts_containers_while_another_holds_the_lease(h: Harness) -> None:
    """It died mid-restart in an earlier life: its state file still has the intent. Another
    supervisor holds the lease now, and completes what is unfinished itself. On main the
    standby started the target's containers at every sample, without a lease check."""
    h.start()
    h.actuator.gate.clear()
    make_stuck(h)
    assert h.saved()["intent"] is not None
    h.daemon = None  # it dies mid-restart
    h.actuator.gate.set()
    second = Harness(h.tmp)
    second.clock.t = h.clock.t + 5
    store = FakeLeaseStore()  # held by other/1
    second.start(leases=Leases(9.0, "me/1", lambda broker: store))
    for depth in (50, 50, 50, 50):
        second.tick(depth)
    second.settle()
    assert second.actuator.calls == []
    store.holder = None  # the holder stopped cleanly: this one takes over and completes it
    second.tick(50, seconds=3)
    second.settle()
    assert second.actuator.calls == ["ensure_running"] and second.audit("restart_completed")
    second.stop()


def test_every_command_that_changes_a_container_is_fenced(h: Harness) -> None:
    store = FakeLeaseStore()
    store.holder = None
    h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    h.actuator.restart_result = RestartResult(
        Outcome.FAILED, "cold", ("w",), 1.0, "Docker engine unreachable", changed=True
    )
    h.actuator.gate.clear()
    make_stuck(h)  # fenced, then blocked in the Docker calls
    store.still_mine = lambda target, token, period: "the lease is held by other/2"  # type: ignore[method-assign]
    h.actuator.gate.set()
    h.settle()  # it failed after it stopped the worker: the worker must be started again
    h.tick(50)
    h.settle()
    assert h.actuator.calls == ["restart w"]  # no ensure_running past the fence
    [failing] = h.audit("start_error_begin")
    assert "not started, the lease is held by other/2" in failing["reason"]


class PerTargetLeaseStore(FakeLeaseStore):
    """Leases and shared states per target key."""

    def __init__(self, holders: dict[str, str | None]) -> None:
        super().__init__()
        self.holders, self.states = holders, {}  # type: dict[str, str | None], dict[str, Any]
        self.released: list[str] = []

    def hold(self, target: str, token: str, period: float) -> tuple[Any, Any, Any]:
        self.holder = self.holders.get(target)
        answer = super().hold(target, token, period)
        self.holders[target] = self.holder
        return answer

    def still_mine(self, target: str, token: str, period: float) -> str | None:
        holder = self.holders.get(target)
        return None if holder == token else f"the lease is held by {holder}"

    def release(self, target: str, token: str) -> None:
        if self.holders.get(target) == token:
            self.holders[target] = None
            self.released.append(target)

    def load(self, target: str) -> tuple[dict[str, Any] | None, str | None]:
        return self.states.get(target), None

    def save(self, target: str, data: dict[str, Any]) -> str | None:
        self.states[target] = data
        return None


def test_a_policy_moved_to_another_target_gives_up_the_old_lease_and_needs_the_new(
    h: Harness,
) -> None:
    """Leases are the target's: on main they were keyed by policy name, so after a reload to
    w2 the lease of w was kept for w2, never released, and a blank history was written into
    w2's shared key while other/1 held w2."""
    store = PerTargetLeaseStore({"container:w": None, "container:w2": "other/1"})
    d = h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    make_stuck(h)
    h.settle()
    assert "container:w" in store.states and h.audit("restart")
    h.write_policy(target={"container": "w2"})
    control.reload(d)
    make_stuck(h, start=400)
    h.settle()
    assert store.released == ["container:w"] and store.holders["container:w"] is None
    assert "container:w2" not in store.states  # never shared by a standby
    assert h.audit("standby") and len(h.audit("restart")) == 1


def test_a_restart_whose_intent_cannot_be_saved_is_not_made(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Persist, then act. On main the state write's OSError was swallowed and the restart
    made: a crash in it would have left the worker stopped by hand, with no record of the
    restart or of the budget. Now nothing is changed, the restart is audited as failed with
    the reason, health says why, and once the disk has room restarts go on as usual."""
    import errno

    from supervisor import health
    from supervisor.runtime import lock, state_store

    real = state_store.write_atomic

    def full(path: Any, data: bytes, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_store, "write_atomic", full)
    d = h.start()
    make_stuck(h)
    h.settle()
    assert h.actuator.calls == []
    [failed] = h.audit("restart_failed")
    assert "not restarted: its intent could not be saved first" in failed["error"]
    assert "No space left on device" in failed["error"] and failed["changed"] is False
    d.write_heartbeat()
    with lock.Held(h.tmp / "state"):  # as the daemon's `run` holds it
        verdict = health.check(h.tmp / "state", h.clock.t)
    assert not verdict.healthy and "No space left on device" in verdict.message
    monkeypatch.setattr(state_store, "write_atomic", real)  # room again
    h.clock.t += 120  # past the cooldown the failed restart started
    make_stuck(h, start=300)
    h.settle()
    assert h.actuator.calls == ["restart w"] and h.saved()["intent"] is None
    d.write_heartbeat()
    with lock.Held(h.tmp / "state"):
        assert health.check(h.tmp / "state", h.clock.t).healthy


def test_a_dry_run_says_what_a_live_restart_would_cost_and_changes_nothing(h: Harness) -> None:
    """Issue 27: on main a dry run recorded `hung: []`, its workers never asked. Now they are
    asked what a live restart asks, and the record says what hung and for how long, what
    would be lost (acknowledged early) and what would come back, and what would be parked;
    no signal, no give-back, no parking."""
    h.write_policy(restart={"quarantine_after": 1})
    monitor = FakeMonitor()
    monitor.queues = {"celery@abc123": frozenset({"celery"})}
    monitor.workers = {"celery@abc123": Progress(7, "heartbeats")}  # frozen: stuck
    mail = {"id": "m", "name": "tasks.mail", "time_start": h.clock.t - 650, "acknowledged": True,
            "delivery_info": {"routing_key": "mail"}}  # fmt: skip
    late = {"id": "p", "name": "tasks.parse", "time_start": h.clock.t - 60,
            "acknowledged": False, "delivery_info": {"routing_key": "celery"}}  # fmt: skip
    monitor.running = {"celery@abc123": [mail, late]}
    monitor.reserved = {"celery@abc123": {"r1", "r2"}}
    unacked = FakeUnacked([Held("t-p", "p", "celery", 1.0), Held("t-r1", "r1", "celery", 2.0)])
    h.start(dry_run=True, monitor=monitor, unacked=unacked)
    make_stuck(h, start=200, samples=15)
    h.settle()
    [record] = h.audit("dry_run_restart")
    by_id = {t["id"]: t for t in record["hung"]}
    assert by_id["m"]["name"] == "tasks.mail" and by_id["m"]["comes_back"] is False
    assert by_id["m"]["running_for"] >= 650 and by_id["p"]["comes_back"] is True
    assert record["reserved"] == 2 and record["parked"] == ["p"]
    assert "hung in tasks.mail" in record["text"] and "1 task(s) lost" in record["text"]
    assert "2 reserved message(s) would come back" in record["text"]
    assert h.actuator.calls == ["lookup"] and monitor.asked == [["celery@abc123"]]
    assert unacked.restored == [] and unacked.parked == [] and len(unacked.entries) == 2


def test_health_stays_unhealthy_while_any_target_cannot_write_its_state(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of issue 25: the state error was the last save's, so another target's good save
    made health healthy while this one still refused its restarts."""
    import errno

    from supervisor import health
    from supervisor.runtime import lock, state_store

    real = state_store.write_atomic

    def only_w_fails(path: Any, data: bytes, durable: bool = True) -> None:
        if str(path).endswith("container%3Aw.json"):
            raise OSError(errno.EACCES, "Permission denied")
        real(path, data, durable)

    _three_policies(h)
    monkeypatch.setattr(state_store, "write_atomic", only_w_fails)
    d = h.start()
    make_stuck(h)  # w's restart is refused; a and b save fine at every change
    for name in ("w", "a", "b"):  # w's failing save first, then good ones
        d.save(d.supervised[name])
    d.write_heartbeat()
    with lock.Held(h.tmp / "state"):
        verdict = health.check(h.tmp / "state", h.clock.t)
    assert not verdict.healthy and "container%3Aw.json" in verdict.message


def test_a_newer_supervisors_shared_state_is_never_replaced_by_a_blank_one(h: Harness) -> None:
    """Review of issue 25: during a rolling upgrade the shared state of a newer supervisor
    (format 99) did not decode, was taken for none, and this one's blank history was then
    shared over it. Now it gives the lease back at once and stands by, saying why once."""
    store = FakeLeaseStore()
    store.holder = None
    newer = {"format": 99, "target": "container:w", "future": True}
    store.state = dict(newer)
    h.start(leases=Leases(9.0, "me/1", lambda broker: store))
    make_stuck(h)
    h.settle()
    assert store.state == newer and store.holder is None
    [lost] = h.audit("lease_lost")
    assert "newer supervisor" in lost["holder"]
    assert h.audit("restart") == [] and h.audit("standby")
