"""Restarts the worker's container through the Docker Engine API.

Only these calls are made: list and inspect containers, kill (a signal), start, restart, all
under /v1.41 and none with a body. That is what a socket proxy has to allow. Every call that
names a container, inspect included, addresses it by its name, never by its id, so that the
proxy can let them through for the worker containers only (deploy/socket-proxy): inspect hands
out a container's environment. Waiting for a container to stop is done by polling inspect (the
steps of core/procedure.py), so no `wait` endpoint is needed.

Transient failures (engine unreachable or restarting, socket timeouts, 5xx) are retried with
tenacity, bounded in attempts and time; everything else fails the restart with a clear message.
The actuator never raises out of `restart`, `lookup` or `ensure_running`: the daemon gets a
result it can audit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container as DockerContainer
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from supervisor.adapters.docker_errors import describe, describe_docker_error, is_transient
from supervisor.adapters.swarm_actuator import SwarmActuator
from supervisor.core.procedure import Seen
from supervisor.core.replicas import Container
from supervisor.core.results import LookupResult, Outcome, RestartResult, StartResult
from supervisor.errors import ActuatorError, TargetError
from supervisor.policy import Restart, Target

log = logging.getLogger("supervisor.docker")

# A fixed API version: docker-py then makes no version request when the client is created, so a
# missing engine shows up at the first real call, where it is handled, not at start-up. The
# socket proxy lets this version's paths through and no other (deploy/socket-proxy/haproxy.cfg).
API_VERSION = "1.41"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"

T = TypeVar("T")


@contextlib.contextmanager
def _told() -> Iterator[None]:
    """A Docker failure of a step as the audit tells it (an ActuatorError with one line)."""
    try:
        yield
    except (DockerException, requests.exceptions.RequestException) as exc:
        raise ActuatorError(describe(exc)) from exc


class _ByName(DockerContainer):  # type: ignore[misc]
    """A docker-py container that reads itself again by its name: docker-py's own `reload`
    inspects by id, which a socket proxy scoping inspect to the workers' names refuses."""

    def reload(self) -> None:
        self.attrs = self.client.api.inspect_container(self.name)


def _primary_name(listed: dict[str, Any]) -> str:
    """A listed container's own name (the others in `Names` are legacy links: /other/alias)."""
    names = [str(n).lstrip("/") for n in listed.get("Names") or []]
    return next((n for n in names if "/" not in n), names[0] if names else str(listed["Id"]))


_CONTAINER_ID = re.compile(r"/(?:docker/)?containers/([0-9a-f]{64})/")


def own_container_id(mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The id of the container this process runs in, if any (from its /etc/hostname mount)."""
    try:
        text = mountinfo.read_text()
    except OSError:
        return None
    match = _CONTAINER_ID.search(text)
    return match.group(1) if match else None


class DockerActuator:
    def __init__(
        self,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        *,
        retry_attempts: int = 5,
        retry_seconds: float = 30.0,
        poll_interval: float = 0.2,
        confirm_timeout: float = 60.0,
        own_id: str | None = None,
    ) -> None:
        self._client_factory = client_factory or (
            lambda: docker.from_env(version=API_VERSION, timeout=30)
        )
        self._client: docker.DockerClient | None = None
        self._retry_attempts = retry_attempts
        self._retry_seconds = retry_seconds
        self._poll = poll_interval
        self._confirm_timeout = confirm_timeout
        self._own_id = own_id if own_id is not None else own_container_id()
        self._swarm = SwarmActuator(
            lambda: self.client.api, self._call, poll_interval, confirm_timeout
        )

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._retry_attempts) | stop_after_delay(self._retry_seconds),
            wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
            reraise=True,
            before_sleep=lambda rs: log.warning(
                "docker %s failed (attempt %d), retrying: %s",
                what,
                rs.attempt_number,
                describe_docker_error(rs.outcome.exception()) if rs.outcome else "?",  # type: ignore[arg-type]
            ),
        )
        return retrying(fn)

    def ping(self) -> str | None:
        """None when the engine answers, else why not. One try: this is a reachability probe."""
        try:
            self.client.ping()
        except (DockerException, requests.exceptions.RequestException) as exc:
            return describe_docker_error(exc)
        return None

    def names(self) -> list[str]:
        """Every container's name (read-only), to say which there are when a target is not."""
        listed = self._call("list", lambda: self.client.api.containers(all=True))
        return [_primary_name(c) for c in listed if c.get("Names")]

    def _inspect(self, name: str) -> dict[str, Any]:
        """Inspect a container by its name, never by its id: the socket proxy lets inspect
        through for the workers' names only (deploy/socket-proxy/haproxy.cfg)."""
        return dict(self._call("inspect", lambda: self.client.api.inspect_container(name)))

    def _container(self, name: str) -> Any:
        """The container of that name, as a docker-py container whose `reload` is by name."""
        return _ByName(
            attrs=self._inspect(name), client=self.client, collection=self.client.containers
        )

    def find(self, target: Target) -> list[Any]:
        """The target's containers; raises TargetError when it cannot be acted on."""
        if target.container is not None:
            name = target.container
            try:
                containers = [self._container(name)]
            except NotFound:
                raise TargetError(f"container {name!r} not found") from None
        else:
            labels = [
                f"{COMPOSE_PROJECT}={target.compose_project}",
                f"{COMPOSE_SERVICE}={target.compose_service}",
            ]
            listed = self._call(
                "list",
                lambda: self.client.api.containers(all=True, filters={"label": labels}),
            )
            # The list's ids suffice for this check: the supervisor's own container is never
            # inspected (the proxy would refuse it, and should).
            for c in listed:
                self._refuse_own(str(c["Id"]), _primary_name(c))
            containers = []
            for c in listed:
                try:
                    containers.append(self._container(_primary_name(c)))
                except NotFound:  # removed since it was listed
                    continue
            if not containers:
                raise TargetError(f"no container has labels {', '.join(labels)}")
            if len(containers) > 1 and not target.all:
                names = ", ".join(sorted(c.name for c in containers))
                raise TargetError(
                    f"labels {', '.join(labels)} match {len(containers)} containers ({names}); "
                    "set all = true in [target] to restart every one"
                )
        for container in containers:
            self._refuse_own(container.id, container.name)
        return containers

    def _refuse_own(self, container_id: str, name: str) -> None:
        if self._own_id and container_id.startswith(self._own_id[:12]):
            raise TargetError(f"container {name!r} is the supervisor's own container; refusing")

    def restart(
        self, target: Target, policy: Restart, only: tuple[str, ...] = (), sigquit: bool = True
    ) -> RestartResult:
        """Restart the target in one call: a Swarm service (either method), or containers by
        Docker's own `restart` method, only the replicas named in `only` when it names any;
        never raises. A cold restart of containers is made of steps (`steps`, core/procedure.py),
        so that what a killed worker held is read while it is stopped. `sigquit=False`: the
        workers' cold shutdown is known to break, so a cold restart SIGKILLs at once."""
        started = time.monotonic()
        if target.swarm_service is not None:
            return self._swarm.restart(target, policy, only, sigquit, started)
        names: tuple[str, ...] = ()
        changed = False
        try:
            if policy.method == "cold":
                raise ActuatorError("a cold restart of containers is carried out by its steps")
            seen = self.replicas(target, only)
            names = tuple(c.name for c in seen)
            new_starts = []
            for container in seen:
                changed = True  # from here on the container may be left stopped
                self._call(
                    "restart",
                    partial(
                        self.client.api.restart,
                        container.name,
                        timeout=math.ceil(policy.stop_timeout),
                    ),
                )
                new_starts.append(self._confirm(container.name, container.started_at))
            return RestartResult(
                Outcome.DONE,
                policy.method,
                names,
                time.monotonic() - started,
                started_at=tuple(new_starts),
                changed=changed,
                sigquit=sigquit,
            )
        except (ActuatorError, DockerException, requests.exceptions.RequestException) as exc:
            return RestartResult(
                Outcome.FAILED,
                policy.method,
                names,
                time.monotonic() - started,
                error=describe(exc),
                changed=changed,
                sigquit=sigquit,
            )

    # -- the steps of a cold restart (core/procedure.py decides, runtime/restarting.py calls) --

    def steps(self, target: Target) -> DockerActuator | None:
        """What carries out a cold restart's steps for this target: the actuator itself for
        containers; None for a Swarm service (restarted in one call, `restart`)."""
        return None if target.swarm_service is not None else self

    def replicas(self, target: Target, only: tuple[str, ...] = ()) -> tuple[Seen, ...]:
        """The target's containers (those named in `only`, when it names any), each as
        inspect sees it now; raises like `find`, and TargetError for a replica gone."""
        with _told():
            containers = self.find(target)
            if only:
                containers = [c for c in containers if c.name in only]
                missing = sorted(set(only) - {c.name for c in containers})
                if missing:
                    raise TargetError(f"replica(s) {', '.join(missing)} no longer found")
        return tuple(self.inspect(c.name) for c in containers)

    def inspect(self, name: str) -> Seen:
        """The container as the engine sees it now, inspected by its name (what a socket
        proxy lets through for the worker containers)."""
        with _told():
            attrs = self._inspect(name)
        state = attrs.get("State") or {}
        return Seen(
            name,
            bool(state.get("Running")),
            state.get("StartedAt"),
            int(attrs.get("RestartCount") or 0),
            bool(state.get("Restarting")),
        )

    def signal(self, name: str, signal: str) -> None:
        """Send the container a signal (SIGQUIT, SIGKILL); one that no longer runs is left."""
        with _told():
            self._signal(name, signal)

    def start(self, name: str) -> None:
        with _told():
            self._call("start", lambda: self.client.api.start(name))

    def identify(self, target: Target) -> tuple[Container, ...]:
        """Read-only: the target's containers with their hostnames, to map workers to them.
        Raises like `find`."""
        if target.swarm_service is not None:
            return self._swarm.identify(target)
        return tuple(
            Container(c.name, str(c.attrs.get("Config", {}).get("Hostname") or ""))
            for c in self.find(target)
        )

    def lookup(self, target: Target) -> LookupResult:
        """Read-only, for a dry-run restart: the containers a restart would act on."""
        try:
            if target.swarm_service is not None:
                return self._swarm.lookup(target)
            return LookupResult(tuple(c.name for c in self.find(target)))
        except (ActuatorError, DockerException, requests.exceptions.RequestException) as exc:
            return LookupResult(error=describe(exc))

    def ensure_running(self, target: Target) -> StartResult:
        """Start the target's containers that are stopped, nothing else: what completes a
        restart left unfinished (a container killed through the API stays stopped whatever
        its restart policy says). A Swarm service's tasks are started by Swarm: only checked."""
        try:
            if target.swarm_service is not None:
                return self._swarm.ensure_running(target)
            containers = self.find(target)
            started = []
            for container in containers:
                if not self._running(container):
                    self._start(container)
                    started.append(container.name)
            for container in containers:
                if not self._running(container):
                    raise ActuatorError(f"container {container.name!r} did not stay up")
            return StartResult(started=tuple(started), running=tuple(c.name for c in containers))
        except (ActuatorError, DockerException, requests.exceptions.RequestException) as exc:
            return StartResult(error=describe(exc))

    def stacks(self, names: tuple[str, ...], wait: float = 1.0) -> str:
        """What the workers log when asked for their stacks: Celery dumps every thread's
        stack on SIGUSR1. Sent to each container, then its log since the signal, read until it
        stops growing, `wait` seconds at most."""
        sent_at = time.time()
        for name in names:
            self._signal(name, "SIGUSR1")
        deadline, seen = time.monotonic() + wait, {n: b"" for n in names}
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = {n: self._logs_since(n, sent_at) for n in names}
            if all(now.values()) and now == seen:
                break
            seen = now
        return "".join(
            f"== {n}: logged after SIGUSR1 ==\n{seen[n].decode(errors='replace')}\n" for n in names
        )

    def _logs_since(self, name: str, since: float) -> bytes:
        raw = self._call("logs", lambda: self.client.api.logs(name, since=since))
        return raw if isinstance(raw, bytes) else b""

    def _signal(self, name: str, signal: str) -> None:
        try:
            self._call("kill", lambda: self.client.api.kill(name, signal=signal))
        except APIError as exc:
            if exc.status_code == 409:  # not running any more: nothing to signal
                return
            raise

    def _start(self, container: Any) -> None:
        self._call("start", lambda: self.client.api.start(container.name))

    def _running(self, container: Any) -> bool:
        self._call("inspect", container.reload)
        return bool(container.attrs["State"].get("Running"))

    def _confirm(self, name: str, before: str | None) -> str:
        """Wait until the container runs again with a new StartedAt; return it."""
        deadline = time.monotonic() + self._confirm_timeout
        while True:
            seen = self.inspect(name)
            if seen.running and seen.started_at != before:
                return str(seen.started_at)
            if time.monotonic() >= deadline:
                raise ActuatorError(f"container {name!r} is not running again after the restart")
            time.sleep(self._poll)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
