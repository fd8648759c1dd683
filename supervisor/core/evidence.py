"""What the workers being restarted were doing: the evidence a restart record keeps.

Taken from the same `reserved`/`active` answer the give-back uses (no extra wait): each task a
stopped worker was running, how long it had run, and whether its message can come back. With
Celery's early acknowledgement (the default) a running task's message was acknowledged when it
started, so the restart loses it for good; with `acks_late` it is still in kombu's `unacked`
hash and is given back. Celery says which in each request's `acknowledged`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supervisor import broker_url

ARGS_LIMIT = 200  # characters of a task's arguments kept, when the policy asks for them

Request = Mapping[str, Any]  # one request as Celery's remote control describes it


@dataclass(frozen=True)
class Holding:
    """The answers of the workers about to be restarted: per worker, its `active` and
    `reserved` requests; `silent`, the workers that did not answer one of the two."""

    active: Mapping[str, tuple[Request, ...]]
    reserved: Mapping[str, tuple[Request, ...]]
    silent: tuple[str, ...] = ()

    @property
    def ids(self) -> frozenset[str] | None:
        """The ids of every task they hold; None when one of them did not answer (then what
        it holds is unknown)."""
        if self.silent:
            return None
        return frozenset(
            str(r.get("id"))
            for answer in (self.active, self.reserved)
            for requests in answer.values()
            for r in requests
        )


@dataclass(frozen=True)
class HungTask:
    """A task a stopped worker was running when it was restarted."""

    name: str
    id: str
    worker: str
    queue: str | None
    running_for: float | None  # seconds since it started, when the worker said
    comes_back: bool  # acks_late: its message is in unacked and is given back (or parked)
    args: str | None = None  # only when the policy's record_args asks, cut and masked

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "worker": self.worker,
            "queue": self.queue,
            "running_for": self.running_for,
            "comes_back": self.comes_back,
        }
        if self.args is not None:
            out["args"] = self.args
        return out


def _args(request: Request) -> str:
    text = json.dumps(
        {"args": request.get("args"), "kwargs": request.get("kwargs")},
        default=repr,
        ensure_ascii=False,
    )
    text = broker_url.redact(text)
    return text if len(text) <= ARGS_LIMIT else text[: ARGS_LIMIT - 1] + "…"


def hung_tasks(holding: Holding, now: float, record_args: bool = False) -> tuple[HungTask, ...]:
    """The running tasks of `holding`, longest-running first."""
    out = []
    for worker, requests in sorted(holding.active.items()):
        for r in requests:
            started = r.get("time_start")
            delivery = r.get("delivery_info") or {}
            out.append(
                HungTask(
                    name=str(r.get("name") or r.get("type") or "?"),
                    id=str(r.get("id")),
                    worker=worker,
                    queue=delivery.get("routing_key") if isinstance(delivery, Mapping) else None,
                    running_for=(
                        round(max(0.0, now - float(started)), 1)
                        if isinstance(started, int | float)
                        else None
                    ),
                    comes_back=r.get("acknowledged") is False,
                    args=_args(r) if record_args else None,
                )
            )
    return tuple(sorted(out, key=lambda t: -(t.running_for or 0.0)))


def _for(seconds: float | None) -> str:
    if seconds is None:
        return "for an unknown time"
    if seconds < 120:
        return f"for {seconds:.0f} s"
    if seconds < 7200:
        return f"for {seconds / 60:.0f} min"
    return f"for {seconds / 3600:.1f} h"


def summary(tasks: Iterable[Mapping[str, Any]], silent: Iterable[str] = ()) -> str:
    """The sentence a notification carries: what hung, and what the restart cost."""
    tasks = list(tasks)
    parts = []
    if tasks:
        first = tasks[0]
        parts.append(
            f"hung in {first['name']} {_for(first.get('running_for'))} (id {first['id']})"
            + (f" and {len(tasks) - 1} more running" if len(tasks) > 1 else "")
        )
        lost = [t for t in tasks if not t.get("comes_back")]
        if lost:
            names = ", ".join(f"{t['name']} ({t['id']})" for t in lost)
            parts.append(f"{len(lost)} task(s) lost with the restart: {names}")
        else:
            parts.append("every running task's message comes back (acks_late)")
    silent = list(silent)
    if silent:
        parts.append(f"no answer from {', '.join(silent)}: what it ran is unknown")
    return "; ".join(parts)
