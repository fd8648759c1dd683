"""A TLS-only redis-server with its own CA that requires client certificates: the spellings
Celery and kombu accept for a rediss:// URL, the same as policy keys, a client certificate, and
a wrong CA (a clear error, never a crash)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.services import free_port
from supervisor.adapters.progress_probe import ProgressMonitor
from supervisor.adapters.redis_probe import RedisProbe
from tests.helpers import cli, make_policy

pytestmark = pytest.mark.integration


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def certificates(d: Path) -> None:
    """A CA, a server and a client certificate signed by it, and another CA."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                "-out", f"{ca}.crt", "-days", "1", "-subj", f"/CN={ca}", cwd=d)  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out",
                f"{who}.csr", "-subj", f"/CN={who}", cwd=d)  # fmt: skip
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{who}.crt", "-days", "1", "-extfile", "ext",
                cwd=d)  # fmt: skip


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = tmp_path_factory.mktemp("tls")
    certificates(d)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key",
         "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "yes", "--save", "",
         "--appendonly", "no", "--dir", str(d)],
        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    admin = redis.Redis(
        port=port,
        ssl=True,
        ssl_ca_certs=str(d / "ca.crt"),
        ssl_certfile=str(d / "client.crt"),
        ssl_keyfile=str(d / "client.key"),
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            admin.rpush("celery", *range(5))
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield d, port
    proc.terminate()
    proc.wait(10)


def query(d: Path, reqs: str = "CERT_REQUIRED", ca: str = "ca.crt") -> str:
    return (
        f"ssl_cert_reqs={reqs}&ssl_ca_certs={d / ca}"
        f"&ssl_certfile={d / 'client.crt'}&ssl_keyfile={d / 'client.key'}"
    )


@pytest.mark.parametrize("reqs", ["CERT_REQUIRED", "required", "Required"])
def test_celery_s_spellings_in_the_url(tls_server: Any, reqs: str) -> None:
    d, port = tls_server
    policy = make_policy(broker={"url": f"rediss://127.0.0.1:{port}/0?{query(d, reqs)}"})
    sample = RedisProbe(policy.broker).sample()
    assert sample.ok and sample.depth == 5, sample.error


def test_the_same_as_policy_keys_and_through_kombu(tls_server: Any) -> None:
    d, port = tls_server
    policy = make_policy(
        broker={
            "url": f"rediss://127.0.0.1:{port}/0",
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": str(d / "ca.crt"),
            "ssl_certfile": str(d / "client.crt"),
            "ssl_keyfile": str(d / "client.key"),
        }
    )
    sample = RedisProbe(policy.broker).sample()
    assert sample.ok and sample.depth == 5, sample.error
    monitor = ProgressMonitor(policy.broker)  # kombu's connection, with broker_use_ssl
    try:
        with monitor.connection() as conn:
            conn.ensure_connection(max_retries=1)
        monitor.poll_once()  # the remote-control bindings, read over TLS: no error
    finally:
        monitor.stop()


def test_a_wrong_ca_or_no_client_certificate_is_a_clear_error(
    tls_server: Any, tmp_path: Path
) -> None:
    d, port = tls_server
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        f'name = "w"\n[broker]\nurl = "rediss://127.0.0.1:{port}/0?{query(d, ca="other-ca.crt")}"\n'
        '[target]\ncontainer = "w"\n'
    )
    out = cli("sample", str(wrong))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "certificate verify failed" in json.loads(out.stdout)["error"]
    anonymous = make_policy(
        broker={"url": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d / 'ca.crt'}", "timeout": 2}
    )
    sample = RedisProbe(anonymous.broker).sample()
    assert not sample.ok and sample.error
