"""The supervised targets and what each is read through: its probe, the progress monitor of its
broker (one per broker, shared), its state file and its history. The daemon asks; this holds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from pathlib import Path

from supervisor.clock import Clock
from supervisor.core import claims, events, tracker
from supervisor.core.detector import Verdict
from supervisor.core.engine import Decision
from supervisor.core.events import Event
from supervisor.core.tracker import TrackerState
from supervisor.errors import StateError, StateRefusedError
from supervisor.policy import Policy
from supervisor.runtime import observing, wiring
from supervisor.runtime.state_store import StateStore
from supervisor.runtime.wiring import ProgressSource, Supervised
from supervisor.sample import Sample
from supervisor.sinks import log as log_sink
from supervisor.trace import HistoryWriter, Row

log = logging.getLogger("supervisor.daemon")


class Targets:
    def __init__(
        self,
        state_dir: Path,
        probe_factory: wiring.ProbeFactory,
        progress_factory: wiring.ProgressFactory | None,
        clock: Clock,
        monotonic: Callable[[], float],
        *,
        dry_run: bool = False,
    ) -> None:
        self.by_name: dict[str, Supervised] = {}
        self.monitors: dict[tuple[str, str], ProgressSource] = {}
        self._probe_factory, self._progress_factory = probe_factory, progress_factory
        self._clock, self._monotonic = clock, monotonic
        # its times translated on this clock; a dry run's files are its own
        self.store = StateStore(state_dir, clock.here, dry_run=dry_run)
        self._history = HistoryWriter(state_dir)
        self._history_failing = False
        self._claims: dict[str, dict[str, str]] | None = None

    def check(self, policies: list[Policy]) -> None:
        """StateRefusedError when a policy's state file must be left as it is (state_store.py):
        asked before anything starts, and before a reload changes anything. A file that does
        not parse is for `add` to move aside."""
        for policy in policies:
            try:
                self.store.peek(policy.target.key, policy.name)
            except StateRefusedError:
                raise
            except StateError:
                pass

    def add(self, policy: Policy) -> tuple[Supervised, tuple[Event, ...]]:
        """Supervise `policy`'s target from what was saved for it (a file that does not parse
        is moved aside and said). Raises StateRefusedError for one it must leave as it is."""
        found: tuple[Event, ...] = ()
        state = TrackerState()
        try:
            stored = self.store.load(policy.target.key, policy.name)
        except StateRefusedError:
            raise  # a newer format or a read error: kept, and nothing is supervised from it
        except StateError as exc:
            suffix = f"unusable-{int(time.time())}"  # for a person: the wall clock
            aside = self.store.discard(policy.target.key, policy.name, suffix)
            discarded = events.StateDiscarded(
                policy=policy.name, reason=str(exc), kept_as=str(aside)
            )
            found, stored = (discarded,), None
        if stored is not None:
            # The file is the target's own (state_store.py): its history is this policy's.
            state = tracker.new(
                stored.history, stored.intent, stored.discovered, stored.known, stored.streaks
            )
        probe = self._probe_factory(policy, self._clock)
        # Due at once: targets added together tick in one pass (one round trip per broker)
        # and keep that phase, rather than one wake-up each for the time their adding took.
        item = Supervised(policy, probe, state)
        self.by_name[policy.name] = item
        item.monitor = self.monitor_for(policy)
        return item, found

    def remove(self, name: str) -> Supervised:
        removed = self.by_name.pop(name)
        removed.probe.close()
        self._history.close(name)
        return removed

    def rename(self, names: dict[str, str]) -> list[str]:
        """The kept targets under their reloaded names ({old: new}, any permutation); the old
        names that are gone."""
        moving = {old: self.by_name.pop(old) for old, new in names.items() if old != new}
        for old, item in moving.items():
            self.by_name[names[old]] = item
            self._history.close(old)
        return [old for old in moving if old not in self.by_name]

    def of_target(self, key: str) -> Supervised | None:
        """The supervised target of that key (a call in flight is keyed by it)."""
        return next((s for s in self.by_name.values() if s.policy.target.key == key), None)

    def reconfigure(self, item: Supervised, policy: Policy) -> Policy:
        """`item` now supervised by `policy` (a reload); the policy it had."""
        old, item.policy = item.policy, policy
        if old.broker != policy.broker:
            item.probe.close()
            item.probe = self._probe_factory(policy, self._clock)
        item.monitor = self.monitor_for(policy)
        in_use = {(s.policy.broker.url, s.policy.broker.key_prefix) for s in self.by_name.values()}
        for key in [k for k in self.monitors if k not in in_use]:
            self.monitors.pop(key).stop()
        return old

    def monitor_for(self, policy: Policy) -> ProgressSource | None:
        """The progress monitor of the policy's broker (made on first use), or None when the
        policy does not watch progress. Kept in the target's `monitor` by add and reconfigure."""
        if self._progress_factory is None or not policy.detect.require_no_progress:
            return None
        key = (policy.broker.url, policy.broker.key_prefix)
        if key not in self.monitors:
            self.monitors[key] = self._progress_factory(policy, self._clock)
        self.monitors[key].poll_at_least_every(policy.detect.interval)
        return self.monitors[key]

    def due(self, now: float, within: float, interrupted: Callable[[], bool]) -> list[Supervised]:
        """The targets whose tick is due by `now + within` (those due this soon run in this
        pass: one wake-up for all), each given its next due time; none past an interruption
        (a signal, a stop), which the loop handles first."""
        due = []
        for item in list(self.by_name.values()):
            if interrupted():
                break
            if item.next_due <= now + within:
                due.append(item)
                # Keep the cadence; after a long stall, resume from now rather than burst.
                item.next_due = max(item.next_due + item.policy.detect.interval, now)
        return due

    def new_pass(self) -> None:
        self._claims = None  # the targets' containers may have changed since the last pass

    def refused(self, item: Supervised) -> dict[str, str]:
        """The target's containers another policy found first (core/claims.py), worked out
        once per pass for every policy rather than once per policy."""
        if self._claims is None:
            found = [(s.policy.name, [c.name for c in s.containers]) for s in self.by_name.values()]
            self._claims = claims.claims(found)
        return dict(self._claims.get(item.policy.name, {}))

    def sample(self, items: list[Supervised]) -> dict[str, Sample]:
        """A sample of each target, with what its monitor and Docker tell (observing.py). The
        probes that share a connection are sampled together: one round trip per broker."""
        groups: dict[Hashable, list[tuple[Supervised, tuple[str, ...]]]] = {}
        for item in items:
            queues = tracker.watched(item.policy, item.state)
            groups.setdefault(item.probe.group, []).append((item, queues))
        samples = {}
        for members in groups.values():
            found = members[0][0].probe.sample_group([(m.probe, q) for m, q in members])
            for (item, queues), sample in zip(members, found, strict=True):
                samples[item.policy.name] = observing.enrich(sample, item, item.monitor, queues)
        return samples

    def save(self, item: Supervised) -> str | None:
        """The target's state in its file; why it could not be written, if not."""
        path = self.store.path(item.policy.target.key)
        try:
            self.store.save(item.policy.target.key, item.policy.name, item.state)
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}"
        return None

    def record(self, policy: Policy, sample: Sample, decision: Decision | None) -> None:
        """The sample in the policy's history, for `report` (a full disk is logged once), and
        the decision in the debug log."""
        if decision is not None:
            log_sink.for_policy(log, policy.name).debug(
                "depth=%s processed=%s %s", sample.depth, sample.processed, decision.describe()
            )
        stuck = None if decision is None else decision.diagnosis.verdict is Verdict.STUCK
        try:
            self._history.append(policy.name, Row(sample, stuck, policy.detect.threshold))
        except OSError as exc:
            self._history_failed(f"cannot record {policy.name}'s history: {exc}")

    def flush_history(self) -> None:
        """The pass's rows, in the history files (once a pass: one write per file)."""
        try:
            self._history.flush()
        except OSError as exc:
            self._history_failed(f"cannot record the history in {self._history.state_dir}: {exc}")
        else:
            self._history_failing = False

    def _history_failed(self, message: str) -> None:
        if not self._history_failing:  # a full disk is logged once, until it is written again
            log.warning("%s", message)
        self._history_failing = True

    def close(self) -> None:
        self._history.close()
        for item in self.by_name.values():
            item.probe.close()
        for monitor in self.monitors.values():  # all at once: stopping waits on their threads
            monitor.request_stop()
        deadline = time.monotonic() + 3.0  # for all of them together
        for monitor in self.monitors.values():
            monitor.stop(max(0.0, deadline - time.monotonic()))
