"""`supervisor replay POLICY TRACE`: the pure replay (core/replay.py) over a recorded trace,
its actions printed as JSON lines, and drawn with `--plot`."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from supervisor.core.replay import ReplayStep, replay
from supervisor.errors import TraceError
from supervisor.policy import Policy
from supervisor.trace import read_trace


def run_replay(policy: Policy, trace: str, plot: Path | None = None) -> int:
    """`supervisor replay POLICY TRACE`: JSON lines of the actions on stdout, counts on stderr;
    with `plot`, a picture of them in that PNG file."""
    import json
    import logging
    import sys

    log = logging.getLogger("supervisor.replay")
    source = "<stdin>" if trace == "-" else trace
    stream: TextIO
    try:
        stream = sys.stdin if trace == "-" else open(trace, newline="")  # noqa: SIM115
    except OSError as exc:
        raise TraceError(f"{source}: cannot read: {exc.strerror or exc}") from None
    counts = {"samples": 0, "failed": 0, "restart": 0, "escalate": 0}
    steps: list[ReplayStep] = []
    try:
        for step in replay(policy, read_trace(stream, source)):
            if plot is not None:
                steps.append(step)
            counts["samples"] += 1
            counts["failed"] += not step.sample.ok
            if step.decision is not None:
                log.debug(
                    "t=%g depth=%s %s", step.sample.t, step.sample.depth, step.decision.describe()
                )
            for action in step.actions:
                counts[action.kind.value] += 1
                log.info("t=%g %s: %s", action.t, action.kind.value, action.reason)
                print(json.dumps(action.to_json()), flush=True)
    finally:
        if stream is not sys.stdin:
            stream.close()
    log.info(
        "%s: replayed %d samples (%d failed): %d restarts, %d escalations",
        policy.name,
        counts["samples"],
        counts["failed"],
        counts["restart"],
        counts["escalate"],
    )
    if plot is not None:
        from supervisor.picture import from_replay
        from supervisor.plot import render

        render([from_replay(policy.name, policy.detect.threshold, steps)], plot)
        log.info("wrote %s", plot)
    return 0
