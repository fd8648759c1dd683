"""What a plot of a policy's decisions shows, as data: the depth over time, the threshold, the
stuck runs, and a marker for each restart, dry-run restart, failed restart and escalation with
its reason. Built from a replay or from a state directory (history and audit); drawn by
`supervisor.plot`. Pure: no matplotlib here, so the tests check what is drawn, not pixels.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.core.detector import Verdict
from supervisor.core.engine import ActionKind
from supervisor.core.events import EventKind
from supervisor.core.evidence import summary
from supervisor.core.replay import ReplayStep
from supervisor.trace import Row


class Mark(enum.Enum):
    """The kinds of marker, named as the audit names their events."""

    RESTART = EventKind.RESTART.value
    DRY_RUN_RESTART = EventKind.DRY_RUN_RESTART.value
    RESTART_FAILED = EventKind.RESTART_FAILED.value
    ESCALATE = EventKind.ESCALATE.value


@dataclass(frozen=True)
class Marker:
    t: float
    mark: Mark
    reason: str
    depth: int | None = None
    hung: str = ""  # a restart's: what the stopped workers were running (core/evidence.py)


@dataclass(frozen=True)
class Picture:
    title: str
    points: tuple[tuple[float, int | None], ...]  # (t, depth); None: a failed sample
    thresholds: tuple[tuple[float, int], ...]  # (t, threshold): it may change on reload
    stuck: tuple[tuple[float, float], ...]  # [start, end] of each run judged stuck
    markers: tuple[Marker, ...]
    wall_clock: bool  # t is Unix time (a state directory), not a trace's own seconds


def spans(flags: Iterable[tuple[float, bool]]) -> tuple[tuple[float, float], ...]:
    """The periods judged stuck: each from its first stuck sample until the next sample that
    is not (a verdict holds until the next one), or the last sample."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    last = 0.0
    for t, flag in flags:
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            out.append((start, t))
            start = None
        last = t
    if start is not None:
        out.append((start, last))
    return tuple(out)


def from_replay(name: str, threshold: int, steps: Sequence[ReplayStep]) -> Picture:
    """A replay: the samples, the verdicts of replay's own decisions, and its actions."""
    kinds = {ActionKind.RESTART: Mark.RESTART, ActionKind.ESCALATE: Mark.ESCALATE}
    return Picture(
        title=name,
        points=tuple((s.sample.t, s.sample.depth if s.sample.ok else None) for s in steps),
        thresholds=tuple((s.sample.t, threshold) for s in (steps[0], steps[-1])) if steps else (),
        stuck=spans(
            (s.sample.t, s.decision is not None and s.decision.diagnosis.verdict is Verdict.STUCK)
            for s in steps
        ),
        markers=tuple(
            Marker(a.t, kinds[a.kind], a.reason, a.depth) for s in steps for a in s.actions
        ),
        wall_clock=False,
    )


_AUDITED = {m.value: m for m in Mark}


def markers_from_audit(policy: str, records: Iterable[Mapping[str, Any]]) -> tuple[Marker, ...]:
    """The policy's restart, dry-run restart, failed restart and escalation records, at the
    time they were decided."""
    out = []
    for r in records:
        mark = _AUDITED.get(str(r.get("event")))
        if mark is None or r.get("policy") != policy:
            continue
        t = r.get("decided_at", r.get("t"))
        if not isinstance(t, int | float):
            continue
        depth = r.get("depth")
        reason = str(r.get("reason") or r.get("error") or r.get("text") or "")
        if mark is Mark.RESTART_FAILED and r.get("error"):
            reason = f"{r.get('reason', '')} (failed: {r['error']})".strip()
        hung = summary(r.get("hung") or (), r.get("silent") or ()) if r.get("hung") else ""
        out.append(Marker(float(t), mark, reason, depth if isinstance(depth, int) else None, hung))
    return tuple(sorted(out, key=lambda m: m.t))


def from_history(policy: str, rows: Sequence[Row], records: Iterable[Mapping[str, Any]]) -> Picture:
    """A state directory: the history the daemon recorded and the audit's decisions."""
    return Picture(
        title=policy,
        points=tuple((r.sample.t, r.sample.depth if r.sample.ok else None) for r in rows),
        thresholds=tuple((r.sample.t, r.threshold) for r in rows if r.threshold is not None),
        stuck=spans((r.sample.t, bool(r.stuck)) for r in rows),
        markers=markers_from_audit(policy, records),
        wall_clock=True,
    )
