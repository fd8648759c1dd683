"""What one `supervisor health` costs, as the container's HEALTHCHECK runs it: the `supervisor`
command of a fresh virtual environment with the package installed as the Dockerfile installs it
(not this machine's shims or site hooks), against a live daemon, measured per call from the
kernel's own accounting of the child (wait4: CPU seconds and peak resident memory).

Target (issue 9): under 50 ms and under 20 MB per call. Prints figures; asserts nothing.

    PYTHONPATH=. python bench/health_cost.py [--calls 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.parts import REPO, SupervisorProcess, write_policy
from harness.services import RedisServer

# A child's peak RSS counts what it inherited before exec, so calls are made from this small
# helper (about 8 MB) rather than from this process (harness, docker-py, Celery: ~50 MB).
SPAWNER = """
import json, os, sys, time
t = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], dict(os.environ),
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, ru = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - t, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024,
                  os.waitstatus_to_exitcode(status)]))
"""


def one_call(argv: list[str]) -> tuple[float, float, float, int]:
    """(wall s, cpu s, peak RSS MB, exit code) of one run of argv."""
    out = subprocess.run(
        [sys.executable, "-S", "-c", SPAWNER, *argv], capture_output=True, text=True, check=True
    )
    wall, cpu, rss, code = json.loads(out.stdout)
    return float(wall), float(cpu), float(rss), int(code)


def install(venv: Path) -> str:
    """The package in a venv of its own, as the image has it; the path of its command."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(REPO)],
        check=True,
    )
    return str(venv / "bin" / "supervisor")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        exe = install(work / "venv")
        redis = RedisServer(work)
        redis.start()
        policy = write_policy(work / "w.toml", "w", redis.url, "c", detect={"interval": 1})
        sup = SupervisorProcess(
            [policy], work / "state", extra_env={"DOCKER_HOST": f"unix://{work}/none.sock"}
        )
        try:
            sup.wait_started()
            sup.wait_for((work / "state" / "heartbeat.json").exists, 20, "heartbeat")
            argv = [exe, "health", "--state-dir", str(work / "state")]
            one_call(argv)  # warm the page cache
            calls = [one_call(argv) for _ in range(args.calls)]
            # The floor: the same interpreter doing only what any Python health check must
            # (pip's console script imports `re`; reading JSON needs `json`).
            floor_argv = [str(Path(exe).parent / "python"), "-c", "import re, json, fcntl, os"]
            floor = [one_call(floor_argv) for _ in range(args.calls)]
            daemon_cpu_start = _cpu(sup.proc.pid)
            time.sleep(10)
            daemon_cpu = (_cpu(sup.proc.pid) - daemon_cpu_start) / 10
            daemon_rss = _rss_mb(sup.proc.pid)
        finally:
            sup.stop()
            redis.stop()
    codes = {c[3] for c in calls}
    print(f"supervisor health, {len(calls)} calls against a live daemon (exit codes {codes}):")
    print(
        f"  wall time  median {statistics.median(c[0] for c in calls) * 1000:.1f} ms, "
        f"max {max(c[0] for c in calls) * 1000:.1f} ms"
    )
    print(f"  CPU time   median {statistics.median(c[1] for c in calls) * 1000:.1f} ms")
    print(f"  peak RSS   median {statistics.median(c[2] for c in calls):.1f} MB")
    print(
        f"  floor      median {statistics.median(c[1] for c in floor) * 1000:.1f} ms CPU, "
        f"{statistics.median(c[2] for c in floor):.1f} MB (python -c 'import re, json, fcntl, os')"
    )
    every = 15.0
    share = statistics.median(c[1] for c in calls) / every * 100
    print(f"  every {every:g} s (the compose override's interval): {share:.2f} % of one core")
    print(
        f"the daemon itself (1 policy, 1 s interval): {daemon_cpu * 100:.2f} % of one core, "
        f"{daemon_rss:.1f} MB resident"
    )


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
