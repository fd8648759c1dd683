"""The sidecar as operators run it: the stand-in stack of the chapter plus this repository's
docker-compose.override.yml, brought up by Compose on the private engine. The supervisor runs in
its own container, built from the Dockerfile, non-root, reaching Docker only through the socket
proxy and Redis only as the least-privilege ACL user."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis
import yaml

from harness.parts import (
    BASE_IMAGE,
    PYTHON_HOME,
    REPO,
    WORKER_APP,
    Producer,
    celery_app,
    wait_exactly_once,
    wait_until,
)
from tests.stand_in import build_supervisor_image, ensure_stand_in_image

HERE = Path(__file__).parent
OVERRIDE = REPO / "docker-compose.override.yml"
PROJECT = "itistack"
REDIS_PASSWORD = "sidecar-test-pw"
# What the socket proxy lets through (deploy/socket-proxy/haproxy.cfg), as dockerd logs it.
# One API version, and inspect of the worker only, by name.
ALLOWED = re.compile(
    r"^(GET|HEAD) /v1[.]41/(_ping|version)$"
    r"|^GET /v1[.]41/containers/json(\?.*)?$"
    r"|^GET /v1[.]41/containers/iti-dify-worker/json(\?.*)?$"
    r"|^POST /v1[.]41/containers/iti-dify-worker/(kill|start|restart)(\?.*)?$"
    r"|^GET /v1[.]41/containers/iti-dify-worker/logs(\?.*)?$"  # capture_stacks
)


def compose_env(policies: Path) -> dict[str, str]:
    host = os.environ.get("DOCKER_HOST", "")
    return {
        **os.environ,
        "STAND_IN_IMAGE": "iti-supervisor-stand-in:bookworm",
        "EMPTY_IMAGE": BASE_IMAGE,
        "PYTHON_HOME": str(PYTHON_HOME),
        "WORKER_APP": str(WORKER_APP),
        "SUPERVISOR_SRC": str(REPO),
        "SUPERVISOR_IMAGE": "iti-worker-supervisor:test",
        "SUPERVISOR_BASE_IMAGE": "iti-supervisor-stand-in:bookworm",
        "SOCKET_PROXY_IMAGE": "iti-supervisor-stand-in:bookworm",
        "SUPERVISOR_POLICIES": str(policies),
        "SUPERVISOR_REDIS_PASSWORD": REDIS_PASSWORD,
        "DOCKER_SOCKET": host.removeprefix("unix://") or "/var/run/docker.sock",
        "SUPERVISOR_HEALTHCHECK_INTERVAL": "2s",  # the first check comes one interval in
    }


def compose(policies: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "docker-compose",
            "-p",
            PROJECT,
            "-f",
            str(HERE / "stack.yml"),
            "-f",
            str(OVERRIDE),
            *args,
        ],
        env=compose_env(policies),
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def write_policies(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "dify-worker.toml").write_text(
        'name = "dify-worker"\n'
        "[broker]\n"
        'url = "redis://supervisor-progress:${SUPERVISOR_REDIS_PASSWORD}@iti-redis:6379/0"\n'
        'queues = ["celery"]\n'
        "[target]\n"
        'container = "iti-dify-worker"\n'
        "[detect]\n"
        "interval = 0.5\nwindow = 5\nthreshold = 5\nmax_gap = 2\n"
        "[restart]\n"
        "cooldown = 20\nbackoff_initial = 20\nbackoff_max = 40\nstop_timeout = 5\n"
        "capture_stacks = true\n"
    )
    return folder


@pytest.mark.integration
def test_override_merges_into_the_stack(tmp_path: Path) -> None:
    merged = yaml.safe_load(compose(write_policies(tmp_path / "policies"), "config").stdout)
    services = merged["services"]
    sup = services["worker-supervisor"]
    assert sup["init"] is True and sup["restart"] == "unless-stopped"
    assert sup["environment"]["DOCKER_HOST"] == "tcp://docker-socket-proxy:2375"
    assert sup["environment"]["SUPERVISOR_DRY_RUN"] == "0"
    assert set(sup["networks"]) == {"default", "worker-supervisor-docker"}
    volumes = {v.split(":")[1]: v.split(":") for v in sup["volumes"]}  # Compose v1 short form
    assert volumes["/etc/iti-worker-supervisor/policies"][2] == "ro"
    assert volumes["/var/lib/iti-worker-supervisor"][0] == "worker-supervisor-state"
    assert "worker-supervisor-state" in merged["volumes"]
    assert sup["healthcheck"]["test"] == ["CMD", "supervisor", "health"]
    proxy = services["docker-socket-proxy"]
    assert set(proxy["networks"]) == {"worker-supervisor-docker"}
    # one allowlist, read by both: the proxy enforces it, the supervisor checks its policies
    allowed = proxy["environment"]["SUPERVISOR_WORKER_CONTAINERS"]
    assert allowed == sup["environment"]["SUPERVISOR_WORKER_CONTAINERS"] == "iti-dify-worker"
    assert merged["networks"]["worker-supervisor-docker"]["internal"] is True
    assert all("ports" not in s for s in services.values())  # nothing published on the host
    assert services["redis"]["container_name"] == "iti-redis"


class Sidecar:
    def __init__(self, engine: docker.DockerClient, tmp_path: Path) -> None:
        self.engine = engine
        self.policies = write_policies(tmp_path / "policies")

    def up(self) -> None:
        compose(self.policies, "up", "-d", "--no-build", "redis", "worker")
        admin = wait_until(self._redis_up, 30, "iti-redis")
        for line in (REPO / "deploy" / "redis" / "acl.txt").read_text().splitlines():
            if line.startswith("ACL SETUSER"):
                admin.execute_command(*shlex.split(line.replace("PASSWORD", REDIS_PASSWORD)))
        compose(self.policies, "up", "-d", "--no-build")

    def down(self) -> None:
        compose(self.policies, "down", "-v", "--remove-orphans", "-t", "2", check=False)

    def container(self, name: str) -> Any:
        return self.engine.containers.get(name)

    def ip(self, name: str) -> str:
        networks = self.container(name).attrs["NetworkSettings"]["Networks"]
        return str(networks[f"{PROJECT}_default"]["IPAddress"])

    @property
    def broker(self) -> str:
        return f"redis://{self.ip('iti-redis')}:6379/0"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker)

    def _redis_up(self) -> redis.Redis | None:
        try:
            client = self.redis()
            client.ping()
        except (redis.RedisError, KeyError, docker.errors.NotFound):
            return None
        return client

    def state_dir(self) -> Path:
        volume = self.engine.volumes.get(f"{PROJECT}_worker-supervisor-state")
        return Path(volume.attrs["Mountpoint"])

    def audit(self, folder: Path) -> list[dict[str, Any]]:
        path = folder / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    def logs(self, name: str) -> str:
        return str(self.container(name).logs(tail=200).decode(errors="replace"))


@pytest.fixture
def sidecar(docker_engine: docker.DockerClient, tmp_path: Path) -> Iterator[Sidecar]:
    ensure_stand_in_image(docker_engine)
    build_supervisor_image(docker_engine, REPO)
    s = Sidecar(docker_engine, tmp_path)
    s.down()
    try:
        s.up()
        yield s
    finally:
        s.down()


@pytest.mark.e2e
@pytest.mark.exclusive  # it reads every API call the engine logs: no other test may run meanwhile
def test_sidecar_restarts_the_stuck_worker_through_the_proxy(sidecar: Sidecar) -> None:
    dockerd_log = Path(os.environ.get("DOCKERD_LOG", ""))
    if not dockerd_log.is_file():
        pytest.fail("DOCKERD_LOG is not set: run the tests through scripts/test")
    app = celery_app(sidecar.broker)
    worker_started = sidecar.container("iti-dify-worker").attrs["State"]["StartedAt"]
    redis_started = sidecar.container("iti-redis").attrs["State"]["StartedAt"]
    state = sidecar.state_dir()
    sup_context = lambda: sidecar.logs("iti-worker-supervisor")  # noqa: E731

    # The image runs non-root, and its own health check turns healthy.
    sup = sidecar.container("iti-worker-supervisor")
    assert sup.attrs["Config"]["User"] == "10001"
    wait_until(
        lambda: app.control.ping(destination=["dify@worker"], timeout=0.5), 60, "worker ready"
    )
    wait_until(
        lambda: (
            sidecar.container("iti-worker-supervisor").attrs["State"]["Health"]["Status"]
            == "healthy"
        ),
        90,
        "supervisor healthy",
        sup_context,
    )

    # From here until the queue has drained, only the supervisor talks to the engine (the
    # broker's address is read before: the test's own inspect of iti-redis is no proxy's).
    client = sidecar.redis()
    offset = dockerd_log.stat().st_size
    app.send_task("tasks.poison", queue="celery")
    producer = Producer(app, 4).start()
    try:
        [restart] = wait_until(
            lambda: [r for r in sidecar.audit(state) if r["event"] == "restart"],
            90,
            "a restart",
            sup_context,
        )
        time.sleep(2)
    finally:
        producer.stop()
    wait_until(lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0, 60, "drained")
    time.sleep(1.5)
    calls = re.findall(r'msg="Calling (\w+ \S+)"', dockerd_log.read_bytes()[offset:].decode())

    assert restart["outcome"] == "done" and restart["containers"] == ["iti-dify-worker"]
    assert "logged after SIGUSR1" in (state / restart["stacks"]).read_text()
    assert any(c.startswith("GET") and "/logs" in c for c in calls)
    assert "worker progress stuck" in restart["reason"]
    wait_exactly_once(client, producer.sent, 30)
    assert sidecar.container("iti-dify-worker").attrs["State"]["StartedAt"] != worker_started
    assert any(c.startswith("POST") and c.split("?")[0].endswith("/kill") for c in calls)
    assert any(c.startswith("POST") and c.endswith("/start") for c in calls)
    denied = [c for c in calls if not ALLOWED.match(c)]
    assert denied == [], f"calls the proxy would not allow: {denied}"
    proxy_log = sidecar.logs("iti-docker-socket-proxy")
    assert " 403 " not in proxy_log, proxy_log

    # The proxy refuses everything else, even from inside the supervisor's container: other
    # calls, and kill/start/restart of any container but the worker, one created later included.
    late = sidecar.engine.containers.create(
        "iti-supervisor-stand-in:bookworm", ["sleep", "600"], name="iti-late-worker"
    )
    worker_id = sidecar.container("iti-dify-worker").id
    forbidden = [
        ("POST", "/v1.41/containers/create"),
        ("GET", "/v1.41/images/json"),
        ("POST", "/v1.41/containers/iti-redis/exec"),
        ("DELETE", "/v1.41/containers/iti-redis"),
        ("POST", "/v1.41/containers/iti-redis/kill"),
        ("POST", "/containers/iti-redis/kill"),
        ("POST", "/v1.41/containers/iti-redis/restart"),
        ("POST", "/v1.41/containers/iti-worker-supervisor/kill"),
        ("POST", "/v1.41/containers/iti-docker-socket-proxy/restart"),
        ("POST", "/v1.41/containers/iti-late-worker/start"),
        ("POST", "/v1.41/containers/iti-late-worker/kill"),
        ("POST", f"/v1.41/containers/{worker_id}/kill"),  # by id: the proxy allows names only
        ("POST", "/v1.41/containers/iti-dify-worker-x/kill"),
        ("POST", "/v1.41/containers/iti-dify-worker/exec"),
        ("GET", "/v1.41/containers/iti-redis/logs"),  # only the worker's logs (its stacks)
        ("POST", "/v1.41/containers/iti-dify-worker/logs"),
        ("POST", "/v1.41/containers/iti-dify-worker/../iti-redis/kill"),
        ("GET", "/v1.41/containers/iti-redis/json"),  # its environment: the Redis password
        ("GET", "/containers/iti-redis/json"),
        ("GET", "/v1.23/containers/iti-redis/json"),
        ("GET", f"/v1.41/containers/{worker_id}/json"),  # the worker, but by id
        ("POST", "/v1.23/containers/iti-dify-worker/kill"),  # another API version
    ]
    probe = f"""
import urllib.error, urllib.request
for method, path in {forbidden!r}:
    req = urllib.request.Request("http://docker-socket-proxy:2375" + path, method=method)
    try:
        print(urllib.request.urlopen(req).status)
    except urllib.error.HTTPError as e:
        print(e.code)
"""
    out = sup.exec_run(["python3", "-c", probe])
    assert out.output.decode().split() == ["403"] * len(forbidden), out.output
    late.reload()
    assert late.status == "created"  # never started
    late.remove(force=True)
    print(f"socket proxy: {len(forbidden)} forbidden calls tried, {len(forbidden)} answered 403")

    # Asked by trigger to restart a container no policy names, it refuses, and nothing happens.
    out = sup.exec_run(["supervisor", "trigger", "iti-redis"])
    assert out.exit_code == 2, out.output
    assert b"no policy named 'iti-redis'" in out.output and b"runs dify-worker" in out.output
    # The health check sees the daemon by its lock from inside the container, too.
    health = sup.exec_run(["supervisor", "health"])
    assert health.exit_code == 0 and health.output.startswith(b"healthy"), health.output
    assert sidecar.container("iti-redis").attrs["State"]["StartedAt"] == redis_started

    # The documented manual trigger: compose kill -s SIGUSR1 reaches the supervisor through init.
    compose(sidecar.policies, "kill", "-s", "SIGUSR1", "worker-supervisor")
    manual = wait_until(
        lambda: [
            r for r in sidecar.audit(state) if r["event"] == "restart" and r["trigger"] == "manual"
        ],
        60,
        "manual restart",
        sup_context,
    )
    assert manual[0]["outcome"] == "done"
    assert REDIS_PASSWORD not in (state / "audit.jsonl").read_text()
