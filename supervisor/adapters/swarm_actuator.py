"""Restarts the tasks of a Docker Swarm service (`[target] swarm_service`).

`cold` acts per task, on the stuck replicas only: SIGQUIT to the task's container (Celery's cold
shutdown gives its prefetched messages back), SIGKILL after `stop_timeout`, and Swarm replaces
the task; the restart is confirmed when the service runs its desired number of tasks again and
the stopped ones are gone. A container is signalled through this node's engine, so a task on
another node is refused: run the supervisor as a global service (one per node; each acts on its
own node's tasks), or on a single-node swarm. `force_update` is Swarm's own rolling restart of
the whole service (docker-py's `Service.force_update`, addressed by the service's name so that a
socket proxy can scope it), confirmed when the update has converged.

Calls made, for the proxy (deploy/socket-proxy), all under /v1.41: GET /info (this node's id),
GET /services/NAME, GET /tasks filtered by the service's name, GET /containers/NAME/json (a
task's container by its name, SERVICE.SLOT.TASKID, never by id: the proxy lets inspect through
for the workers' names only), POST /containers/NAME/kill, and POST /services/NAME/update
(force_update only: the proxy lets it through only for SUPERVISOR_FORCE_UPDATE_SERVICES).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from docker.errors import APIError, DockerException, NotFound
from requests.exceptions import RequestException

from supervisor.adapters.docker_errors import describe
from supervisor.core.replicas import Container
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult, TaskRef
from supervisor.errors import ActuatorError, TargetError
from supervisor.policy import Restart, Target

log = logging.getLogger("supervisor.swarm")

T = TypeVar("T")
Call = Callable[[str, Callable[[], T]], T]

_FAILED_UPDATE = ("paused", "rollback_started", "rollback_paused", "rollback_completed")


@dataclass
class _Done:
    """What a restart has done so far: the one record both its outcomes are built from, so a
    failure after a SIGKILL still reports the kill (its reserved messages are given back)."""

    tasks: list[_Task] = field(default_factory=list)
    changed: bool = False
    killed: list[str] = field(default_factory=list)
    sigquit: bool = True
    new: list[TaskRef] = field(default_factory=list)

    def result(
        self, policy: Restart, started: float, exc: Exception | None = None
    ) -> RestartResult:
        error = describe(exc) if exc is not None else None
        return RestartResult(
            Outcome.FAILED if error else Outcome.DONE,
            policy.method,
            tuple(t.ref.container for t in self.tasks),
            time.monotonic() - started,
            error=error,
            changed=self.changed,
            killed=tuple(self.killed),
            sigquit=self.sigquit,
            tasks=tuple(t.ref for t in self.tasks),
            new_tasks=tuple(self.new),
        )


@dataclass(frozen=True)
class _Task:
    ref: TaskRef
    container_id: str | None  # None: not started yet, or on another node (not inspectable)
    hostname: str
    local: bool
    running: bool  # its container runs now (not still starting, not stopped)


class SwarmActuator:
    def __init__(
        self, api: Callable[[], Any], call: Call[Any], poll: float, confirm_timeout: float
    ) -> None:
        self._api = api  # docker-py's low-level APIClient
        self._call = call  # the retrying wrapper of the Docker actuator
        self._poll = poll
        self._confirm_timeout = confirm_timeout
        self._node: str | None = None

    # -- reading ------------------------------------------------------------------------------

    def node(self) -> str:
        """This engine's Swarm node id; TargetError when it is not in a swarm."""
        if self._node is None:
            info = self._call("info", lambda: self._api().info())
            node = str((info.get("Swarm") or {}).get("NodeID") or "")
            if not node:
                raise TargetError("this Docker engine is not part of a swarm (docker swarm init)")
            self._node = node
        return self._node

    def service(self, name: str) -> dict[str, Any]:
        try:
            return dict(self._call("inspect service", lambda: self._api().inspect_service(name)))
        except NotFound:
            raise TargetError(f"Swarm service {name!r} not found") from None
        except APIError as exc:
            if exc.status_code == 503:  # "This node is not a swarm manager"
                raise TargetError(
                    f"Swarm service {name!r}: this engine is not a swarm manager "
                    f"({exc.explanation})"
                ) from None
            raise

    def tasks(self, name: str) -> list[_Task]:
        """The service's tasks Swarm wants running, in slot order."""
        self.service(name)  # a clear error when the service does not exist
        node = self.node()
        listed = self._call(
            "list tasks",
            lambda: self._api().tasks(filters={"service": name, "desired-state": "running"}),
        )
        out = []
        for t in listed:
            slot = t.get("Slot")
            task_name = f"{name}.{slot if slot is not None else t.get('NodeID')}.{t['ID']}"
            cid = ((t.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
            local = t.get("NodeID") == node
            container, hostname = task_name, ""
            if cid and local:
                try:
                    # By the name Swarm gives the task's container, which is the task's name.
                    attrs = self._call("inspect", partial(self._inspect, task_name))
                    container = str(attrs["Name"]).lstrip("/")
                    hostname = str(attrs.get("Config", {}).get("Hostname") or "")
                except NotFound:
                    cid = None
            ref = TaskRef(str(t["ID"]), slot, str(t.get("NodeID") or ""), container)
            state = (t.get("Status") or {}).get("State")
            out.append(
                _Task(ref, cid if local else None, hostname or task_name, local, state == "running")
            )
        return sorted(out, key=lambda x: (x.ref.slot or 0, x.ref.node))

    def _inspect(self, name: str) -> dict[str, Any]:
        """A container inspected by its name, never by its id (deploy/socket-proxy)."""
        return dict(self._api().inspect_container(name))

    def desired(self, service: dict[str, Any], tasks: list[_Task]) -> int:
        mode = service["Spec"].get("Mode", {})
        if "Replicated" in mode:
            return int(mode["Replicated"].get("Replicas", 1))
        return len(tasks)  # global: one per eligible node, as Swarm schedules them

    def running(self, name: str) -> tuple[list[_Task], list[_Task]]:
        """(every task Swarm wants running, those of them whose container runs now)."""
        tasks = self.tasks(name)
        return tasks, [t for t in tasks if t.running]

    def identify(self, target: Target) -> tuple[Container, ...]:
        assert target.swarm_service is not None
        return tuple(
            Container(t.ref.container, t.hostname) for t in self.tasks(target.swarm_service)
        )

    def lookup(self, target: Target) -> LookupResult:
        assert target.swarm_service is not None
        tasks = self.tasks(target.swarm_service)
        return LookupResult(
            tuple(t.ref.container for t in tasks), tasks=tuple(t.ref for t in tasks)
        )

    def ensure_running(self, target: Target) -> StartResult:
        """Swarm starts the tasks itself: this only says whether it has."""
        name = target.swarm_service
        assert name is not None
        tasks, running = self.running(name)
        want = self.desired(self.service(name), tasks)
        if len(running) < want:
            return StartResult(
                error=f"Swarm service {name!r} runs {len(running)} of {want} tasks; waiting for "
                "Swarm to replace the others"
            )
        return StartResult(running=tuple(t.ref.container for t in running))

    # -- restarting ---------------------------------------------------------------------------

    def restart(
        self, target: Target, policy: Restart, only: tuple[str, ...], sigquit: bool, started: float
    ) -> RestartResult:
        name = target.swarm_service
        assert name is not None
        if policy.method == "force_update":
            return self._force_update(name, policy, started)
        return self._cold(name, policy, only, sigquit, started)

    def _cold(
        self, name: str, policy: Restart, only: tuple[str, ...], sigquit: bool, started: float
    ) -> RestartResult:
        done = _Done(sigquit=sigquit)
        try:
            tasks = self.tasks(name)
            if only:
                missing = sorted(set(only) - {t.ref.container for t in tasks})
                if missing:
                    raise TargetError(f"task(s) {', '.join(missing)} no longer running")
                tasks = [t for t in tasks if t.ref.container in only]
            else:  # the whole target: what this node runs of it
                tasks = [t for t in tasks if t.local]
                if not tasks:
                    raise TargetError(f"no task of Swarm service {name!r} runs on this node")
            done.tasks = tasks
            for t in tasks:
                if not t.local:
                    raise TargetError(
                        f"task {t.ref.id} (slot {t.ref.slot}) of {name} runs on node "
                        f"{t.ref.node}, not on this supervisor's node {self.node()}: run the "
                        "supervisor as a global service, so that the one on that node acts "
                        "(docs/operations.md: Swarm)"
                    )
                if t.container_id is None:
                    raise TargetError(f"task {t.ref.id} of {name} has no container yet")
            for t in tasks:
                done.changed = True
                if self._stop(t, policy.stop_timeout, sigquit):
                    done.killed.append(t.ref.container)
            done.new = self._replaced(name, [t.ref for t in tasks])
        except (ActuatorError, DockerException, RequestException) as exc:
            return done.result(policy, started, exc)
        return done.result(policy, started)

    def _stop(self, task: _Task, stop_timeout: float, sigquit: bool) -> bool:
        """Stop the task's container; True when it took a SIGKILL."""
        container = task.ref.container
        if sigquit:
            self._signal(container, "SIGQUIT")
            if self._wait_stopped(task, stop_timeout):
                return False
        why = f"ignored SIGQUIT for {stop_timeout:g}s" if sigquit else "no cold shutdown"
        log.warning("%s: %s; sending SIGKILL", container, why)
        self._signal(container, "SIGKILL")
        if not self._wait_stopped(task, 10.0):
            raise ActuatorError(f"task container {container!r} did not stop after SIGKILL")
        return True

    def _signal(self, container: str, signal: str) -> None:
        try:
            self._call("kill", lambda: self._api().kill(container, signal=signal))
        except APIError as exc:
            if exc.status_code in (404, 409):  # gone or stopped already: nothing to signal
                return
            raise

    def _wait_stopped(self, task: _Task, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                attrs = self._call("inspect", partial(self._inspect, task.ref.container))
            except NotFound:
                return True  # Swarm removed it already
            if not attrs["State"].get("Running"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self._poll)

    def _replaced(self, name: str, old: list[TaskRef]) -> list[TaskRef]:
        """Wait until the service runs its desired number of tasks again, none of them an old
        one; return the tasks now running in the old ones' slots (or nodes)."""
        gone = {t.id for t in old}
        places = {(t.slot, t.node if t.slot is None else "") for t in old}
        deadline = time.monotonic() + self._confirm_timeout
        while True:
            tasks, running = self.running(name)
            want = self.desired(self.service(name), tasks)
            if len(running) >= want and not gone & {t.ref.id for t in running}:
                return [
                    t.ref
                    for t in running
                    if (t.ref.slot, t.ref.node if t.ref.slot is None else "") in places
                ]
            if time.monotonic() >= deadline:
                raise ActuatorError(
                    f"Swarm service {name!r} runs {len(running)} of {want} tasks "
                    f"{self._confirm_timeout:g}s after the restart"
                )
            time.sleep(self._poll)

    def _force_update(self, name: str, policy: Restart, started: float) -> RestartResult:
        done = _Done()
        try:
            done.tasks = self.tasks(name)
            service = self.service(name)
            template = dict(service["Spec"]["TaskTemplate"])
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
            version = service["Version"]["Index"]
            done.changed = True
            self._call(
                "update service",
                lambda: self._api().update_service(
                    name, version, task_template=template, fetch_current_spec=True
                ),
            )
            done.new = self._converged(name, [t.ref for t in done.tasks], len(done.tasks))
            done.killed = self._killed(done.tasks)
        except (ActuatorError, DockerException, RequestException) as exc:
            return done.result(policy, started, exc)
        return done.result(policy, started)

    def _killed(self, old: list[_Task]) -> list[str]:
        """The old tasks' containers that Swarm had to SIGKILL (exit code 137: the service's
        stop signal was not obeyed within its stop_grace_period): what their workers reported
        holding is given back as after a cold restart's SIGKILL. A container Swarm has
        removed already cannot tell, and is not counted."""
        killed: list[str] = []
        for t in old:
            if t.container_id is None:
                continue
            try:
                state = self._call("inspect", partial(self._inspect, t.ref.container))["State"]
            except NotFound:
                continue
            if state.get("ExitCode") == 137:
                killed.append(t.ref.container)
        return killed

    def _converged(self, name: str, old: list[TaskRef], count: int) -> list[TaskRef]:
        # A rolling update takes a stop and a start per task, one batch after another.
        deadline = time.monotonic() + self._confirm_timeout * max(1, count)
        gone = {t.id for t in old}
        while True:
            service = self.service(name)
            status = service.get("UpdateStatus") or {}
            state = status.get("State")
            if state in _FAILED_UPDATE:
                raise ActuatorError(
                    f"the update of Swarm service {name!r} ended {state}: "
                    f"{status.get('Message') or 'no message'}"
                )
            tasks, running = self.running(name)
            want = self.desired(service, tasks)
            done = state in (None, "completed")
            if done and len(running) >= want and not gone & {t.ref.id for t in running}:
                return [t.ref for t in running]
            if time.monotonic() >= deadline:
                raise ActuatorError(
                    f"the update of Swarm service {name!r} has not converged (UpdateStatus "
                    f"{state or 'none'}, {len(running)} of {want} tasks running)"
                )
            time.sleep(self._poll)
