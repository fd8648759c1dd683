"""A policy on the wrong database, and one on a queue no worker consumes: a real worker, a
real redis-server, the supervisor as a process. Both are warned about in the log, the audit and
`supervisor status`, once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.parts import WORKER_APP, SupervisorProcess, write_policy
from tests.helpers import no_docker

pytestmark = pytest.mark.integration


def test_wrong_database_and_queue_without_consumer_are_warned_about(
    redis_server_factory: Any, tmp_path: Path
) -> None:
    server = redis_server_factory()
    server.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-c", "1", "-Q", "work",
         "-n", "misc@test", "--without-mingle", "--without-gossip", "-l", "warning"],
        cwd=WORKER_APP,
        env={"TEST_BROKER_URL": server.url, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("wb"),
    )  # fmt: skip
    folder = tmp_path / "policies"
    folder.mkdir()
    wrong_db = server.url.rsplit("/", 1)[0] + "/3"
    for name, url, queue, container in (
        ("wrong-db", wrong_db, "work", "c1"),
        ("no-consumer", server.url, "nobody", "c2"),
        ("fine", server.url, "work", "c3"),
    ):
        path = write_policy(folder / f"{name}.toml", name, url, container)
        path.write_text(path.read_text().replace('queues = ["celery"]', f'queues = ["{queue}"]'))
    sup = SupervisorProcess([folder], tmp_path / "state", extra_env=no_docker(tmp_path))
    try:
        sup.wait_started()
        sup.wait_for(
            lambda: (
                {r["policy"] for r in sup.events("no_bindings")} >= {"wrong-db"}
                and sup.events("no_consumer")
            ),
            40,
            "both warnings",
        )
        [consumer] = sup.events("no_consumer")
        assert consumer["policy"] == "no-consumer" and consumer["queues"] == ["nobody"]
        wrong = [r for r in sup.events("no_bindings") if r["policy"] == "wrong-db"]
        assert len(wrong) == 1 and wrong[0]["text"].startswith("wrong database?")
        assert "/3" in wrong[0]["text"] and "work" in wrong[0]["queues"]
        assert not [r for r in sup.audit() if r.get("policy") == "fine" and "no_" in r["event"]]
        log = sup.log_path.read_text()
        assert "no_consumer: no live worker consumes nobody" in log
        sup.wait_for(  # the heartbeat, written at most once a second, has them too
            lambda: (
                "no live worker consumes nobody"
                in (sup.heartbeat().get("policies") or {})
                .get("no-consumer", {})
                .get("warnings", ())
            ),
            10,
            "the warnings in the heartbeat",
        )
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", "status", "--state-dir", str(tmp_path / "state"),
             "--json"],
            capture_output=True, text=True, check=True, env=dict(os.environ),
        )  # fmt: skip
        warnings = {p["name"]: p["warnings"] for p in json.loads(out.stdout)["policies"]}
        assert warnings["no-consumer"][0] == "no live worker consumes nobody"
        # No worker there, so its progress is unknown too: said as well.
        assert warnings["wrong-db"] == [
            "wrong database? no kombu binding for work",
            "progress unknown: a busy worker may be restarted",
        ]
        assert warnings["fine"] == []
    finally:
        sup.stop()
        worker.terminate()
        worker.wait(20)
