from pathlib import Path

import pytest

from supervisor.broker_url import redact as redact_url
from supervisor.cli import main
from supervisor.errors import PolicyError
from supervisor.policy import load_policies, load_policy, parse_policy

from .helpers import policy_dict
from .inprocess import to_toml

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "policies" / "dify-worker.toml"

VALID = """
name = "w"
[broker]
url = "redis://localhost:6379/0"
[target]
container = "c"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value.problems


def test_shipped_policy_matches_the_chapter() -> None:
    policy = load_policy(SHIPPED)
    assert policy.name == "dify-worker"
    assert policy.broker.url == "redis://iti-redis:6379/0"
    # The queues the worker consumes (the chapter's: celery; a stock Dify's: its -Q list).
    assert policy.broker.queues == [] and policy.broker.discover_queues
    assert policy.target.container == "iti-dify-worker"
    assert policy.detect.threshold == 100
    assert (policy.detect.interval, policy.detect.window, policy.detect.max_gap) == (10, 300, 30)
    assert policy.restart.cooldown == 600
    assert policy.restart.max_restarts == 3
    assert policy.restart.budget_window == 7200


def test_defaults_fill_what_a_minimal_file_leaves_out(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, VALID))
    assert policy.broker.queues == ["celery"]
    assert policy.broker.priority_steps == [0, 3, 6, 9]
    assert policy.broker.priority_separator == "\x06\x16"
    assert policy.detect.effective_max_gap == 3 * policy.detect.interval
    assert policy.restart.effective_reset_after == 2 * policy.restart.backoff_max
    assert policy.restart.method == "cold"


def test_kombu_keys_for_priorities_and_prefix() -> None:
    policy = parse_policy(
        policy_dict(broker={"key_prefix": "dify:", "priority_steps": [0, 5]}), "x"
    )
    assert policy.broker.redis_keys("mail") == ["dify:mail", "dify:mail\x06\x165"]
    assert policy.broker.unacked_key == "dify:unacked"
    assert policy.broker.unacked_index_key == "dify:unacked_index"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("bogus = 1\n" + VALID, "bogus", "unknown key"),
        (
            VALID.replace('container = "c"', 'container = "c"\ncolour = "red"'),
            "target.colour",
            "unknown key",
        ),
        (VALID + "[detect]\nthreshold = -1\n", "detect.threshold", "greater than or equal to 0"),
        (VALID + '[detect]\nthreshold = "100"\n', "detect.threshold", "valid integer"),
        (VALID + "[detect]\nthreshold = 1.5\n", "detect.threshold", "valid integer"),
        (VALID + '[restart]\ncooldown = "-5m"\n', "restart.cooldown", "negative"),
        (VALID + "[restart]\ncooldown = -1\n", "restart.cooldown", "negative"),
        (VALID + '[restart]\ncooldown = "soon"\n', "restart.cooldown", "invalid duration"),
        (
            VALID + '[detect]\ninterval = "10s"\nwindow = "5s"\n',
            "detect",
            "window (5s) must be at least interval (10s)",
        ),
        (VALID + '[detect]\ninterval = "10s"\nmax_gap = "5s"\n', "detect", "max_gap"),
        (VALID + "[detect]\ninterval = 0\n", "detect.interval", "must be greater than 0"),
        (VALID + "[restart]\nbudget_window = 0\n", "restart.budget_window", "greater than 0"),
        (VALID.replace("[target]", 'timeout = "0s"\n[target]'), "broker.timeout", "greater than 0"),
        (VALID.replace("[target]", "queues = []\n[target]"), "broker.queues", "at least one queue"),
        (VALID + "[restart]\nbackoff_factor = 0.5\n", "restart.backoff_factor", "greater than"),
        (VALID + '[restart]\nmethod = "reboot"\n', "restart.method", "cold"),
        (VALID + '[restart]\nbackoff_initial = "2h"\n', "restart", "backoff_max"),
        (VALID.replace("redis://", "http://"), "broker.url", "redis://"),
        (VALID.replace('name = "w"', 'name = "a b"'), "name", "letters, digits"),
        (VALID.replace('name = "w"\n', ""), "name", "required key is missing"),
        (VALID.replace('container = "c"', ""), "target", "needs container"),
        (
            VALID.replace('container = "c"', 'container = "c"\ncompose_project = "p"'),
            "target",
            "give one of container",
        ),
        (
            VALID.replace('container = "c"', 'swarm_service = "s"\ncontainer = "c"'),
            "target",
            "give one of container",
        ),
        (VALID.replace('container = "c"', 'swarm_service = "s"\nall = true'), "target", "all is"),
        (VALID + '[restart]\nmethod = "force_update"\n', "restart", "is for a Swarm"),
        (
            VALID.replace('container = "c"', 'swarm_service = "s"')
            + '[restart]\nmethod = "restart"\n',
            "restart",
            "Swarm replaces a task itself",
        ),
        (VALID.replace('container = "c"', 'compose_project = "p"'), "target", "go together"),
        (
            VALID + '[detect]\nrequire_no_progress = false\nidle_window = "2m"\n',
            "detect",
            "idle_window need(s) require_no_progress = true",
        ),
    ],
)
def test_bad_files_are_refused_naming_file_and_key(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}: {key}: ") and words in p for p in problems), problems


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "[detect\nthreshold = 1\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}: invalid TOML:")
    assert "line 7" in problem


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "nope.toml")
    assert "nope.toml: cannot read" in problem


def test_compose_labels_are_an_alternative_target(tmp_path: Path) -> None:
    text = VALID.replace('container = "c"', 'compose_project = "iti"\ncompose_service = "worker"')
    policy = load_policy(write(tmp_path, text))
    assert (policy.target.compose_project, policy.target.compose_service) == ("iti", "worker")


def test_password_never_appears_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("redis://localhost", "http://u:hunter2@localhost"))
    problems = problems_of(path)
    assert "hunter2" not in "\n".join(problems)
    assert redact_url("redis://u:hunter2@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://:hunter2@h/0") == "redis://:***@h/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_all_problems_of_all_files_are_reported_and_names_are_unique(tmp_path: Path) -> None:
    write(tmp_path, VALID, "a.toml")
    write(tmp_path, VALID, "b.toml")
    write(tmp_path, "oops = 1\n" + VALID, "c.toml")
    with pytest.raises(PolicyError) as info:
        load_policies([tmp_path])
    text = "\n".join(info.value.problems)
    assert "c.toml: oops: unknown key" in text
    assert "b.toml: name: 'w' is already used by" in text


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SHIPPED)]) == 0
    assert "ok: dify-worker" in capsys.readouterr().out
    bad = write(tmp_path, VALID + "[detect]\nthreshold = -3\n")
    assert main(["check", str(SHIPPED), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: detect.threshold:" in err
    assert main(["check", str(tmp_path / "empty-dir-is-not-here")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["check", str(empty)]) == 2
    assert "holds no *.toml" in capsys.readouterr().err


def test_broker_url_takes_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = VALID.replace("redis://localhost", "redis://supervisor:${SUP_REDIS_PW}@localhost")
    path = write(tmp_path, text)
    monkeypatch.delenv("SUP_REDIS_PW", raising=False)
    [problem] = problems_of(path)
    assert problem == f"{path}: broker.url: environment variable SUP_REDIS_PW is not set"
    monkeypatch.setenv("SUP_REDIS_PW", "p@ss/word")
    policy = load_policy(path)
    assert policy.broker.url == "redis://supervisor:p%40ss%2Fword@localhost:6379/0"
    assert "p%40ss" not in redact_url(policy.broker.url)


@pytest.mark.parametrize(
    "target",
    [
        'container = "c"',
        'compose_project = "iti"\ncompose_service = "worker"',
    ],
)
def test_two_policies_on_one_target_are_refused_naming_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    body = VALID.replace('container = "c"', target)
    first = write(tmp_path, body, "a.toml")
    second = write(tmp_path, body.replace('name = "w"', 'name = "w2"'), "b.toml")
    assert main(["check", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{second}: target:" in err and f"policy 'w' in {first}" in err
    assert "merge them" in err and "several queues" in err
    elsewhere = body.replace('name = "w"', 'name = "w2"').replace('"c"', '"d"')
    second.write_text(elsewhere.replace('"worker"', '"beat"'))
    assert main(["check", str(tmp_path)]) == 0  # another container or service: fine


def test_env_defaults_and_whole_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from supervisor.policy import expand_env

    monkeypatch.delenv("SUPERVISOR_BROKER_URL", raising=False)
    shipped = load_policy(SHIPPED)
    assert shipped.broker.url == "redis://iti-redis:6379/0"  # the chapter's, by default
    monkeypatch.setenv("SUPERVISOR_BROKER_URL", "")
    assert load_policy(SHIPPED).broker.url == "redis://iti-redis:6379/0"  # empty: the default
    dify = "redis://:difyai123456@redis:6379/1"
    monkeypatch.setenv("SUPERVISOR_BROKER_URL", dify)
    assert load_policy(SHIPPED).broker.url == dify  # a whole URL is taken as it is
    monkeypatch.setenv("PW", "p@ss/word")
    assert expand_env("redis://:${PW}@h:6379/1") == "redis://:p%40ss%2Fword@h:6379/1"
    assert expand_env("redis://:${NOPE:-x y}@h") == "redis://:x y@h"
    monkeypatch.setenv("BAD", "ftp://x")
    bad = write(tmp_path, VALID.replace('"redis://localhost:6379/0"', '"${BAD}"'))
    [problem] = problems_of(bad)
    assert "broker.url: must be a redis://" in problem


def test_no_queue_at_all_is_refused_unless_discovered(tmp_path: Path) -> None:
    empty = VALID.replace(
        'url = "redis://localhost:6379/0"', 'url = "redis://h:6379/0"\nqueues = []'
    )
    [problem] = problems_of(write(tmp_path, empty))
    assert "broker.queues: must name at least one queue, or set discover_queues = true" in problem
    found = empty.replace("queues = []", "queues = []\ndiscover_queues = true")
    assert load_policy(write(tmp_path, found, "ok.toml")).broker.discover_queues


def test_a_secret_comes_from_name_file_when_name_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.policy import expand_env

    secret = tmp_path / "pw"
    secret.write_text("s3cr/t\n")  # Docker secrets end with what the file had
    monkeypatch.delenv("SUP_PW", raising=False)
    monkeypatch.setenv("SUP_PW_FILE", str(secret))
    assert expand_env("redis://:${SUP_PW}@redis:6379/1") == "redis://:s3cr%2Ft@redis:6379/1"
    monkeypatch.setenv("SUP_PW", "direct")  # the variable itself wins
    assert expand_env("redis://:${SUP_PW}@redis/1") == "redis://:direct@redis/1"
    monkeypatch.delenv("SUP_PW")
    monkeypatch.setenv("SUP_PW_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"SUP_PW_FILE=.*missing"):
        expand_env("${SUP_PW}")


def test_the_dify_recipes_policy_takes_its_target_and_sentinel_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """deploy/dify/dify-worker.toml: the project name is no secret (it is shown as it is,
    never masked), and an empty Sentinel setting from Dify's .env means none."""
    from supervisor.broker_url import redact

    dify = REPO / "deploy" / "dify" / "dify-worker.toml"
    monkeypatch.setenv("SUPERVISOR_BROKER_URL", "redis://:difyai123456@redis:6379/1")
    monkeypatch.delenv("DIFY_COMPOSE_PROJECT", raising=False)
    monkeypatch.setenv("SUPERVISOR_SENTINEL_MASTER_NAME", "")
    monkeypatch.setenv("SUPERVISOR_SENTINEL_PASSWORD", "")
    policy = load_policy(dify)
    assert policy.target.compose_project == "docker" and policy.target.all
    assert policy.broker.master_name is None and policy.broker.sentinel_password is None
    assert len(policy.broker.queues) == 19 and policy.broker.discover_queues
    assert "trigger_refresh_publisher" not in policy.broker.queues  # 1.13.2's worker: not its
    monkeypatch.setenv("DIFY_COMPOSE_PROJECT", "prod")
    policy = load_policy(dify)
    assert policy.target.describe() == "prod/worker"
    assert redact("prod-worker-1 on redis://:difyai123456@redis") == (
        "prod-worker-1 on redis://:***@redis"
    )
    monkeypatch.setenv(
        "SUPERVISOR_BROKER_URL", "sentinel://:pw@s1:26379/1;sentinel://:pw@s2:26379/1"
    )
    monkeypatch.setenv("SUPERVISOR_SENTINEL_MASTER_NAME", "mymaster")
    monkeypatch.setenv("SUPERVISOR_SENTINEL_PASSWORD", "sentinel-pw")
    policy = load_policy(dify)
    assert policy.broker.master_name == "mymaster"
    assert policy.broker.sentinel_password == "sentinel-pw"
    assert "sentinel-pw" not in redact("auth sentinel-pw")  # a password stays masked


def test_the_key_prefix_comes_from_the_environment_and_is_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPERVISOR_KEY_PREFIX", "dify:")
    path = tmp_path / "p.toml"
    path.write_text(to_toml(policy_dict(broker={"key_prefix": "${SUPERVISOR_KEY_PREFIX:-}"})))
    assert load_policy(path).broker.key_prefix == "dify:"
    monkeypatch.delenv("SUPERVISOR_KEY_PREFIX")
    assert load_policy(path).broker.key_prefix == ""
