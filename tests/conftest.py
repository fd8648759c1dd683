"""Real services for the integration tests: redis-server processes on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.parts import Webhook, docker_client, ensure_base_image
from harness.services import RedisServer


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


@pytest.fixture(scope="session")
def docker_engine():  # type: ignore[no-untyped-def]
    """The private Docker engine that scripts/test started (DOCKER_HOST)."""
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("DOCKER_HOST is not set: run the end-to-end tests through scripts/test")
    client = docker_client()
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - report any failure to reach the engine
        pytest.fail(f"Docker engine at {os.environ['DOCKER_HOST']} unreachable: {exc}")
    ensure_base_image(client)
    yield client
    client.close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real HTTP receiver of notifications."""
    hook = Webhook()
    yield hook
    hook.close()
