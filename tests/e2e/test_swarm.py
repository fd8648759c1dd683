"""Swarm services as targets, on a single-node swarm of the private engine: a real Celery worker
service with two replicas, restarted per task (cold) and by force_update, both through the
socket proxy, and a dry run; the proxy refuses every other Swarm call, the service update
included unless SUPERVISOR_FORCE_UPDATE_SERVICES names it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from harness.parts import (
    REPO,
    Producer,
    SupervisorProcess,
    SwarmWorker,
    celery_app,
    queue_state,
    wait_exactly_once,
    wait_until,
    write_policy,
)
from tests.socket_proxy import Proxy
from tests.stand_in import ensure_stand_in_image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def swarm(docker_engine: docker.DockerClient) -> Iterator[docker.DockerClient]:
    """The engine as a single-node swarm manager; left again if this module made it one."""
    made = docker_engine.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        docker_engine.swarm.init(advertise_addr="127.0.0.1")
    yield docker_engine
    if made:
        docker_engine.swarm.leave(force=True)


class Service:
    def __init__(self, engine: docker.DockerClient, factory: Any, tmp: Path) -> None:
        self.server = factory()
        self.server.start()
        self.app = celery_app(self.server.url)
        self.worker = SwarmWorker(engine, self.server.url, replicas=2)
        self.worker.wait_ready(self.app)
        self.tmp = tmp

    def policy(self, **restart: Any) -> Path:
        path = write_policy(self.tmp / "w.toml", "w", self.server.url, "unused", restart=restart)
        text = path.read_text().replace(
            'container = "unused"', f'swarm_service = "{self.worker.name}"'
        )
        path.write_text(text)
        return path

    def hang(self, slot: int) -> Producer:
        """Hang the replica in `slot`, then publish more than the other one can do alone."""
        self.app.send_task("tasks.poison", queue=f"only-{slot}")
        return Producer(self.app, per_second=8, work_seconds=0.2).start()

    def drained(self, producer: Producer) -> None:
        wait_until(lambda: queue_state(self.server.url) == (0, 0), 90, "the backlog drained")
        wait_exactly_once(self.server.client(), producer.sent, 30)

    def close(self) -> None:
        self.worker.remove()
        self.app.close()


@pytest.fixture
def service(
    swarm: docker.DockerClient, redis_server_factory: Any, tmp_path: Path
) -> Iterator[Service]:
    s = Service(swarm, redis_server_factory, tmp_path)
    yield s
    s.close()


def test_1_and_5_only_the_hung_task_is_stopped_through_the_proxy_and_swarm_replaces_it(
    service: Service, swarm: docker.DockerClient, tmp_path: Path
) -> None:
    name = service.worker.name
    containers = f"{name}[.][a-z0-9]+[.][a-z0-9]+"  # what `supervisor proxy-allowlist` prints
    proxy = Proxy(swarm, containers, name)
    hung, healthy = service.worker.container(1), service.worker.container(2)
    healthy_started = healthy.attrs["State"]["StartedAt"]
    old_task = service.worker.running()[1]["ID"]
    node = swarm.info()["Swarm"]["NodeID"]
    sup = SupervisorProcess(
        [service.policy()],
        tmp_path / "state",
        extra_env={
            "DOCKER_HOST": proxy.url,
            "SUPERVISOR_WORKER_CONTAINERS": containers,
            "SUPERVISOR_WORKER_SERVICES": name,
        },
    )
    try:
        sup.wait_started()
        time.sleep(3)  # the first heartbeats, and the tasks read from Swarm
        hang_at = time.monotonic()
        producer = service.hang(1)
        try:
            [record] = sup.wait_for(lambda: sup.events("restart"), 120, "a restart")
        finally:
            producer.stop()
        decided = time.monotonic() - hang_at
        assert record["outcome"] == "done", record
        assert record["containers"] == [hung.name]
        assert record["service"] == name
        [task] = record["tasks"]
        assert task == {"id": old_task, "slot": 1, "node": node, "container": hung.name}
        [new] = record["new_tasks"]
        assert new["slot"] == 1 and new["id"] != old_task and new["node"] == node
        assert service.worker.running()[1]["ID"] == new["id"]
        # The healthy replica is the same container, never stopped.
        healthy.reload()
        assert healthy.attrs["State"]["StartedAt"] == healthy_started
        assert service.worker.container(2).id == healthy.id
        service.drained(producer)
        drained = time.monotonic() - hang_at
        assert len(sup.events("restart")) == 1
        print(
            f"swarm cold: hang -> decision {decided:.1f}s, replaced in {record['seconds']:.1f}s, "
            f"backlog drained {drained:.1f}s after the hang"
        )

        # 5. The proxy refuses every Swarm call the supervisor does not make.
        forbidden = [
            ("POST", "/v1.41/services/create"),
            ("GET", "/v1.41/services"),
            ("DELETE", f"/v1.41/services/{name}"),
            ("POST", "/v1.41/services/other-service/update"),
            ("GET", "/v1.41/services/other-service"),
            ("GET", "/v1.41/secrets"),
            ("GET", "/v1.41/secrets/abc"),
            ("GET", "/v1.41/configs"),
            ("GET", "/v1.41/configs/abc"),
            ("GET", "/v1.41/nodes"),
            ("POST", f"/v1.41/nodes/{node}/update"),
            ("POST", "/v1.41/swarm/leave"),
            ("GET", "/v1.41/swarm/unlockkey"),
            ("POST", f"/v1.41/containers/{healthy.id}/kill"),  # a task by id: names only
            ("GET", f"/v1.41/containers/{healthy.id}/json"),  # inspect too: names only
            # Its own service's update: no policy here uses force_update, so the proxy's
            # SUPERVISOR_FORCE_UPDATE_SERVICES is empty.
            ("POST", f"/v1.41/services/{name}/update?version=1"),
            ("GET", "/v1.41/tasks"),  # every service's tasks, their environment with them
        ]
        answers = [proxy.status(method, path) for method, path in forbidden]
        assert answers == [403] * len(forbidden), list(zip(forbidden, answers, strict=True))
        assert proxy.status("GET", f"/v1.41/services/{name}") == 200
        print(f"socket proxy: {len(forbidden)} forbidden Swarm calls tried, 403 for all")
    finally:
        sup.stop()
        proxy.close()


def test_2_force_update_replaces_every_task_in_rolling_order(
    service: Service, tmp_path: Path
) -> None:
    before = {slot: t["ID"] for slot, t in service.worker.running().items()}
    name = service.worker.name
    containers = f"{name}[.][a-z0-9]+[.][a-z0-9]+"
    # Only here does the proxy let the update through: the policy uses force_update.
    proxy = Proxy(service.worker.client, containers, name, force_update=name)
    sup = SupervisorProcess(
        [service.policy(method="force_update")],
        tmp_path / "state",
        extra_env={
            "DOCKER_HOST": proxy.url,
            "SUPERVISOR_WORKER_CONTAINERS": containers,
            "SUPERVISOR_WORKER_SERVICES": name,
            "SUPERVISOR_FORCE_UPDATE_SERVICES": name,
        },
    )
    try:
        sup.wait_started()
        time.sleep(3)
        hang_at = time.monotonic()
        producer = service.hang(1)
        try:
            [record] = sup.wait_for(lambda: sup.events("restart"), 180, "a restart")
        finally:
            producer.stop()
        decided = time.monotonic() - hang_at
        assert record["outcome"] == "done", record
        assert record["method"] == "force_update"
        assert sorted(t["id"] for t in record["tasks"]) == sorted(before.values())
        after = {slot: t["ID"] for slot, t in service.worker.running().items()}
        assert sorted(t["id"] for t in record["new_tasks"]) == sorted(after.values())
        assert not set(after.values()) & set(before.values())
        # Rolling: parallelism 1 and a 1 s delay, so the new tasks were created one after the
        # other, the second once the first ran.
        new = sorted(
            (t for t in service.worker.tasks() if t["ID"] in after.values()),
            key=lambda t: t["CreatedAt"],
        )
        first, second = (
            time.mktime(time.strptime(t["CreatedAt"][:19], "%Y-%m-%dT%H:%M:%S")) for t in new
        )
        assert second - first >= 1, [t["CreatedAt"] for t in new]
        # The hung replica ignored SIGTERM (its pool is blocked) and Swarm SIGKILLed it after
        # stop_grace_period; the supervisor saw the exit code and gave its messages back. (On a
        # loaded machine the healthy one's warm shutdown may outlast the grace period too: it
        # is then reported killed as well, which is what happened to it.)
        hung = [t["container"] for t in record["tasks"] if t["slot"] == 1]
        assert set(hung) <= set(record["killed"]), record
        assert record["restored"] >= 1, record  # what the hung replica had reserved
        service.drained(producer)
        drained = time.monotonic() - hang_at
        print(
            f"swarm force_update: hang -> decision {decided:.1f}s, update converged in "
            f"{record['seconds']:.1f}s, backlog drained {drained:.1f}s after the hang"
        )
    finally:
        sup.stop()
        proxy.close()


def test_3_a_dry_run_on_a_swarm_target_changes_nothing(service: Service, tmp_path: Path) -> None:
    before = {slot: service.worker.container(slot).id for slot in (1, 2)}
    tasks = {slot: t["ID"] for slot, t in service.worker.running().items()}
    sup = SupervisorProcess([service.policy()], tmp_path / "state", dry_run=True)
    try:
        sup.wait_started()
        time.sleep(3)
        producer = service.hang(1)
        try:
            [record] = sup.wait_for(lambda: sup.events("dry_run_restart"), 120, "a dry-run restart")
        finally:
            producer.stop()
        assert record["outcome"] == "dry_run"
        assert record["containers"] == [service.worker.container(1).name]
        assert [t["id"] for t in record["tasks"]] == [tasks[1]]
        time.sleep(3)
        assert sup.events("restart") == []
        assert {slot: service.worker.container(slot).id for slot in (1, 2)} == before
        assert {slot: t["ID"] for slot, t in service.worker.running().items()} == tasks
    finally:
        sup.stop()


def _stack_containers(engine: docker.DockerClient, running: bool = False) -> list[Any]:
    # The low-level list: docker-py's high-level one inspects each container, and one that
    # Swarm removes meanwhile would raise NotFound.
    listed = engine.api.containers(all=not running)
    return [c for c in listed if any(n.startswith("/supervisor_") for n in c["Names"])]


def _removed(engine: docker.DockerClient, volume: str) -> bool:
    try:
        engine.volumes.get(volume).remove(force=True)
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:  # still in use by a container on its way out
        return False
    return True


def test_6_the_shipped_stack_restarts_a_hung_task_through_its_proxy(
    swarm: docker.DockerClient, redis_server_factory: Any, tmp_path: Path
) -> None:
    """deploy/swarm/stack.yml as operators deploy it (`docker stack deploy`), with the images
    and the network of this machine: the supervisor reaches Docker only through the stack's
    proxy, over a unix socket in a node-local volume, and restarts the hung task of the Dify
    worker service."""
    from tests.stand_in import build_supervisor_image

    server = redis_server_factory()
    server.start()
    app = celery_app(server.url)
    policy = tmp_path / "dify-worker.toml"
    text = (REPO / "deploy/swarm/dify-worker.toml").read_text()
    text = text.replace("redis://:${SUPERVISOR_REDIS_PASSWORD}@redis:6379/1", server.url)
    for key, value in {
        "interval": '"0.5s"', "window": '"5s"', "threshold": "5", "max_gap": '"2s"',
        "cooldown": '"60s"', "backoff_initial": '"60s"', "backoff_max": '"120s"',
        "stop_timeout": '"3s"',
    }.items():  # fmt: skip
        text = re.sub(rf"^{key} = [^#\n]*", f"{key} = {value}  ", text, flags=re.M)
    policy.write_text(text)
    env = {
        **os.environ,
        "SUPERVISOR_IMAGE": build_supervisor_image(swarm, REPO),
        "SOCKET_PROXY_IMAGE": ensure_stand_in_image(swarm),
        "DIFY_NETWORK": "host",  # the test's Redis and worker are on the host's network
        "SUPERVISOR_SWARM_POLICY": str(policy),
        "DOCKER_SOCKET": os.environ["DOCKER_HOST"].removeprefix("unix://"),
    }
    with contextlib.suppress(docker.errors.NotFound):
        swarm.secrets.get("supervisor_redis_password").remove()
    secret = swarm.secrets.create(name="supervisor_redis_password", data=b"unused-here")
    stack = ["docker", "stack"]
    subprocess.run([*stack, "rm", "supervisor"], capture_output=True, check=False)  # a stale one
    with contextlib.suppress(docker.errors.NotFound):
        swarm.services.get("dify_worker").remove()
    worker = SwarmWorker(swarm, server.url, replicas=2, name="dify_worker")
    since = time.time()
    try:
        worker.wait_ready(app)
        deployed = subprocess.run(
            [*stack, "deploy", "-c", str(REPO / "deploy/swarm/stack.yml"), "supervisor"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stderr

        def audit() -> list[dict[str, Any]]:  # this run's: a stale volume may hold older ones
            with contextlib.suppress(docker.errors.NotFound, FileNotFoundError):
                mount = swarm.volumes.get("supervisor_state").attrs["Mountpoint"]
                lines = (Path(mount) / "audit.jsonl").read_text().splitlines()
                records = [json.loads(x) for x in lines if x.strip()]
                return [r for r in records if r["t"] >= since]
            return []

        def logs() -> str:
            out = subprocess.run(
                ["docker", "service", "logs", "supervisor_worker-supervisor"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            return out.stdout[-3000:] + out.stderr[-2000:]

        wait_until(lambda: [r for r in audit() if r["event"] == "start"], 120, "started", logs)
        time.sleep(4)  # heartbeats, and the tasks read through the proxy
        hung, healthy = worker.container(1), worker.container(2)
        app.send_task("tasks.poison", queue="only-1")
        producer = Producer(app, per_second=8, work_seconds=0.2).start()
        try:
            [restart] = wait_until(
                lambda: [r for r in audit() if r["event"] == "restart"], 120, "a restart", logs
            )
        finally:
            producer.stop()
        assert restart["outcome"] == "done", restart
        assert restart["containers"] == [hung.name], (restart, worker.tasks(running_only=False))
        assert [t["slot"] for t in restart["new_tasks"]] == [1]
        healthy.reload()
        assert healthy.attrs["State"]["Running"] and worker.container(2).id == healthy.id
        # The supervisor's container has no Docker socket: only the proxy's unix socket.
        [sup] = [
            swarm.containers.get(c["Id"])
            for c in _stack_containers(swarm, running=True)
            if c["Names"][0].startswith("/supervisor_worker-")
        ]
        assert not any(m["Destination"] == "/var/run/docker.sock" for m in sup.attrs["Mounts"])
        assert sup.attrs["Config"]["User"] == "10001"
    finally:
        subprocess.run([*stack, "rm", "supervisor"], capture_output=True, check=False)
        worker.remove()
        wait_until(lambda: not _stack_containers(swarm), 60, "the stack's containers gone")
        for name in ("supervisor_state", "supervisor_proxy-socket"):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                swarm.volumes.get(name).remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            secret.remove()
        app.close()
