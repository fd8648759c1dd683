"""One state directory, one supervisor: the daemon holds an exclusive lock on
`supervisor.lock` for as long as it runs. Other commands find the live daemon by that lock (the
kernel drops it the moment the process dies), never by trusting a pid written in a file.

`supervisor health` uses `holder` every few seconds: this module imports only `os` and `fcntl`.
"""

from __future__ import annotations

import fcntl
import os

from supervisor.errors import AlreadyRunningError

LOCK_FILE = "supervisor.lock"
PROC_LOCKS = "/proc/locks"


class Held:
    """`with Held(state_dir):` the state directory is this process's until the block ends."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = os.fspath(state_dir)
        self._fd = -1

    def __enter__(self) -> Held:
        fd = os.open(os.path.join(self.state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunningError(
                f"{self.state_dir}: another supervisor is running with this state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for people; commands read the lock itself
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)  # releases the lock
        self._fd = -1


def holder(state_dir: str | os.PathLike[str], proc_locks: str = PROC_LOCKS) -> int | None:
    """The pid of the process holding the state directory's lock, or None when nobody does.

    Read from the kernel's table of locks for the lock file's device and inode: nothing is
    locked or written, so this never disturbs a daemon that is starting. Where that table
    cannot be read, a shared lock is tried instead (it fails only while the daemon holds its
    exclusive one) and the pid comes from the lock file, which the holder wrote.
    """
    path = os.path.join(state_dir, LOCK_FILE)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        with open(proc_locks, encoding="ascii") as f:
            table = f.read()
    except OSError:
        return _holder_by_trying(path)
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (a blocked waiter has "->")
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


def _holder_by_trying(path: str) -> int | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
