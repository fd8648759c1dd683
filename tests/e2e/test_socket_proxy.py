"""The socket proxy is a boundary (issue 25): deploy/socket-proxy/haproxy.cfg as shipped, in
front of the private engine, asked with raw HTTP requests. A start with a HostConfig body is
refused under any API version and however the body is framed, and the container gets no bind;
inspect is for the workers, by name; one API version; no Swarm update but for the services
named for it. And the supervisor's own calls still pass: its actuator restarts, looks up and
starts workers through the proxy, and still refuses its own container without inspecting it.

Run against another config (ITI_PROXY_CONFIG=old.cfg, tests/socket_proxy.py), the forbidden
requests that config forwards are counted and named.

Each test runs on both private engines, Debian 12's 20.10 and a current 26.1 (ids docker20,
docker26): the proxy is the same, the engine answering what it forwards is not."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from harness.parts import BASE_IMAGE, host_mounts
from supervisor.adapters.docker_actuator import API_VERSION, DockerActuator
from supervisor.core.results import Outcome
from supervisor.policy import Restart, Target
from tests.socket_proxy import Proxy

pytestmark = pytest.mark.e2e

HOST_CONFIG = json.dumps({"Binds": ["/:/host"], "Privileged": True}).encode()
# docker-py's encoding of tasks(filters={"service": NAME, "desired-state": "running"})
TASKS = (
    "/v1.41/tasks?filters=%7B%22service%22%3A+%5B%22{}%22%5D%2C+%22desired-state%22%3A+%5B%22"
    "running%22%5D%7D"
)


class Stack:
    """A worker, created and never started (so a forwarded start would start it with the
    body's HostConfig), a second worker running, another container holding a secret, and
    the proxy with the workers' names as its allowlist."""

    def __init__(self, engine: docker.DockerClient) -> None:
        tag = uuid.uuid4().hex[:6]
        self.engine = engine
        self.project = f"pxy{tag}"
        labels = {
            "com.docker.compose.project": self.project,
            "com.docker.compose.service": "worker",
        }
        # The host's `sleep` in the empty image: a container of the stand-in image costs
        # seconds (the storage driver, vfs, copies its whole root twice); the proxy needs it,
        # these do not. Mounts, not binds: a worker's HostConfig has no Binds to begin with.
        sleeper = {
            "image": BASE_IMAGE,
            "command": ["/bin/sleep", "600"],
            "mounts": [
                docker.types.Mount(spec["bind"], source, type="bind", read_only=True)
                for source, spec in host_mounts().items()
            ],
            "labels": labels,
        }
        self.created = engine.containers.create(name=f"{self.project}-worker-1", **sleeper)
        self.running = engine.containers.run(
            name=f"{self.project}-worker-2", detach=True, **sleeper
        )
        # Not a worker, but labelled like one: a misconfigured compose file, or the
        # supervisor's own container when a policy's labels are wrong.
        self.other = engine.containers.run(
            name=f"{self.project}-db-1",
            environment={"SECRET_KEY": "do-not-hand-out"},
            detach=True,
            **sleeper,
        )
        self.worker_svc, self.update_svc = f"{self.project}_worker", f"{self.project}_upd"
        self.proxy = Proxy(
            engine,
            f"{self.project}[-_]worker[-_][0-9]+",  # what `supervisor proxy-allowlist` prints
            services=f"{self.worker_svc}|{self.update_svc}",
            force_update=self.update_svc,
        )

    def forbidden(self) -> list[tuple[str, str, bytes | None, bool]]:
        """(method, path, body, chunked): what a peer on the proxy's network might try."""
        w, o = self.created.name, self.other.name
        spec = json.dumps({"Name": self.worker_svc, "TaskTemplate": {}}).encode()
        return [
            *[
                ("POST", f"{prefix}/containers/{w}/start", HOST_CONFIG, chunked)
                for prefix in ("/v1.23", "/v1.41", "")
                for chunked in (False, True)
            ],
            ("POST", f"/v1.41/containers/{self.running.name}/kill", b'{"x":1}', False),
            ("POST", f"/v1.41/containers/{self.running.name}/restart", b"{}", True),
            *[("GET", f"{prefix}/containers/{o}/json", None, False) for prefix in V_PREFIXES],
            ("GET", f"/v1.41/containers/{self.running.id}/json", None, False),  # by id
            ("GET", f"/v1.41/containers/{self.running.id[:12]}/json", None, False),
            ("GET", f"/v1.41/containers/{o}/logs?stdout=1", None, False),
            ("GET", "/v1.23/containers/json", None, False),
            ("GET", "/containers/json", None, False),
            ("GET", "/v1.40/_ping", None, False),
            ("POST", f"/v1.41/services/{self.worker_svc}/update?version=1", spec, False),
            ("POST", f"/v1.41/services/{self.worker_svc}/update?version=1", spec, True),
            ("POST", f"/v1.23/services/{self.update_svc}/update?version=1", spec, False),
            ("GET", "/v1.41/tasks", None, False),
            ("GET", TASKS.format(f"{self.project}_other"), None, False),
            ("GET", TASKS.format(self.worker_svc) + "&filters=x", None, False),
            ("GET", f"/v1.41/services/{self.project}_other", None, False),
        ]

    def close(self) -> None:
        self.proxy.close()
        for c in (self.created, self.running, self.other):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


V_PREFIXES = ("/v1.41", "/v1.23", "")


@pytest.fixture
def stack(engine: docker.DockerClient) -> Iterator[Stack]:
    s = Stack(engine)
    yield s
    s.close()


def attrs(engine: docker.DockerClient, name: str) -> dict[str, Any]:
    """Inspected on the engine itself, not through the proxy."""
    return dict(engine.api.inspect_container(name))


def test_a_start_with_a_host_config_body_is_refused_and_the_worker_gets_no_bind(
    stack: Stack, engine: docker.DockerClient
) -> None:
    w = stack.created.name
    answers = {
        (prefix, framing): stack.proxy.status(
            "POST", f"{prefix}/containers/{w}/start", HOST_CONFIG, chunked=framing == "chunked"
        )
        for prefix in ("/v1.23", "/v1.41")
        for framing in ("content-length", "chunked")
    }
    seen = attrs(engine, w)
    assert answers == dict.fromkeys(answers, 403), answers
    assert not seen["HostConfig"].get("Binds") and not seen["HostConfig"]["Privileged"], seen
    assert not seen["State"]["Running"] and seen["State"]["StartedAt"].startswith("0001")
    # docker-py's own start (no body, Content-Length: 0) passes, and the worker runs unprivileged.
    assert stack.proxy.status("POST", f"/v1.41/containers/{w}/start") == 204
    seen = attrs(engine, w)
    assert seen["State"]["Running"] and not seen["HostConfig"]["Privileged"]
    assert not any(m["Destination"] == "/host" for m in seen["Mounts"])


def test_inspect_is_for_the_workers_by_name_only(stack: Stack) -> None:
    o = stack.other.name
    refused = {
        prefix: stack.proxy.request("GET", f"{prefix}/containers/{o}/json") for prefix in V_PREFIXES
    }
    assert {p: status for p, (status, _) in refused.items()} == dict.fromkeys(V_PREFIXES, 403)
    assert not any(b"do-not-hand-out" in body for _, body in refused.values())
    for by_id in (stack.running.id, stack.running.id[:12]):
        assert stack.proxy.status("GET", f"/v1.41/containers/{by_id}/json") == 403
    status, body = stack.proxy.request("GET", f"/v1.41/containers/{stack.running.name}/json")
    assert status == 200 and json.loads(body)["Id"] == stack.running.id
    assert stack.proxy.status("GET", "/v1.41/containers/json?all=1") == 200
    assert stack.proxy.status("GET", "/v1.23/containers/json") == 403


def test_only_v1_41_and_no_body_on_kill_and_restart(
    stack: Stack, engine: docker.DockerClient
) -> None:
    w = stack.running.name
    started = attrs(engine, w)["State"]["StartedAt"]
    assert stack.proxy.status("POST", f"/v1.41/containers/{w}/kill", b'{"x":1}') == 403
    assert stack.proxy.status("POST", f"/v1.41/containers/{w}/restart", b"{}", chunked=True) == 403
    assert stack.proxy.status("POST", f"/v1.23/containers/{w}/kill?signal=SIGKILL") == 403
    assert attrs(engine, w)["State"]["StartedAt"] == started  # never signalled
    for path in ("/v1.41/_ping", "/v1.41/version"):
        assert stack.proxy.status("GET", path) == 200
    for path in ("/_ping", "/v1.40/_ping", "/v1.23/version", "/v1.410/_ping"):
        assert stack.proxy.status("GET", path) == 403, path


def test_swarm_update_only_for_the_force_update_services(stack: Stack) -> None:
    """The engine here is no swarm: a call the proxy forwards is answered by the engine (503
    "not a swarm manager"), one it refuses by the proxy (403; the engine never says 403)."""
    spec = b'{"Name": "x", "TaskTemplate": {}}'
    update = "/v1.41/services/{}/update?version=1"
    assert stack.proxy.status("POST", update.format(stack.worker_svc), spec) == 403
    assert stack.proxy.status("POST", update.format(f"{stack.project}_other"), spec) == 403
    assert stack.proxy.status("POST", update.format(stack.update_svc), spec) == 503
    assert stack.proxy.status("GET", f"/v1.41/services/{stack.worker_svc}") == 503
    assert stack.proxy.status("GET", f"/v1.41/services/{stack.project}_other") == 403
    assert stack.proxy.status("GET", TASKS.format(stack.worker_svc)) == 503
    assert stack.proxy.status("GET", TASKS.format(f"{stack.project}_other")) == 403
    assert stack.proxy.status("GET", "/v1.41/tasks") == 403


def test_no_forbidden_request_is_forwarded(stack: Stack, engine: docker.DockerClient) -> None:
    tried = stack.forbidden()
    forwarded = [
        (method, path, "chunked" if chunked else "length", status)
        for method, path, body, chunked in tried
        if (status := stack.proxy.status(method, path, body, chunked)) != 403
    ]
    print(f"socket proxy: {len(forwarded)} of {len(tried)} forbidden requests forwarded")
    for f in forwarded:
        print("  forwarded:", *f)
    seen = attrs(engine, stack.created.name)
    assert not seen["HostConfig"].get("Binds") and not seen["HostConfig"]["Privileged"]
    assert forwarded == []


def test_the_supervisor_restarts_looks_up_and_starts_its_workers_through_the_proxy(
    stack: Stack, engine: docker.DockerClient
) -> None:
    actuator = DockerActuator(
        lambda: docker.DockerClient(base_url=stack.proxy.url, version=API_VERSION, timeout=30),
        poll_interval=0.1,
        # The db container carries the workers' labels: taken for the supervisor's own, it is
        # refused from the list alone, never inspected (the proxy would say 403).
        own_id=stack.other.id,
    )
    labels = Target.model_validate(
        {"compose_project": stack.project, "compose_service": "worker", "all": True}
    )
    refused = actuator.lookup(labels)
    assert refused.error is not None and "the supervisor's own container" in refused.error
    actuator = DockerActuator(
        lambda: docker.DockerClient(base_url=stack.proxy.url, version=API_VERSION, timeout=30),
        poll_interval=0.1,
        own_id="f" * 64,
    )
    stack.other.remove(force=True)
    worker = Target.model_validate({"container": stack.created.name})
    assert actuator.lookup(worker).containers == (stack.created.name,)
    assert actuator.ensure_running(worker).started == (stack.created.name,)
    names = {c.name for c in actuator.identify(labels)}
    assert names == {stack.created.name, stack.running.name}
    before = attrs(engine, stack.running.name)["State"]["StartedAt"]
    # `sleep` as PID 1 ignores SIGQUIT: SIGQUIT, SIGKILL after stop_timeout, start.
    from supervisor.core.plan import ColdShutdown, Plan
    from supervisor.runtime.restarting import cold_restart

    plan = Plan((), (), True, (), ColdShutdown(True, "test"))  # a cold restart: its steps
    target = Target.model_validate({"container": stack.running.name})
    cold = cold_restart(actuator, target, None, plan, None, 1.0)
    assert cold.outcome is Outcome.DONE, cold
    assert cold.killed == (stack.running.name,)
    docker_way = actuator.restart(
        labels, Restart.model_validate({"method": "restart", "stop_timeout": "1s"})
    )
    assert docker_way.outcome is Outcome.DONE, docker_way
    assert set(docker_way.containers) == names
    after = attrs(engine, stack.running.name)["State"]
    assert after["Running"] and after["StartedAt"] != before
    assert actuator.ping() is None
    assert stack.created.name in actuator.names()
    actuator.close()
    logged = stack.proxy.container.logs().decode(errors="replace")
    assert " 403 " not in logged, logged
