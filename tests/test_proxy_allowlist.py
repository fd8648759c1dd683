"""The socket proxy's allowlist, derived from the policies and checked against them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import deployment
from supervisor.cli import main
from supervisor.errors import PolicyError
from supervisor.policy import Target, load_policies
from supervisor.proxy_allowlist import ENV, allowlist, pattern_for, uncovered
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
