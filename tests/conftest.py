"""Real services for the integration tests: redis-server processes on free loopback ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import docker_client, ensure_base_image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server process that a test may stop and start again on the same port."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed: run the tests through scripts/test")
        self.port = free_port()
        self.password = password
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


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
    """A clean database on the shared server for each test."""
    client = redis.Redis.from_url(shared_redis_url)
    client.flushdb()
    yield shared_redis_url
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
