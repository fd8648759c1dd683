"""The policies as this deployment will run them: the files checked (policy.py), and what only
this machine can tell: whether the socket proxy's allowlists (SUPERVISOR_WORKER_CONTAINERS,
SUPERVISOR_WORKER_SERVICES, SUPERVISOR_FORCE_UPDATE_SERVICES) cover each target, and whether
Apprise knows each notification URL. `check`, `run` and a reload all load policies through here,
so they answer alike."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.errors import PolicyError
from supervisor.policy import Policy, load_policy_files


def load(paths: list[Path]) -> list[Policy]:
    loaded = load_policy_files(paths)
    problems: list[str] = []
    allowed = os.environ.get("SUPERVISOR_WORKER_CONTAINERS")
    if allowed:
        from supervisor.proxy_allowlist import uncovered

        services = os.environ.get("SUPERVISOR_WORKER_SERVICES")
        force_update = os.environ.get("SUPERVISOR_FORCE_UPDATE_SERVICES")
        for path, policy in loaded:
            why = uncovered(policy, allowed, services, force_update)
            if why:
                problems.append(f"{path}: target: {why}")
    for path, policy in loaded:
        if policy.notify is None:
            continue
        from supervisor.sinks.notify_urls import check

        for i, url in enumerate(policy.notify.urls):
            try:
                check(url)
            except ValueError as exc:
                problems.append(f"{path}: notify.urls.{i}: {exc}")
    if problems:
        raise PolicyError(problems)
    return [p for _, p in loaded]
