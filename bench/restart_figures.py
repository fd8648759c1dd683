"""Figures for scenario 1 (a hung worker, a producer adding 4 tasks/s), per restart method:

- stuck -> decision: from the moment the stuck condition held (run start + window) to the
  engine's restart decision (bounded by the sampling interval);
- decision -> call: from the decision to the Docker call (the hand-off to the restart thread);
- call -> consuming: from the Docker call to the first task completed by the restarted worker;
- restart: how long the restart itself took, as the actuator measured it;
- unacked: messages left in kombu's `unacked` hash just after the restart, and 20 s later.

Needs redis-server and DOCKER_HOST (run it through scripts/figures). Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.parts import (
    Producer,
    SupervisorProcess,
    Worker,
    celery_app,
    docker_client,
    ensure_base_image,
    queue_state,
    write_policy,
)
from harness.services import RedisServer

WINDOW = 5.0


def one_run(method: str, workdir: Path) -> dict[str, Any]:
    server = RedisServer(workdir)
    server.start()
    engine = docker_client()
    ensure_base_image(engine)
    app = celery_app(server.url)
    worker = Worker(engine, server.url)
    sup = None
    producer = None
    try:
        worker.wait_ready(app)
        policy = write_policy(
            workdir / "p.toml",
            "bench",
            server.url,
            worker.name,
            detect={"window": WINDOW},
            restart={"method": method},
        )
        sup = SupervisorProcess([policy], workdir / "state")
        sup.wait_started()
        app.send_task("tasks.poison", queue="celery")
        producer = Producer(app, 4).start()
        [record] = sup.wait_for(lambda: sup.events("restart"), 120, "restart")
        unacked_now = queue_state(server.url)[1]
        client = server.client()
        deadline = time.monotonic() + 60
        first_done = None
        while time.monotonic() < deadline and first_done is None:
            after = client.zrangebyscore(
                "test:done_at", record["called_at"], "+inf", start=0, num=1, withscores=True
            )
            first_done = after[0][1] if after else None
            time.sleep(0.05)
        producer.stop()
        time.sleep(20)
        depth, unacked_later = queue_state(server.url)
        lost = len(set(producer.sent) - {int(x) for x in client.smembers("test:done")})
        return {
            "stuck_to_decision": record["decided_at"] - (record["run_start"] + WINDOW),
            "decision_to_call": record["called_at"] - record["decided_at"],
            "call_to_consuming": (first_done - record["called_at"]) if first_done else None,
            "restart_seconds": record["seconds"],
            "unacked_now": unacked_now,
            "unacked_later": unacked_later,
            "depth_later": depth,
            "not_done": lost,
        }
    finally:
        if producer is not None:
            producer.stop()
        if sup is not None:
            sup.stop()
        worker.remove()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for method in ("cold", "restart"):
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as d:
                results.append(one_run(method, Path(d)))
        rows.append((method, results))

    def med(results: list[dict[str, Any]], key: str) -> str:
        values = [r[key] for r in results if r[key] is not None]
        if not values:
            return "never"
        return f"{statistics.median(values):.2f}"

    print(
        f"scenario 1, {args.runs} run(s) per method, median; interval 0.5 s, window {WINDOW:g} s,"
        " stop_timeout 5 s"
    )
    print(
        f"{'method':8} {'stuck->decision s':>17} {'decision->call s':>16} "
        f"{'call->consuming s':>17} {'restart s':>9} {'unacked after':>13} "
        f"{'unacked +20s':>12} {'tasks not done':>14}"
    )
    for method, results in rows:
        print(
            f"{method:8} {med(results, 'stuck_to_decision'):>17} "
            f"{med(results, 'decision_to_call'):>16} {med(results, 'call_to_consuming'):>17} "
            f"{med(results, 'restart_seconds'):>9} {med(results, 'unacked_now'):>13} "
            f"{med(results, 'unacked_later'):>12} {med(results, 'not_done'):>14}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
