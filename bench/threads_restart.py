"""How long the restart of a hung threads-pool worker takes, with the shipped stop_timeout (30 s).

Celery 5.7's threads pool cannot cold-shut-down (SIGQUIT raises NotImplementedError for
kill_job and the worker stays up). A supervisor that sends SIGQUIT anyway waits out stop_timeout
before its SIGKILL; one that learnt the pool while the worker answered sends SIGKILL at once.
A real worker container (`-P threads -c 2`) with both threads hung, a manual trigger, the audit's
`seconds` and `sigquit`. Run against whichever supervisor is on PYTHONPATH, so a former version
can be measured from its own checkout. Needs redis-server and DOCKER_HOST (scripts/figures).

    PYTHONPATH=. python bench/threads_restart.py [--runs 2]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.parts import (
    SupervisorProcess,
    Worker,
    celery_app,
    docker_client,
    ensure_base_image,
    write_policy,
)
from harness.services import RedisServer


def one_run(workdir: Path) -> dict[str, Any]:
    server = RedisServer(workdir)
    server.start()
    engine = docker_client()
    ensure_base_image(engine)
    app = celery_app(server.url)
    worker = Worker(engine, server.url, concurrency=2, extra_args=("-P", "threads"))
    sup = None
    try:
        worker.wait_ready(app)
        policy = write_policy(
            workdir / "p.toml", "bench", server.url, worker.name, restart={"stop_timeout": 30}
        )
        sup = SupervisorProcess([policy], workdir / "state")
        sup.wait_started()
        time.sleep(5)  # the worker answers while it is healthy: its pool can be learnt
        for _ in range(2):
            app.send_task("tasks.poison", queue="celery")
        time.sleep(2)
        sup.signal(signal.SIGUSR1)
        [record] = sup.wait_for(lambda: sup.events("restart"), 120, "the restart")
        return {"seconds": record["seconds"], "sigquit": record.get("sigquit")}
    finally:
        if sup is not None:
            sup.stop()
        worker.remove()
        app.close()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            results.append(one_run(Path(d)))
    seconds = statistics.median(r["seconds"] for r in results)
    print(
        f"threads pool, 2 hung tasks, stop_timeout 30 s, {args.runs} run(s): restart took "
        f"{seconds:.1f} s (median); sigquit sent: {[r['sigquit'] for r in results]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
