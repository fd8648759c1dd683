"""Real parts for the end-to-end tests and the figures script: a Celery worker in a container of
the private Docker engine, a producer, and the supervisor daemon as a separate process.

The worker's image is a local base made from an empty tar; the host's /usr, /lib, /lib64, /bin
and this Python installation are bind-mounted read-only, since no image can be pulled here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import docker
import redis
from celery import Celery

from supervisor.sinks.audit import AUDIT_FILE, read_audit

REPO = Path(__file__).resolve().parent.parent
WORKER_APP = REPO / "harness" / "worker"
BASE_IMAGE = "iti-supervisor-test-base:local"
PYTHON_HOME = Path(sys.base_prefix)


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, context: Callable[[], str] = str
) -> Any:
    """The first true value of `predicate`, polled until `timeout`; AssertionError naming
    `what` (and `context()`, to show why) when it never comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context()}")


def executions(client: redis.Redis) -> dict[int, int]:
    """How many times each `tasks.work` id completed (harness/worker/tasks.py counts them)."""
    raw: dict[bytes, bytes] = client.hgetall("test:runs")  # type: ignore[assignment]
    return {int(k): int(v) for k, v in raw.items()}


def ran_twice(client: redis.Redis) -> dict[int, int]:
    """The task ids that completed more than once, with their counts: must stay empty."""
    return {i: n for i, n in executions(client).items() if n > 1}


def wait_exactly_once(client: redis.Redis, sent: Any, timeout: float) -> None:
    """Wait until every id in `sent` has completed, then check that none completed twice:
    nothing lost and nothing run twice, seen per task (a set of ids could not tell)."""
    wanted = set(sent)

    def lost() -> str:
        missing = sorted(wanted - set(executions(client)))
        return f"lost: {missing[:20]} ({len(missing)}); ran twice: {ran_twice(client)}"

    wait_until(lambda: wanted <= set(executions(client)), timeout, "every task done", lost)
    assert not ran_twice(client), f"ran more than once: {ran_twice(client)}"


def local_worker(
    broker_url: str, node: str, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A real Celery worker of harness/worker/tasks.py as a local process (no container), on
    queue `celery`, in a session of its own so that its pool processes die with it."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "-Q", "celery", "-n", node,
         "--without-mingle", "--without-gossip", "-l", "warning", *args],
        cwd=WORKER_APP,
        env={"TEST_BROKER_URL": broker_url, "PATH": "/usr/bin:/bin", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        start_new_session=True,
    )  # fmt: skip


def docker_client() -> docker.DockerClient:
    return docker.from_env(version="1.41", timeout=60)


def ensure_base_image(client: docker.DockerClient) -> str:
    """An empty image: everything the worker runs comes from read-only bind mounts."""
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w"):
            pass
        repo, tag = BASE_IMAGE.split(":")
        client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag)
    return BASE_IMAGE


def host_mounts() -> dict[str, dict[str, str]]:
    mounts = {p: {"bind": p, "mode": "ro"} for p in ("/usr", "/lib", "/bin") if Path(p).exists()}
    if Path("/lib64").exists():
        mounts["/lib64"] = {"bind": "/lib64", "mode": "ro"}
    mounts[str(PYTHON_HOME)] = {"bind": str(PYTHON_HOME), "mode": "ro"}
    return mounts


class Worker:
    """A real Celery worker (prefork, concurrency 1, prefetch 1) in a container."""

    def __init__(
        self,
        client: docker.DockerClient,
        broker_url: str,
        queues: str = "celery",
        concurrency: int = 1,
        name: str | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        restart_policy: dict[str, Any] | None = None,
        stop_signal: str | None = None,
    ) -> None:
        self.client = client
        self.broker_url = broker_url
        self.name = name or f"iti-test-worker-{uuid.uuid4().hex[:8]}"
        # The host part names the container, so the supervisor can map the worker to it.
        self.node = f"celery@{self.name}"
        mounts = host_mounts()
        mounts[str(WORKER_APP)] = {"bind": "/app", "mode": "ro"}
        self.container = client.containers.run(
            ensure_base_image(client),
            [
                str(PYTHON_HOME / "bin" / "python3"),
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-c",
                str(concurrency),
                "--prefetch-multiplier",
                "1",
                "-Q",
                queues,
                "-n",
                self.node,
                "--without-mingle",
                "--without-gossip",
                "-l",
                "info",
                *extra_args,
            ],
            name=self.name,
            labels=labels or {},
            restart_policy=restart_policy or {},
            stop_signal=stop_signal,
            detach=True,
            network_mode="host",
            volumes=mounts,
            tmpfs={"/tmp": ""},
            working_dir="/app",
            environment={
                "TEST_BROKER_URL": broker_url,
                "PYTHONPATH": "/app",
                "PATH": f"{PYTHON_HOME / 'bin'}:/usr/bin:/bin",
                "HOME": "/tmp",
                "C_FORCE_ROOT": "1",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )

    def started_at(self) -> str:
        self.container.reload()
        return str(self.container.attrs["State"]["StartedAt"])

    def running(self) -> bool:
        self.container.reload()
        return bool(self.container.attrs["State"]["Running"])

    def wait_ready(self, app: Celery, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"worker exited:\n{self.logs()}")
            # A worker without remote control answers no ping: its log says when it is ready.
            if f"{self.node} ready." in self.logs():
                return
            if app.control.ping(destination=[self.node], timeout=0.5):
                return
        raise RuntimeError(f"worker {self.node} not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return str(self.container.logs(tail=60).decode(errors="replace"))

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


class SwarmWorker:
    """A real Celery worker as a Docker Swarm service (the private engine must be a swarm
    manager): `replicas` tasks, each named by Swarm's template `{{.Task.Name}}` as its hostname
    and so as its Celery node name; task N also consumes the queue `only-N`, so that a test can
    hang exactly one replica."""

    def __init__(
        self,
        client: docker.DockerClient,
        broker_url: str,
        replicas: int = 2,
        *,
        name: str | None = None,
        update_delay: float = 1.0,
        stop_grace: float = 3.0,
    ) -> None:
        from docker.types import Mount, RestartPolicy, ServiceMode, UpdateConfig

        self.client = client
        self.name = name or f"iti-swarm-worker-{uuid.uuid4().hex[:6]}"
        mounts = [
            Mount(spec["bind"], source, type="bind", read_only=True)
            for source, spec in host_mounts().items()
        ]
        mounts += [
            Mount("/app", str(WORKER_APP), type="bind", read_only=True),
            Mount("/tmp", None, type="tmpfs"),
        ]
        python = PYTHON_HOME / "bin" / "python3"
        command = (
            f"exec {python} -m celery -A tasks worker -c 1 --prefetch-multiplier 1 "
            "-Q celery,only-$SLOT -n celery@%h --without-mingle --without-gossip -l info"
        )
        self.service = client.services.create(
            ensure_base_image(client),
            ["/bin/sh", "-c", command],
            name=self.name,
            mounts=mounts,
            hostname="{{.Task.Name}}",
            mode=ServiceMode("replicated", replicas=replicas),
            networks=["host"],
            workdir="/app",
            env=[
                f"TEST_BROKER_URL={broker_url}",
                "SLOT={{.Task.Slot}}",
                "PYTHONPATH=/app",
                f"PATH={PYTHON_HOME / 'bin'}:/usr/bin:/bin",
                "HOME=/tmp",
                "C_FORCE_ROOT=1",
                "PYTHONUNBUFFERED=1",
            ],
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            update_config=UpdateConfig(
                parallelism=1, delay=int(update_delay * 1e9), order="stop-first"
            ),
            stop_signal="SIGTERM",  # warm shutdown, as Dify's stack has it
            stop_grace_period=int(stop_grace * 1e9),
        )
        self.replicas = replicas

    def tasks(self, running_only: bool = True) -> list[dict[str, Any]]:
        filters = {"service": self.name}
        if running_only:
            filters["desired-state"] = "running"
        return list(self.client.api.tasks(filters=filters))

    def running(self) -> dict[int, dict[str, Any]]:
        """Slot -> the task running there now."""
        return {t["Slot"]: t for t in self.tasks() if t["Status"]["State"] == "running"}

    def container(self, slot: int) -> Any:
        task = self.running()[slot]
        return self.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])

    def node(self, slot: int) -> str:
        return f"celery@{self.container(slot).attrs['Config']['Hostname']}"

    def wait_ready(self, app: Celery, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = self.running()
            if len(running) == self.replicas:
                nodes = [self.node(slot) for slot in running]
                if all(f"{n} ready." in self.logs(s) for n, s in zip(nodes, running, strict=True)):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"swarm service {self.name} not ready after {timeout}s")

    def logs(self, slot: int) -> str:
        return str(self.container(slot).logs(tail=80).decode(errors="replace"))

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.service.remove()


# Dify's worker queues (a release with 20 of them); the worker is run as Dify's entrypoint runs
# it: gevent, 4 greenlets, prefetch 1, a new process every 50 tasks.
DIFY_QUEUES = (
    "api_token,dataset,dataset_summary,priority_dataset,priority_pipeline,pipeline,mail,"
    "ops_trace,app_deletion,plugin,workflow_storage,conversation,workflow,schedule_poller,"
    "schedule_executor,triggered_workflow_dispatcher,trigger_refresh_publisher,"
    "trigger_refresh_executor,retention,workflow_based_app_execution"
)


def dify_worker(
    client: docker.DockerClient, broker_url: str, name: str = "iti-dify-worker", **extra: Any
) -> Worker:
    """A worker shaped like Dify's: gevent -c 4, prefetch 1, --max-tasks-per-child 50, Dify's
    queues, a Redis result backend on the broker's server, restart policy `always`."""
    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)
    backend = broker_url.rsplit("/", 1)[0] + "/2"
    return Worker(
        client,
        broker_url,
        queues=extra.pop("queues", DIFY_QUEUES),
        concurrency=4,
        name=name,
        extra_args=("-P", "gevent", "--max-tasks-per-child", "50", *extra.pop("extra_args", ())),
        env={"TEST_RESULT_BACKEND": backend, **extra.pop("env", {})},
        restart_policy={"Name": "always"},
        **extra,
    )


SHORTER = {
    "interval": "0.5s",
    "window": "5s",
    "max_gap": "2s",
    "cooldown": "60s",
    "backoff_initial": "60s",
    "backoff_max": "120s",
    "reset_after": "240s",
    "budget_window": "600s",
    "stop_timeout": "3s",
}


def shipped_policy(folder: Path, source: Path | None = None, **changes: Any) -> Path:
    """policies/dify-worker.toml (or `source`, another shipped policy) with its durations
    shortened (SHORTER) and `changes` made, nothing else: its broker comes from
    SUPERVISOR_BROKER_URL, its queues are discovered."""
    text = (source or REPO / "policies" / "dify-worker.toml").read_text()
    for key, value in {**SHORTER, **changes}.items():
        toml = f'"{value}"' if isinstance(value, str) else str(value)
        text, n = re.subn(rf"^{key} = [^#\n]*", f"{key} = {toml}  ", text, flags=re.M)
        if n != 1:
            raise ValueError(f"{key} is not a key of the shipped policy")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dify-worker.toml"
    path.write_text(text)
    return path


class Producer:
    """Publishes `tasks.work` at a steady rate in a thread, numbering the tasks."""

    def __init__(
        self, app: Celery, per_second: float, work_seconds: float = 0.05, queue: str = "celery"
    ) -> None:
        self.app = app
        self.queue = queue
        self.period = 1.0 / per_second
        self.work_seconds = work_seconds
        self.sent: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = len(self.sent)
        while not self._stop.is_set():
            self.app.send_task("tasks.work", args=[i, self.work_seconds], queue=self.queue)
            self.sent.append(i)
            i += 1
            self._stop.wait(self.period)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def celery_app(broker_url: str) -> Celery:
    app = Celery("test-producer", broker=broker_url, set_as_current=False)
    return app


def write_policy(
    path: Path, name: str, broker_url: str, container: str, **sections: dict[str, Any]
) -> Path:
    detect = {
        "interval": 0.5,
        "window": 5,
        "threshold": 5,
        "max_gap": 2,
        "require_no_progress": True,
    }
    restart = {
        "cooldown": 20,
        "backoff_initial": 20,
        "backoff_factor": 2.0,
        "backoff_max": 40,
        "max_restarts": 3,
        "budget_window": 300,
        "stop_timeout": 5,
    }
    detect.update(sections.get("detect", {}))
    restart.update(sections.get("restart", {}))
    lines = [
        f'name = "{name}"',
        "[broker]",
        f'url = "{broker_url}"',
        'queues = ["celery"]',
        'timeout = "1s"',
        "[target]",
        f'container = "{container}"',
        "[detect]",
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in detect.items()]
    lines += ["[restart]"] + [f"{k} = {json.dumps(v)}" for k, v in restart.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class SupervisorProcess:
    """`supervisor run` as its own process, as operators run it."""

    def __init__(
        self,
        policies: list[Path],
        state_dir: Path,
        dry_run: bool = False,
        extra_env: dict[str, str] | None = None,
        verbose: bool = True,
    ) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir.parent / f"{state_dir.name}-supervisor.log"
        args = [sys.executable, "-m", "supervisor", *(["-v"] if verbose else [])]
        args += ["run", "--state-dir", str(state_dir)]
        if dry_run:
            args.append("--dry-run")
        args += [str(p) for p in policies]
        env = {**os.environ, **(extra_env or {})}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=self._log, env=env)

    def audit(self) -> list[dict[str, Any]]:
        return read_audit(self.state_dir / AUDIT_FILE)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.audit() if r["event"] == kind]

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"supervisor exited ({self.proc.returncode}) waiting for {what}:\n{self.tail()}"
                )
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")

    def wait_started(self) -> dict[str, Any]:
        """This process's start record (a state directory may hold earlier ones)."""
        mine = self.wait_for(
            lambda: [r for r in self.events("start") if r.get("pid") == self.proc.pid],
            30,
            "start record",
        )
        return dict(mine[0])

    def heartbeat(self) -> dict[str, Any]:
        """The daemon's heartbeat file as it last wrote it ({} before the first)."""
        try:
            return dict(json.loads((self.state_dir / "heartbeat.json").read_text()))
        except (OSError, ValueError):
            return {}

    def wait_progress_known(self, timeout: float = 30) -> None:
        """Until every policy's worker progress is known (a heartbeat or an answer was heard,
        and the target's containers were read): what a judgement on progress needs."""

        def known() -> bool:
            policies = self.heartbeat().get("policies") or {}
            return bool(policies) and all(
                (p.get("progress") or "unknown").split()[0].isdigit() for p in policies.values()
            )

        self.wait_for(known, timeout, "the workers' progress")

    def wait_mapped(self, container: str, timeout: float = 30) -> None:
        """Until the supervisor knows `container` and the Celery worker running in it."""

        def mapped() -> bool:
            policies = self.heartbeat().get("policies") or {}
            return any((p.get("workers") or {}).get(container) for p in policies.values())

        self.wait_for(mapped, timeout, f"{container} mapped to its worker")

    def wait_sampled(self, timeout: float = 30) -> None:
        """Until every policy has been sampled once."""

        def sampled() -> bool:
            policies = self.heartbeat().get("policies") or {}
            return bool(policies) and all(p.get("depth") is not None for p in policies.values())

        self.wait_for(sampled, timeout, "a first sample")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def queue_state(broker_url: str) -> tuple[int, int]:
    """(depth of `celery`, size of kombu's unacked hash)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.llen("celery")), int(client.hlen("unacked"))
    finally:
        client.close()


class Webhook:
    """A local HTTP server that records what it is sent, as Apprise's `json://` and `form://`
    post it (a form's fields become a dict); it can fail or hang on request."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        self.release = threading.Event()
        self.release.set()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.release.wait(30)
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    record = json.loads(body)
                else:
                    record = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                hook.received.append(record)
                hook.paths.append(self.path)
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        where = f"127.0.0.1:{self.server.server_port}/hooks/secret-token"
        self.url = f"http://{where}"  # a plain webhook, as before Apprise
        self.json_url = f"json://{where}"
        self.form_url = f"form://{where}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
