"""Every event to every sink (audit, log, metrics, notifications), in that order; a sink that
fails is logged and never keeps the event from the others."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence

from supervisor.core.events import Event

log = logging.getLogger("supervisor.daemon")

Sink = Callable[[Event], None]


class Fanout:
    def __init__(self, sinks: Sequence[tuple[str, Sink]] = ()) -> None:
        self.sinks: list[tuple[str, Sink]] = list(sinks)

    def add(self, name: str, sink: Sink, first: bool = False) -> None:
        self.sinks.insert(0 if first else len(self.sinks), (name, sink))

    def __call__(self, *evs: Event) -> None:
        for ev in evs:
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
