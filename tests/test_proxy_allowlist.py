"""The socket proxy's allowlist, derived from the policies and checked against them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from supervisor import deployment
from supervisor.adapters.docker_actuator import API_VERSION
from supervisor.cli import main
from supervisor.errors import PolicyError
from supervisor.policy import Policy, Target, load_policies
from supervisor.proxy_allowlist import (
    ENV,
    FORCE_UPDATE_ENV,
    SERVICES_ENV,
    allowlist,
    force_update_allowlist,
    pattern_for,
    services_allowlist,
    uncovered,
)
from tests.helpers import make_policy

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True)


@given(NAMES, NAMES)
def test_a_container_pattern_matches_its_name_and_nothing_else(name: str, other: str) -> None:
    target = make_policy(target={"container": name}).target
    regex = re.compile(pattern_for(target))
    assert regex.fullmatch(name)
    assert bool(regex.fullmatch(other)) == (other == name)


@given(NAMES, NAMES, st.integers(1, 99))
def test_a_compose_pattern_matches_the_names_compose_gives_replicas(
    project: str, service: str, n: int
) -> None:
    target = Target.model_validate(
        {"compose_project": project, "compose_service": service, "all": True}
    )
    regex = re.compile(pattern_for(target))
    assert regex.fullmatch(f"{project}-{service}-{n}")  # Compose v2
    assert regex.fullmatch(f"{project}_{service}_{n}")  # Compose v1
    assert not regex.fullmatch(f"{project}-{service}-{n}x")
    assert not regex.fullmatch(f"{project}-{service}")


def test_uncovered_names_the_target_and_the_setting() -> None:
    policy = make_policy(target={"container": "iti.worker"})
    assert uncovered(policy, "iti[.]worker|other") is None
    assert uncovered(policy, allowlist([policy])) is None
    why = uncovered(make_policy(target={"container": "itixworker"}), "iti[.]worker")
    assert why is not None and "itixworker is not in SUPERVISOR_WORKER_CONTAINERS" in why
    bad = uncovered(policy, "(")
    assert bad is not None and "is not a regular expression" in bad


def write(folder: Path, name: str, container: str) -> None:
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\n[broker]\nurl = "redis://127.0.0.1:1/0"\n'
        f'[target]\ncontainer = "{container}"\n'
    )


def test_policies_outside_the_allowlist_are_refused_by_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path, "a", "iti-dify-worker")
    write(tmp_path, "b", "iti-mail-worker")
    monkeypatch.delenv(ENV, raising=False)
    assert len(load_policies([tmp_path])) == 2
    assert main(["proxy-allowlist", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == "iti-dify-worker|iti-mail-worker"
    monkeypatch.setenv(ENV, printed)
    assert len(deployment.load([tmp_path])) == 2
    monkeypatch.setenv(ENV, "iti-dify-worker")
    assert len(load_policies([tmp_path])) == 2  # the files alone: the same on any machine
    with pytest.raises(PolicyError) as info:
        deployment.load([tmp_path])
    [problem] = info.value.problems
    assert problem.startswith(f"{tmp_path / 'b.toml'}: target: iti-mail-worker is not in")


SHIPPED_CONFIG = Path(__file__).parent.parent / "deploy/socket-proxy/haproxy.cfg"


def swarm_policy(service: str, method: str = "cold") -> Policy:
    policy = make_policy(restart={"method": "cold"})
    target = Target.model_validate({"swarm_service": service})
    return policy.model_copy(
        update={"target": target, "restart": policy.restart.model_copy(update={"method": method})}
    )


def test_only_force_update_policies_open_the_service_update() -> None:
    cold, rolling = swarm_policy("dify_worker"), swarm_policy("mail.worker", "force_update")
    container = make_policy(target={"container": "iti-dify-worker"})
    assert force_update_allowlist([cold, container]) == ""
    assert force_update_allowlist([cold, rolling, container]) == "mail[.]worker"
    assert services_allowlist([cold, rolling]) == "dify_worker|mail[.]worker"
    names = allowlist([cold, rolling])
    assert uncovered(cold, names, "dify_worker") is None  # cold needs no update
    why = uncovered(rolling, names, "dify_worker|mail[.]worker")
    assert why is not None and f"mail.worker is not in {FORCE_UPDATE_ENV}=''" in why
    assert "proxy-allowlist --force-update" in why
    assert uncovered(rolling, names, "dify_worker|mail[.]worker", "mail[.]worker") is None


def test_proxy_allowlist_prints_the_force_update_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, method in (("a", "cold"), ("b", "force_update")):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\n[broker]\nurl = "redis://127.0.0.1:1/0"\n'
            f'[target]\nswarm_service = "svc_{name}"\n[restart]\nmethod = "{method}"\n'
        )
    printed = []
    for flag in ([], ["--services"], ["--force-update"]):
        assert main(["proxy-allowlist", *flag, str(tmp_path)]) == 0
        printed.append(capsys.readouterr().out.strip())
    containers, services, updates = printed
    assert containers == "svc_a[.][a-z0-9]+[.][a-z0-9]+|svc_b[.][a-z0-9]+[.][a-z0-9]+"
    assert (services, updates) == ("svc_a|svc_b", "svc_b")
    (tmp_path / "b.toml").unlink()
    assert main(["proxy-allowlist", "--force-update", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "\n"  # none: the proxy lets no update through


def test_the_shipped_config_allows_the_clients_api_version_only() -> None:
    text = SHIPPED_CONFIG.read_text()
    rules = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    paths = [r for r in rules if " path " in r]
    version = API_VERSION.replace(".", "[.]")
    assert paths and all(f"^/v{version}/" in r for r in paths), paths
    assert "v[0-9" not in "\n".join(rules)
    for env in (ENV, SERVICES_ENV, FORCE_UPDATE_ENV):
        assert f"${{{env}}}" in "\n".join(rules), env


def _tasks_query_rule() -> re.Pattern[str]:
    [line] = [x for x in SHIPPED_CONFIG.read_text().splitlines() if "acl tasks_query" in x]
    return re.compile(line.split(" -m reg ", 1)[1].strip())


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True))
def test_the_tasks_rule_matches_docker_pys_filter_and_reads_its_service(name: str) -> None:
    """What the proxy matches and extracts (acl tasks_query, then field(7,%) minus '22') from
    the query docker-py sends for the Swarm actuator's tasks(filters=...)."""
    from docker.utils import convert_filters

    filters = {"service": name, "desired-state": "running"}
    query = requests.Request(
        "GET", "http://docker/v1.41/tasks", params={"filters": convert_filters(filters)}
    ).prepare().path_url.split("?", 1)[1]  # fmt: skip
    assert _tasks_query_rule().fullmatch(query), query
    assert re.sub("^22", "", query.split("%")[6]) == name
    other = convert_filters({"service": [name, "db"], "desired-state": "running"})
    wider = requests.Request("GET", "http://d/t", params={"filters": other}).prepare().path_url
    assert not _tasks_query_rule().fullmatch(wider.split("?", 1)[1])
