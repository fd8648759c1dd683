"""A simulated hang, for the figures of issue 26 and their tests: the samples a supervisor takes
of a worker hung at t = 0 while messages keep arriving, driven through the tracker exactly as
`replay` does (core/replay.py), the worker answering when the rules ask. Pure: no Redis, no
Docker. `bench/hang_to_decision.py` prints its table; tests/test_stalls.py checks it.
"""

from __future__ import annotations

from collections.abc import Iterator

from supervisor.core import replay
from supervisor.policy import Policy
from supervisor.sample import Answer, Load, Running, Sample

WORKER = "celery@hung"
SLOTS = 4
RATES = (("1 a second", 1.0), ("1 a minute", 60.0), ("1 every 10 minutes", 600.0))
TASK = "tasks.mail_invite_member_task.send_invite_member_mail_task"


def samples(
    policy: Policy, every: float, kind: str, until: float, asked: list[bool]
) -> Iterator[Sample]:
    """The samples of a worker hung at 0, messages arriving one per `every` seconds; the
    rules' asks (`asked[0]`, set by the caller) are answered on the next sample, as the daemon
    does."""
    interval = policy.detect.interval
    queue = "mail"
    t = interval * 0.5
    while t <= until:
        depth = int(t // every)
        active = SLOTS if kind == "hung" else 0
        answer = None
        if asked[0]:
            running = tuple(Running(TASK, f"id-{i}", 0.0) for i in range(active))
            answer = Answer(t - interval / 2, running)
        load = Load(WORKER, SLOTS, active, 1000, (queue,), "gevent", None, answer)
        yield Sample(
            t,
            depth,
            queues={queue: depth},
            processed=1000,
            progress_source="heartbeats",
            loads=(load,),
            heads={queue: ("m1",) if depth else ()},
        )
        t += interval


def decision_at(policy: Policy, every: float, kind: str, until: float = 30 * 3600) -> float | None:
    """When the first restart is decided, in seconds after the hang (None: not by `until`)."""
    asked = [False]
    for step in replay.replay(policy, samples(policy, every, kind, until, asked)):
        asked[0] = bool(step.decision and step.decision.stalls.asks)
        if any(a.kind.value == "restart" for a in step.actions):
            return step.sample.t
    return None


def chapter_only(policy: Policy) -> Policy:
    detect = policy.detect.model_copy(
        update={"idle_window": None, "max_task_runtime": None, "task_runtime": {}}
    )
    return policy.model_copy(update={"detect": detect})


def table(policy: Policy) -> list[tuple[str, float | None, float | None, float | None]]:
    rows = []
    for label, every in RATES:
        rows.append(
            (
                label,
                decision_at(chapter_only(policy), every, "idle"),
                decision_at(policy, every, "idle"),
                decision_at(policy, every, "hung"),
            )
        )
    return rows
