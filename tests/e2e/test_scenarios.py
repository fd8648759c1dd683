"""End to end: a real Celery worker in a container of a real Docker engine, a real redis-server,
and `supervisor run` as its own process. Policies are time-scaled: interval 0.5 s, window 5 s,
threshold 5."""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from harness.parts import (
    SupervisorProcess,
    Webhook,
    queue_state,
    ran_twice,
)
from harness.services import free_port
from tests.e2e.stack import Stack

pytestmark = pytest.mark.e2e


def restarts(sup: SupervisorProcess) -> list[dict[str, Any]]:
    return sup.events("restart")


def test_1_hung_worker_is_restarted_once_and_the_backlog_drains(stack: Stack) -> None:
    before = stack.worker.started_at()
    sup = stack.supervise([stack.policy()])
    stack.poison()
    producer = stack.produce(per_second=4)
    [record] = sup.wait_for(lambda: restarts(sup), 60, "a restart")
    assert record["outcome"] == "done" and record["trigger"] == "automatic"
    assert record["method"] == "cold"
    assert "worker progress stuck" in record["reason"]
    assert len(record["depths"]) >= 5 and record["depths"][-1][1] > 5
    time.sleep(3)  # the producer goes on for a while after the restart
    producer.stop()
    depth, unacked = stack.wait_drained()
    assert (depth, unacked) == (0, 0)
    assert stack.worker.started_at() != before
    assert stack.done() == set(producer.sent)  # every task but the poison one completed
    assert not ran_twice(stack.redis.client())
    time.sleep(2)
    assert len(restarts(sup)) == 1


def test_2_busy_worker_with_a_growing_backlog_is_never_restarted(stack: Stack) -> None:
    before = stack.worker.started_at()
    sup = stack.supervise([stack.policy()])
    sup.wait_progress_known()  # the supervisor hears the worker's heartbeats
    producer = stack.produce(per_second=8, work_seconds=0.25)  # consumer does about 4/s
    time.sleep(18)
    depth, _ = queue_state(stack.url)
    producer.stop()
    assert depth > 20, "the backlog should be over the threshold and growing"
    assert restarts(sup) == [] and sup.events("dry_run_restart") == []
    assert stack.worker.started_at() == before


def test_3_dry_run_changes_nothing_and_audits_the_restart_it_would_make(
    stack: Stack, webhook: Webhook
) -> None:
    hook = webhook
    before = stack.worker.started_at()
    sup = stack.supervise(
        [stack.policy()], dry_run=True, env={"SUPERVISOR_NOTIFY_URLS": hook.form_url}
    )
    stack.poison()
    stack.produce(per_second=4)
    [record] = sup.wait_for(lambda: sup.events("dry_run_restart"), 60, "a dry-run restart")
    assert record["outcome"] == "dry_run"
    assert record["containers"] == [stack.worker.name]
    # Issue 27: what a live restart would cost, as the worker itself said it.
    hung = {t["name"]: t for t in record["hung"]}
    assert "tasks.poison" in hung, record
    assert hung["tasks.poison"]["running_for"] > 0, record
    assert hung["tasks.poison"]["comes_back"] is False, record  # acknowledged early: lost
    assert "hung in tasks.poison" in record["text"], record["text"]
    print(f"dry-run record: {record['text']!r}; hung {record['hung']}")  # the note's figure
    time.sleep(2)
    assert restarts(sup) == []
    assert stack.worker.started_at() == before and stack.worker.running()
    assert sup.events("start")[0]["dry_run"] is True
    notices = hook.received
    assert (
        notices
        and notices[0]["dry_run"] == "true"
        and "DRY-RUN would restart" in notices[0]["message"]
    )


def test_4_sigusr1_and_trigger_restart_at_once_and_are_audited_as_manual(stack: Stack) -> None:
    sup = stack.supervise([stack.policy()])
    before = stack.worker.started_at()
    sup.signal(signal.SIGUSR1)
    [first] = sup.wait_for(lambda: restarts(sup), 30, "manual restart by SIGUSR1")
    assert first["trigger"] == "manual" and first["outcome"] == "done"
    middle = stack.worker.started_at()
    assert middle != before
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "trigger",
            "worker",
            "--state-dir",
            str(sup.state_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "restart policy 'worker' now" in out.stdout
    records = sup.wait_for(lambda: len(restarts(sup)) == 2 and restarts(sup), 30, "trigger")
    assert records[1]["trigger"] == "manual" and records[1]["outcome"] == "done"
    assert stack.worker.started_at() != middle
    nobody = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "trigger",
            "nobody",
            "--state-dir",
            str(sup.state_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert nobody.returncode == 2
    assert "no policy named 'nobody'" in nobody.stderr and "runs worker" in nobody.stderr
    time.sleep(1)
    assert len(restarts(sup)) == 2 and not list((sup.state_dir / "triggers").glob("*"))


def test_5_a_supervisor_killed_in_cooldown_keeps_the_cooldown(stack: Stack) -> None:
    cooldown = 20
    policy = stack.policy(restart={"cooldown": cooldown, "backoff_initial": cooldown})
    sup = stack.supervise([policy])
    stack.poison()
    stack.produce(per_second=4)
    [first] = sup.wait_for(lambda: restarts(sup), 60, "first restart")
    stack.poison()  # the worker hangs again at once
    sup.proc.kill()
    sup.proc.wait()
    again = stack.supervise([policy])
    second = again.wait_for(
        lambda: len(restarts(again)) >= 2 and restarts(again)[1], 60, "restart after cooldown"
    )
    assert second["decided_at"] - first["decided_at"] >= cooldown
    assert second["streak"] == 2  # the restored history knew the first restart


def test_6_acks_late_poison_follows_backoff_stops_at_budget_and_escalates(stack: Stack) -> None:
    policy = stack.policy(
        restart={
            "cooldown": 2,
            "backoff_initial": 4,
            "backoff_factor": 2.0,
            "backoff_max": 8,
            "max_restarts": 3,
            "budget_window": 300,
            "reset_after": 300,
        }
    )
    sup = stack.supervise([policy])
    stack.poison("tasks.poison_late")
    stack.produce(per_second=4)
    [escalation] = sup.wait_for(lambda: sup.events("escalate"), 120, "an escalation")
    done = restarts(sup)
    assert [r["streak"] for r in done] == [1, 2, 3]
    assert all(r["outcome"] == "done" for r in done)
    gaps = [b["decided_at"] - a["decided_at"] for a, b in itertools.pairwise(done)]
    assert gaps[0] >= 4 and gaps[1] >= 8  # backoff 4 s, then 8 s
    assert "budget" in escalation["reason"]
    assert int(stack.redis.client().get("test:poison_started") or 0) >= 3  # it came back
    time.sleep(6)
    assert len(restarts(sup)) == 3 and len(sup.events("escalate")) == 1
    depth, _ = queue_state(stack.url)
    print(
        f"poison without quarantine: 3 restarts then an escalation; queue not drained "
        f"({depth} waiting, the worker hung again), {len(stack.done())} tasks completed"
    )


def test_7_redis_outage_is_audited_decides_nothing_and_sampling_resumes(stack: Stack) -> None:
    sup = stack.supervise([stack.policy()])
    sup.wait_sampled()
    stack.redis.stop()
    sup.wait_for(lambda: sup.events("sample_error_begin"), 30, "outage begins")
    time.sleep(4)
    assert sup.proc.poll() is None
    stack.redis.start()
    [end] = sup.wait_for(lambda: sup.events("sample_error_end"), 30, "outage ends")
    assert end["seconds"] >= 4
    assert "ConnectionError" in sup.events("sample_error_begin")[0]["reason"]
    assert len(sup.events("sample_error_begin")) == 1  # logged once, not per tick
    assert restarts(sup) == []
    assert sup.stop() == 0


def test_8_metrics_and_notifications_follow_a_real_restart_and_recovery(stack: Stack) -> None:
    hook = Webhook()
    port = free_port()
    try:
        sup = stack.supervise(
            [stack.policy()],
            env={"SUPERVISOR_WEBHOOK_URL": hook.url, "SUPERVISOR_METRICS_PORT": str(port)},
        )

        def metrics() -> str:
            url = f"http://127.0.0.1:{port}/metrics"
            return str(urllib.request.urlopen(url, timeout=5).read().decode())

        stack.poison()
        producer = stack.produce(per_second=4)
        seen_stuck = sup.wait_for(
            lambda: 'iti_supervisor_stuck{policy="worker"} 1.0' in metrics(), 60, "stuck = 1"
        )
        assert seen_stuck
        sup.wait_for(lambda: restarts(sup), 60, "restart")
        producer.stop()
        events = sup.wait_for(
            lambda: (
                [n["event"] for n in hook.received] == ["restart", "recovery"] and hook.received
            ),
            60,
            "restart and recovery notices",
        )
        # SUPERVISOR_WEBHOOK_URL, from before Apprise, still works: Apprise's json:// payload
        assert "restarted iti-test-worker" in events[0]["message"]
        assert events[0]["dry_run"] == "false" and events[0]["type"] == "warning"
        assert "back under 5" in events[1]["message"] and events[1]["type"] == "success"
        text = metrics()
        assert (
            'iti_supervisor_restarts_total{outcome="done",policy="worker",trigger="automatic"} 1.0'
            in text
        )
        assert 'iti_supervisor_stuck{policy="worker"} 0.0' in text
        # the restarted worker's heartbeats make its progress known again
        sup.wait_for(
            lambda: 'iti_supervisor_worker_started_tasks{policy="worker"}' in metrics(),
            30,
            "progress metric",
        )
        assert sup.events("recovery")
    finally:
        hook.close()
