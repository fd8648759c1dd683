"""One state directory, one supervisor: the daemon holds an exclusive lock on
`supervisor.lock` for as long as it runs. Other commands find the live daemon by that lock (the
kernel drops it the moment the process dies), never by trusting a pid written in a file.

Standard library only: `supervisor health` uses it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supervisor.errors import AlreadyRunningError

LOCK_FILE = "supervisor.lock"
PROC_LOCKS = Path("/proc/locks")


@contextmanager
def hold(state_dir: Path) -> Iterator[None]:
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunningError(
                f"{state_dir}: another supervisor is running with this state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people; commands read /proc/locks
        yield
    finally:
        os.close(fd)  # releases the lock


def holder(state_dir: Path, proc_locks: Path = PROC_LOCKS) -> int | None:
    """The pid of the process holding the state directory's lock, or None when nobody does.

    Read from the kernel's table of locks (`/proc/locks`) for the lock file's device and inode:
    nothing is locked or written, so this never disturbs a daemon that is starting.
    """
    try:
        st = os.stat(state_dir / LOCK_FILE)
        table = proc_locks.read_text()
    except FileNotFoundError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (blocked waiters have "->")
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[3] != "WRITE" or "->" in fields:
            continue
        try:
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if key == wanted and pid > 0:
            return pid
    return None
