"""What a restart touches, decided in full before the executor makes a single call.

The tracker hands the executor a `Plan` inside its `Restart` command: the containers to stop,
the Celery workers running in them (the only ones asked what they hold), whether any other live
worker consumes the watched queues (sibling replicas that are not restarted included), the
queues, and whether to try Celery's cold shutdown (SIGQUIT) before the SIGKILL. The executor
carries it out and decides nothing; every rule here is a pure function (docs/design.md).

What a worker said while it answered (`WorkerFacts`: pool, concurrency, result backend,
`acks_late`, Celery version, queues) is kept per worker, across the supervisor's reconnects and
restarts, because a hung worker is asked at the worst moment and may not answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from supervisor.sample import WorkerFacts

KEEP_FACTS = 32  # workers remembered per target: replicas come and go with their containers


def learn(known: tuple[WorkerFacts, ...], heard: Iterable[WorkerFacts]) -> tuple[WorkerFacts, ...]:
    """`known` updated with what was heard now: a fact a worker did not repeat is kept (a
    worker that stops answering keeps what it said), the newest `KEEP_FACTS` workers stay."""
    by_worker = {f.worker: f for f in known}
    for fresh in heard:
        old = by_worker.get(fresh.worker)
        new = fresh
        if old is not None:
            new = WorkerFacts(
                new.worker,
                new.pool if new.pool is not None else old.pool,
                new.concurrency if new.concurrency is not None else old.concurrency,
                new.result_backend if new.result_backend is not None else old.result_backend,
                new.acks_late if new.acks_late is not None else old.acks_late,
                new.version if new.version is not None else old.version,
                new.queues if new.queues is not None else old.queues,
                max(new.t, old.t),
            )
        by_worker[new.worker] = new
    newest = sorted(by_worker.values(), key=lambda f: (-f.t, f.worker))[:KEEP_FACTS]
    return tuple(sorted(newest, key=lambda f: f.worker))


@dataclass(frozen=True)
class ColdShutdown:
    """Whether to send SIGQUIT before the SIGKILL, and why (the audit says it)."""

    sigquit: bool
    why: str


# Measured by bench/sigquit_matrix.py (docs/design.md, "What SIGQUIT does"): where Celery's cold
# shutdown is known to fail, a SIGQUIT only costs stop_timeout before the SIGKILL, or worse.
def _breaks(facts: WorkerFacts) -> str | None:
    pool = facts.pool_name
    if pool == "threads":
        return "the threads pool cannot cold-shut-down (NotImplementedError: kill_job) and stays up"
    if pool in ("gevent", "eventlet") and facts.result_backend:
        return (
            f"a {pool} pool with a result backend breaks on a cold shutdown "
            "(BlockingSwitchOutError) and may drop reserved messages"
        )
    return None


def cold_shutdown(workers: Iterable[str], known: Iterable[WorkerFacts]) -> ColdShutdown:
    """SIGQUIT unless the workers' cold shutdown is known to break. The facts of the workers
    being stopped decide; when none of theirs is known, those of any worker the target ran
    (replicas and earlier runs of one image share a configuration); when nothing is known at
    all, SIGQUIT and the SIGKILL after stop_timeout, Celery's own way to stop."""
    facts = {f.worker: f for f in known}
    own = [facts[w] for w in workers if w in facts and facts[w].pool is not None]
    chosen = own or [f for f in facts.values() if f.pool is not None]
    for f in chosen:
        why = _breaks(f)
        if why is not None:
            whose = f.worker if own else f"{f.worker}, as learnt earlier"
            return ColdShutdown(False, f"no SIGQUIT: {why} ({whose})")
    if not chosen:
        return ColdShutdown(True, "SIGQUIT: nothing is known of the worker's pool yet")
    pools = sorted({f.pool_name or "?" for f in chosen})
    return ColdShutdown(True, f"SIGQUIT: a cold shutdown works on the {', '.join(pools)} pool")


@dataclass(frozen=True)
class View:
    """What the supervisor saw of the target on its last sample: its containers, the worker
    running in each, and the live workers that consume the watched queues."""

    containers: tuple[str, ...] | None = None  # None: not read from Docker yet
    workers: tuple[tuple[str, str], ...] = ()  # (worker, container) for the mapped ones
    # Live workers (fresh heartbeat or a remote-control binding) that consume, or may consume
    # (queues not known), any watched queue. None: no progress monitor, cannot be told.
    consumers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Plan:
    """A restart, complete: the executor touches exactly these containers."""

    containers: tuple[str, ...]  # empty only when the target's containers were never read
    workers: tuple[str, ...]  # their Celery workers: the only ones asked what they hold
    others_consume: bool  # a live worker outside `workers` consumes the queues
    queues: tuple[str, ...]
    cold: ColdShutdown = ColdShutdown(True, "SIGQUIT")
    # (worker, container) for each of `workers`: what each container's own workers hold is
    # given back for it, never a sibling's (core/unacked.py).
    placement: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "containers": list(self.containers) or None,
            "workers": list(self.workers),
            "others_consume": self.others_consume,
            "queues": list(self.queues),
            "sigquit": self.cold.sigquit,
            "sigquit_why": self.cold.why,
        }


def restart_plan(
    chosen: tuple[str, ...],
    view: View,
    queues: tuple[str, ...],
    known: Iterable[WorkerFacts] = (),
) -> Plan:
    """The plan of a restart of `chosen` replicas (empty: the whole target as last seen).

    Only the stopped containers' workers are asked what they hold, so a healthy sibling's
    reserved messages are never given back; a live worker outside them that consumes the queues
    (a sibling replica, another service) means only what the stopped ones reported is theirs.
    Without a monitor nobody can be told apart, so nothing unreported is taken as theirs.
    A chosen replica the view does not hold (another policy's container) is left out."""
    if view.containers is None:
        containers = chosen
    else:
        containers = tuple(c for c in chosen if c in view.containers) if chosen else view.containers
    stopped = set(containers)
    workers = tuple(sorted(w for w, c in view.workers if c in stopped))
    # Unknown consumers count as others: then only what the stopped workers reported is theirs.
    others = view.consumers is None or any(w not in workers for w in view.consumers)
    placement = tuple(sorted((w, c) for w, c in view.workers if c in stopped))
    return Plan(containers, workers, others, queues, cold_shutdown(workers, known), placement)
