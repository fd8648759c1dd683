"""What reading the queues' heads costs (issue 26): Redis commands and bytes per sample with
Dify's 20 queues (80 priority lists), when every queue is empty, and when each has messages
waiting (real Celery messages, published by kombu). The same probe with and without heads is
compared: with them, one `LINDEX key -1` per list that was not empty at the previous sample.

Real parts: a private redis-server. Figures from the server's INFO commandstats and net byte
counters, over `--samples` samples. Asserts nothing.

    PYTHONPATH=. python bench/heads_cost.py [--samples 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from harness.services import RedisServer
from supervisor.adapters.redis_probe import RedisProbe
from supervisor.policy import load_policy

DIFY = Path(__file__).resolve().parent.parent / "deploy" / "dify" / "dify-worker.toml"


def counters(client: redis.Redis) -> tuple[int, int, int]:
    stats: dict[str, Any] = client.info("commandstats")
    calls = sum(int(v["calls"]) for v in stats.values())
    lindex = int(stats.get("cmdstat_lindex", {}).get("calls", 0))
    net: dict[str, Any] = client.info("stats")
    return calls, lindex, int(net["total_net_input_bytes"]) + int(net["total_net_output_bytes"])


def measure(probe: RedisProbe, client: redis.Redis, queues: list[str], n: int) -> tuple[float, ...]:
    probe.sample(queues)  # the previous sample: which lists are not empty
    before = counters(client)
    for _ in range(n):
        probe.sample(queues)
    after = counters(client)
    # the two INFO calls of `counters` are the measurement's own: one command, its bytes
    calls, lindex, net = (a - b for a, b in zip(after, before, strict=True))
    return (calls - 2) / n, lindex / n, net / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            import os

            os.environ["SUPERVISOR_BROKER_URL"] = server.url
            policy = load_policy(DIFY)
            queues = list(policy.broker.queues)
            client = server.client()
            probe = RedisProbe(policy.broker)
            print(f"Dify's {len(queues)} queues, {len(queues) * 4} lists; per sample:")
            print("| queues | commands | of them LINDEX | bytes (in + out) |")
            print("| --- | --- | --- | --- |")
            calls, lindex, net = measure(probe, client, queues, args.samples)
            print(f"| all empty | {calls:.0f} | {lindex:.0f} | {net:.0f} |")
            app = Celery("producer", broker=server.url)
            for q in queues:
                for i in range(3):
                    app.send_task("tasks.mail_invite_member_task.send", args=[i, "x" * 64], queue=q)
            app.close()
            size = client.memory_usage("mail") or 0
            calls, lindex, net = measure(probe, client, queues, args.samples)
            print(f"| 3 messages in each | {calls:.0f} | {lindex:.0f} | {net:.0f} |")
            head = client.lindex("mail", -1) or b""
            print(f"(one message: {len(head)} bytes; the list `mail` holds {size} bytes)")
            probe.close()
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
