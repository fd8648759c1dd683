"""The `supervisor` command. A plain `supervisor health` (the container's HEALTHCHECK, every few
seconds) goes straight to `health.py`; everything else, help and mistakes included, goes to the
full command line in `cli.py`, which is the one definition of every command and option."""

from __future__ import annotations

import sys


def main() -> int:
    from supervisor import health

    call = health.plain_call(sys.argv[1:])
    if call is not None:
        return health.run(*call)
    from supervisor.cli import main as cli_main

    return cli_main()
