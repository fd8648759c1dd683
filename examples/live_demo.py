"""The live demo behind scripts/demo: a Celery worker container named like the chapter's
(`iti-dify-worker`) on a private Redis and Docker engine, made stuck by a task that hangs its
pool while a producer keeps publishing. The supervisor first runs in dry-run (it audits the
restart it would make and changes nothing), then live (it restarts the worker, which drains
the queue). The audit records are printed at the end.

The policy is the shipped one with its clock scaled down (sampling every second, a 10 s window
instead of 5 min); the threshold is the chapter's 100.
"""

from __future__ import annotations

import json
import os
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

SCALED = {
    "detect": {"interval": 1, "window": 10, "threshold": 100, "max_gap": 3},
    "restart": {"cooldown": 60, "backoff_initial": 60, "backoff_max": 300, "stop_timeout": 10},
}


def say(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


def show(records: list[dict[str, Any]]) -> None:
    keep = (
        "time",
        "event",
        "policy",
        "target",
        "trigger",
        "outcome",
        "reason",
        "containers",
        "seconds",
        "dry_run",
    )
    for record in records:
        slim = {k: record[k] for k in keep if k in record}
        if "depths" in record:
            slim["depths"] = [d for _, d in record["depths"]]
        print(json.dumps(slim))


def watch(sup: SupervisorProcess, broker: str, event: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        found = sup.events(event)
        if found:
            return found[0]
        if time.monotonic() - last >= 3:
            say(f"  queue depth {queue_state(broker)[0]}")
            last = time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"demo: no {event} within {timeout}s:\n{sup.tail()}")


def main() -> int:
    broker = os.environ["SUPERVISOR_TEST_REDIS_URL"]
    engine = docker_client()
    ensure_base_image(engine)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=os.environ.get("SERVICES_DIR")))
    app = celery_app(broker)
    say(f"starting a Celery worker container on Redis {broker}")
    worker = Worker(engine, broker, name="iti-dify-worker")
    producer = None
    try:
        worker.wait_ready(app)
        policy = write_policy(
            workdir / "dify-worker.toml", "dify-worker", broker, worker.name, **SCALED
        )
        say("a task hangs the worker's pool; a producer publishes 15 tasks/s")
        app.send_task("tasks.poison", queue="celery")
        producer = Producer(app, 15).start()
        started = worker.started_at()

        say("1) dry-run: the supervisor decides, audits, and changes nothing")
        dry = SupervisorProcess([policy], workdir / "dry-run-state", dry_run=True)
        dry.wait_started()
        record = watch(dry, broker, "dry_run_restart", 60)
        say(f"  would restart {record['containers']}: {record['reason']}")
        dry.stop()
        untouched = "unchanged" if worker.started_at() == started else "CHANGED"
        say(f"  the worker's StartedAt is {untouched}")

        say("2) live: the same decision, carried out")
        live = SupervisorProcess([policy], workdir / "live-state")
        live.wait_started()
        record = watch(live, broker, "restart", 60)
        say(f"  restarted {record['containers']} in {record['seconds']}s ({record['method']})")
        producer.stop()
        deadline = time.monotonic() + 30
        while queue_state(broker) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.5)
        depth, unacked = queue_state(broker)
        say(f"  queue drained: depth {depth}, unacked {unacked}")
        live.stop()

        print("# audit, dry-run", flush=True)
        show(dry.audit())
        print("# audit, live", flush=True)
        show(live.audit())
        return 0 if (depth, unacked) == (0, 0) else 1
    finally:
        if producer is not None:
            producer.stop()
        worker.remove()


if __name__ == "__main__":
    sys.exit(main())
