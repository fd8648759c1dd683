"""The daemon's own footprint: resident memory and CPU of `supervisor run` against a real Redis
and a real Docker engine, with 1 policy and with 100 policies, each sampled every second and
each with its worker container there (`sleep` in a container of its own: the daemon reads
containers, not what runs in them); and with 1 policy whose notifications are configured
(Apprise loaded by the policy check), then after one notice sent to a local JSON receiver.

The engine is DOCKER_HOST's when it is set, else a private dockerd this starts (as scripts/test
does; root). Without dockerd it measures with no engine and says so: every read of a target
then fails and is retried, which is not the steady state. Measuring starts 10 s after start-up
(imports, first connections, and each policy's one-time first verdicts, such as "progress
unknown" 5 s in); `--seconds` should cover a minute, when each target's containers are read
again.

Targets (issue 20): 1 policy under 0.25 % of a core and 55 MB; notifications under 5 MB more;
100 policies under 2 % of a core, keeping their cadence. Prints figures; asserts nothing.

    PYTHONPATH=. python bench/footprint.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

from harness.parts import (
    SupervisorProcess,
    Webhook,
    docker_client,
    ensure_base_image,
    host_mounts,
    write_policy,
)
from harness.services import DockerEngine, RedisServer, free_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def samples_taken(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("iti_supervisor_samples_total{")
    )


SETTLE = 10.0  # seconds after start-up before measuring
# Names of this run's own: an engine given by DOCKER_HOST may hold other containers.
RUN = uuid.uuid4().hex[:6]


def worker_name(i: int) -> str:
    return f"footprint-{RUN}-worker-{i}"


def run(
    count: int,
    seconds: float,
    workdir: Path,
    redis_url: str,
    docker_host: str,
    *,
    notify: Webhook | None = None,
) -> dict[str, Any]:
    folder = workdir / f"policies-{count}{'-notify' if notify else ''}"
    folder.mkdir()
    for i in range(count):
        path = write_policy(
            folder / f"p{i:03}.toml",
            f"p{i:03}",
            redis_url,
            worker_name(i),
            detect={"interval": 1, "window": 60, "max_gap": 3},
        )
        path.write_text(path.read_text().replace('queues = ["celery"]', f'queues = ["q{i}"]'))
    # Bound, as a running worker leaves its queues: an unbound queue is checked in every sample.
    client = redis.Redis.from_url(redis_url)
    for i in range(count):
        client.sadd(f"_kombu.binding.q{i}", f"q{i}\x06\x16\x06\x16q{i}")
    client.close()
    port = free_port()
    env = {
        "DOCKER_HOST": docker_host,
        "SUPERVISOR_METRICS_PORT": str(port),
        "SUPERVISOR_METRICS_ADDRESS": "127.0.0.1",
    }
    if notify is not None:
        env["SUPERVISOR_NOTIFY_URLS"] = notify.json_url
    # As the image runs it: without -v (a debug line per decision is for troubleshooting).
    state = folder.with_name(folder.name + "-state")
    sup = SupervisorProcess([folder], state, extra_env=env, verbose=False)
    after_notice: float | None = None
    try:
        sup.wait_started()
        time.sleep(SETTLE)  # start-up is not the steady state
        pid = sup.proc.pid
        cpu0, wall0, n0 = cpu_seconds(pid), time.monotonic(), samples_taken(port)
        time.sleep(seconds)
        cpu1, wall1, n1 = cpu_seconds(pid), time.monotonic(), samples_taken(port)
        mem = memory_kb(pid)
        if notify is not None:
            sup.signal(signal.SIGUSR1)  # no engine: a failed restart, and its notice
            sup.wait_for(lambda: notify.received, 60, "a notice")
            time.sleep(2)
            after_notice = memory_kb(pid)["VmRSS"] / 1024
    finally:
        sup.stop()
    elapsed = wall1 - wall0
    return {
        "policies": count,
        "rss_mb": mem["VmRSS"] / 1024,
        "peak_mb": mem["VmHWM"] / 1024,
        "cpu_pct": 100 * (cpu1 - cpu0) / elapsed,
        "cadence_pct": 100 * (n1 - n0) / (count * elapsed),
        "notify": notify is not None,
        "after_notice_mb": after_notice,
    }


def worker_containers(docker_host: str, count: int, made: list[Any]) -> None:
    """worker_name(0) ... worker_name(count - 1), each running `sleep`, made here into `made`
    (for the caller to remove, even when making one fails)."""
    os.environ["DOCKER_HOST"] = docker_host
    client = docker_client()
    image = ensure_base_image(client)
    for i in range(count):
        made.append(
            client.containers.run(
                image,
                ["/bin/sleep", "infinity"],
                name=worker_name(i),
                hostname=worker_name(i),
                detach=True,
                volumes=host_mounts(),
                network_mode="host",
            )
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        server = RedisServer(workdir)
        server.start()
        engine, docker_host = None, os.environ.get("DOCKER_HOST")
        if docker_host is None and shutil.which("dockerd"):
            engine = DockerEngine(workdir / "docker")
            docker_host = engine.host
        made: list[Any] = []
        try:
            if docker_host is not None:
                worker_containers(docker_host, 100, made)
            where = docker_host or f"unix://{workdir}/no-engine.sock"
            rows = [run(n, args.seconds, workdir, server.url, where) for n in (1, 100)]
            hook = Webhook()
            try:
                rows.insert(1, run(1, args.seconds, workdir, server.url, where, notify=hook))
            finally:
                hook.close()
        finally:
            for container in made:
                container.remove(force=True)
            if engine is not None:
                engine.stop()
            server.stop()
    engine_text = (
        f"Docker engine at {docker_host} with 100 worker containers"
        if docker_host
        else "NO Docker engine (every read of a target fails and is retried: not steady)"
    )
    print(engine_text)
    print(
        f"supervisor run, interval 1 s, {args.seconds:g} s measured after {SETTLE:g} s of start-up"
    )
    print(
        f"{'policies':>8} {'notifications':>14} {'RSS MB':>7} {'peak MB':>8} "
        f"{'CPU % of a core':>16} {'samples taken / due':>20}"
    )
    for r in rows:
        print(
            f"{r['policies']:>8} {'configured' if r['notify'] else 'none':>14} "
            f"{r['rss_mb']:7.1f} {r['peak_mb']:8.1f} {r['cpu_pct']:16.2f} "
            f"{r['cadence_pct']:19.1f}%"
        )
        if r["after_notice_mb"] is not None:
            print(f"{'':>8} {'after a notice':>14} {r['after_notice_mb']:7.1f}")
    one, notified, hundred = rows
    print("against the targets (issue 20):")
    for what, value, target in (
        ("1 policy, CPU % of a core", one["cpu_pct"], 0.25),
        ("1 policy, RSS MB", one["rss_mb"], 55.0),
        ("notifications, MB more after a notice", notified["after_notice_mb"] - one["rss_mb"], 5),
        ("100 policies, CPU % of a core", hundred["cpu_pct"], 2.0),
        ("100 policies, samples taken / due %", -hundred["cadence_pct"], -99.0),
    ):
        met = "met" if value <= target else "NOT MET"
        print(f"  {what:<40} {abs(value):7.2f}  target {abs(target):g}: {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
