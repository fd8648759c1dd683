"""The one way the supervisor writes a file others read: whole or not at all, and durable.

A reader (another command, or this daemon after a crash) sees the old content or the new one,
never half of it, and the new one survives a power cut once this returns. `durable=False` keeps
the first promise only, for a file rewritten every second that nobody needs after a power cut
(the heartbeat): fsync there costs the daemon CPU and the disk wear for nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from supervisor.errors import UsageError


def write_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread without `tempfile`, which `health` cannot afford to import.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def writable_state_dir(directory: Path) -> None:
    """Make `directory` if need be and write a file in it (and in the state files' folders
    that exist already), so that a directory the daemon cannot write is said before it starts
    rather than met at its first restart (or as a traceback taking the lock). UsageError when
    it cannot."""
    try:
        _write_in(directory)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise UsageError(
            f"state directory {directory} cannot be written: {exc.strerror or exc}{where}; "
            "give the supervisor a directory it can write (--state-dir or SUPERVISOR_STATE_DIR)"
        ) from None


def _write_in(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for folder in (directory, directory / "state", directory / "state" / "targets"):
        if folder == directory or folder.is_dir():
            probe = folder / f".write-check.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"1")
                os.fsync(fd)
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(probe)
