"""Time from a hang to the decision, at 1 message a second, a minute and every 10 minutes:
the chapter's rule alone, and with the rules at any depth (issue 26), under a policy's defaults.

Pure simulation through the tracker `replay` drives (core/replay.py), so the figures are the
code's own: samples every `interval`, the worker hung at t = 0, messages arriving at the rate
from then on (the first one rate seconds after the hang), the worker answering when the rules
ask. Three worker failures:
- idle: alive, heartbeats with 0 of 4 slots busy and a frozen count (kombu#2629);
- hung: 4 of 4 slots busy with tasks started at the hang (a dead SMTP socket), heartbeats go on;
- chapter: what the chapter's rule alone decides for the same trace (the idle worker's).

    PYTHONPATH=. python bench/hang_to_decision.py [policies/dify-worker.toml]
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.hangs import table
from supervisor.durations import format_duration
from supervisor.policy import load_policy


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "policies/dify-worker.toml")
    policy = load_policy(path)
    d = policy.detect
    print(
        f"{path}: interval {format_duration(d.interval)}, idle_window "
        f"{format_duration(d.idle_window) if d.idle_window else 'off'}, max_task_runtime "
        f"{format_duration(d.max_task_runtime) if d.max_task_runtime else 'off'}, overrides "
        f"{dict((k, format_duration(v)) for k, v in d.task_runtime.items())}"
    )
    print("| arrival rate after the hang | chapter's rule alone | idle worker | hung slots |")
    print("| --- | --- | --- | --- |")
    for label, chapter, idle, hung in table(policy):
        cells = [
            format_duration(x) if x is not None else "none in 30h" for x in (chapter, idle, hung)
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
