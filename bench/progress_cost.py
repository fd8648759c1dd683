"""What the second source of progress (remote control, for workers without heartbeats) costs
the broker: Redis commands and bytes per interval, for 1 and for 10 silent workers.

Real parts: a private redis-server and N Celery workers (`--without-heartbeat --without-gossip
--without-mingle`, processes of this machine). The supervisor's poll runs once per interval
(1 s here) for the measured period; the same period with the workers alone is the baseline,
subtracted. Figures from the server's own INFO commandstats and net byte counters. Asserts
nothing.

    PYTHONPATH=. python bench/progress_cost.py [--polls 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from harness.parts import WORKER_APP
from harness.services import RedisServer
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.policy import parse_policy

TARGET = 10  # issue 20: commands per interval for one silent worker


def counters(client: redis.Redis) -> tuple[dict[str, int], int]:
    stats: dict[str, Any] = client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    net: dict[str, Any] = client.info("stats")
    return calls, int(net["total_net_input_bytes"]) + int(net["total_net_output_bytes"])


def window(client: redis.Redis, seconds: float, action: Any = None) -> tuple[dict[str, int], int]:
    calls0, bytes0 = counters(client)
    end = time.monotonic() + seconds
    polls = 0
    while time.monotonic() < end:
        started = time.monotonic()
        if action is not None:
            action()
            polls += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    calls1, bytes1 = counters(client)
    delta = {k: v - calls0.get(k, 0) for k, v in calls1.items() if v - calls0.get(k, 0)}
    delta.pop("info", None)  # the measurement's own
    return delta, bytes1 - bytes0


def measure(count: int, polls: int, work: Path) -> None:
    server = RedisServer(work / f"redis-{count}")
    (work / f"redis-{count}").mkdir()
    server.start()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-c", "1", "-Q", "celery",
             "-n", f"w{i}@bench", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-l", "warning"],
            cwd=WORKER_APP,
            env={"TEST_BROKER_URL": server.url, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(count)
    ]  # fmt: skip
    client = server.client()
    policy = parse_policy(
        {"name": "w", "broker": {"url": server.url}, "target": {"container": "c"}}, "bench"
    )
    monitor = ProgressMonitor(policy.broker, poll_every=1.0)  # polled by hand, not started
    try:
        deadline = time.monotonic() + 60
        while len(monitor.live_workers()) < count and time.monotonic() < deadline:
            time.sleep(0.5)
        monitor.poll_once()  # first contact: connections, and each worker's queues
        time.sleep(3)
        base_calls, base_bytes = window(client, polls)
        calls, sent = window(client, polls, monitor.poll_once)
        known = monitor.progress(["celery"])
    finally:
        monitor.stop()
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(20)
        server.stop()
    extra = {k: (v - base_calls.get(k, 0)) / polls for k, v in calls.items()}
    extra = {k: round(v, 1) for k, v in sorted(extra.items()) if round(v, 1)}
    per_poll_bytes = (sent - base_bytes) / polls
    print(
        f"{count:>2} worker(s): {sum(extra.values()):.1f} commands and {per_poll_bytes / 1024:.1f}"
        f" KiB per interval ({known.processed} started tasks known from {known.source})"
    )
    print(f"    per command: {extra}")
    if count == 1:
        met = "met" if sum(extra.values()) <= TARGET else "NOT MET"
        print(f"    target for one silent worker: <= {TARGET} commands per interval: {met}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for count in (1, 10):
            measure(count, args.polls, Path(d))


if __name__ == "__main__":
    main()
