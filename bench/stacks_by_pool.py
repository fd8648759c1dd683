"""What `[restart] capture_stacks` keeps, per pool: a Celery worker with hung tasks is sent
SIGUSR1 (Celery's stack dump, which the supervisor sends before a cold shutdown) and what it
logs within a second is read, as the supervisor reads the container's log. Real worker
processes against a private redis-server; prints a table, asserts nothing.

    PYTHONPATH=. python bench/stacks_by_pool.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

from harness.parts import WORKER_APP
from harness.services import RedisServer

HUNG = 2


def measure(pool: str, work: Path) -> dict[str, object]:
    server = RedisServer(work)
    server.start()
    env = {"TEST_BROKER_URL": server.url, "PATH": "/usr/bin:/bin"}
    log_path = work / f"{pool}.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-P", pool, "-c", str(HUNG),
         "--prefetch-multiplier", "1", "-Q", "celery", "-n", f"{pool}@stacks",
         "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=WORKER_APP, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    app = Celery("producer", broker=server.url, set_as_current=False)
    try:
        time.sleep(4)
        for _ in range(HUNG):
            app.send_task("tasks.poison", queue="celery")
        time.sleep(3)
        before = log_path.stat().st_size
        os.kill(worker.pid, signal.SIGUSR1)
        time.sleep(1.0)  # what the supervisor waits at most
        dump = log_path.read_bytes()[before:].decode(errors="replace")
        return {
            "pool": pool,
            "lines": len(dump.splitlines()),
            "threads": dump.count("# Thread:") or dump.count("Thread"),
            "hung task's frame": "in poison" in dump or "def poison" in dump or "poison(" in dump,
            "alive after": worker.poll() is None,
        }
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        app.close()
        server.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(pool, Path(tmp)) for pool in ("prefork", "threads", "gevent", "solo")]
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()
