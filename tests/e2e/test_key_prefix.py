"""Dify's REDIS_KEY_PREFIX (kombu's global_keyprefix "<prefix>:"), end to end, with a real
worker started with that prefix: its queues are learnt, its heartbeats heard, its hang
restarted by the usual rule, and what it had reserved given back, every task once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from harness.parts import Producer, SupervisorProcess, Worker, wait_exactly_once, wait_until

pytestmark = pytest.mark.e2e
PREFIX = "dify:"


def test_a_prefixed_worker_is_learnt_judged_restarted_and_its_messages_come_back(
    docker_engine: Any, redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    app = Celery("producer", broker=server.url, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
    worker = Worker(
        docker_engine,
        server.url,
        queues="dataset,mail",
        extra_args=("--prefetch-multiplier", "4"),
        env={"TEST_KEY_PREFIX": PREFIX, "TEST_IGNORE_SIGQUIT": "1"},
    )
    sup = None
    try:
        worker.wait_ready(app)
        policy = tmp_path / "dify.toml"
        policy.write_text(
            f'name = "dify"\n[broker]\nurl = "{server.url}"\nkey_prefix = "${{PREFIX}}"\n'
            'queues = ["dataset"]\ndiscover_queues = true\ntimeout = "1s"\n'
            f'[target]\ncontainer = "{worker.name}"\n'
            "[detect]\ninterval = 0.5\nwindow = 4\nthreshold = 3\nmax_gap = 2\n"
            "require_no_progress = true\n"
            "[restart]\ncooldown = 60\nbackoff_initial = 60\nmax_restarts = 1\n"
            "budget_window = 300\nstop_timeout = 2\n"
        )
        sup = SupervisorProcess([policy], tmp_path / "state", extra_env={"PREFIX": PREFIX})
        sup.wait_started()
        [learnt] = sup.wait_for(lambda: sup.events("queues_changed"), 60, "the queues learnt")
        assert learnt["queues"] == ["dataset", "mail"], learnt
        sup.wait_progress_known()  # its heartbeats, on the prefixed event channel
        client = server.client()
        app.send_task("tasks.poison", queue="dataset")  # hangs the only pool process
        reserved = list(range(1000, 1004))
        for i in reserved:
            app.send_task("tasks.work", args=[i], queue="dataset")
        wait_until(lambda: client.hlen(f"{PREFIX}unacked") >= 3, 30, "messages reserved")
        assert client.llen("dataset") == 0 and client.hlen("unacked") == 0  # all prefixed
        producer = Producer(app, per_second=4, queue="dataset").start()
        try:
            [record] = sup.wait_for(lambda: sup.events("restart"), 90, "the restart")
        finally:
            producer.stop()
        assert record["trigger"] == "automatic" and record["killed"] == [worker.name], record
        assert "progress unknown" not in record["reason"], record["reason"]
        assert record["plan"]["queues"] == ["dataset", "mail"], record["plan"]
        assert record["restored"] and record["restored"] >= 3 and record["unacked_left"] == 0
        wait_exactly_once(client, [*reserved, *producer.sent], 90)
        assert client.hlen(f"{PREFIX}unacked") == 0
        assert sup.stop() == 0
        sup = None
    finally:
        if sup is not None:
            sup.stop()
        worker.remove()
        app.close()
