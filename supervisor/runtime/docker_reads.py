"""The read-only Docker calls the loop makes, off the loop in one background thread: each
target's containers (every minute: what workers are mapped to, what a restart names), and
whether the engine answers (every 30 s: `docker_error_begin`/`_end`). A tick only reads what the
last call found; it never waits on Docker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from supervisor.core import events, outage
from supervisor.core.events import Event
from supervisor.core.outage import Outage, Transition
from supervisor.core.replicas import Container
from supervisor.errors import TargetError
from supervisor.policy import Target
from supervisor.runtime.wiring import Actuator, Supervised
from supervisor.sinks import log as log_sink

log = logging.getLogger("supervisor.daemon")

DOCKER_CHECK_EVERY = 30.0
IDENTIFY_EVERY = 60.0
IDENTIFY_RETRY = 5.0  # after a read that failed


def _identify(actuator: Actuator, target: Target) -> tuple[Container, ...]:
    """The target's containers; when there are none, the error names those there are (in this
    background thread: a tick never waits on Docker)."""
    try:
        return actuator.identify(target)
    except TargetError as exc:
        names = actuator.names()
        shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
        raise TargetError(f"{exc} (found: {shown or 'no container'})") from None


class DockerReads:
    def __init__(
        self,
        actuator: Callable[[], Actuator | None],
        wake: Callable[[], None],
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._actuator = actuator
        self._wake = wake
        self._clock = clock
        self._monotonic = monotonic
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-reads")
        self._ping: Future[str | None] | None = None
        self._next_ping = 0.0
        self.engine = Outage()  # is the engine unreachable, since when, why

    def identify(self, item: Supervised) -> None:
        """Take the containers the last read found; start the next read when it is due."""
        if item.identifying is not None and item.identifying.done():
            try:
                item.containers = item.identifying.result()
                item.identified = True
                item.identify_error = None
            except TargetError as exc:  # the target is not there: nothing can be judged
                item.identify_error = str(exc)
                item.next_identify = min(item.next_identify, self._monotonic() + IDENTIFY_RETRY)
            except Exception as exc:  # noqa: BLE001 - Docker unreachable is reported elsewhere
                log_sink.for_policy(log, item.policy.name).debug("identify failed: %s", exc)
                # Not found yet (a worker created after the supervisor): look again soon.
                item.next_identify = min(item.next_identify, self._monotonic() + IDENTIFY_RETRY)
            item.identifying = None
        now, actuator = self._monotonic(), self._actuator()
        if item.identifying is None and now >= item.next_identify and actuator is not None:
            item.next_identify = now + IDENTIFY_EVERY
            item.identifying = self._pool.submit(_identify, actuator, item.policy.target)

    def reachability(self) -> tuple[Event, ...]:
        """The engine's outage begun or ended since the last call, if any."""
        change: Transition | None = None
        if self._ping is not None and self._ping.done():
            error, self._ping = self._ping.result(), None
            self.engine, change = outage.observe(self.engine, error, self._clock())
        now, actuator = self._monotonic(), self._actuator()
        if self._ping is None and now >= self._next_ping and actuator is not None:
            self._next_ping = now + DOCKER_CHECK_EVERY
            self._ping = self._pool.submit(actuator.ping)
            self._ping.add_done_callback(lambda _: self._wake())
        return events.outage(change, (events.DockerErrorBegin, events.DockerErrorEnd), None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
