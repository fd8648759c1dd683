"""An interruptible wait: signals and other threads end it at once."""

from __future__ import annotations

import contextlib
import select
import signal
import socket
from collections import deque
from types import FrameType
from typing import Any


class Waker:
    """A self-pipe, so that a signal handler never touches a lock the code it interrupted may
    hold (setting a threading.Event from a handler can deadlock)."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self.pending: deque[int] = deque()
        self._previous: dict[int, Any] = {}

    def install(self, signals: list[signal.Signals]) -> None:
        signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        signal.set_wakeup_fd(-1)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._w.send(b"\0")

    def wait(self, timeout: float) -> None:
        if self.pending:
            return
        readable, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if readable:
            with contextlib.suppress(BlockingIOError):
                while self._r.recv(4096):
                    pass

    def close(self) -> None:
        self._r.close()
        self._w.close()
