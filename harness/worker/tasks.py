"""The Celery app the end-to-end tests run in a real worker container.

Tasks record what they did in Redis, so the tests can check from outside what completed.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

BROKER = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("TEST_KEY_PREFIX", "")
MASTER_NAME = os.environ.get("TEST_MASTER_NAME", "")  # a sentinel:// broker's master

# A Redis result backend, as Dify's worker has (it changes how a gevent worker shuts down).
app = Celery("tasks", broker=BROKER, backend=os.environ.get("TEST_RESULT_BACKEND") or None)
app.conf.update(
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    broker_transport_options={
        **({"global_keyprefix": PREFIX} if PREFIX else {}),
        **({"master_name": MASTER_NAME} if MASTER_NAME else {}),
    },
    worker_hijack_root_logger=False,
    # A worker that answers no remote control at all (no ping, stats or inspect).
    worker_enable_remote_control=os.environ.get("TEST_NO_REMOTE_CONTROL") != "1",
    # Celery's cap on the prefetch that ETA tasks raise: a worker holding that many stops
    # taking messages, on purpose, with free slots.
    worker_eta_task_limit=int(os.environ["TEST_ETA_LIMIT"])
    if "TEST_ETA_LIMIT" in os.environ
    else None,
    # Task attributes as an operator sets them, e.g. '{"tasks.poison": {"time_limit": 3}}' or
    # '{"tasks.work": {"rate_limit": "6/m"}}' (Celery's task_annotations).
    task_annotations=json.loads(os.environ.get("TEST_ANNOTATIONS") or "null"),
)
if BROKER.startswith("sentinel://"):  # the results follow the master too, through the sentinel
    from redis.sentinel import Sentinel

    _where = BROKER.split(";")[0].removeprefix("sentinel://").split("/")
    _host, _, _port = _where[0].rpartition(":")
    _results = Sentinel([(_host, int(_port))]).master_for(MASTER_NAME, db=int(_where[1] or 0))
else:
    _results = redis.Redis.from_url(BROKER)


if os.environ.get("TEST_BEAT_QUEUE"):
    # A beat that publishes to a queue the worker may not consume: Dify 1.13.2's worker_beat
    # sends trigger_refresh_publisher about once a minute, and its worker does not consume it.
    app.conf.beat_schedule = {
        "stand-in-refresh": {
            "task": "tasks.work",
            "schedule": float(os.environ.get("TEST_BEAT_EVERY") or 60),
            "args": (-1,),
            "options": {"queue": os.environ["TEST_BEAT_QUEUE"]},
        }
    }


if os.environ.get("TEST_IGNORE_SIGQUIT") == "1":
    # Stands in for a worker that a cold shutdown cannot stop (Celery's gevent pool with a
    # Redis result backend and hung tasks logs BlockingSwitchOutError and stays up): once
    # ready, its main process ignores SIGQUIT, so the supervisor has to SIGKILL it.
    import signal

    from celery.signals import worker_ready

    @worker_ready.connect
    def _ignore_sigquit(**_: object) -> None:
        signal.signal(signal.SIGQUIT, signal.SIG_IGN)


@app.task(name="tasks.work", bind=True)
def work(self: Any, i: int, seconds: float = 0.05) -> int:
    _results.sadd(f"test:started:{self.request.hostname}", i)  # which worker ran it
    _results.hincrby("test:starts", str(i), 1)  # a task started twice shows up as 2
    time.sleep(seconds)
    _results.sadd("test:done", i)
    _results.hincrby("test:runs", str(i), 1)  # per-task completions: "ran twice" is visible
    _results.zadd("test:done_at", {str(i): time.time()})
    return i


@app.task(name="tasks.poison")
def poison(seconds: float = 3600.0) -> None:
    """Hangs the pool, as a task stuck on a dead socket would."""
    _results.incr("test:poison_started")
    time.sleep(seconds)


@app.task(name="tasks.dead_socket")
def dead_socket(port: int) -> None:
    """Hangs on a socket that never answers, as a Dify mail task on a tarpit SMTP server does:
    the connection is taken (the listener's backlog) and nothing ever comes back."""
    import socket

    _results.incr("test:poison_started")
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.recv(1)  # no timeout: Dify's SMTP client sets none either


@app.task(name="tasks.poison_late", acks_late=True)
def poison_late(seconds: float = 3600.0) -> None:
    """Hangs too, and is acknowledged only at the end: it comes back after every restart."""
    _results.incr("test:poison_started")
    time.sleep(seconds)


@app.task(name="tasks.block_hub")
def block_hub(seconds: float = 3600.0) -> None:
    """Blocks a gevent worker's whole event loop (a C call that never yields): its heartbeats
    and remote control stop with it, as a hub-blocked Dify worker's do."""
    _results.incr("test:poison_started")
    try:
        from gevent import monkey

        sleep = monkey.get_original("time", "sleep")
    except ImportError:
        sleep = time.sleep
    sleep(seconds)
