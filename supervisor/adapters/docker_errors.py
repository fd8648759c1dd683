"""How a Docker Engine API failure is told: transient (retried) or not, and in one line for
the audit. Shared by the container and the Swarm actuators."""

from __future__ import annotations

import requests
from docker.errors import APIError, DockerException

from supervisor.errors import ActuatorError


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    if isinstance(exc, APIError):
        return bool(exc.is_server_error())
    return isinstance(exc, DockerException)


def describe_docker_error(exc: BaseException) -> str:
    if isinstance(exc, APIError):
        if exc.status_code == 403:  # the engine itself never says 403; a socket proxy does
            return (
                f"403 refused by the Docker socket proxy{_request_of(exc)}: is the container "
                "in its allowlist (SUPERVISOR_WORKER_CONTAINERS; for a Swarm service "
                "SUPERVISOR_WORKER_SERVICES, and SUPERVISOR_FORCE_UPDATE_SERVICES for "
                "force_update)?"
            )
        return f"{exc.status_code} {exc.explanation or exc}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"Docker engine unreachable: {_first_line(exc)}"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"Docker engine timed out: {_first_line(exc)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _request_of(exc: APIError) -> str:
    """` (POST /v1.41/containers/NAME/kill)`: which call was refused, without its query."""
    request = getattr(exc.response, "request", None)
    url = str(getattr(request, "path_url", "") or "")
    return f" ({request.method} {url.split('?', 1)[0]})" if request is not None and url else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str:
    """An actuator's own error as it says it, any other as Docker's."""
    return str(exc) if isinstance(exc, ActuatorError) else describe_docker_error(exc)
