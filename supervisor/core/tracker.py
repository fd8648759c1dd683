"""The per-target tracker: every rule that decides or guards a restart, as pure functions.

One `TrackerState` per target (a target has exactly one policy). Its inputs are a sample, a
manual trigger, and the result of a call the executor made for it; each returns the new state
and a `Step`: the events to report, the commands for the executor, the engine's decision when
one was taken, and whether the durable part (restart history, unfinished restart) changed and
must be saved *before* any command runs.

The guards, all here and nowhere else:
- One call per target at a time. While the executor restarts or starts the target, its samples
  are not judged (what the queue does meanwhile says nothing about the restarted worker) and a
  manual trigger is refused.
- Crash consistency. A live restart is recorded as an *intent* when it is decided, saved before
  the executor makes its first Docker call, and cleared when the restart is confirmed. An intent
  that is still there (the supervisor died mid-restart, or the restart failed after it stopped
  the worker) is completed before anything else is decided: the target's stopped containers are
  started at every sample until they run, outside cooldown, backoff and budget, since that
  restart was counted when it was decided.
- Recovery is told once, after a restart, when the queue is back under the threshold.
- Sampling and starting outages are reported once when they begin and once when they end.
- Progress unknown (no heartbeat and no answer to remote control from the workers of the
  policy's queues) is reported once it has lasted a grace period, and again when it is known:
  meanwhile the depth rule decides alone, so a merely busy worker may be restarted.
- Misconfiguration is reported once per change, after the same grace: queues no live worker
  consumes (`no_consumer`), and a database with no kombu binding for any of the policy's
  queues (`no_bindings`: the wrong database?).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from supervisor.broker_url import redact
from supervisor.core import engine, outage, plan, quarantine
from supervisor.core import events as ev
from supervisor.core.detector import RunState
from supervisor.core.engine import Action, ActionKind, Decision, EngineState, Trigger
from supervisor.core.events import Event, Why
from supervisor.core.governor import GovernorState
from supervisor.core.outage import Change, Outage
from supervisor.core.plan import Plan, View
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.policy import Policy
from supervisor.sample import Sample, WorkerFacts


class Call(enum.Enum):
    """What the executor is doing for the target right now."""

    RESTART = "restart"
    DRY_RUN = "dry_run"
    START = "start"


@dataclass(frozen=True)
class Intent:
    """A live restart decided and not yet confirmed: persisted with the restart history."""

    t: float
    trigger: Trigger
    reason: str


@dataclass(frozen=True)
class Watch:
    """A set of queues that is reported once it has held for a grace period, and on change."""

    seen: tuple[str, ...] = ()
    since: float = 0.0
    told: tuple[str, ...] = ()


def watch(w: Watch, current: tuple[str, ...] | None, t: float, grace: float) -> tuple[Watch, bool]:
    """The watch after seeing `current` at `t` (None: cannot be told now); True: report it."""
    if current is None:
        return w, False
    if current != w.seen:
        w = Watch(current, t, w.told)
    if w.seen != w.told and t - w.since >= grace:
        return replace(w, told=w.seen), True
    return w, False


@dataclass(frozen=True)
class Resuming:
    """A restart is done; the workers have not been seen taking a task since (ConsumingAgain)."""

    decided: float
    restarted: float  # when its result came back: the target's containers run again
    seconds: float  # what the restart itself took
    lowest: int | None = None  # the fewest started tasks counted since (a new worker counts 0)
    depth: int | None = None  # the depth of the last sample since


@dataclass(frozen=True)
class TrackerState:
    engine: EngineState = field(default_factory=EngineState)
    intent: Intent | None = None
    call: Call | None = None
    awaiting_recovery: bool = False
    sampling: Outage = field(default_factory=Outage)
    starting: Outage = field(default_factory=Outage)
    recent: tuple[tuple[float, int | None], ...] = ()  # (t, depth) within the window
    progress: Outage = field(default_factory=Outage)  # since when progress is unknown
    progress_told: bool = False
    unconsumed: Watch = field(default_factory=Watch)
    unbound: Watch = field(default_factory=Watch)
    discovered: tuple[str, ...] = ()  # the target's workers' queues, as last learnt (persisted)
    view: View = field(default_factory=View)  # the target as the last sample saw it
    known: tuple[WorkerFacts, ...] = ()  # what its workers said while they answered (persisted)
    refused: tuple[tuple[str, str], ...] = ()  # (container, policy): another policy's (claims.py)
    blind: Watch = field(default_factory=Watch)  # why nothing can be judged (told: said so)
    # task id -> hang restarts in a row it was running at (core/quarantine.py; persisted)
    streaks: tuple[tuple[str, int], ...] = ()
    resuming: Resuming | None = None  # after a done restart, until a task is taken again

    @property
    def cannot_judge(self) -> str | None:
        """Why nothing can be judged now, as told (None: it can)."""
        return self.blind.told[0] if self.blind.told else None

    def warnings(self, policy: Policy) -> tuple[str, ...]:
        """What is wrong with the configuration now, as reported."""
        out = []
        if self.cannot_judge:
            out.append(f"cannot judge: {self.cannot_judge}")
        if self.unconsumed.told:
            out.append(f"no live worker consumes {', '.join(self.unconsumed.told)}")
        if self.unbound.told:
            out.append(f"wrong database? no kombu binding for {', '.join(self.unbound.told)}")
        if self.progress_told:
            out.append("progress unknown: a busy worker may be restarted")
        return tuple(out)

    @property
    def history(self) -> GovernorState:
        return self.engine.governor


@dataclass(frozen=True)
class Restart:
    action: Action
    why: Why  # what the audit says of the decision
    plan: Plan  # exactly what the executor touches (core/plan.py)
    # The running task ids whose messages are parked, not given back (core/quarantine.py):
    # decided from this restart's own answer, so the streaks so far go with the command.
    streaks: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class DryRun:
    action: Action
    why: Why
    standby: bool = False  # not dry-run: another supervisor holds the target's lease
    # What a live restart would touch, so that its workers are asked what a live one asks.
    plan: Plan | None = None
    streaks: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class EnsureRunning:
    intent: Intent


Command = Restart | DryRun | EnsureRunning
Result = RestartResult | LookupResult | StartResult


@dataclass(frozen=True)
class Step:
    events: tuple[Event, ...] = ()
    commands: tuple[Command, ...] = ()
    decision: Decision | None = None
    persist: bool = False


def new(
    history: GovernorState,
    intent: Intent | None = None,
    discovered: tuple[str, ...] = (),
    known: tuple[WorkerFacts, ...] = (),
    streaks: tuple[tuple[str, int], ...] = (),
) -> TrackerState:
    return TrackerState(
        engine=EngineState(governor=history),
        intent=intent,
        discovered=discovered,
        known=known,
        streaks=streaks,
    )


def seen(state: TrackerState, sample: Sample) -> tuple[TrackerState, bool]:
    """The target as this sample saw it, and what its workers said of themselves; True when
    that knowledge changed and must be saved. A worker that stops answering keeps its mapping
    to its container while the container is there, and its facts for good."""
    if not sample.ok:
        return state, False
    old = state.view
    containers = sample.containers if sample.containers is not None else old.containers
    others = {c for c, _ in state.refused}
    if containers is not None:
        containers = tuple(c for c in containers if c not in others)
    mapped = {(r.worker, r.container) for r in sample.replicas if r.container not in others}
    taken = {c for _, c in mapped}
    still = set(containers or ())
    kept = {(w, c) for w, c in old.workers if c not in taken and c in still}
    view = View(containers, tuple(sorted(mapped | kept)), sample.consumers)
    if view == old:
        view = old  # the same object: `_with` then copies nothing for it
    if not sample.facts:  # nothing heard, nothing learnt
        return _with(state, view=view), False
    known = plan.learn(state.known, sample.facts)
    changed = _facts_key(known) != _facts_key(state.known)
    return _with(state, view=view, known=known), changed


def on_claims(
    policy: Policy, state: TrackerState, refused: dict[str, str]
) -> tuple[TrackerState, Step]:
    """The containers of the target that another policy found first (core/claims.py): left
    alone, and said once per change, naming both policies."""
    now = tuple(sorted(refused.items()))
    if now == state.refused:
        return state, Step()
    state = replace(state, refused=now)
    conflict = ev.TargetConflict(
        policy=policy.name, target=policy.target.describe(), containers=dict(now)
    )
    return state, Step((conflict,))


def _with(state: TrackerState, **changes: object) -> TrackerState:
    """`state` with `changes`: the same object when none of them changes anything. A tick that
    learns nothing new is most ticks, and copying the whole state costs more than the tick."""
    if all(getattr(state, name) is value for name, value in changes.items()):
        return state
    return replace(state, **changes)  # type: ignore[arg-type]


def _facts_key(known: tuple[WorkerFacts, ...]) -> tuple[WorkerFacts, ...]:
    return tuple(replace(f, t=0.0) for f in known)  # a fact heard again is not news


def watched(policy: Policy, state: TrackerState) -> tuple[str, ...]:
    """The queues to sample: those listed, and those discovered (with discover_queues)."""
    return watched_of(policy, state.discovered)


def watched_of(policy: Policy, discovered: tuple[str, ...]) -> tuple[str, ...]:
    """The queues listed, and with discover_queues those discovered (as a state file keeps
    them: what `status` and `sample` show is what the daemon samples)."""
    listed = tuple(policy.broker.queues)
    if not policy.broker.discover_queues:
        return listed
    return listed + tuple(q for q in discovered if q not in listed)


def on_discovered(
    policy: Policy, state: TrackerState, found: tuple[str, ...] | None
) -> tuple[TrackerState, Step]:
    """The queues the target's workers consume, as learnt now (None: no worker of the target
    tells, e.g. its heartbeats stopped or the supervisor just started): kept until a worker
    tells again, so a hung worker is still judged on the right queues."""
    if not policy.broker.discover_queues or found is None:
        return state, Step()
    found = tuple(sorted(set(found)))
    if found == state.discovered:
        return state, Step()
    before = watched(policy, state)
    state = replace(state, discovered=found)
    after = watched(policy, state)
    if set(after) == set(before):  # learnt queues all in the floor: nothing watched changed
        return state, Step(persist=True)
    changed = ev.QueuesChanged(policy=policy.name, queues=after, previous=before)
    # Another set of queues is another run: what was judged on the old set says nothing.
    state = replace(state, engine=replace(state.engine, run=RunState(), replicas=()), recent=())
    return state, Step((changed,), persist=True)


def adopt(state: TrackerState, shared: GovernorState | None, intent: Intent | None) -> TrackerState:
    """Taking a target's lease over: its restart history and unfinished restart are the shared
    ones the holders kept in Redis, not those this supervisor made up while standing by. With
    none shared yet (the first holder), its own are kept: they only ever count more restarts."""
    if shared is None:
        return state
    return replace(state, engine=replace(state.engine, governor=shared), intent=intent)


def unfinished(state: TrackerState) -> bool:
    """A restart of the target is in flight or left unfinished."""
    return state.call is not None or state.intent is not None


def target_changed(policy: Policy, old: str) -> Event:
    return ev.TargetChanged(policy=policy.name, target=policy.target.key, old_target=old)


def resume(policy: Policy, state: TrackerState) -> tuple[TrackerState, Step]:
    """At start: complete a restart that a previous run left unfinished."""
    intent = state.intent
    if intent is None or state.call is not None:
        return state, Step()
    resumed = ev.RestartResumed(
        policy=policy.name,
        target=policy.target.describe(),
        decided_at=round(intent.t, 3),
        trigger=intent.trigger.value,
        reason=intent.reason,
    )
    return replace(state, call=Call.START), Step((resumed,), (EnsureRunning(intent),))


def on_sample(
    policy: Policy, state: TrackerState, sample: Sample, dry_run: bool, standby: bool = False
) -> tuple[TrackerState, Step]:
    events: list[Event] = []
    window = policy.detect.window
    kept = tuple(p for p in state.recent if sample.t - p[0] <= window)
    recent = (*kept, (sample.t, sample.depth))
    sampling, change = outage.observe(
        state.sampling, sample.error if not sample.ok else None, sample.t
    )
    state = replace(state, recent=recent, sampling=sampling)
    state, learnt = seen(state, sample)
    events += ev.outage(change, (ev.SampleErrorBegin, ev.SampleErrorEnd), policy.name)
    state, told = _progress(policy, state, sample)
    events += told
    state, told = _misconfiguration(policy, state, sample)
    events += told
    state, told = _blindness(policy, state, sample)
    events += told
    threshold = policy.detect.threshold
    settled = state.call is None and state.intent is None
    if (
        settled
        and state.awaiting_recovery
        and sample.depth is not None
        and sample.depth <= threshold
    ):
        reason = f"queue depth {sample.depth} is back under {threshold}"
        events.append(
            ev.Recovery(policy=policy.name, depth=sample.depth, threshold=threshold, reason=reason)
        )
        state = replace(state, awaiting_recovery=False)
    if settled and state.resuming is not None and sample.ok:
        state, told = _resuming(policy, state, sample)
        events += told
    if state.call is not None:
        return state, Step(tuple(events), persist=learnt)
    if state.intent is not None:
        if standby:  # the lease's holder completes it: a standby changes no container
            return state, Step(tuple(events), persist=learnt)
        return replace(state, call=Call.START), Step(
            tuple(events), (EnsureRunning(state.intent),), persist=learnt
        )

    engine_state, decision = engine.step(policy, state.engine, sample, now=sample.t)
    state = replace(state, engine=engine_state)
    commands: list[Command] = []
    run_start = decision.diagnosis.run_start
    workers = {r.container: r.worker for r in sample.replicas}
    for action in decision.actions:
        why = _why(policy, state, action, run_start.t if run_start else None)
        if action.containers:
            replicas = tuple({"container": c, "worker": workers.get(c)} for c in action.containers)
            why = replace(why, replicas=replicas)
        if decision.stalls.waits is not None:
            waits = sorted(decision.stalls.waits.items())
            why = replace(why, oldest_wait={q: round(w, 1) for q, w in waits})
        if action.kind is ActionKind.ESCALATE:
            target = policy.target.describe()
            events.append(ev.Escalated(policy=policy.name, target=target, why=why))
        else:
            state, begun = _begin(policy, state, action, why, dry_run=dry_run, standby=standby)
            if isinstance(begun, Event):
                events.append(begun)
            else:
                commands.append(begun)
    persist = bool(decision.actions) or learnt
    return state, Step(tuple(events), tuple(commands), decision, persist=persist)


def _resuming(
    policy: Policy, state: TrackerState, sample: Sample
) -> tuple[TrackerState, list[Event]]:
    """The first sample after a restart that shows a task taken: the workers' count of
    started tasks above its lowest since the restart (the restarted worker starts from 0),
    or the watched queues lower than at the sample before."""
    r = state.resuming
    assert r is not None
    evidence = None
    if sample.processed is not None and r.lowest is not None and sample.processed > r.lowest:
        evidence = f"a task started ({r.lowest} -> {sample.processed} started tasks)"
    elif sample.depth is not None and r.depth is not None and sample.depth < r.depth:
        evidence = f"the queues fell ({r.depth} -> {sample.depth})"
    if evidence is None:
        counts = [c for c in (r.lowest, sample.processed) if c is not None]
        lowest = min(counts) if counts else None
        return replace(state, resuming=replace(r, lowest=lowest, depth=sample.depth)), []
    consuming = ev.ConsumingAgain(
        policy=policy.name,
        target=policy.target.describe(),
        after_decision=round(sample.t - r.decided, 3),
        after_restart=round(max(0.0, sample.t - r.restarted), 3),
        restart_seconds=round(r.seconds, 3),
        evidence=evidence,
    )
    return replace(state, resuming=None), [consuming]


def progress_grace(policy: Policy) -> float:
    """How long progress may be unknown before it is reported: long enough for a starting
    supervisor to hear the first heartbeats (every 2 s) or answers (the poll runs once per
    interval)."""
    return max(3 * policy.detect.interval, 5.0)


def _progress(
    policy: Policy, state: TrackerState, sample: Sample
) -> tuple[TrackerState, list[Event]]:
    if not policy.detect.require_no_progress or not sample.ok:
        return state, []
    why = sample.progress_unknown if sample.processed is None else None
    progress, change = outage.observe(state.progress, why, sample.t)
    state = _with(state, progress=progress)
    since = progress.since
    if why is not None and since is not None and not state.progress_told:
        if sample.t - since >= progress_grace(policy):
            unknown = ev.ProgressUnknown(policy=policy.name, reason=why)
            return replace(state, progress_told=True), [unknown]
    elif change is not None and change.change is Change.ENDED and state.progress_told:
        known = ev.ProgressKnown(
            policy=policy.name, source=sample.progress_source, seconds=round(change.seconds, 3)
        )
        return replace(state, progress_told=False), [known]
    return state, []


def _misconfiguration(
    policy: Policy, state: TrackerState, sample: Sample
) -> tuple[TrackerState, list[Event]]:
    if not sample.ok or state.call is not None or state.intent is not None:
        return state, []  # a worker being restarted has no consumer for a moment
    grace = progress_grace(policy)
    out: list[Event] = []
    unconsumed, tell_unconsumed = watch(state.unconsumed, sample.unconsumed, sample.t, grace)
    all_unbound = sample.unbound if len(sample.unbound) == len(policy.broker.queues) else ()
    unbound, tell_unbound = watch(state.unbound, all_unbound, sample.t, grace)
    broker = redact(policy.broker.url) if tell_unconsumed or tell_unbound else ""
    if tell_unconsumed:
        out.append(ev.NoConsumer(policy=policy.name, queues=unconsumed.told, broker=broker))
    if tell_unbound:
        out.append(ev.NoBindings(policy=policy.name, queues=unbound.told, broker=broker))
    return _with(state, unconsumed=unconsumed, unbound=unbound), out


def blindness(policy: Policy, state: TrackerState, sample: Sample) -> str | None:
    """Why the supervisor cannot judge the target now (None: it can): its containers cannot be
    found, it watches no queue, or none of its workers was ever heard. Each would otherwise
    look like a healthy "not stuck" forever."""
    if sample.target_error is not None:
        return sample.target_error
    if not watched(policy, state):
        return (
            "no queue to watch: none listed, and no worker of the target has said which it "
            "consumes yet (list a floor of queues in [broker] queues)"
        )
    seen = state.known or state.view.workers
    if (
        policy.detect.require_no_progress
        and sample.consumers is not None
        and state.view.containers
        and not seen
        and sample.processed is None
    ):
        return (
            f"no worker of {policy.target.describe()} has ever been heard (no heartbeat, no "
            "answer to remote control): the depth rule decides alone"
        )
    return None


def _blindness(
    policy: Policy, state: TrackerState, sample: Sample
) -> tuple[TrackerState, list[Event]]:
    if not sample.ok or state.call is not None or state.intent is not None:
        return state, []
    why = blindness(policy, state, sample)
    before = state.cannot_judge
    blind, changed = watch(state.blind, (why,) if why else (), sample.t, progress_grace(policy))
    state = _with(state, blind=blind)
    if not changed:
        return state, []
    target = policy.target.describe()
    if why:
        return state, [ev.CannotJudge(policy=policy.name, target=target, reason=why)]
    return state, [ev.Judging(policy=policy.name, target=target, reason=before or "")]


def on_trigger(
    policy: Policy, state: TrackerState, now: float, dry_run: bool, standby: bool = False
) -> tuple[TrackerState, Step]:
    """A restart asked for by a person (SIGUSR1 or `supervisor trigger`)."""
    refusal = None
    if state.call is not None:
        refusal = "a restart of this target is already in flight"
    elif state.intent is not None:
        refusal = "a restart of this target is not finished: its containers are being started"
    if refusal is not None:
        refused = ev.TriggerRefused(
            policy=policy.name, target=policy.target.describe(), reason=refusal
        )
        return state, Step((refused,))
    engine_state, action = engine.trigger(policy, state.engine, now)
    state = replace(state, engine=engine_state)
    why = _why(policy, state, action, None)
    state, begun = _begin(policy, state, action, why, dry_run=dry_run, standby=standby)
    if isinstance(begun, Event):
        return state, Step((begun,), persist=True)
    return state, Step(commands=(begun,), persist=True)


def _why(policy: Policy, state: TrackerState, action: Action, run_start: float | None) -> Why:
    return Why(
        reason=action.reason,
        trigger=action.trigger.value,
        decided_at=round(action.t, 3),
        run_start=round(run_start, 3) if run_start is not None else None,
        depths=tuple((round(t, 3), d) for t, d in state.recent),
        streak=action.streak,
        broker=redact(policy.broker.url),
    )


def _begin(
    policy: Policy,
    state: TrackerState,
    action: Action,
    why: Why,
    *,
    dry_run: bool,
    standby: bool = False,
) -> tuple[TrackerState, Command | Event]:
    """The command that carries out `action`, with its complete plan; or, when the plan has no
    container left (every one is another policy's, or the target has none), the refusal. The
    restart was counted when it was decided: a target that cannot be acted on is not retried
    in a storm."""
    chosen = plan.restart_plan(action.containers, state.view, watched(policy, state), state.known)
    why = replace(why, plan=chosen.to_json())
    if not chosen.containers and state.view.containers is not None:
        because = (
            "every container of the target is another policy's: "
            + ", ".join(f"{c} ({p})" for c, p in state.refused)
            if state.refused
            else "no container of the target was found"
        )
        target = policy.target.describe()
        return state, ev.RestartRefused(
            policy=policy.name, target=target, why=why, refused_because=because
        )
    if dry_run or standby:
        command: Command = DryRun(action, why, standby and not dry_run, chosen, state.streaks)
        return replace(state, call=Call.DRY_RUN), command
    intent = Intent(action.t, action.trigger, action.reason)
    command = Restart(action, why, chosen, state.streaks)
    return replace(state, call=Call.RESTART, intent=intent), command


def on_result(
    policy: Policy, state: TrackerState, command: Command, result: Result, now: float
) -> tuple[TrackerState, Step]:
    """The executor finished `command` with `result`."""
    if isinstance(command, Restart) and isinstance(result, RestartResult):
        state, step = _restarted(policy, state, command, result)
        if result.outcome is Outcome.DONE:
            decided = command.action.t
            state = replace(state, resuming=Resuming(decided, now, result.seconds))
        return state, step
    if isinstance(command, DryRun) and isinstance(result, LookupResult):
        return _looked_up(policy, state, command, result)
    if isinstance(command, EnsureRunning) and isinstance(result, StartResult):
        return _started(policy, state, result, now)
    raise TypeError(f"{type(result).__name__} is not the result of {type(command).__name__}")


def failure(command: Command, error: str) -> Result:
    """The result of a command whose call broke before it could report (an internal error).
    A restart is taken to have changed the target: starting it again is always safe."""
    if isinstance(command, Restart):
        return RestartResult(Outcome.FAILED, "unknown", error=error, changed=True)
    if isinstance(command, DryRun):
        return LookupResult(error=error)
    return StartResult(error=error)


def _restarted(
    policy: Policy, state: TrackerState, command: Restart, result: RestartResult
) -> tuple[TrackerState, Step]:
    swarm = bool(result.tasks or result.new_tasks)  # a Swarm service: which tasks, slots, nodes
    done = result.outcome is Outcome.DONE
    kind = ev.Restarted if done else ev.RestartFailed
    record = kind(
        policy=policy.name,
        target=policy.target.describe(),
        why=command.why,
        outcome=result.outcome.value,
        method=result.method,
        containers=result.containers,
        seconds=round(result.seconds, 3),
        error=result.error,
        started_at=result.started_at or None,
        called_at=round(result.called_at, 3) if result.called_at is not None else None,
        by_restart_policy=result.by_restart_policy or None,
        killed=result.killed or None,
        sigquit=result.sigquit,
        changed=result.changed,
        restored=result.restored,
        unacked_left=result.unacked_left,
        restore_error=result.restore_error,
        service=policy.target.swarm_service if swarm else None,
        tasks=tuple(t.to_json() for t in result.tasks) if swarm else None,
        new_tasks=tuple(t.to_json() for t in result.new_tasks) if swarm else None,
        hung=tuple(t.to_json() for t in result.hung) if result.hung is not None else None,
        silent=result.silent or None,
        parked=result.parked or None,
        park_error=result.park_error,
        stacks=result.stacks,
    )
    events: list[Event] = [record]
    if result.parked:
        events.append(
            ev.Quarantined(
                policy=policy.name,
                target=policy.target.describe(),
                tasks=tuple(t.to_json() for t in result.hung or () if t.id in result.parked),
                after=policy.restart.quarantine_after,
                key=result.parked_in or "",
                reason=quarantine.reason(policy.restart.quarantine_after, policy.target.describe()),
            )
        )
    if result.hung is not None:
        automatic = command.action.trigger is not Trigger.MANUAL
        running = [t.id for t in result.hung]
        streaks = quarantine.next_streaks(running, dict(command.streaks), automatic)
        state = replace(state, streaks=tuple(sorted(streaks.items())))
    state = replace(state, call=None, awaiting_recovery=True)
    if done or not result.changed:
        state = replace(state, intent=None)  # done, or nothing was changed: the target is as it was
    return state, Step(tuple(events), persist=True)


def unsaved(
    policy: Policy, state: TrackerState, step: Step, error: str
) -> tuple[TrackerState, Step]:
    """`step` after its durable part could not be saved (a full disk, a read-only volume):
    persist, then act. A restart whose intent is not on disk is not made, since a crash in it
    would leave the worker stopped by hand and the budget forgotten: it is recorded as failed
    (it was counted when it was decided, so a full disk cannot make a storm of tries), and
    nothing is changed. Completing an unfinished restart (its intent was saved before) and a
    dry run change nothing that must survive a crash: they go on."""
    events, commands = list(step.events), []
    for command in step.commands:
        if not isinstance(command, Restart):
            commands.append(command)
            continue
        why = f"not restarted: its intent could not be saved first ({error})"
        result = RestartResult(Outcome.FAILED, policy.restart.method, error=why)
        state, failed = _restarted(policy, state, command, result)
        events += failed.events
    return state, Step(tuple(events), tuple(commands), step.decision)


def _looked_up(
    policy: Policy, state: TrackerState, command: DryRun, result: LookupResult
) -> tuple[TrackerState, Step]:
    containers = command.action.containers or result.containers
    kind = ev.Standby if command.standby else ev.DryRunRestart
    chosen = [t for t in result.tasks if not containers or t.container in containers]
    tasks = tuple(t.to_json() for t in chosen) if result.tasks else None
    looked = kind(
        policy=policy.name,
        target=policy.target.describe(),
        dry_run=not command.standby,
        why=command.why,
        containers=containers,
        error=result.error,
        service=policy.target.swarm_service if tasks else None,
        tasks=tasks,
        hung=tuple(t.to_json() for t in result.hung) if result.hung is not None else None,
        silent=result.silent or None,
        reserved=result.reserved,
        parked=result.parked or None,
    )
    return replace(state, call=None, awaiting_recovery=True), Step((looked,))


def _started(
    policy: Policy, state: TrackerState, result: StartResult, now: float
) -> tuple[TrackerState, Step]:
    starting, change = outage.observe(state.starting, result.error, now)
    state = replace(state, call=None, starting=starting)
    target = policy.target.describe()
    if not result.ok:
        if change is None:
            return state, Step()
        failing = ev.StartErrorBegin(policy=policy.name, target=target, reason=str(result.error))
        return state, Step((failing,))
    completed = ev.RestartCompleted(
        policy=policy.name,
        target=target,
        started=result.started,
        running=result.running,
        failed_for=round(change.seconds, 3) if change is not None else None,
        reason=change.error if change is not None else None,
    )
    return replace(state, intent=None, awaiting_recovery=True), Step((completed,), persist=True)


def reconfigure(old: Policy, new_policy: Policy, state: TrackerState) -> TrackerState:
    """A reload changed the policy: a run judged on another broker or with other rules says
    nothing about the new one, so it starts afresh; the restart history stays."""
    if old.broker == new_policy.broker and old.detect == new_policy.detect:
        return state
    return replace(state, engine=replace(state.engine, run=RunState()), recent=())
