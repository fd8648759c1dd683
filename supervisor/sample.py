"""One observation of a supervised worker's queues, as the probe took it and the engine reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerFacts:
    """What one Celery worker said of itself while it answered remote control."""

    worker: str  # its node name, celery@HOST
    pool: str | None = None  # prefork, threads, gevent, eventlet, solo, or Celery's class path
    concurrency: int | None = None
    result_backend: bool | None = None  # None: not known
    acks_late: bool | None = None
    version: str | None = None  # Celery's version (heartbeats: sw_ver)
    queues: tuple[str, ...] | None = None
    t: float = 0.0  # when it was last learnt (epoch seconds)

    @property
    def pool_name(self) -> str | None:
        """`celery.concurrency.thread:TaskPool` -> `threads`, `...gevent:TaskPool` -> `gevent`."""
        if self.pool is None:
            return None
        text = self.pool.lower()
        for name, marks in _POOLS:
            if any(m in text for m in marks):
                return name
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "worker": self.worker,
            "pool": self.pool,
            "concurrency": self.concurrency,
            "result_backend": self.result_backend,
            "acks_late": self.acks_late,
            "version": self.version,
            "queues": None if self.queues is None else list(self.queues),
            "t": self.t,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> WorkerFacts:
        def opt(key: str, kind: type) -> object:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"worker fact {key!r}: expected {kind.__name__}, got {value!r}")
            return value

        queues = data.get("queues")
        if queues is not None and not (
            isinstance(queues, list) and all(isinstance(q, str) for q in queues)
        ):
            raise ValueError(f"worker fact 'queues': expected a list of names, got {queues!r}")
        worker = data.get("worker")
        if not isinstance(worker, str) or not worker:
            raise ValueError(f"worker fact 'worker': expected a node name, got {worker!r}")
        t = data.get("t", 0.0)
        if not isinstance(t, int | float):
            raise ValueError(f"worker fact 't': expected a time, got {t!r}")
        return cls(
            worker,
            opt("pool", str),  # type: ignore[arg-type]
            opt("concurrency", int),  # type: ignore[arg-type]
            opt("result_backend", bool),  # type: ignore[arg-type]
            opt("acks_late", bool),  # type: ignore[arg-type]
            opt("version", str),  # type: ignore[arg-type]
            None if queues is None else tuple(queues),
            float(t),
        )


_POOLS = (
    ("threads", ("thread",)),
    ("gevent", ("gevent",)),
    ("eventlet", ("eventlet",)),
    ("solo", ("solo",)),
    ("prefork", ("prefork", "processes")),
)


@dataclass(frozen=True)
class Replica:
    """One container of the target and the Celery worker it runs, with that worker's progress."""

    container: str
    worker: str
    processed: int | None  # None: it sends no heartbeat and does not answer now
    source: str | None = None


@dataclass(frozen=True)
class Running:
    """One task a worker said it runs (remote control `active`)."""

    name: str
    id: str
    started: float | None  # on the samples' clock: Celery's time_start moved into it


@dataclass(frozen=True)
class Answer:
    """A worker's own answer to `active`, `reserved` and `scheduled` (asked at once), taken at
    `t`; `silent`: it gave none within the bounded wait."""

    t: float
    active: tuple[Running, ...] = ()
    reserved: int = 0
    scheduled: int = 0  # ETA and countdown tasks it holds
    silent: bool = False

    @property
    def holds_back(self) -> bool:
        """Reserved or scheduled messages: the worker is waiting on purpose (a full prefetch,
        ETA tasks up to worker_eta_task_limit, rate-limited tasks), not stuck."""
        return not self.silent and (self.reserved > 0 or self.scheduled > 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "active": [[r.name, r.id, r.started] for r in self.active],
            "reserved": self.reserved,
            "scheduled": self.scheduled,
            "silent": self.silent,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Answer:
        return cls(
            float(data["t"]),
            tuple(
                Running(str(n), str(i), None if s is None else float(s))
                for n, i, s in data.get("active", ())
            ),
            int(data.get("reserved", 0)),
            int(data.get("scheduled", 0)),
            bool(data.get("silent", False)),
        )


@dataclass(frozen=True)
class Load:
    """One live worker of the target as its heartbeats describe it now: what the rules that
    find a stuck worker at any depth read (core/idle.py, core/hung.py). A worker is in the
    sample only while it is alive (fresh heartbeats or remote-control answers)."""

    worker: str
    concurrency: int | None  # its slots (`stats`, learnt as WorkerFacts.concurrency)
    active: int | None  # tasks it runs now (heartbeats' `active`)
    processed: int | None  # tasks it started (heartbeats' `processed`, or `stats`)
    # The queues it consumes; None: not known yet (it is the target's by its container, so the
    # watched queues are taken as its own).
    queues: tuple[str, ...] | None = None
    pool: str | None = None
    time_limit: float | None = None  # Celery's task_time_limit, when it told (`conf`)
    answer: Answer | None = None  # its answer, when the rules asked for one
    # Tasks whose own time_limit (the task's attribute or an annotation) it told (`registered`),
    # by task name: these win over task_time_limit, as in Celery.
    task_limits: tuple[tuple[str, float], ...] = ()
    # Tasks Celery rate-limits on it, with the seconds between two starts ("*": every task,
    # task_default_rate_limit): it holds their messages, unseen by `reserved`, until their turn.
    rate_limits: tuple[tuple[str, float], ...] = ()
    container: str | None = None  # the target's container it runs in, when mapped
    # Its Celery limits were told (`conf` and `registered` both replied): until then a rate
    # limit it may hold messages for is not known, and the idle rule does not judge it.
    limits_known: bool = True

    @property
    def slowest_rate(self) -> float:
        """The longest a rate-limited task it holds may wait for its turn (0: none)."""
        return max((every for _, every in self.rate_limits), default=0.0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "worker": self.worker,
            "concurrency": self.concurrency,
            "active": self.active,
            "processed": self.processed,
            "queues": None if self.queues is None else list(self.queues),
        }
        if self.pool is not None:
            out["pool"] = self.pool
        if self.time_limit is not None:
            out["time_limit"] = self.time_limit
        if self.answer is not None:
            out["answer"] = self.answer.to_json()
        if self.task_limits:
            out["task_limits"] = dict(self.task_limits)
        if self.rate_limits:
            out["rate_limits"] = dict(self.rate_limits)
        if self.container is not None:
            out["container"] = self.container
        if not self.limits_known:
            out["limits_known"] = False
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Load:
        def count(key: str) -> int | None:
            value = data.get(key)
            return None if value is None else int(value)

        queues = data.get("queues")
        answer = data.get("answer")
        limit = data.get("time_limit")
        return cls(
            str(data["worker"]),
            count("concurrency"),
            count("active"),
            count("processed"),
            None if queues is None else tuple(str(q) for q in queues),
            None if data.get("pool") is None else str(data["pool"]),
            None if limit is None else float(limit),
            None if answer is None else Answer.from_json(answer),
            tuple(sorted((str(k), float(v)) for k, v in (data.get("task_limits") or {}).items())),
            tuple(sorted((str(k), float(v)) for k, v in (data.get("rate_limits") or {}).items())),
            None if data.get("container") is None else str(data["container"]),
            bool(data.get("limits_known", True)),
        )


@dataclass(frozen=True)
class Sample:
    """A sample at time `t` (epoch seconds); `depth is None` means it failed, `error` says why."""

    t: float
    depth: int | None
    queues: Mapping[str, int] = field(default_factory=dict)
    unacked: int | None = None
    oldest_unacked_age: float | None = None
    processed: int | None = None
    error: str | None = None
    progress_source: str | None = None  # where `processed` came from: heartbeats, remote control
    progress_unknown: str | None = None  # why `processed` is not known, when it is not
    unbound: tuple[str, ...] = ()  # queues with no kombu binding on this database
    unconsumed: tuple[str, ...] | None = None  # queues no live worker consumes (None: unknown)
    replicas: tuple[Replica, ...] = ()  # the target's containers mapped to their workers
    # The target's containers as last read from Docker (None: not yet), and the live workers
    # that consume or may consume the watched queues (None: no progress monitor).
    containers: tuple[str, ...] | None = None
    consumers: tuple[str, ...] | None = None
    facts: tuple[WorkerFacts, ...] = ()  # what the target's workers said of themselves
    # Why the target's containers cannot be found now (None: found, or not read yet).
    target_error: str | None = None
    # The target's live workers, for the rules that find a stuck worker at any depth.
    loads: tuple[Load, ...] = ()
    # Per watched queue, an id of the head message of each of its non-empty lists (kombu's
    # next message is the list's tail); None: not read.
    heads: Mapping[str, tuple[str, ...]] | None = None

    @property
    def ok(self) -> bool:
        return self.depth is not None

    @classmethod
    def failed(cls, t: float, error: str) -> Sample:
        return cls(t=t, depth=None, error=error)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "ok": self.ok,
            "depth": self.depth,
            "queues": dict(self.queues),
            "unacked": self.unacked,
            "oldest_unacked_age": self.oldest_unacked_age,
            "processed": self.processed,
            "progress_source": self.progress_source,
            "progress_unknown": self.progress_unknown,
            "unbound": list(self.unbound),
            "unconsumed": None if self.unconsumed is None else list(self.unconsumed),
            "error": self.error,
        }


@dataclass(frozen=True)
class Progress:
    """Tasks started by the live workers of some queues, or why that is not known."""

    processed: int | None
    source: str | None = None  # heartbeats, remote control, or both
    unknown: str | None = None  # why it is not known (None when it is)
    # Queues that no live worker consumes: None when that cannot be told (a live worker whose
    # queues are not known yet, or no worker seen at all on the broker).
    unconsumed: tuple[str, ...] | None = None
