"""Benchmark: the time of one sample for 16, 100 and 1,000 queues.

Compares `RedisProbe.sample()` with the floor (the same commands in a bare redis-py pipeline)
and with what the chapter's operators do (one `redis-cli llen` process per queue). Starts its own
redis-server on a free port unless BENCH_REDIS_URL is set. Prints a table; asserts nothing.

    PYTHONPATH=. python bench/sample_bench.py [--reps N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import redis

from harness.services import RedisServer
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.policy import parse_policy

TARGET = 1.10  # issue 20: a sample costs what the bare pipeline of its commands costs


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm the connection
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    url = os.environ.get("BENCH_REDIS_URL")
    server = None
    if url is None:
        server = RedisServer(Path(tempfile.mkdtemp()))
        server.start()
        url = server.url
    client = redis.Redis.from_url(url)
    port = str(urlsplit(url).port or 6379)
    have_cli = shutil.which("redis-cli") is not None
    try:
        print(
            f"redis {client.info('server')['redis_version']} at {url}; median of {args.reps} "
            "samples (redis-cli: fewer)"
        )
        print(
            f"{'queues':>7} {'keys':>6} {'probe ms':>9} {'floor ms':>9} {'probe/floor':>11} "
            f"{'redis-cli ms':>13} {'cli/probe':>10}  target probe/floor <= {TARGET:.2f}x"
        )
        for n in (16, 100, 1000):
            client.flushdb()
            queues = [f"queue{i}" for i in range(n)]
            for i, q in enumerate(queues):
                client.rpush(q, *range(i % 7 + 1))
                # Bound, as a worker's declaration leaves them: an unbound queue is checked in
                # every sample (redis_probe.py), which the floor does not do.
                client.sadd(f"_kombu.binding.{q}", f"{q}\x06\x16\x06\x16{q}")
            policy = parse_policy(
                {
                    "name": "bench",
                    "broker": {"url": url, "queues": queues},
                    "target": {"container": "x"},
                },
                "bench",
            )
            probe = RedisProbe(policy.broker)
            keys = [k for q in queues for k in policy.broker.redis_keys(q)]

            def floor(keys: list[str] = keys) -> object:
                pipe = client.pipeline(transaction=False)
                for key in keys:
                    pipe.llen(key)
                pipe.hlen("unacked")
                pipe.zrange("unacked_index", 0, 0, withscores=True)
                return pipe.execute()

            assert probe.sample().ok
            probe_ms = median_ms(probe.sample, args.reps)
            floor_ms = median_ms(floor, args.reps)
            if have_cli:

                def cli(queues: list[str] = queues) -> None:
                    for q in queues:
                        subprocess.run(
                            ["redis-cli", "-p", port, "llen", q],
                            check=True,
                            stdout=subprocess.DEVNULL,
                        )

                cli_ms = median_ms(cli, max(1, min(args.reps, 3000 // n)))
                cli_text = f"{cli_ms:13.1f} {cli_ms / probe_ms:9.0f}x"
            else:
                cli_text = f"{'(no redis-cli)':>13}"
            ratio = probe_ms / floor_ms
            print(
                f"{n:>7} {len(keys):>6} {probe_ms:9.3f} {floor_ms:9.3f} "
                f"{ratio:10.2f}x {cli_text}  {'met' if ratio <= TARGET else 'NOT MET'}"
            )
            probe.close()
        # What a daemon watching 100 targets on one Redis does each pass (issue 20).
        client.flushdb()
        probes = []
        for i in range(100):
            q = f"q{i}"
            client.rpush(q, i)
            client.sadd(f"_kombu.binding.{q}", f"{q}\x06\x16\x06\x16{q}")
            body = {
                "name": f"p{i}",
                "broker": {"url": url, "queues": [q]},
                "target": {"container": "x"},
            }
            probes.append(RedisProbe(parse_policy(body, f"p{i}").broker))
        requests = [(p, [f"q{i}"]) for i, p in enumerate(probes)]
        alone = median_ms(lambda: [p.sample(q) for p, q in requests], args.reps)
        together = median_ms(lambda: probes[0].sample_group(requests), args.reps)
        print(
            f"100 policies of one queue on one Redis: one round trip each {alone:.2f} ms, "
            f"all in one (sample_group) {together:.2f} ms ({alone / together:.1f}x less)"
        )
        for p in probes:
            p.close()
    finally:
        client.close()
        if server is not None:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
