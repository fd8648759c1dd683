"""Every event to every sink (audit, log, metrics, notifications), in that order; a sink that
fails is logged and never keeps the event from the others."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace

from supervisor.core.events import Event

log = logging.getLogger("supervisor.daemon")

Sink = Callable[[Event], None]


class Fanout:
    """`dry_run`: every event says `dry_run: true`, whatever emitted it (a dry-run
    supervisor's `queues_changed`, `no_consumer`, `stop`... are a dry run's too)."""

    def __init__(self, sinks: Sequence[tuple[str, Sink]] = (), dry_run: bool = False) -> None:
        self.sinks: list[tuple[str, Sink]] = list(sinks)
        self.dry_run = dry_run

    def add(self, name: str, sink: Sink, first: bool = False) -> None:
        self.sinks.insert(0 if first else len(self.sinks), (name, sink))

    def __call__(self, *evs: Event) -> None:
        for ev in evs:
            if self.dry_run and not ev.dry_run:
                ev = replace(ev, dry_run=True)  # noqa: PLW2901 - the event as it is told
            for name, sink in self.sinks:
                try:
                    sink(ev)
                except Exception:  # noqa: BLE001 - a broken sink must not lose the others
                    log.error(
                        "the %s sink failed on %s:\n%s",
                        name,
                        ev.kind.value,
                        traceback.format_exc().rstrip(),
                    )
