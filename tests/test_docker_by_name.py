"""Every container the actuators inspect is addressed by its name, never by its id: the socket
proxy lets inspect through for the workers' names only (deploy/socket-proxy/haproxy.cfg). The
engine here is a fake that answers like that proxy: 403 for any other name or an id. Against the
real proxy and engine: tests/e2e/test_socket_proxy.py."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from docker.errors import APIError, NotFound

from supervisor.adapters.docker_actuator import DockerActuator
from supervisor.core.results import Outcome
from supervisor.errors import TargetError
from supervisor.policy import Target

LABELS = {"com.docker.compose.project": "p", "com.docker.compose.service": "worker"}


def refused(name: str) -> APIError:
    response = requests.Response()
    response.status_code = 403
    response.request = requests.Request(
        "GET", f"http://docker/v1.41/containers/{name}/json?size=0"
    ).prepare()
    return APIError(f"403 {name}", response=response)


class ProxiedEngine:
    """docker-py's APIClient as far as the actuators use it, behind a name-scoped proxy."""

    def __init__(self, containers: dict[str, dict[str, Any]], workers: set[str]) -> None:
        self.containers_by_name = containers
        self.workers = workers
        self.inspected: list[str] = []
        self.started: list[str] = []

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[Any]:
        wanted = set((filters or {}).get("label") or [])
        return [
            {"Id": c["Id"], "Names": [f"/{name}"]}
            for name, c in self.containers_by_name.items()
            if wanted <= {f"{k}={v}" for k, v in c.get("Labels", {}).items()}
        ]

    def inspect_container(self, name: str) -> dict[str, Any]:
        if name not in self.workers:
            raise refused(name)
        self.inspected.append(name)
        if name not in self.containers_by_name:
            raise NotFound(name)
        c = self.containers_by_name[name]
        return {
            "Id": c["Id"],
            "Name": f"/{name}",
            "State": {"Running": c["running"], "StartedAt": c["started"]},
            "Config": {"Hostname": c["Id"][:12]},
            "RestartCount": 0,
        }

    def start(self, name: str) -> None:
        assert name in self.workers
        self.started.append(name)
        self.containers_by_name[name].update(running=True, started="2026-01-01T00:00:01Z")


class Client:
    def __init__(self, api: ProxiedEngine) -> None:
        self.api = api
        self.containers = None  # the high-level collection inspects by id: never used


def container(cid: str, running: bool = True, labels: dict[str, str] | None = None) -> Any:
    return {"Id": cid * 64, "running": running, "started": "2026-01-01T00:00:00Z",
            "Labels": labels or {}}  # fmt: skip


def actuator(api: ProxiedEngine, own: str = "e" * 64) -> DockerActuator:
    return DockerActuator(lambda: Client(api), own_id=own, retry_attempts=1)  # type: ignore[arg-type,return-value]


def test_a_named_worker_is_inspected_by_name_and_started_by_name() -> None:
    api = ProxiedEngine({"w": container("a", running=False)}, workers={"w"})
    result = actuator(api).ensure_running(Target(container="w"))
    assert result.error is None and result.started == ("w",) and result.running == ("w",)
    assert set(api.inspected) == {"w"} and len(api.inspected) >= 3  # find, before, after
    assert api.started == ["w"]


def test_compose_replicas_are_listed_then_inspected_by_name() -> None:
    api = ProxiedEngine(
        {"p-worker-1": container("a", labels=LABELS), "p-worker-2": container("b", labels=LABELS),
         "p-db-1": container("c")},
        workers={"p-worker-1", "p-worker-2"},
    )  # fmt: skip
    target = Target(compose_project="p", compose_service="worker", all=True)
    found = actuator(api).identify(target)
    assert {(c.name, c.hostname) for c in found} == {
        ("p-worker-1", "a" * 12),
        ("p-worker-2", "b" * 12),
    }
    assert set(api.inspected) == {"p-worker-1", "p-worker-2"}


def test_its_own_container_is_refused_from_the_list_without_inspecting_it() -> None:
    own = container("d", labels=LABELS)  # a policy's labels that match the supervisor too
    api = ProxiedEngine(
        {"p-worker-1": container("a", labels=LABELS), "p-supervisor-1": own},
        workers={"p-worker-1"},
    )
    target = Target(compose_project="p", compose_service="worker", all=True)
    with pytest.raises(TargetError, match="'p-supervisor-1' is the supervisor's own container"):
        actuator(api, own="d" * 64).find(target)
    assert "p-supervisor-1" not in api.inspected


def test_a_container_gone_between_list_and_inspect_is_left_out() -> None:
    api = ProxiedEngine({"p-worker-1": container("a", labels=LABELS)}, workers={"p-worker-1"})
    api.containers = lambda all=False, filters=None: [  # type: ignore[method-assign]
        {"Id": "a" * 64, "Names": ["/p-worker-1"]},
        {"Id": "f" * 64, "Names": ["/p-worker-2", "/other/alias"]},
    ]
    api.workers.add("p-worker-2")
    target = Target(compose_project="p", compose_service="worker", all=True)
    assert [c.name for c in actuator(api).find(target)] == ["p-worker-1"]


def test_a_refused_inspect_fails_the_lookup_with_the_proxy_named() -> None:
    api = ProxiedEngine({"w": container("a")}, workers=set())
    result = actuator(api).lookup(Target(container="w"))
    assert result.error is not None
    assert "403 refused by the Docker socket proxy (GET /v1.41/containers/w/json)" in result.error
    assert Outcome.FAILED is actuator(api).restart(Target(container="w"), _restart()).outcome


def _restart() -> Any:
    from supervisor.policy import Restart

    return Restart.model_validate({"stop_timeout": 1})


class SwarmEngine(ProxiedEngine):
    def info(self) -> dict[str, Any]:
        return {"Swarm": {"NodeID": "node1"}}

    def inspect_service(self, name: str) -> dict[str, Any]:
        return {"Spec": {"Mode": {"Replicated": {"Replicas": 1}}}}

    def tasks(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        assert filters == {"service": "svc", "desired-state": "running"}
        status = {"State": "running", "ContainerStatus": {"ContainerID": "a" * 64}}
        return [{"ID": "task1", "Slot": 1, "NodeID": "node1", "Status": status}]


def test_a_swarm_task_container_is_inspected_by_its_name() -> None:
    api = SwarmEngine({"svc.1.task1": container("a")}, workers={"svc.1.task1"})
    result = actuator(api).lookup(Target(swarm_service="svc"))
    assert result.error is None and result.containers == ("svc.1.task1",)
    assert api.inspected == ["svc.1.task1"]
