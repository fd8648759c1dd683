"""A Celery worker in a container behind Sentinel: after a failover, the worker hangs; the
supervisor, which reaches the broker through the sentinel too, restarts it once and gives its
reserved messages back on the new master, where every task then runs exactly once."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from harness.parts import SupervisorProcess, Worker, wait_exactly_once, wait_until, write_policy
from harness.services import SentinelSet

pytestmark = pytest.mark.e2e


def producer(s: SentinelSet) -> Celery:
    app = Celery("producer", broker=s.url, set_as_current=False)
    app.conf.broker_transport_options = {"master_name": s.MASTER_NAME}
    return app


def test_after_a_failover_a_hung_worker_is_restarted_once_and_its_messages_given_back(
    docker_engine: Any, tmp_path: Path
) -> None:
    """The supervisor starts on the first master and must follow the failover alone; the
    worker starts after it (how a worker re-establishes its own connections is Celery's)."""
    s = SentinelSet(tmp_path / "sentinel")
    s.workdir.mkdir()
    s.start()
    name = f"iti-test-sentinel-{uuid.uuid4().hex[:8]}"
    policy = write_policy(tmp_path / "w.toml", "w", s.url, name, restart={"stop_timeout": 2})
    policy.write_text(
        policy.read_text().replace("[target]", f'master_name = "{s.MASTER_NAME}"\n[target]')
    )
    sup = SupervisorProcess([policy], tmp_path / "state")
    worker = None
    app = None
    try:
        sup.wait_started()
        sup.wait_sampled()  # connected, through the sentinel, to the first master
        new = s.failover()
        broker = redis.Redis(port=new.port, db=1)
        app = producer(s)
        worker = Worker(
            docker_engine,
            s.url,
            name=name,
            extra_args=("--prefetch-multiplier", "4"),
            env={"TEST_IGNORE_SIGQUIT": "1", "TEST_MASTER_NAME": s.MASTER_NAME},
        )
        worker.wait_ready(app)
        sup.wait_mapped(name, 60)  # its heartbeats heard on the new master, its container read

        def seen() -> str:
            log = worker.logs()[-2000:] if worker is not None else ""
            return f"queue {broker.llen('celery')}, unacked {broker.hlen('unacked')}\n{log}"

        app.send_task("tasks.poison", queue="celery")  # hangs the only pool process
        for i in range(6):
            app.send_task("tasks.work", args=[i], queue="celery")
        wait_until(lambda: broker.hlen("unacked") >= 3, 30, "messages reserved behind it", seen)
        sup.signal(signal.SIGUSR1)
        [record] = sup.wait_for(lambda: sup.events("restart"), 60, "the restart")
        assert record["killed"] == [name], record
        # All it had reserved (3 or 4, as the worker's prefetch went on) is back, none left.
        assert record["restored"] >= 3 and record["unacked_left"] == 0, record
        wait_exactly_once(broker, range(6), 60)  # on the new master, each once
        assert len(sup.events("restart")) == 1
        assert not [r for r in sup.audit() if "ReadOnly" in str(r)]  # nothing hit a replica
    finally:
        sup.stop()
        if worker is not None:
            worker.remove()
        if app is not None:
            app.close()
        s.stop()
