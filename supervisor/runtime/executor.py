"""Runs the core's commands against Docker in a small thread pool, so one slow restart never
delays the loop, and hands each result back to the loop thread, which alone feeds the core.

Nothing vanishes: an exception in a call is logged with its traceback and comes back as a
failed result plus the text of the internal error, for the loop to audit.
"""

from __future__ import annotations

import logging
import queue
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("supervisor.executor")

K = TypeVar("K")  # what the caller keys a call by
C = TypeVar("C")  # the command
R = TypeVar("R")  # its result


@dataclass(frozen=True)
class Done(Generic[K, C, R]):
    key: K
    command: C
    result: R | None  # None when the call raised
    error: str | None = None  # the internal error, with its traceback's last line


class Executor(Generic[K, C, R]):
    def __init__(self, on_done: Callable[[], None], workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="act")
        self._done: queue.SimpleQueue[Done[K, C, R]] = queue.SimpleQueue()
        self._on_done = on_done
        self.in_flight = 0

    def submit(self, key: K, command: C, call: Callable[[C], R]) -> None:
        self.in_flight += 1
        self._pool.submit(self._run, key, command, call)

    def _run(self, key: K, command: C, call: Callable[[C], R]) -> None:
        try:
            self._done.put(Done(key, command, call(command)))
        except Exception as exc:  # noqa: BLE001 - reported to the loop, never lost
            log.error(
                "internal error while carrying out %s for %s:\n%s",
                type(command).__name__,
                key,
                traceback.format_exc().rstrip(),
            )
            self._done.put(Done(key, command, None, f"{type(exc).__name__}: {exc}"))
        finally:
            self._on_done()

    def completed(self) -> list[Done[K, C, R]]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(out)
        return out

    def shutdown(self) -> list[Done[K, C, R]]:
        """Wait for the calls in flight; what they returned."""
        self._pool.shutdown(wait=True)
        return self.completed()
