"""The Docker actuator against the real private engines: each test that asks Docker anything runs
on Debian 12's 20.10 and on a current engine (26.1), ids docker20 and docker26."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from harness.parts import BASE_IMAGE, PYTHON_HOME, host_mounts
from supervisor.adapters.docker_actuator import DockerActuator, Outcome
from supervisor.core.plan import ColdShutdown, Plan
from supervisor.core.results import RestartResult
from supervisor.errors import TargetError
from supervisor.policy import Restart, Target
from supervisor.runtime.restarting import cold_restart

pytestmark = pytest.mark.e2e

SLEEP = "import time\nwhile True: time.sleep(1)"
QUITS = "import signal, sys, time\nsignal.signal(signal.SIGQUIT, lambda *_: sys.exit(0))\n" + SLEEP
IGNORE_QUIT = "import signal, time\nsignal.signal(signal.SIGQUIT, signal.SIG_IGN)\n" + SLEEP


@pytest.fixture
def sleeper(engine: docker.DockerClient) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def make(
        code: str = SLEEP, init: bool = True, labels: dict[str, str] | None = None, **extra: Any
    ) -> Any:
        container = engine.containers.run(
            BASE_IMAGE,
            [str(PYTHON_HOME / "bin" / "python3"), "-c", code],
            name=f"iti-test-sleeper-{uuid.uuid4().hex[:8]}",
            detach=True,
            network_mode="host",
            volumes=host_mounts(),
            init=init,
            labels=labels or {},
            **extra,
        )
        made.append(container)
        return container

    yield make
    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


def restart_policy(**overrides: Any) -> Restart:
    return Restart.model_validate({"stop_timeout": 5, **overrides})


def restart(actuator: DockerActuator, target: Target, policy: Restart) -> RestartResult:
    """A restart as the executor makes it: a cold one by its steps (core/procedure.py), on
    the whole target, touching no unacked hash; Docker's own method in one call."""
    if policy.method != "cold":
        return actuator.restart(target, policy)
    plan = Plan((), (), True, (), ColdShutdown(True, "test"))
    return cold_restart(actuator, target, None, plan, None, policy.stop_timeout)


def started_at(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def test_cold_restart_of_a_container_that_obeys_sigquit(sleeper: Callable[..., Any]) -> None:
    container = sleeper()
    before = started_at(container)
    result = restart(DockerActuator(), Target(container=container.name), restart_policy())
    assert result.outcome is Outcome.DONE, result.error
    assert result.containers == (container.name,)
    assert result.started_at[0] != before
    assert started_at(container) == result.started_at[0]
    assert result.seconds < 5  # SIGQUIT ended it well before stop_timeout


def test_sigkill_when_sigquit_is_ignored_for_stop_timeout(sleeper: Callable[..., Any]) -> None:
    container = sleeper(IGNORE_QUIT, init=False)
    before = started_at(container)
    result = restart(
        DockerActuator(), Target(container=container.name), restart_policy(stop_timeout=1.5)
    )
    assert result.outcome is Outcome.DONE, result.error
    assert result.seconds >= 1.5
    assert started_at(container) != before
    container.reload()
    assert container.attrs["State"]["Running"]


def test_docker_restart_method(sleeper: Callable[..., Any]) -> None:
    container = sleeper()
    before = started_at(container)
    result = restart(
        DockerActuator(),
        Target(container=container.name),
        restart_policy(method="restart", stop_timeout=2),
    )
    assert result.outcome is Outcome.DONE and result.method == "restart"
    assert started_at(container) != before


def test_a_stopped_container_is_just_started(sleeper: Callable[..., Any]) -> None:
    container = sleeper()
    container.kill()
    result = restart(DockerActuator(), Target(container=container.name), restart_policy())
    assert result.outcome is Outcome.DONE
    container.reload()
    assert container.attrs["State"]["Running"]


def test_missing_container_fails_clearly(engine: docker.DockerClient) -> None:
    result = restart(DockerActuator(), Target(container="no-such-worker"), restart_policy())
    assert result.outcome is Outcome.FAILED
    assert result.error == "container 'no-such-worker' not found"


def test_compose_labels_refuse_several_unless_all(sleeper: Callable[..., Any]) -> None:
    project = f"proj{uuid.uuid4().hex[:6]}"
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": "worker"}
    first, second = sleeper(labels=labels), sleeper(labels=labels)
    sleeper(labels={**labels, "com.docker.compose.service": "api"})
    target = Target(compose_project=project, compose_service="worker")
    with pytest.raises(TargetError, match="match 2 containers"):
        DockerActuator().find(target)
    both = Target(compose_project=project, compose_service="worker", all=True)
    result = restart(DockerActuator(), both, restart_policy())
    assert result.outcome is Outcome.DONE
    assert sorted(result.containers) == sorted([first.name, second.name])
    with pytest.raises(TargetError, match="no container has labels"):
        DockerActuator().find(Target(compose_project=project, compose_service="nope"))


def test_refuses_to_restart_its_own_container(sleeper: Callable[..., Any]) -> None:
    container = sleeper()
    actuator = DockerActuator(own_id=container.id)
    result = restart(actuator, Target(container=container.name), restart_policy())
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and "supervisor's own container" in result.error


def test_unreachable_engine_fails_the_restart_after_bounded_retries(tmp_path: Any) -> None:
    dead = f"unix://{tmp_path}/nothing.sock"
    actuator = DockerActuator(
        lambda: docker.DockerClient(base_url=dead, version="1.41", timeout=2),
        retry_attempts=3,
        retry_seconds=10,
    )
    assert actuator.ping() is not None
    started = time.monotonic()
    result = restart(actuator, Target(container="w"), restart_policy())
    assert time.monotonic() - started < 15
    assert result.outcome is Outcome.FAILED
    assert result.error is not None and "unreachable" in result.error


def test_ping_answers_when_the_engine_does(engine: docker.DockerClient) -> None:
    assert DockerActuator().ping() is None


def test_one_restart_is_one_start_when_the_restart_policy_starts_it_itself(
    sleeper: Callable[..., Any], engine: docker.DockerClient
) -> None:
    """A worker with another stop signal than SIGQUIT and `restart: always`: Docker starts it
    again by itself right after SIGQUIT. The supervisor must see that and neither SIGKILL the
    fresh worker nor start it a second time: docker events show exactly one new start."""
    container = sleeper(QUITS, init=False, stop_signal="SIGTERM", restart_policy={"Name": "always"})
    time.sleep(1.5)  # events are filtered by whole seconds: leave the creation's start behind
    since = int(time.time())
    result = restart(
        DockerActuator(), Target(container=container.name), restart_policy(stop_timeout=10)
    )
    assert result.outcome is Outcome.DONE, result.error
    assert result.by_restart_policy == (container.name,)
    assert result.seconds < 10  # it did not wait out stop_timeout for a container already back
    seen = engine.events(
        since=since,
        until=int(time.time()) + 2,
        filters={"container": container.id},
        decode=True,
    )
    actions = [
        (e["Action"], e["Actor"]["Attributes"].get("signal"))
        for e in seen
        if e.get("Type") == "container"
    ]
    starts = [a for a in actions if a[0] == "start"]
    kills = [a[1] for a in actions if a[0] == "kill"]
    assert len(starts) == 1, actions
    assert kills == ["3"], actions  # SIGQUIT only: no SIGKILL of the fresh worker
    container.reload()
    assert container.attrs["State"]["Running"] and container.attrs["RestartCount"] == 1


def test_a_restart_that_fails_after_its_sigkill_still_reports_the_kill(
    sleeper: Callable[..., Any], tmp_path: Any
) -> None:
    """The worker ignores SIGQUIT and is SIGKILLed; then its start fails (a bind mount's source
    is gone). The failed result must still say it was killed: its reserved messages were read
    and given back while it was stopped, before the start that failed."""
    source = tmp_path / "gone"
    source.mkdir()
    mount = docker.types.Mount("/gone", str(source), type="bind")
    container = sleeper(IGNORE_QUIT, mounts=[mount])
    time.sleep(2)  # Python is up and ignores SIGQUIT
    source.rmdir()
    result = restart(
        DockerActuator(retry_attempts=1),
        Target(container=container.name),
        restart_policy(stop_timeout=1),
    )
    assert result.outcome is Outcome.FAILED, result
    assert result.changed and result.killed == (container.name,)
    assert result.sigquit is True and result.error is not None
