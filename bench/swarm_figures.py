"""Figures for Swarm targets and leases (issue 10), on a single-node swarm of the engine at
DOCKER_HOST (made one if it is not, and left again afterwards).

1. per-task cold and force_update: a worker service with two replicas, one hung (tasks of
   0.2 s at 8/s: one replica alone does 5/s); seconds from the hang to the restart decision,
   to the task's replacement (cold) or the update's convergence (force_update), and to the
   backlog draining;
2. leases: two supervisors, the holder SIGKILLed; seconds from the kill to the other's
   `lease_acquired`, against the lease period.

Prints a table; asserts nothing.

    PYTHONPATH=. python bench/swarm_figures.py [--runs 3] [--lease 3]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from harness.parts import (
    Producer,
    SupervisorProcess,
    SwarmWorker,
    Worker,
    celery_app,
    docker_client,
    ensure_base_image,
    write_policy,
)
from harness.services import RedisServer


@contextlib.contextmanager
def single_node_swarm(client: Any) -> Iterator[None]:
    made = client.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        client.swarm.init(advertise_addr="127.0.0.1")
    try:
        yield
    finally:
        if made:
            client.swarm.leave(force=True)


def drained(url: str, timeout: float = 120) -> bool:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if client.llen("celery") == 0 and client.hlen("unacked") == 0:
                return True
            time.sleep(0.25)
        return False
    finally:
        client.close()


def swarm_run(client: Any, workdir: Path, method: str) -> dict[str, float]:
    server = RedisServer(workdir / f"redis-{method}-{time.monotonic_ns()}")
    server.workdir.mkdir(parents=True)
    server.start()
    app = celery_app(server.url)
    worker = SwarmWorker(client, server.url, replicas=2)
    try:
        worker.wait_ready(app)
        policy = write_policy(
            workdir / f"{method}.toml", "w", server.url, "unused", restart={"method": method}
        )
        policy.write_text(
            policy.read_text().replace('container = "unused"', f'swarm_service = "{worker.name}"')
        )
        sup = SupervisorProcess([policy], workdir / f"state-{method}-{time.monotonic_ns()}")
        try:
            sup.wait_started()
            time.sleep(3)
            hang = time.monotonic()
            app.send_task("tasks.poison", queue="only-1")
            producer = Producer(app, per_second=8, work_seconds=0.2).start()
            try:
                [record] = sup.wait_for(lambda: sup.events("restart"), 180, "a restart")
                decided = time.monotonic() - hang - record["seconds"]
            finally:
                producer.stop()
            ok = drained(server.url)
            return {
                "decision": decided,
                "replaced": record["seconds"],
                "drained": time.monotonic() - hang if ok else float("nan"),
            }
        finally:
            sup.stop()
    finally:
        worker.remove()
        app.close()
        server.stop()


def lease_run(client: Any, workdir: Path, period: float) -> float:
    server = RedisServer(workdir / f"redis-lease-{time.monotonic_ns()}")
    server.workdir.mkdir(parents=True)
    server.start()
    worker = Worker(client, server.url)
    try:
        policy = write_policy(workdir / "lease.toml", "w", server.url, worker.name)
        env = {"SUPERVISOR_LEASE": f"{period:g}s"}
        first = SupervisorProcess([policy], workdir / f"a-{time.monotonic_ns()}", extra_env=env)
        second: SupervisorProcess | None = None
        try:
            first.wait_started()
            first.wait_for(lambda: first.events("lease_acquired"), 30, "a holds the lease")
            second = SupervisorProcess(
                [policy], workdir / f"b-{time.monotonic_ns()}", extra_env=env
            )
            second.wait_started()
            time.sleep(period)
            killed = time.time()
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            standby = second
            [taken] = standby.wait_for(
                lambda: standby.events("lease_acquired"), 5 * period, "takeover"
            )
            return float(taken["t"]) - killed
        finally:
            if second is not None:
                second.stop()
            first.stop()
    finally:
        worker.remove()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lease", type=float, default=3.0, help="lease period, seconds")
    args = parser.parse_args()
    client = docker_client()
    ensure_base_image(client)
    rows: dict[str, list[dict[str, float]]] = {"cold": [], "force_update": []}
    takeovers: list[float] = []
    with tempfile.TemporaryDirectory() as d, single_node_swarm(client):
        workdir = Path(d)
        for _ in range(args.runs):
            for method, runs in rows.items():
                runs.append(swarm_run(client, workdir, method))
            takeovers.append(lease_run(client, workdir, args.lease))
    print(f"Swarm service, 2 replicas, one hung; median of {args.runs} runs (seconds)")
    print(f"{'method':>13} {'hang->decision':>15} {'replaced':>9} {'hang->drained':>14}")
    for method, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{method:>13} {med['decision']:15.1f} {med['replaced']:9.1f} {med['drained']:14.1f}")
    print(
        f"lease takeover after the holder's SIGKILL, period {args.lease:g}s: "
        + ", ".join(f"{t:.2f}s" for t in takeovers)
        + f" (at most {2 * args.lease:g}s allowed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
