"""`supervisor status`: a one-shot view for a person at a terminal, or as one JSON document.

Built from what exists whether or not the daemon runs: a live sample from Redis, the persisted
restart history, and the audit log. When the daemon runs, its heartbeat adds the recent trend
and its latest verdict with the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor import health
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.broker_url import redact
from supervisor.clock import Here
from supervisor.core import governor, tracker
from supervisor.core.evidence import summary
from supervisor.core.governor import GovernorState
from supervisor.durations import format_duration
from supervisor.errors import StateError
from supervisor.policy import Policy
from supervisor.runtime import heartbeat
from supervisor.runtime.heartbeat import Heartbeat, PolicyBeat
from supervisor.runtime.state_store import StateStore
from supervisor.sinks.audit import AUDIT_FILE

SPARKS = "▁▂▃▄▅▆▇█"
AUDIT_TAIL_BYTES = 512 * 1024


def sparkline(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1
    return "".join(
        "·" if v is None else SPARKS[round((v - low) / span * (len(SPARKS) - 1))] for v in values
    )


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def audit_tail(path: Path, policy: str, count: int) -> list[dict[str, Any]]:
    """The last `count` audit records about `policy`, reading only the end of a long log."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - AUDIT_TAIL_BYTES))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    if size > AUDIT_TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    found: list[dict[str, Any]] = []
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("policy") == policy:
            found.append(record)
            if len(found) == count:
                break
    return list(reversed(found))


def gather(
    policies: list[Policy], state_dir: Path, here: Here, audit_records: int = 5
) -> dict[str, Any]:
    """`here`: a reading of a stepless clock (supervisor/clock.py); the state files' times are
    brought onto it, so "next restart in" is what the daemon's own clock says, whatever the
    wall clock did since."""
    now = here.now
    alive = health.check(state_dir, here.wall)
    beat: Heartbeat | None = None
    if alive.healthy:
        try:
            beat = heartbeat.read(state_dir)
        except heartbeat.HeartbeatError:
            beat = None
    # on `here`'s clock; what the daemon counts (a dry run's own files when it is one)
    store = StateStore(state_dir, lambda: here, dry_run=bool(beat and beat.dry_run))
    out: dict[str, Any] = {
        "time": _iso(now),
        "supervisor": {
            "running": beat is not None,
            "health": alive.message,
            "pid": beat.pid if beat else None,
            "dry_run": beat.dry_run if beat else None,
            "state_dir": str(state_dir),
        },
        "policies": [],
    }
    for policy in policies:
        live = beat.policies.get(policy.name) if beat else None
        out["policies"].append(
            _policy_status(
                policy, store, live=live, state_dir=state_dir, now=now, audit_records=audit_records
            )
        )
    return out


def _policy_status(
    policy: Policy,
    store: StateStore,
    *,
    live: PolicyBeat | None,
    state_dir: Path,
    now: float,
    audit_records: int,
) -> dict[str, Any]:
    state_error = None
    history = GovernorState()
    unfinished = None
    try:
        stored = store.peek(policy.target.key, policy.name)
    except StateError as exc:
        state_error = str(exc)
        stored = None
    probe = RedisProbe(policy.broker)
    try:  # the queues the daemon watches: listed, and discovered as the state file keeps them
        sample = probe.sample(tracker.watched_of(policy, stored.discovered if stored else ()))
    finally:
        probe.close()
    if stored is not None and stored.target in (None, policy.target.key):
        history = stored.history
        if stored.intent is not None:
            unfinished = f"{stored.intent.trigger.value} restart decided at {_iso(stored.intent.t)}"
    r = policy.restart
    in_window = governor.in_budget_window(history, r, now)
    at = governor.allowed_at(history, r, now)
    trend = list(live.trend) if live else []
    # One read of the audit's end: the last records, and the last restart's evidence.
    tail = audit_tail(state_dir / AUDIT_FILE, policy.name, max(audit_records, 200))
    return {
        "name": policy.name,
        "target": policy.target.describe(),
        "broker": redact(policy.broker.url),
        "threshold": policy.detect.threshold,
        "sample": {
            "ok": sample.ok,
            "depth": sample.depth,
            "queues": dict(sample.queues),
            "unacked": sample.unacked,
            "error": sample.error,
        },
        "trend": trend,
        "verdict": live.verdict if live else None,
        "why": live.why if live else None,
        "unfinished_restart": unfinished,
        "progress": live.progress if live else None,
        "workers": live.workers if live else None,  # container -> its Celery worker
        # per queue, how long its oldest message has waited, at least (core/waiting.py)
        "oldest_wait": live.waits if live else None,
        "warnings": list(live.warnings) if live else [],
        "restarts_in_budget_window": [_iso(t) for t in in_window],
        "max_restarts": r.max_restarts,
        "budget_window": format_duration(r.budget_window),
        "last_restart": _iso(history.last_restart),
        "streak": history.streak,
        "next_restart_allowed": None if at is None else _iso(at),
        "next_restart_in_seconds": None if at is None else round(at - now, 1),
        "state_error": state_error,
        "audit": tail[-audit_records:] if audit_records else [],
        "last_restart_hung": _last_hung(tail),
    }


def _last_hung(tail: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the workers were running at the last restart the audit's tail holds."""
    restarts = [
        r
        for r in tail
        if r["event"] in ("restart", "restart_failed", "dry_run_restart")
        and ("hung" in r or "silent" in r)
    ]
    if not restarts:
        return None
    last = restarts[-1]
    return {
        "time": last["time"],
        "tasks": last.get("hung") or [],
        "silent": last.get("silent") or [],
        "parked": last.get("parked") or [],
        "stacks": last.get("stacks"),
        "text": summary(last.get("hung") or (), last.get("silent") or ()),
        "dry_run": last["event"] == "dry_run_restart",  # what a live restart would have cost
    }


def render(status: dict[str, Any]) -> str:
    sup = status["supervisor"]
    if sup["running"]:
        mode = ", dry-run" if sup["dry_run"] else ""
        lines = [f"supervisor: running (pid {sup['pid']}{mode}); {sup['health']}"]
    else:
        lines = [f"supervisor: not running here ({sup['health']})"]
    for p in status["policies"]:
        s = p["sample"]
        lines.append("")
        lines.append(f"{p['name']} -> {p['target']}   broker {p['broker']}")
        if s["ok"]:
            queues = ", ".join(f"{q} {d}" for q, d in s["queues"].items())
            lines.append(
                f"  depth now    {s['depth']}  ({queues}; unacked {s['unacked']})"
                f"  threshold {p['threshold']}"
            )
        else:
            lines.append(f"  depth now    unknown: {s['error']}")
        if p["trend"]:
            known = [d for d in p["trend"] if d is not None]
            span = f"  {known[0]} -> {known[-1]}" if known else ""
            lines.append(
                f"  trend        {sparkline(p['trend'])}{span} (last {len(p['trend'])} samples)"
            )
        else:
            lines.append("  trend        unknown (the supervisor is not running)")
        if p["verdict"]:
            lines.append(f"  verdict      {p['why']}")
        else:
            lines.append("  verdict      unknown (the supervisor is not running)")
        if p["progress"]:
            lines.append(f"  progress     {p['progress']}")
        if p.get("oldest_wait"):
            waits = ", ".join(
                f"{q} {format_duration(w)}" for q, w in p["oldest_wait"].items() if w > 0
            )
            lines.append(f"  oldest wait  {waits or 'none: every watched queue is empty'}")
        if p.get("workers"):
            seen = ", ".join(f"{c} ({w or 'not heard'})" for c, w in sorted(p["workers"].items()))
            lines.append(f"  workers      {seen}")
        for warning in p["warnings"]:
            lines.append(f"  WARNING      {warning}")
        restarts = p["restarts_in_budget_window"]
        lines.append(
            f"  restarts     {len(restarts)} of {p['max_restarts']} allowed in "
            f"{p['budget_window']}" + (f": {', '.join(restarts)}" if restarts else "")
        )
        if p["next_restart_in_seconds"] is None:
            nxt = "never (max_restarts = 0)"
        elif p["next_restart_in_seconds"] <= 0:
            nxt = "now, if it is stuck"
        else:
            nxt = (
                f"in {format_duration(round(p['next_restart_in_seconds']))} "
                f"(at {p['next_restart_allowed']})"
            )
        lines.append(f"  next restart {nxt}")
        if p["unfinished_restart"]:
            lines.append(f"  unfinished   {p['unfinished_restart']}: its containers are started")
        hung = p["last_restart_hung"]
        if hung:
            said = hung["text"] or "no task was running"
            if hung["dry_run"]:
                said = f"dry run, a live restart would have found: {said}"
            lines.append(f"  last hung    at {hung['time']}: {said}")
            if hung["parked"]:
                lines.append(f"  parked       {', '.join(hung['parked'])} (supervisor quarantine)")
            if hung["stacks"]:
                lines.append(f"  stacks       {hung['stacks']} in the state directory")
        if p["state_error"]:
            lines.append(f"  state        {p['state_error']}")
        if p["audit"]:
            lines.append("  recent audit")
            for record in p["audit"]:
                extra = record.get("outcome") or ""
                reason = record.get("reason") or record.get("error") or ""
                lines.append(f"    {record['time']} {record['event']} {extra} {reason}".rstrip())
    return "\n".join(lines)
