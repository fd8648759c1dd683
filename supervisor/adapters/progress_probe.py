"""The worker's progress: how many tasks it has started, from its own heartbeats.

A Celery worker sends `worker-heartbeat` every 2 s with `processed`, its count of started
tasks. A listener thread keeps the latest count of each worker, and asks each new worker once a
minute which queues it consumes (`active_queues`, addressed to that worker so the reply wait ends
at its answer). The tick only reads this snapshot, so a probe never stalls a tick. No fresh
heartbeat from a worker of the policy's queues means progress unknown: the depth rule decides.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from supervisor.policy import Broker, redact_url

log = logging.getLogger("supervisor.progress")

QUEUES_REFRESH = 60.0


@dataclass
class _Worker:
    processed: int
    seen: float  # monotonic time of the last heartbeat
    freq: float
    queues: frozenset[str] | None = None
    queues_checked: float = float("-inf")


class ProgressMonitor:
    def __init__(
        self,
        broker: Broker,
        clock: Callable[[], float] = time.monotonic,
        inspect_timeout: float = 1.0,
    ) -> None:
        self._where = redact_url(broker.url)
        self._app = Celery("iti-worker-supervisor", broker=broker.url, set_as_current=False)
        options: dict[str, Any] = {}
        if broker.key_prefix:
            options["global_keyprefix"] = broker.key_prefix
        self._app.conf.update(
            broker_transport_options=options,
            broker_connection_timeout=broker.timeout,
            broker_connection_retry_on_startup=False,
        )
        self._clock = clock
        self._inspect_timeout = inspect_timeout
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._receiver: Any = None
        self._thread = threading.Thread(
            target=self._listen, name=f"heartbeats {self._where}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def processed(self, queues: Iterable[str]) -> int | None:
        """Tasks started so far by the live workers that consume any of `queues`, or None."""
        wanted = set(queues)
        now = self._clock()
        total, known = 0, False
        with self._lock:
            for worker in self._workers.values():
                fresh = now - worker.seen <= max(3 * worker.freq, 5.0)
                if fresh and worker.queues is not None and worker.queues & wanted:
                    total += worker.processed
                    known = True
        return total if known else None

    def workers(self) -> dict[str, tuple[int, frozenset[str] | None]]:
        with self._lock:
            return {h: (w.processed, w.queues) for h, w in self._workers.items()}

    def _listen(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                with self._app.connection_for_read() as conn:
                    receiver = self._app.events.Receiver(
                        conn,
                        handlers={
                            "worker-heartbeat": self._on_heartbeat,
                            "worker-online": self._on_online,
                            "worker-offline": self._on_offline,
                        },
                    )
                    receiver.connect_max_retries = 1
                    self._receiver = receiver
                    if self._stop.is_set():
                        return
                    if failing:
                        log.info("heartbeat listener on %s reconnected", self._where)
                        failing = False
                    receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:  # noqa: BLE001 - any broker fault: retry, never die
                if not failing:
                    log.warning("heartbeat listener on %s failed, will retry: %s", self._where, exc)
                    failing = True
                with self._lock:
                    self._workers.clear()
                self._stop.wait(2.0)

    def _on_heartbeat(self, event: dict[str, Any]) -> None:
        hostname = str(event.get("hostname", ""))
        if not hostname:
            return
        now = self._clock()
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is None:
                worker = _Worker(0, now, float(event.get("freq") or 2.0))
                self._workers[hostname] = worker
            worker.processed = int(event.get("processed") or 0)
            worker.seen = now
            worker.freq = float(event.get("freq") or 2.0)
            needs_queues = now - worker.queues_checked >= QUEUES_REFRESH
        if needs_queues:
            self._lookup_queues(hostname)

    def _on_online(self, event: dict[str, Any]) -> None:
        hostname = str(event.get("hostname", ""))
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is not None:
                worker.queues_checked = float("-inf")  # a restarted worker may consume others

    def _on_offline(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._workers.pop(str(event.get("hostname", "")), None)

    def _lookup_queues(self, hostname: str) -> None:
        try:
            replies = self._app.control.inspect(
                destination=[hostname], timeout=self._inspect_timeout
            ).active_queues()
        except Exception as exc:  # noqa: BLE001 - a failed lookup leaves progress unknown
            log.debug("active_queues of %s failed: %s", hostname, exc)
            replies = None
        queues = (replies or {}).get(hostname)
        with self._lock:
            worker = self._workers.get(hostname)
            if worker is None:
                return
            worker.queues_checked = self._clock()
            if queues is not None:
                worker.queues = frozenset(str(q.get("name")) for q in queues)
