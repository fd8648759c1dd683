"""Private redis-server and Prometheus processes on free loopback ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a service's process: SIGTERM, then SIGKILL if it has not exited in `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RedisServer:
    """A private redis-server process that a test may stop and start again on the same port."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run scripts/test once to install it")
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


class SentinelSet:
    """A master, a replica and one sentinel watching them as MASTER_NAME, on loopback: what a
    Sentinel deployment of Redis looks like, small enough for a test."""

    MASTER_NAME = "mymaster"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.master = RedisServer(workdir / "a")
        self.replica = RedisServer(workdir / "b")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Celery's spelling of a Sentinel broker on database 1."""
        return f"sentinel://127.0.0.1:{self.port}/1"

    def start(self) -> None:
        for server in (self.master, self.replica):
            server.workdir.mkdir(parents=True, exist_ok=True)
            server.start()
        self.replica.client().execute_command("REPLICAOF", "127.0.0.1", self.master.port)
        self.wait_for(
            lambda: self.replica.client().info("replication").get("master_link_status") == "up",
            "the replica in sync",
        )
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {self.MASTER_NAME} 4000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_for(lambda: self.current() == self.master.port, "the sentinel to see the master")
        self.wait_for(self._replica_known, "the sentinel to see the replica")

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def current(self) -> int | None:
        """The port of the master the sentinel names now."""
        try:
            found = self.sentinel().execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME
            )
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def _replica_known(self) -> bool:
        """The sentinel sees the replica in sync: what a failover needs to promote it."""
        try:
            replicas = self.sentinel().execute_command("SENTINEL", "REPLICAS", self.MASTER_NAME)
        except redis.RedisError:
            return False
        return any(  # a dict of bytes per replica
            r.get(b"master-link-status") == b"ok" and b"disconnected" not in r.get(b"flags", b"")
            for r in replicas or ()
        )

    def failover(self) -> RedisServer:
        """Promote the replica; the server that is master afterwards."""
        before = self.current()
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.MASTER_NAME)
        self.wait_for(lambda: self.current() not in (None, before), "the failover")
        new = self.replica if self.current() == self.replica.port else self.master
        self.wait_for(lambda: new.client().execute_command("ROLE")[0] == b"master", "promotion")
        return new

    def wait_for(self, predicate: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise RuntimeError(f"sentinel set: timed out waiting for {what}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        self.master.stop()
        self.replica.stop()


class PrometheusServer:
    """A private Prometheus (Debian's `prometheus` package) scraping one target every second and
    evaluating the given rule files every second; queried through its HTTP API."""

    def __init__(self, workdir: Path, target: str, rule_files: list[Path]) -> None:
        if shutil.which("prometheus") is None:
            raise RuntimeError("prometheus is not installed: run scripts/test once to install it")
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "iti-worker-supervisor", "static_configs": [{"targets": [target]}]}
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        "prometheus did not start: "
                        + (workdir / "prometheus.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, **params: str) -> Any:
        """The `data` of an API answer; RuntimeError with Prometheus's own error otherwise."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["state"] == "firing"]

    def stop(self) -> None:
        terminate(self.proc, 20)
        self.log.close()


class DockerEngine:
    """A private Docker engine as scripts/test starts one (no bridge, no iptables, vfs), for a
    benchmark run on its own: its socket is `host` (a DOCKER_HOST value)."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("dockerd") is None:
            raise RuntimeError("dockerd is not installed: run scripts/test once to install it")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = f"unix://{workdir}/docker.sock"
        self.log = (workdir / "dockerd.log").open("wb")
        self.proc = subprocess.Popen(
            [
                "dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--storage-driver=vfs", f"--data-root={workdir}/root",
                f"--exec-root={workdir}/exec", f"--pidfile={workdir}/docker.pid",
                "-H", self.host,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "dockerd did not start: " + (workdir / "dockerd.log").read_text()[-2000:]
                )
            time.sleep(0.2)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.workdir / "docker.sock"))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b" 200 " in s.recv(64)
            except OSError:
                return False

    def stop(self) -> None:
        terminate(self.proc, 30)
        self.log.close()
        # Its containers' bind mounts (vfs) would keep the directory from being removed.
        mounts = Path("/proc/mounts").read_text().split("\n")
        for line in sorted(mounts, reverse=True):
            parts = line.split()
            if len(parts) > 1 and parts[1].startswith(str(self.workdir)):
                subprocess.run(["umount", "-l", parts[1]], check=False)
