"""Time that an NTP step cannot move (docs/design.md, "Time that cannot step").

Every duration the supervisor measures (run age and gaps, cooldown, backoff, budget window,
request and heartbeat staleness) is measured on the *stepless clock*: epoch-like seconds,
`anchor_wall + (boottime_now - anchor_boot)`, fixed when the process starts. It reads like
`time.time()` (so the audit and the state file stay readable) but follows `CLOCK_BOOTTIME`,
which a step of the wall clock does not move and which keeps counting through a suspend (a
cooldown elapses while a VM sleeps).

What is persisted carries its *frame* (the boot id and the offset `anchor_wall - anchor_boot`),
and is brought into the reader's frame by `translate`: exactly within one boot, through the wall
clock after a reboot (nothing else links two boots), never later than now.

Standard library only, and cheap: `supervisor health` imports it (so its records are slotted
classes, not dataclasses, whose `inspect` import alone costs more than health's budget; see
runtime/heartbeat.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NewType, Protocol

Instant = NewType("Instant", float)  # seconds on a stepless clock (epoch-like)

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def boottime() -> float:
    """Seconds since boot, suspend included; not moved by a step of the wall clock."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


_read_once: dict[str, str] = {}


def boot_id() -> str:
    """This boot's id (the same inside every container on this kernel); "" when unknown."""
    if BOOT_ID_FILE not in _read_once:
        try:
            with open(BOOT_ID_FILE, encoding="ascii") as f:
                _read_once[BOOT_ID_FILE] = f.read().strip()
        except OSError:
            _read_once[BOOT_ID_FILE] = ""
    return _read_once[BOOT_ID_FILE]


class Frame:
    """Where stepless times are measured from: `t = offset + boottime` on boot `boot_id`."""

    __slots__ = ("boot_id", "offset")

    def __init__(self, boot_id: str, offset: float) -> None:
        self.boot_id, self.offset = boot_id, offset

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and (self.boot_id, self.offset) == (
            other.boot_id,
            other.offset,
        )

    def __hash__(self) -> int:
        return hash((self.boot_id, self.offset))

    def __repr__(self) -> str:
        return f"Frame({self.boot_id!r}, {self.offset!r})"

    def same_boot(self, other: Frame) -> bool:
        return bool(self.boot_id) and self.boot_id == other.boot_id


class Here:
    """One reading of a stepless clock: its frame, now on it, and the wall clock now."""

    __slots__ = ("frame", "now", "wall")

    def __init__(self, frame: Frame, now: float, wall: float) -> None:
        self.frame, self.now, self.wall = frame, now, wall

    @property
    def skew(self) -> float:
        """How far the wall clock is ahead of the stepless clock now."""
        return self.wall - self.now

    def __repr__(self) -> str:
        return f"Here({self.frame!r}, now={self.now!r}, wall={self.wall!r})"


class Saved:
    """The frame persisted times were written in, and the wall clock's skew then (None: times
    written before frames, on the wall clock)."""

    __slots__ = ("frame", "skew")

    def __init__(self, frame: Frame, skew: float) -> None:
        self.frame, self.skew = frame, skew

    def to_json(self) -> dict[str, object]:
        return {"boot_id": self.frame.boot_id, "offset": self.frame.offset, "skew": self.skew}

    @staticmethod
    def from_json(data: object) -> Saved | None:
        if not isinstance(data, dict):
            return None
        return Saved(
            Frame(str(data["boot_id"]), float(data["offset"])), float(data.get("skew", 0.0))
        )

    @staticmethod
    def at(here: Here) -> Saved:
        return Saved(here.frame, here.skew)


def translate(t: float, saved: Saved | None, here: Here) -> Instant:
    """`t`, written in `saved` (None: a wall-clock time), on the clock read as `here`. The same
    boot: exact (the boot clock links them). Another boot, or no frame: through the wall clock,
    which is all two boots share. Never later than now: a time from the future (a wall clock
    that was ahead) would otherwise hold a cooldown or a budget for as long as it was ahead."""
    if saved is not None and saved.frame == here.frame:
        out = t  # written by this very clock
    elif saved is not None and saved.frame.same_boot(here.frame):
        out = t - saved.frame.offset + here.frame.offset
    else:
        wall = t + (saved.skew if saved is not None else 0.0)
        out = wall - here.skew
    return Instant(min(out, here.now))


def to_wall(t: float, here: Here) -> float:
    """A time of this clock on the wall clock now (for other hosts and for people)."""
    return t + here.skew


class Clock(Protocol):
    """What the daemon is given: now (stepless), and a reading with its frame."""

    def __call__(self) -> float: ...
    def here(self) -> Here: ...


class Stepless:
    """The stepless clock: call it for now. Its frame is fixed at construction."""

    def __init__(
        self,
        boot: Callable[[], float] = boottime,
        wall: Callable[[], float] = time.time,
        boot_id_of: Callable[[], str] = boot_id,
    ) -> None:
        self._boot, self._wall = boot, wall
        anchor_boot, anchor_wall = boot(), wall()
        self.frame = Frame(boot_id_of(), anchor_wall - anchor_boot)

    def __call__(self) -> Instant:
        return Instant(self.frame.offset + self._boot())

    def boot(self) -> float:
        return self._boot()

    def wall(self) -> float:
        return self._wall()

    def here(self) -> Here:
        return Here(self.frame, self(), self.wall())


_anchored: list[Stepless] = []


def process() -> Stepless:
    """This process's stepless clock, anchored on first use (the daemon, its progress monitors
    and the commands all read times in one frame)."""
    if not _anchored:
        _anchored.append(Stepless())
    return _anchored[0]
