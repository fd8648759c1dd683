"""The socket proxy's allowlist: which container names it lets `kill`, `start` and `restart`
reach (deploy/socket-proxy/haproxy.cfg reads it from SUPERVISOR_WORKER_CONTAINERS).

It is a regular expression over whole names, the same one for both: the proxy matches the name
in a request's path against it, and the supervisor refuses at start a policy whose target it
would not cover, rather than meeting a 403 in the middle of an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from supervisor.policy import Policy, Target

ENV = "SUPERVISOR_WORKER_CONTAINERS"


def _literal(name: str) -> str:
    # Container names are [A-Za-z0-9][A-Za-z0-9_.-]*; only the dot means something in a regex,
    # and `[.]` reads the same in PCRE and POSIX (HAProxy may be built with either).
    return name.replace(".", "[.]")


def pattern_for(target: Target) -> str:
    """The names the target's containers have: its container name, or the names Compose gives
    a service's replicas (v2 `project-service-N`, v1 `project_service_N`)."""
    if target.container is not None:
        return _literal(target.container)
    project, service = (
        _literal(target.compose_project or ""),
        _literal(target.compose_service or ""),
    )
    return f"{project}[-_]{service}[-_][0-9]+"


def allowlist(policies: Iterable[Policy]) -> str:
    return "|".join(sorted({pattern_for(p.target) for p in policies}))


def _samples(target: Target) -> list[str]:
    if target.container is not None:
        return [target.container]
    project, service = target.compose_project, target.compose_service
    return [f"{project}-{service}-1", f"{project}_{service}_1"]


def uncovered(policy: Policy, allowed: str) -> str | None:
    """Why the allowlist would refuse the policy's target, or None when it covers it."""
    try:
        regex = re.compile(f"(?:{allowed})")
    except re.error as exc:
        return f"{ENV}={allowed!r} is not a regular expression: {exc}"
    if any(regex.fullmatch(name) for name in _samples(policy.target)):
        return None
    return (
        f"{policy.target.describe()} is not in {ENV}={allowed!r}, the socket proxy's "
        "allowlist: its restarts would be refused (403). Add it; `supervisor proxy-allowlist` "
        "prints the allowlist for your policies"
    )
