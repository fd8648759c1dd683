"""The sentence a person reads for each event (the log line, the audit record's `text`, the
notification's body), written from the event's facts alone. One function per event class."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from supervisor.core import events as ev
from supervisor.core.evidence import summary


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _names(items: Any, none: str = "none") -> str:
    return ", ".join(items) or none


def _restarted(e: ev.Restarted) -> str:
    why = e.why
    if isinstance(e, ev.RestartFailed):
        text = f"restart of {e.target} FAILED after {e.seconds:.1f}s: {e.error}"
        if e.changed:
            text += "; its stopped containers will be started at every interval until they run"
        return text
    by_docker = (
        f"; started again by Docker's restart policy: {', '.join(e.by_restart_policy)}"
        if e.by_restart_policy
        else ""
    )
    gave_back = ""
    if e.killed:
        how = "" if e.sigquit else " (no SIGQUIT: its cold shutdown breaks)"
        gave_back = (
            f"; SIGKILLed {', '.join(e.killed)}{how}, {e.restored or 0} reserved "
            f"message(s) given back, {e.unacked_left} left in unacked"
        )
        if e.restore_error:
            gave_back += f" (could not give back: {e.restore_error})"
    return (
        f"restarted {', '.join(e.containers)} ({why.trigger}, {e.method}, {e.seconds:.1f}s): "
        f"{why.reason}{by_docker}{gave_back}{_evidence(e)}"
    )


def _evidence(e: ev.Restarted) -> str:
    """What hung, what the restart cost, what was parked, where the stacks are."""
    parts = []
    if e.hung is not None or e.silent:
        said = summary(e.hung or (), e.silent or ())
        parts.append(said or "no task was running")
    if e.parked:
        parts.append(f"parked as poison (not given back): {', '.join(e.parked)}")
    if e.park_error:
        parts.append(f"could not park: {e.park_error}")
    if e.stacks:
        parts.append(f"stacks in {e.stacks}")
    return "".join(f"; {p}" for p in parts)


def _quarantined(e: ev.Quarantined) -> str:
    tasks = ", ".join(f"{t['name']} ({t['id']})" for t in e.tasks)
    return (
        f"POISON: {tasks} hung {e.after} restarts of {e.target} in a row; parked in {e.key}, "
        f"not given back (supervisor quarantine list|requeue|drop {e.policy})"
    )


def _dry_run(e: ev.DryRunRestart) -> str:
    what = ", ".join(e.containers) or e.target
    text = f"would restart {what} ({e.why.trigger}): {e.why.reason}"
    if e.hung is not None or e.silent:
        text += "; " + (summary(e.hung or (), e.silent or ()) or "no task was running")
    if e.reserved:
        text += f"; {e.reserved} reserved message(s) would come back"
    if e.parked:
        text += f"; would park as poison (not give back): {', '.join(e.parked)}"
    if isinstance(e, ev.Standby):
        return f"standby (another supervisor holds the lease): {text}"
    return text


def _conflict(e: ev.TargetConflict) -> str:
    if not e.containers:
        return "no container of the target is another policy's any more"
    shared = "; ".join(f"{c} is also the target of policy {p!r}" for c, p in e.containers.items())
    return f"{shared}: that policy keeps it, this one ({e.policy!r}) never restarts it"


def _no_consumer(e: ev.NoConsumer) -> str:
    if not e.queues:
        return "every watched queue has a live consumer again"
    return (
        f"no live worker consumes {', '.join(e.queues)} on {e.broker}: restarting the target "
        "cannot drain them; check the worker's -Q list"
    )


def _no_bindings(e: ev.NoBindings) -> str:
    if not e.queues:
        return "kombu bindings found for the watched queues"
    return (
        f"wrong database? {e.broker} holds no kombu binding for {', '.join(e.queues)}: no worker "
        "or producer declared them there"
    )


def _lease_acquired(e: ev.LeaseAcquired) -> str:
    after = f" (after {e.previous})" if e.previous and e.previous != e.holder else ""
    return f"holds the lease of {e.target}; acting for it{after}"


_TEXT: dict[type[ev.Event], Callable[[Any], str]] = {
    ev.Started: lambda e: (
        f"supervising {', '.join(sorted(e.policies))}"
        + (" (dry-run: no Docker call that changes anything)" if e.dry_run else "")
    ),
    ev.StartRefused: lambda e: "not started, the policies are refused: " + "; ".join(e.problems),
    ev.Stopped: lambda e: "stopped",
    ev.Reloaded: lambda e: f"reloaded: {', '.join(sorted(e.policies))}",
    ev.ReloadRefused: lambda e: (
        "reload refused, the running policies stay: " + "; ".join(e.problems)
    ),
    ev.InternalError: lambda e: f"internal error in {e.where}: {e.reason}",
    ev.StateDiscarded: lambda e: (
        f"{e.reason}; moved to {e.kept_as}, starting with an empty restart history"
    ),
    ev.TriggerDiscarded: lambda e: (
        f"a trigger request for {e.policy or 'every policy'} made "
        "before this supervisor started was discarded, not carried out"
    ),
    ev.TriggerRefused: lambda e: f"manual trigger refused: {e.reason}",
    ev.Restarted: _restarted,
    ev.RestartFailed: _restarted,
    ev.DryRunRestart: _dry_run,
    ev.Standby: _dry_run,
    ev.RestartRefused: lambda e: f"restart of {e.target} refused: {e.refused_because}",
    ev.Quarantined: _quarantined,
    ev.Escalated: lambda e: f"ESCALATION, a person is needed: {e.why.reason}",
    ev.RestartResumed: lambda e: (
        f"the {e.trigger} restart of {e.target} decided at "
        f"{_iso(e.decided_at)} was not finished; starting its stopped containers (no new restart "
        "is counted)"
    ),
    ev.RestartCompleted: lambda e: (
        f"{e.target} runs again after an unfinished restart "
        f"(started: {_names(e.started, 'none was stopped')})"
    ),
    ev.StartErrorBegin: lambda e: (
        f"cannot start {e.target} after a restart, retrying at every interval: {e.reason}"
    ),
    ev.Recovery: lambda e: f"recovered: queue depth {e.depth} is back under {e.threshold}",
    ev.ConsumingAgain: lambda e: (
        f"consuming again {e.after_decision:.1f}s after the decision: the restart itself took "
        f"{e.restart_seconds:.1f}s, the workers' start {e.after_restart:.1f}s more ({e.evidence})"
    ),
    ev.TargetChanged: lambda e: (
        f"the target changed from {e.old_target} to {e.target}: going on with "
        f"{e.target}'s own restart history (none if it never had one)"
    ),
    ev.TargetConflict: _conflict,
    ev.CannotJudge: lambda e: f"cannot judge: {e.reason}; nothing is decided until it can",
    ev.Judging: lambda e: f"judging again (it could not: {e.reason})",
    ev.ProgressUnknown: lambda e: (
        f"progress unknown: {e.reason}; the depth rule decides alone, "
        "so a busy worker may be restarted"
    ),
    ev.ProgressKnown: lambda e: f"progress known again, from {e.source or 'the workers'}",
    ev.NoConsumer: _no_consumer,
    ev.NoBindings: _no_bindings,
    ev.QueuesChanged: lambda e: (
        "watched queues changed, as the target's workers consume them: "
        f"{_names(e.queues)} (were {_names(e.previous)})"
    ),
    ev.SampleErrorBegin: lambda e: f"cannot sample, deciding nothing until it can: {e.reason}",
    ev.SampleErrorEnd: lambda e: f"sampling again after {e.seconds:.1f}s",
    ev.DockerErrorBegin: lambda e: f"restarts would fail: {e.reason}",
    ev.DockerErrorEnd: lambda e: f"Docker back after {e.seconds:.1f}s",
    ev.LeaseErrorBegin: lambda e: (
        f"cannot reach Redis for the lease of {e.target}; not acting: {e.reason}"
    ),
    ev.LeaseErrorEnd: lambda e: f"the lease's Redis answers again after {e.seconds:.1f}s",
    ev.LeaseAcquired: _lease_acquired,
    ev.LeaseLost: lambda e: f"lost the lease of {e.target} to {e.holder}; standing by",
}


def text(e: ev.Event) -> str:
    """The sentence for `e`; every event class has one (a test checks)."""
    return _TEXT[type(e)](e)


def record(e: ev.Event) -> dict[str, Any]:
    """The event as the audit, the notifications' fields and the tests read it."""
    return {"event": e.kind.value, "policy": e.policy, **e.facts(), "text": text(e)}
