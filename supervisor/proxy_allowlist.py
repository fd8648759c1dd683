"""The socket proxy's allowlists (deploy/socket-proxy/haproxy.cfg): which container names it
lets be inspected, signalled, started and restarted (SUPERVISOR_WORKER_CONTAINERS), which Swarm
services it lets be inspected and their tasks listed (SUPERVISOR_WORKER_SERVICES), and which
services it lets be updated (SUPERVISOR_FORCE_UPDATE_SERVICES: only those of policies with
`method = "force_update"`; an update carries a whole service spec, so this one is
root-equivalent on the swarm).

Each is a regular expression over whole names: the proxy matches the name in a request's path
against it, and the supervisor refuses at start a policy whose target it would not cover, rather
than meeting a 403 in the middle of an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from supervisor.policy import Policy, Target

ENV = "SUPERVISOR_WORKER_CONTAINERS"
SERVICES_ENV = "SUPERVISOR_WORKER_SERVICES"
FORCE_UPDATE_ENV = "SUPERVISOR_FORCE_UPDATE_SERVICES"


def _literal(name: str) -> str:
    # Container names are [A-Za-z0-9][A-Za-z0-9_.-]*; only the dot means something in a regex,
    # and `[.]` reads the same in PCRE and POSIX (HAProxy may be built with either).
    return name.replace(".", "[.]")


def pattern_for(target: Target) -> str:
    """The names the target's containers have: its container name, or the names Compose gives
    a service's replicas (v2 `project-service-N`, v1 `project_service_N`)."""
    if target.container is not None:
        return _literal(target.container)
    if target.swarm_service is not None:  # task containers: SERVICE.SLOT.TASKID, or NODEID
        return f"{_literal(target.swarm_service)}[.][a-z0-9]+[.][a-z0-9]+"
    project, service = (
        _literal(target.compose_project or ""),
        _literal(target.compose_service or ""),
    )
    return f"{project}[-_]{service}[-_][0-9]+"


def allowlist(policies: Iterable[Policy]) -> str:
    return "|".join(sorted({pattern_for(p.target) for p in policies}))


def services_allowlist(policies: Iterable[Policy]) -> str:
    names = {p.target.swarm_service for p in policies if p.target.swarm_service is not None}
    return "|".join(sorted(_literal(n) for n in names))


def _force_updates(policy: Policy) -> bool:
    return policy.target.swarm_service is not None and policy.restart.method == "force_update"


def force_update_allowlist(policies: Iterable[Policy]) -> str:
    """The services whose policies restart them by `force_update`; empty when none does."""
    return services_allowlist(p for p in policies if _force_updates(p))


def _samples(target: Target) -> list[str]:
    if target.container is not None:
        return [target.container]
    if target.swarm_service is not None:
        return [f"{target.swarm_service}.1.0123456789abcdefghijklmno"]
    project, service = target.compose_project, target.compose_service
    return [f"{project}-{service}-1", f"{project}_{service}_1"]


def uncovered(
    policy: Policy, allowed: str, services: str | None = None, force_update: str | None = None
) -> str | None:
    """Why the allowlists would refuse the policy's target, or None when they cover it."""
    checks = [(ENV, allowed, _samples(policy.target), "")]
    service = policy.target.swarm_service
    if service is not None:
        checks.append((SERVICES_ENV, services or "", [service], " --services"))
        if _force_updates(policy):
            checks.append((FORCE_UPDATE_ENV, force_update or "", [service], " --force-update"))
    for env, value, names, flag in checks:
        try:
            regex = re.compile(f"(?:{value})")
        except re.error as exc:
            return f"{env}={value!r} is not a regular expression: {exc}"
        if not any(regex.fullmatch(name) for name in names):
            return (
                f"{policy.target.describe()} is not in {env}={value!r}, the socket proxy's "
                f"allowlist: its restarts would be refused (403). Add it; `supervisor "
                f"proxy-allowlist{flag}` prints it for your policies"
            )
    return None
