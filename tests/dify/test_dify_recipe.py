"""The README's recipe for a stock Dify, followed literally with Docker Compose v2: this
repository cloned into Dify's docker/ folder, Dify's .env as it ships, and one command,
`docker compose -f docker-compose.yaml -f iti-worker-supervisor/deploy/dify/
docker-compose.override.yml up -d`, against a stand-in of Dify's compose file
(tests/dify/docker-compose.yaml). Only the policy's durations are shortened, so that a test
can wait for a decision."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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
    SupervisorProcess,
    celery_app,
    ran_twice,
    shipped_policy,
    wait_until,
)
from tests.helpers import ENGINES, engine_host
from tests.stand_in import (
    STAND_IN_IMAGE,
    SUPERVISOR_IMAGE,
    build_supervisor_image,
    copy_image,
    ensure_stand_in_image,
)

HERE = Path(__file__).parent
OVERRIDE = "iti-worker-supervisor/deploy/dify/docker-compose.override.yml"
DIFY_POLICY = REPO / "deploy" / "dify" / "dify-worker.toml"
# Dify's docker/.env.example, the lines this recipe reads, as they ship.
DIFY_ENV = """\
REDIS_PASSWORD=difyai123456
CELERY_BROKER_URL=redis://:difyai123456@redis:6379/1
CELERY_USE_SENTINEL=false
CELERY_SENTINEL_MASTER_NAME=
CELERY_SENTINEL_PASSWORD=
"""
LEAST_PRIVILEGE_PW = "dify-recipe-pw"
MIGRATION_SECONDS = 10


def dify_folder(root: Path) -> Path:
    """Dify's docker/ folder with this repository cloned into it."""
    folder = root / "docker"  # the folder's name is the project's: docker
    folder.mkdir(parents=True)
    (folder / "docker-compose.yaml").write_text((HERE / "docker-compose.yaml").read_text())
    (folder / ".env").write_text(DIFY_ENV)
    (folder / "iti-worker-supervisor").symlink_to(REPO)
    return folder


def stand_in_env(**more: str) -> dict[str, str]:
    """What the stand-in needs in place of Dify's images, and the private engine."""
    host = os.environ.get("DOCKER_HOST", "")
    return {
        **os.environ,
        "STAND_IN_IMAGE": STAND_IN_IMAGE,
        "EMPTY_IMAGE": BASE_IMAGE,
        "PYTHON_HOME": str(PYTHON_HOME),
        "WORKER_APP": str(WORKER_APP),
        "SUPERVISOR_IMAGE": SUPERVISOR_IMAGE,
        "SUPERVISOR_BASE_IMAGE": STAND_IN_IMAGE,
        "SOCKET_PROXY_IMAGE": STAND_IN_IMAGE,
        "DOCKER_SOCKET": host.removeprefix("unix://") or "/var/run/docker.sock",
        **more,
    }


def compose(
    folder: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yaml", "-f", OVERRIDE, *args],
        check=False,
        cwd=folder,
        env=env or stand_in_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"docker compose {' '.join(args)}: {out.stderr[-3000:]}")
    return out


@pytest.mark.integration
def test_the_merged_config_validates_and_restarts_only_the_workers(tmp_path: Path) -> None:
    folder = dify_folder(tmp_path)
    merged = yaml.safe_load(compose(folder, "config").stdout)
    assert merged["name"] == "docker"
    services = merged["services"]
    sup, proxy = services["worker-supervisor"], services["docker-socket-proxy"]
    env = sup["environment"]
    assert env["SUPERVISOR_BROKER_URL"] == "redis://:difyai123456@redis:6379/1"  # Dify's own
    assert env["DIFY_COMPOSE_PROJECT"] == "docker"
    assert env["SUPERVISOR_SENTINEL_MASTER_NAME"] == ""
    assert env["DOCKER_HOST"] == "tcp://docker-socket-proxy:2375"
    [policies] = [v for v in sup["volumes"] if v["target"] == "/etc/iti-worker-supervisor/policies"]
    assert policies["source"] == str(folder / "iti-worker-supervisor" / "deploy" / "dify")
    assert policies["read_only"]
    assert set(sup["networks"]) == {"default", "worker-supervisor-docker"}
    assert set(proxy["networks"]) == {"worker-supervisor-docker"}
    assert merged["networks"]["worker-supervisor-docker"]["internal"] is True
    assert all("ports" not in s for s in services.values())

    # One allowlist, read by both: the proxy enforces it, the supervisor checks its policy
    # against it. It is exactly the worker service's containers.
    allowed = proxy["environment"]["SUPERVISOR_WORKER_CONTAINERS"]
    assert env["SUPERVISOR_WORKER_CONTAINERS"] == allowed
    regex = re.compile(f"(?:{allowed})")
    for name in ("docker-worker-1", "docker-worker-2", "docker-worker-12"):
        assert regex.fullmatch(name), name
    for name in ("docker-worker_beat-1", "docker-api-1", "docker-redis-1", "docker-web-1",
                 "docker-worker-supervisor-1", "docker-docker-socket-proxy-1", "other-worker-1",
                 "docker-worker-1x"):  # fmt: skip
        assert not regex.fullmatch(name), name

    # The supervisor, given the merged environment, loads the policy as shipped: the target is
    # this project's worker service, every replica; its allowlist is the override's.
    sup_env = {**os.environ, **{k: str(v) for k, v in env.items()}}
    check = subprocess.run(
        [sys.executable, "-m", "supervisor", "check", str(REPO / "deploy" / "dify")],
        check=False, env=sup_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "target docker/worker" in check.stdout and "dataset" in check.stdout
    printed = subprocess.run(
        [sys.executable, "-m", "supervisor", "proxy-allowlist", str(REPO / "deploy" / "dify")],
        env=sup_env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert printed.stdout.strip() == allowed

    # Dify's redis starts through the script that keeps its users in an ACL file; the rest of
    # Dify is as it was.
    redis_service = services["redis"]
    assert redis_service["command"] == ["sh", "/etc/iti-worker-supervisor/redis-with-acl.sh"]
    assert redis_service["environment"]["REDIS_PASSWORD"] == "difyai123456"
    assert redis_service["restart"] == "always"
    for name in ("api", "worker", "worker_beat"):
        assert "worker-supervisor-docker" not in services[name]["networks"]

    # Another project name (COMPOSE_PROJECT_NAME in .env, or -p) moves target and allowlist.
    other = yaml.safe_load(compose(folder, "-p", "prod", "config").stdout)["services"]
    assert other["worker-supervisor"]["environment"]["DIFY_COMPOSE_PROJECT"] == "prod"
    assert re.fullmatch(
        other["docker-socket-proxy"]["environment"]["SUPERVISOR_WORKER_CONTAINERS"],
        "prod-worker-1",
    )


class Dify:
    """The stand-in brought up with the recipe, least-privilege users included."""

    def __init__(self, engine: docker.DockerClient, root: Path) -> None:
        self.engine = engine
        self.folder = dify_folder(root)
        self.policies = shipped_policy(root / "policies", source=DIFY_POLICY).parent
        self.env = stand_in_env(
            SUPERVISOR_POLICIES=str(self.policies),
            SUPERVISOR_REDIS_PASSWORD=LEAST_PRIVILEGE_PW,
            SUPERVISOR_BROKER_URL=f"redis://supervisor-progress:{LEAST_PRIVILEGE_PW}@redis:6379/1",
            # Dify's migration before its worker consumes, shortened from about 30 s; its beat
            # publishing once a minute, made every 2 s so that a test sees it
            STAND_IN_MIGRATION_SECONDS=str(MIGRATION_SECONDS),
            # 1.13.3's compose file: four slots (1.13.2's one restarted slot drained a backlog
            # over the threshold at under a task a second here, not yet understood)
            CELERY_WORKER_AMOUNT="4",
            STAND_IN_BEAT_EVERY="2",
        )

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return compose(self.folder, *args, env=self.env, check=check)

    def container(self, service: str) -> Any:
        return self.engine.containers.get(f"docker-{service}-1")

    def started(self, service: str) -> str:
        return str(self.container(service).attrs["State"]["StartedAt"])

    @property
    def url(self) -> str:
        networks = self.container("redis").attrs["NetworkSettings"]["Networks"]
        return f"redis://:difyai123456@{networks['docker_default']['IPAddress']}:6379/1"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def reachable(self) -> redis.Redis | None:
        """A client once Redis answers (its address is read anew: a restart may change it)."""
        try:
            client = self.client()
            client.ping()
        except (redis.RedisError, KeyError, docker.errors.NotFound):
            return None
        return client

    def state_dir(self) -> Path:
        return Path(self.engine.volumes.get("docker_worker-supervisor-state").attrs["Mountpoint"])

    def audit(self, event: str) -> list[dict[str, Any]]:
        path = self.state_dir() / "audit.jsonl"
        if not path.exists():
            return []
        records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        return [r for r in records if r["event"] == event]

    def logs(self) -> str:
        return str(self.container("worker-supervisor").logs(tail=100).decode(errors="replace"))

    def supervisor(self, *args: str) -> tuple[int, str]:
        out = self.container("worker-supervisor").exec_run(["supervisor", *args])
        return int(out.exit_code), str(out.output.decode(errors="replace"))


@pytest.fixture(scope="module", params=list(ENGINES))
def dify(
    request: pytest.FixtureRequest,
    docker_engines: Callable[[str], docker.DockerClient],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Dify]:
    """One stand-in for the module's tests on an engine (ids docker20, docker26; DOCKER_HOST
    names it meanwhile): bringing it up is most of their time. The supervisor's image is built
    on the first engine and copied to the other."""
    engine = docker_engines(request.param)
    built = docker_engines("docker20")
    build_supervisor_image(built, REPO)
    if engine is not built:
        ensure_stand_in_image(engine)  # the base, so that the copy brings only the top layers
        copy_image(built, engine, SUPERVISOR_IMAGE)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DOCKER_HOST", engine_host(request.param))
        d = Dify(engine, tmp_path_factory.mktemp("dify"))
        d.compose("down", "-v", "--remove-orphans", "-t", "1", check=False)
        try:
            d.compose("up", "-d", "--no-build")
            yield d
        finally:
            d.compose("down", "-v", "--remove-orphans", "-t", "1", check=False)


# The whole story on the first engine only (it waits a minute for a detection and a drain that
# no engine decides); the current engine gets the recipe's own Docker path:
# test_a_manual_restart_...
ON_DOCKER20 = pytest.mark.parametrize("dify", ["docker20"], indirect=True)


def healthy(d: Dify) -> bool:
    code, _ = d.supervisor("health")
    return code == 0


@pytest.mark.e2e
@ON_DOCKER20
def test_a_hung_docker_worker_1_is_restarted_once_and_nothing_else_is_touched(dify: Dify) -> None:
    client = wait_until(dify.reachable, 60, "Dify's redis")
    app = celery_app(dify.url)
    wait_until(lambda: app.control.ping(timeout=0.5), 60, "docker-worker-1 ready")
    wait_until(lambda: healthy(dify), 60, "the supervisor healthy", dify.logs)
    untouched = {s: dify.started(s) for s in ("worker_beat", "api", "redis")}
    worker_started = dify.started("worker")

    # `status` lists every watched queue with its depth, and the worker it found: after Dify's
    # migration, once the worker has said which queues it consumes (asked once a minute).
    def names_the_worker() -> str | None:
        code, out = dify.supervisor("status")
        return out if code == 0 and "docker-worker-1 (celery@" in out else None

    status = wait_until(names_the_worker, 90, "status naming docker-worker-1's worker", dify.logs)
    floor = re.search(r"queues = \[(.*?)\]", DIFY_POLICY.read_text(), re.S)
    assert floor is not None
    queues = re.findall(r'"([a-z_]+)"', floor.group(1))
    assert len(queues) == 19 and "trigger_refresh_publisher" not in queues
    for queue in queues:
        assert re.search(rf"[(,] ?{queue} \d+[,;]", status), (queue, status)
    assert "docker-worker-1 (celery@" in status, status

    # Four greenlets hang on dataset, the queue grows: one restart, of docker-worker-1 only.
    hung_at = time.time()
    for _ in range(4):
        app.send_task("tasks.poison", queue="dataset")
    producer = Producer(app, 5, 0.01, queue="dataset").start()  # one slot: a quiet install
    try:
        wait_until(lambda: client.llen("dataset") >= 20, 30, "dataset growing")
        _, status = dify.supervisor("status")
        depth = re.search(r"[(,] ?dataset (\d+)[,;]", status)
        assert depth is not None and int(depth.group(1)) > 0, status
        [restart] = wait_until(lambda: dify.audit("restart"), 120, "the restart", dify.logs)
    finally:
        producer.stop()
    assert restart["outcome"] == "done", restart
    assert restart["containers"] == ["docker-worker-1"], restart
    assert "worker progress stuck" in restart["reason"], restart
    # gevent with a Redis result backend: Celery's cold shutdown breaks there, so none is tried.
    assert restart["sigquit"] is False and restart["killed"] == ["docker-worker-1"], restart
    wait_until(
        lambda: client.llen("dataset") == 0 and client.hlen("unacked") == 0, 480, "drained",
        lambda: f"dataset {client.llen('dataset')}, unacked {client.hlen('unacked')}, "
        f"restart {restart}\n{dify.logs()}",
    )  # fmt: skip
    done_at = {int(k): v for k, v in client.zrange("test:done_at", 0, -1, withscores=True)}
    decided = restart["called_at"]  # the executor was called: the decision was made
    consuming = min(t for t in done_at.values() if t > decided)
    assert consuming - decided > MIGRATION_SECONDS  # Dify migrates before it consumes again
    print(
        f"Dify recipe: hang -> decision {decided - hung_at:.1f} s, "
        f"decision -> consuming again {consuming - decided:.1f} s "
        f"(the restart itself {restart['seconds']:.2f} s, the rest the worker's start with "
        f"its {MIGRATION_SECONDS} s migration)"
    )
    # The beat's queue that 1.13.2's worker does not consume: it grows, and it is not watched
    # (the floor holds only queues a worker consumes), so it never weighs on the decision.
    assert client.llen("trigger_refresh_publisher") > 0
    assert "trigger_refresh_publisher" not in restart["plan"]["queues"], restart["plan"]
    lost = set(producer.sent) - set(done_at)
    assert len(lost) <= 1, sorted(lost)  # gevent: see tests/e2e/test_dify_worker.py
    assert not ran_twice(client)
    assert dify.started("worker") != worker_started
    assert {s: dify.started(s) for s in untouched} == untouched
    assert len(dify.audit("restart")) == 1

    # The least-privilege user did all of it, and Redis refused it nothing.
    assert client.execute_command("ACL", "LOG") == [], client.execute_command("ACL", "LOG")
    users = {u.decode() for u in client.execute_command("ACL", "USERS")}
    assert {"default", "supervisor", "supervisor-progress"} <= users
    # They survive a restart of Redis (the file is written anew at every start), and Dify's
    # own password still works.
    dify.container("redis").restart(timeout=2)
    after = wait_until(dify.reachable, 60, "redis back")
    users = {u.decode() for u in after.execute_command("ACL", "USERS")}
    assert {"supervisor", "supervisor-progress"} <= users
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis.Redis.from_url(
            dify.url.replace(":difyai123456@", f"supervisor:{LEAST_PRIVILEGE_PW}@")
        ).flushdb()


@pytest.mark.e2e
@ON_DOCKER20
def test_the_chapters_policy_next_to_a_stock_dify_is_unhealthy_naming_what_it_found(
    dify: Dify, tmp_path: Path
) -> None:
    """Issue 16's day one: the ITI policy (container iti-dify-worker) started next to a stock
    Dify. Within seconds `health` says it cannot judge, naming the containers there are."""
    wait_until(dify.reachable, 60, "Dify's redis")
    policy = shipped_policy(tmp_path / "iti")
    state = tmp_path / "state"
    started = time.monotonic()
    sup = SupervisorProcess([policy], state, extra_env={"SUPERVISOR_BROKER_URL": dify.url})
    try:

        def unhealthy() -> str | None:
            out = subprocess.run(
                [sys.executable, "-m", "supervisor", "health", "--state-dir", str(state)],
                check=False, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            text = out.stdout + out.stderr
            # (Before its containers are read it may first say it has no queue to watch.)
            found = "cannot judge" in text and "iti-dify-worker" in text
            return text if out.returncode != 0 and found else None

        message = wait_until(unhealthy, 90, "health reporting the missing target", sup.tail)
        print(f"wrong target -> health unhealthy: {time.monotonic() - started:.1f} s")
        assert "iti-dify-worker" in message and "docker-worker-1" in message, message
    finally:
        sup.stop()


@pytest.mark.e2e
def test_a_manual_restart_through_the_proxy_restarts_docker_worker_1_alone(dify: Dify) -> None:
    """The recipe's Docker path on each engine: its supervisor, in its container, finds the
    worker through the socket proxy and, on `supervisor trigger`, restarts docker-worker-1 by
    its steps there (list, inspect by name, kill, start on /v1.41); the proxy refuses none of
    its calls, and no other container restarts."""
    wait_until(lambda: healthy(dify), 120, "the supervisor healthy", dify.logs)
    others = ("worker_beat", "api", "redis", "docker-socket-proxy", "worker-supervisor")
    untouched = {s: dify.started(s) for s in others}
    worker_started = dify.started("worker")
    before = len(dify.audit("restart"))
    code, out = dify.supervisor("trigger", "dify-worker")
    assert code == 0, out
    [restart] = wait_until(
        lambda: dify.audit("restart")[before:], 60, "the manual restart", dify.logs
    )
    print(
        f"manual restart on {os.environ['DOCKER_HOST']}: {restart['seconds']:.2f} s, sigquit "
        f"{restart['sigquit']}, killed {restart['killed']}, error {restart.get('error')}"
    )
    assert restart["outcome"] == "done" and restart["trigger"] == "manual", restart
    assert restart["containers"] == ["docker-worker-1"], restart
    assert dify.started("worker") != worker_started
    assert {s: dify.started(s) for s in others} == untouched
    proxy_log = dify.container("docker-socket-proxy").logs().decode(errors="replace")
    assert " 403 " not in proxy_log, proxy_log[-3000:]


@pytest.mark.integration
def test_difys_key_prefix_reaches_the_policy_as_kombus_global_keyprefix(tmp_path: Path) -> None:
    """REDIS_KEY_PREFIX in Dify's .env: Dify hands kombu global_keyprefix "<prefix>:" (its
    ext_celery.py); the recipe hands the policy the same, and nothing without one."""
    from supervisor.policy import load_policy

    folder = dify_folder(tmp_path)
    plain = yaml.safe_load(compose(folder, "config").stdout)["services"]
    assert plain["worker-supervisor"]["environment"]["SUPERVISOR_KEY_PREFIX"] == ""
    with (folder / ".env").open("a") as env:
        env.write("REDIS_KEY_PREFIX=dify\n")
    merged = yaml.safe_load(compose(folder, "config").stdout)["services"]
    env_of = {k: str(v) for k, v in merged["worker-supervisor"]["environment"].items()}
    assert env_of["SUPERVISOR_KEY_PREFIX"] == "dify:"
    saved = dict(os.environ)
    try:
        os.environ.update(env_of)
        policy = load_policy(DIFY_POLICY)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert policy.broker.key_prefix == "dify:"
    assert policy.broker.redis_keys("mail")[0] == "dify:mail"
