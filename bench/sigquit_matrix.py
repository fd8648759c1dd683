"""What a Celery worker does on SIGQUIT (cold shutdown) with hung tasks, per pool and result
backend: does it exit, how fast, and where do its prefetched messages go? Real worker processes
of the given interpreter (so another Celery version can be measured from its own venv) against
a private redis-server. Prints a table; asserts nothing.

    PYTHONPATH=. python bench/sigquit_matrix.py [--python /path/to/venv/bin/python]
"""

from __future__ import annotations

import argparse
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

HUNG, WAITING = 2, 6


def measure(python: str, pool: str, backend: bool, work: Path) -> dict[str, object]:
    server = RedisServer(work)
    server.start()
    client = server.client()
    env = {"TEST_BROKER_URL": server.url, "PATH": "/usr/bin:/bin"}
    if backend:
        env["TEST_RESULT_BACKEND"] = server.url.rsplit("/", 1)[0] + "/2"
    worker = subprocess.Popen(
        [python, "-m", "celery", "-A", "tasks", "worker", "-P", pool, "-c", str(HUNG),
         "--prefetch-multiplier", "2", "-Q", "celery", "-n", "quit@bench", "--without-mingle",
         "--without-gossip", "-l", "warning"],
        cwd=WORKER_APP, env=env, stdout=subprocess.DEVNULL,
        stderr=(work / f"{pool}-{backend}.log").open("wb"), start_new_session=True,
    )  # fmt: skip
    app = Celery("producer", broker=server.url, set_as_current=False)
    try:
        time.sleep(4)
        for _ in range(HUNG):
            app.send_task("tasks.poison", queue="celery")
        for i in range(WAITING):
            app.send_task("tasks.work", args=[i], queue="celery")
        time.sleep(4)
        reserved = int(client.hlen("unacked"))
        started = time.monotonic()
        os.kill(worker.pid, signal.SIGQUIT)
        try:
            worker.wait(15)
            exited = f"{time.monotonic() - started:.1f}s"
        except subprocess.TimeoutExpired:
            exited = "no (15 s)"
        log = (work / f"{pool}-{backend}.log").read_text(errors="replace")
        return {
            "pool": pool,
            "result backend": "redis" if backend else "none",
            "exits on SIGQUIT": exited,
            "reserved before": reserved,
            "back in queue": int(client.llen("celery")),
            "left in unacked": int(client.hlen("unacked")),
            "BlockingSwitchOutError": "BlockingSwitchOutError" in log,
            "NotImplementedError": "NotImplementedError" in log,
        }
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        app.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    version = subprocess.run(
        [args.python, "-c", "import celery, kombu; print(celery.__version__, kombu.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    print(f"Celery {version[0]}, kombu {version[1]}; {HUNG} hung tasks, {WAITING} more published")
    for pool, backend in (
        ("prefork", False),
        ("prefork", True),
        ("gevent", False),
        ("gevent", True),
        ("threads", False),
        ("threads", True),
        ("solo", False),
        ("solo", True),
    ):
        with tempfile.TemporaryDirectory() as d:
            row = measure(args.python, pool, backend, Path(d))
        print("  " + ", ".join(f"{k}: {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
