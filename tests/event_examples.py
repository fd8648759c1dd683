"""One example of every event class, with plausible facts: for the tests that must cover the
whole vocabulary (rendering, notifications, metrics)."""

from __future__ import annotations

from supervisor.core import events as ev
from supervisor.core.events import Event, EventKind, Why

WHY = Why(reason="depth 9 > 5", trigger="automatic", decided_at=100.0, depths=((99.0, 9),))


def examples(policy: str = "w", target: str = "w") -> dict[EventKind, Event]:
    p: dict[str, str] = {"policy": policy, "target": target}
    made: list[Event] = [
        ev.Started(policies=(policy,), pid=1),
        ev.StartRefused(problems=("w.toml: broker.url: port 'x' is not a port number",), pid=1),
        ev.Stopped(pid=1),
        ev.Reloaded(policies=(policy,)),
        ev.ReloadRefused(problems=("w.toml: name: bad",)),
        ev.InternalError(**p, where="tick", reason="depth 9 > 5"),
        ev.StateDiscarded(**p, reason="depth 9 > 5", kept_as="w.json.unusable-1"),
        ev.TriggerDiscarded(policy=policy, requested_at=1.0),
        ev.TriggerRefused(**p, reason="depth 9 > 5"),
        ev.Restarted(**p, why=WHY, outcome="done", method="cold", containers=(target,)),
        ev.RestartFailed(**p, why=WHY, outcome="failed", method="cold", error="gone"),
        ev.DryRunRestart(**p, dry_run=True, why=WHY, containers=(target,)),
        ev.Standby(**p, why=WHY, containers=(target,)),
        ev.RestartRefused(**p, why=WHY, refused_because="every container is another's"),
        ev.Quarantined(
            **p,
            tasks=(
                {
                    "name": "tasks.parse",
                    "id": "abc",
                    "worker": "celery@w",
                    "queue": "celery",
                    "running_for": 61.0,
                    "comes_back": True,
                },
            ),
            after=2,
            key="iti-supervisor:quarantine:container:w",
            reason="running at 2 hang restarts in a row",
        ),
        ev.Escalated(**p, why=WHY),
        ev.RestartResumed(**p, decided_at=100.0, trigger="manual", reason="depth 9 > 5"),
        ev.RestartCompleted(**p, started=(target,), running=(target,), reason="depth 9 > 5"),
        ev.StartErrorBegin(**p, reason="depth 9 > 5"),
        ev.Recovery(**p, depth=3, threshold=5, reason="depth 9 > 5"),
        ev.ConsumingAgain(
            **p,
            after_decision=31.2,
            after_restart=30.9,
            restart_seconds=0.3,
            evidence="a task started (42 -> 43 started tasks)",
        ),
        ev.TargetChanged(**p, old_target="container:old"),
        ev.TargetConflict(**p, containers={target: "other"}),
        ev.CannotJudge(**p, reason="no container matches container = w"),
        ev.Judging(**p, reason="no container matches container = w"),
        ev.ProgressUnknown(**p, reason="no heartbeat"),
        ev.ProgressKnown(**p, source="heartbeats", seconds=3.0),
        ev.NoConsumer(**p, queues=("mail",), broker="redis://h/0"),
        ev.NoBindings(**p, queues=("mail",), broker="redis://h/0"),
        ev.QueuesChanged(**p, queues=("a", "b"), previous=("a",)),
        ev.SampleErrorBegin(**p, reason="refused"),
        ev.SampleErrorEnd(**p, reason="refused", seconds=2.0),
        ev.DockerErrorBegin(reason="refused"),
        ev.DockerErrorEnd(reason="refused", seconds=2.0),
        ev.LeaseErrorBegin(**p, reason="refused"),
        ev.LeaseErrorEnd(**p, reason="refused", seconds=2.0),
        ev.LeaseAcquired(**p, holder="me", previous="you"),
        ev.LeaseLost(**p, holder="you"),
    ]
    return {e.kind: e for e in made}
