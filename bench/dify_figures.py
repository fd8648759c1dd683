"""Figures for the Dify-shaped worker (issue 8), scenarios 1, 2 and 5, with the shipped policy
(durations shortened, as in the tests): gevent -c 4, prefetch 1, Dify's queues, a password
broker on DB 1, a Redis result backend, restart: always.

1. every greenlet hangs cooperatively on `dataset`, a producer publishes 25 tasks/s;
2. a task blocks the gevent hub (heartbeats and remote control stop with it);
5. two replicas, one hung (tasks of 0.5 s, 14/s: one replica alone does 8/s).

For each: seconds from the hang to the restart decision, and from the decision to the worker
completing tasks again; tasks published (the producer stops 10 s after the restart), completed,
and left in `unacked` 10 s after the restart; for 5, the healthy replica's tasks lost (tasks it
started that never completed: must be 0). Needs redis-server and DOCKER_HOST (scripts/figures).
Prints a table; asserts nothing.

    PYTHONPATH=. python bench/dify_figures.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from harness.parts import (
    DIFY_QUEUES,
    Producer,
    SupervisorProcess,
    Worker,
    celery_app,
    dify_worker,
    docker_client,
    ensure_base_image,
    shipped_policy,
)
from harness.services import RedisServer

LABELS = {"com.docker.compose.project": "dify", "com.docker.compose.service": "worker"}


def run(scenario: int, work: Path) -> dict[str, Any]:
    client = docker_client()
    ensure_base_image(client)
    server = RedisServer(work, password="difyai123456")
    server.start()
    url = server.url.rsplit("/", 1)[0] + "/1"
    app = celery_app(url)
    workers: list[Worker] = []
    sup = None
    producer = None
    try:
        if scenario == 5:
            hung = dify_worker(
                client, url, name="dify-worker-1", labels=LABELS, queues=DIFY_QUEUES + ",only-1"
            )
            healthy = dify_worker(client, url, name="dify-worker-2", labels=LABELS)
            workers = [hung, healthy]
            target = 'compose_project = "dify"\ncompose_service = "worker"\nall = true'
            policy = shipped_policy(work / "policies")
            policy.write_text(policy.read_text().replace('container = "iti-dify-worker"', target))
        else:
            workers = [dify_worker(client, url)]
            policy = shipped_policy(work / "policies")
        for w in workers:
            w.wait_ready(app)
        sup = SupervisorProcess([policy], work / "state", extra_env={"SUPERVISOR_BROKER_URL": url})
        sup.wait_started()
        sup.wait_for(lambda: sup.events("queues_changed"), 30, "queues")
        time.sleep(2)
        hung_at = time.time()
        if scenario == 1:
            for _ in range(4):
                app.send_task("tasks.poison", queue="dataset")
            producer = Producer(app, 25, 0.01, queue="dataset").start()
        elif scenario == 2:
            app.send_task("tasks.block_hub", queue="dataset")
            producer = Producer(app, 25, 0.01, queue="dataset").start()
        else:
            for _ in range(4):
                app.send_task("tasks.poison", queue="only-1")
            producer = Producer(app, 14, 0.5, queue="dataset").start()
        [record] = sup.wait_for(lambda: sup.events("restart"), 180, "the restart")
        time.sleep(10)
        producer.stop()
        broker = redis.Redis.from_url(url)
        unacked = int(broker.hlen("unacked"))
        decided = float(record["decided_at"])
        after = broker.zrangebyscore(
            "test:done_at", decided, "+inf", start=0, num=1, withscores=True
        )
        deadline = time.monotonic() + 120
        while broker.llen("dataset") and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        done = {int(x) for x in broker.smembers("test:done")}
        out = {
            "scenario": scenario,
            "hang -> decision": decided - hung_at,
            "decision -> consuming": (after[0][1] - decided) if after else None,
            "published": len(producer.sent),
            "completed": len(done & set(producer.sent)),
            "unacked 10 s after": unacked,
            "restart": f"{record['seconds']:.2f}s, sigquit={record.get('sigquit')}",
        }
        if scenario == 5:
            ran = {int(x) for x in broker.smembers(f"test:started:{workers[1].node}")}
            out["healthy replica's tasks lost"] = len(ran - done)
            out["restarted"] = ",".join(record["containers"])
        return out
    finally:
        if producer is not None:
            producer.stop()
        if sup is not None:
            sup.stop()
        for w in workers:
            w.remove()
        app.close()
        server.stop()


def main() -> None:
    rows = []
    for scenario in (1, 2, 5):
        with tempfile.TemporaryDirectory() as d:
            rows.append(run(scenario, Path(d)))
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        cells = []
        for row in rows:
            value = row.get(key, "")
            cells.append(f"{value:.2f}" if isinstance(value, float) else str(value))
        print(f"{key:<30}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
