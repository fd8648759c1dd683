"""Real services for the integration tests: redis-server processes on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import redis

from harness.parts import Webhook, ensure_base_image
from harness.services import RedisServer
from tests.helpers import ENGINES, engine_host


@pytest.fixture
def redis_server_factory(tmp_path: Path) -> Iterator[type[RedisServer]]:
    started: list[RedisServer] = []

    class Factory(RedisServer):
        def __init__(self, password: str | None = None) -> None:
            super().__init__(tmp_path, password)
            started.append(self)

    yield Factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The redis-server that scripts/test started, or one of our own when run bare."""
    url = os.environ.get("SUPERVISOR_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(shared_redis_url: str) -> Iterator[str]:
    """A clean database on the shared server for each test: one database per xdist worker
    (`-n 2`), so that tests running side by side never flush each other's keys."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    url = f"{shared_redis_url.rsplit('/', 1)[0]}/{1 + int(worker or 0)}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def connect(name: str) -> docker.DockerClient:
    """A client of engine `name` (ENGINES), which has the empty base image."""
    host = engine_host(name)
    client = docker.DockerClient(base_url=host, version="1.41", timeout=60)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - report any failure to reach the engine
        pytest.fail(f"Docker engine at {host} ({name}) unreachable: {exc}")
    ensure_base_image(client)
    return client


@pytest.fixture(scope="session")
def docker_engines() -> Iterator[Callable[[str], docker.DockerClient]]:
    """Engine by name, connected once a session."""
    clients: dict[str, docker.DockerClient] = {}

    def get(name: str) -> docker.DockerClient:
        if name not in clients:
            clients[name] = connect(name)
        return clients[name]

    yield get
    for client in clients.values():
        client.close()


@pytest.fixture(scope="session")
def docker_engine(
    docker_engines: Callable[[str], docker.DockerClient],
) -> docker.DockerClient:
    """The private Docker engine that scripts/test started (DOCKER_HOST)."""
    return docker_engines("docker20")


@pytest.fixture(params=list(ENGINES))
def engine(
    request: pytest.FixtureRequest,
    docker_engines: Callable[[str], docker.DockerClient],
    monkeypatch: pytest.MonkeyPatch,
) -> docker.DockerClient:
    """The test once on each engine (ids docker20, docker26): DOCKER_HOST names that engine
    meanwhile, so what the test starts (an actuator, a proxy, a subprocess) talks to it."""
    client = docker_engines(request.param)
    monkeypatch.setenv("DOCKER_HOST", engine_host(request.param))
    return client


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP receiver of notifications."""
    hook = Webhook()
    yield hook
    hook.close()
