"""The shipped socket proxy (deploy/socket-proxy/haproxy.cfg) in the stand-in image, in front of
the private engine on a free loopback port, and a raw HTTP client for it: every request is
written byte for byte (a body with a Content-Length or chunked), so what reaches the proxy is
what the test says.

ITI_PROXY_CONFIG names another config to run instead (e.g. main's, to count what it forwards)."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

import docker

from harness.parts import REPO, wait_until
from harness.services import free_port
from tests.stand_in import ensure_stand_in_image

SHIPPED = REPO / "deploy/socket-proxy/haproxy.cfg"


class Proxy:
    def __init__(
        self,
        engine: docker.DockerClient,
        containers: str,
        services: str = "",
        force_update: str = "",
    ) -> None:
        self.port = free_port()
        config = Path(os.environ.get("ITI_PROXY_CONFIG") or SHIPPED)
        host_socket = os.environ["DOCKER_HOST"].removeprefix("unix://")
        self.container = engine.containers.run(
            ensure_stand_in_image(engine),
            ["haproxy", "-db", "-f", "/etc/haproxy.cfg"],
            name=f"iti-test-proxy-{uuid.uuid4().hex[:6]}",
            detach=True,
            network_mode="host",
            user="root",
            environment={
                "SUPERVISOR_PROXY_BIND": f"127.0.0.1:{self.port}",
                "SUPERVISOR_WORKER_CONTAINERS": containers,
                "SUPERVISOR_WORKER_SERVICES": services,
                "SUPERVISOR_FORCE_UPDATE_SERVICES": force_update,
            },
            volumes={
                str(config): {"bind": "/etc/haproxy.cfg", "mode": "ro"},
                host_socket: {"bind": "/var/run/docker.sock", "mode": "rw"},
            },
        )
        wait_until(
            lambda: self.status("GET", "/v1.41/_ping") == 200,
            30,
            "the proxy",
            lambda: self.container.logs().decode(errors="replace"),
        )

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def request(
        self, method: str, path: str, body: bytes | None = None, chunked: bool = False
    ) -> tuple[int, bytes]:
        """(status, response body). A POST without a body says Content-Length: 0, as
        docker-py's does."""
        head = [f"{method} {path} HTTP/1.1", "Host: docker", "Connection: close"]
        payload = b""
        if body is not None:
            head.append("Content-Type: application/json")
            if chunked:
                head.append("Transfer-Encoding: chunked")
                payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            else:
                head.append(f"Content-Length: {len(body)}")
                payload = body
        elif method in ("POST", "PUT"):
            head.append("Content-Length: 0")
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            s.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
            reply = b""
            while chunk := s.recv(65536):
                reply += chunk
        head_bytes, _, content = reply.partition(b"\r\n\r\n")
        status_line, *headers = head_bytes.decode("latin-1").split("\r\n")
        if any(h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in headers):
            content = _unchunk(content)
        return int(status_line.split()[1]), content

    def status(
        self, method: str, path: str, body: bytes | None = None, chunked: bool = False
    ) -> int | None:
        try:
            return self.request(method, path, body, chunked)[0]
        except (OSError, IndexError, ValueError):
            return None

    def close(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2 :]
    return out
