"""Where the stacks a restart asked the workers for are kept: one file per incident in the
state directory's `stacks/`, named by policy and time, which the restart's audit record names.
The text is masked like everything the supervisor writes (a stack may show a URL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from supervisor.broker_url import redact
from supervisor.runtime.files import write_atomic
from supervisor.runtime.restarting import KeepStacks

STACKS_DIR = "stacks"


def keeper(state_dir: Path, policy: str) -> KeepStacks:
    def keep(text: str, at: float) -> str:
        stamp = datetime.fromtimestamp(at, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        name = f"{STACKS_DIR}/{policy}-{stamp}.log"
        write_atomic(state_dir / name, redact(text).encode())
        return name

    return keep
