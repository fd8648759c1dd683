"""Policy files (`policies/*.toml`): one supervised worker each, validated before anything starts.

The format is a public contract documented in docs/policy.md; every key is checked here and an
unknown or ill-typed one is refused with a message naming the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from supervisor import broker_url
from supervisor.durations import format_duration, parse_duration
from supervisor.errors import PolicyError


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Broker(_Section):
    url: str
    # Also watch the queues the target's own workers consume (their active_queues), kept in
    # the state file when they stop answering: Dify's list changes between releases.
    # (Declared before `queues`, whose check reads it.)
    discover_queues: bool = False
    queues: list[str] = Field(default_factory=lambda: ["celery"])
    key_prefix: str = ""
    priority_steps: list[int] = Field(default_factory=lambda: [0, 3, 6, 9])
    priority_separator: str = "\x06\x16"
    timeout: PositiveDuration = 5.0
    # TLS, for users who keep it out of the URL (Celery's broker_use_ssl): as in a rediss:// query.
    ssl_cert_reqs: str | None = None
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Sentinel: the monitored master's name (kombu's transport option `master_name`, Dify's
    # CELERY_SENTINEL_MASTER_NAME), and the sentinels' own password when they have one.
    master_name: str | None = None
    sentinel_password: str | None = None

    @field_validator("url")
    @classmethod
    def _broker_url(cls, url: str) -> str:
        url = expand_env(url)
        broker_url.parse(url)  # the same parse every command connects with
        return url

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        # "${SUPERVISOR_KEY_PREFIX:-}": the recipe passes Dify's REDIS_KEY_PREFIX, as kombu's
        # global_keyprefix "<prefix>:" (empty when Dify has none). No secret: not masked.
        return expand_env(value, secret=False)

    @field_validator("ssl_cert_reqs")
    @classmethod
    def _cert_reqs(cls, value: str | None) -> str | None:
        if value is not None:
            broker_url.cert_reqs(value)
        return value

    @field_validator("sentinel_password")
    @classmethod
    def _sentinel_password(cls, value: str | None) -> str | None:
        # Empty after expansion is none: a recipe passes "${CELERY_SENTINEL_PASSWORD:-}".
        found = (expand_env(value) or None) if value is not None else None
        broker_url.register_password(found)  # a literal one too: masked wherever shown
        return found

    @field_validator("master_name")
    @classmethod
    def _master_name(cls, value: str | None) -> str | None:
        return (expand_env(value, secret=False) or None) if value is not None else None

    @model_validator(mode="after")
    def _connectable(self) -> Self:
        parsed = self.endpoint()
        if parsed.sentinel and not self.master_name:
            raise ValueError(
                "a sentinel:// URL needs master_name (Celery's broker_transport_options "
                "master_name; Dify's CELERY_SENTINEL_MASTER_NAME)"
            )
        if self.master_name and not parsed.sentinel:
            raise ValueError("master_name is for a sentinel:// URL")
        if self.tls_options() and parsed.scheme not in ("rediss", "sentinel"):
            raise ValueError("ssl_* keys need a rediss:// URL")
        return self

    def tls_options(self) -> dict[str, object]:
        """The policy's own ssl_* keys as redis-py takes them."""
        out: dict[str, object] = {}
        if self.ssl_cert_reqs is not None:
            out["ssl_cert_reqs"] = broker_url.cert_reqs(self.ssl_cert_reqs)
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    def endpoint(self) -> broker_url.BrokerURL:
        """The URL as every command connects to it (broker_url.py), the policy's TLS keys
        filling in what the URL leaves out."""
        return broker_url.parse(self.url, self.tls_options())

    @field_validator("queues")
    @classmethod
    def _queues(cls, queues: list[str], info: ValidationInfo) -> list[str]:
        if not queues and not info.data.get("discover_queues"):
            raise ValueError("must name at least one queue, or set discover_queues = true")
        if any(not q for q in queues):
            raise ValueError("queue names must not be empty")
        if len(set(queues)) != len(queues):
            raise ValueError("queue names must be unique")
        return queues

    @field_validator("priority_steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps or any(s < 0 for s in steps) or len(set(steps)) != len(steps):
            raise ValueError("must be a non-empty list of distinct non-negative integers")
        return steps

    def redis_keys(self, queue: str) -> list[str]:
        """kombu's list keys for one queue: bare name for step 0, `name+sep+step` for the rest."""
        return [
            self.key_prefix + (queue if step == 0 else f"{queue}{self.priority_separator}{step}")
            for step in self.priority_steps
        ]

    def binding_key(self, queue: str) -> str:
        """kombu's set of bindings of the exchange named like the queue (Celery's default):
        it exists on the database where a worker or producer declared that queue."""
        return f"{self.key_prefix}_kombu.binding.{queue}"

    @property
    def unacked_key(self) -> str:
        return self.key_prefix + "unacked"

    @property
    def unacked_index_key(self) -> str:
        return self.key_prefix + "unacked_index"


class Target(_Section):
    container: str | None = None
    compose_project: str | None = None
    compose_service: str | None = None
    all: bool = False
    # A Docker Swarm service: its running tasks are the replicas (docs/operations.md: Swarm).
    swarm_service: str | None = None

    @field_validator("container", "compose_project", "compose_service", "swarm_service")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        # `${COMPOSE_PROJECT_NAME:-docker}`: one policy for every Dify project. Names are no
        # secrets, so they are not masked.
        return expand_env(value, secret=False) if value is not None else None

    @model_validator(mode="after")
    def _one_way_to_find_it(self) -> Self:
        by_labels = self.compose_project is not None or self.compose_service is not None
        ways = sum((self.container is not None, by_labels, self.swarm_service is not None))
        if ways > 1:
            raise ValueError(
                "give one of container, compose_project + compose_service, or swarm_service"
            )
        if ways == 0:
            raise ValueError("needs container, compose_project + compose_service, or swarm_service")
        if by_labels and (not self.compose_project or not self.compose_service):
            raise ValueError("compose_project and compose_service go together")
        if self.container == "":
            raise ValueError("container must not be empty")
        if self.swarm_service == "":
            raise ValueError("swarm_service must not be empty")
        if self.swarm_service is not None and self.all:
            raise ValueError("all is for compose labels; a Swarm service's tasks are all its own")
        return self

    def describe(self) -> str:
        if self.container is not None:
            return self.container
        if self.swarm_service is not None:
            return f"service {self.swarm_service}"
        return f"{self.compose_project}/{self.compose_service}"

    @property
    def key(self) -> str:
        """What restart safety is kept per: one restart history and budget per key."""
        if self.container is not None:
            return f"container:{self.container}"
        if self.swarm_service is not None:
            return f"swarm:{self.swarm_service}"
        return f"compose:{self.compose_project}/{self.compose_service}"


class Detect(_Section):
    interval: PositiveDuration = 10.0
    window: Duration = 300.0
    threshold: int = Field(default=100, ge=0)
    max_gap: Duration | None = None
    require_no_progress: bool = True
    # False: a backlog that stays over the threshold without draining is stuck even if it does
    # not grow, when the worker's progress is known throughout and did not move.
    require_growth: bool = True
    # A worker whose progress cannot be seen (no heartbeats, no remote control) that looks
    # stuck by depth alone: restart it (the chapter's rule; its in-flight tasks are lost if it
    # was merely busy), or escalate to a person instead.
    when_progress_unknown: Literal["restart", "escalate"] = "restart"
    # The rules that find a stuck worker at any depth (core/idle.py, core/hung.py); each is
    # off until a limit is given. A worker with free slots that starts nothing for this long
    # while messages wait in its queues is stuck.
    idle_window: PositiveDuration | None = None
    # A task running longer than this (or its override by task name: fnmatch patterns,
    # the longest matching pattern wins) is hung; a worker all of whose slots are hung, with
    # messages waiting, is stuck. Celery's own time_limit wins where the pool cannot enforce it.
    max_task_runtime: PositiveDuration | None = None
    task_runtime: dict[str, PositiveDuration] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        at_any_depth = [
            k
            for k, on in (
                ("idle_window", self.idle_window is not None),
                ("max_task_runtime", self.max_task_runtime is not None),
                ("task_runtime", bool(self.task_runtime)),
            )
            if on
        ]
        if at_any_depth and not self.require_no_progress:
            # Those rules read the workers' heartbeats and answers, which are listened to only
            # when the worker's progress counts: they would be accepted and never fire.
            raise ValueError(
                f"{', '.join(at_any_depth)} need(s) require_no_progress = true (the workers' "
                "heartbeats and answers are not read without it)"
            )
        if self.idle_window is not None and self.idle_window < self.interval:
            raise ValueError(
                f"idle_window ({format_duration(self.idle_window)}) must be at least "
                f"interval ({format_duration(self.interval)})"
            )
        if self.window < self.interval:
            raise ValueError(
                f"window ({format_duration(self.window)}) must be at least "
                f"interval ({format_duration(self.interval)})"
            )
        if self.max_gap is not None and self.max_gap < self.interval:
            raise ValueError(
                f"max_gap ({format_duration(self.max_gap)}) must be at least "
                f"interval ({format_duration(self.interval)})"
            )
        return self

    @property
    def effective_max_gap(self) -> float:
        return self.max_gap if self.max_gap is not None else 3 * self.interval


class Restart(_Section):
    # cold: SIGQUIT, SIGKILL after stop_timeout, start (a Swarm task: Swarm replaces it);
    # restart: Docker's restart; force_update: a Swarm service's rolling update.
    method: Literal["cold", "restart", "force_update"] = "cold"
    cooldown: Duration = 600.0
    backoff_initial: Duration = 600.0
    backoff_factor: float = Field(default=2.0, ge=1.0)
    backoff_max: Duration = 3600.0
    reset_after: PositiveDuration | None = None
    max_restarts: int = Field(default=3, ge=0)
    budget_window: PositiveDuration = 7200.0
    stop_timeout: Duration = 30.0
    # What hung (core/evidence.py): the running tasks' arguments too (cut, secrets masked).
    record_args: bool = False
    # Before a cold shutdown, ask the workers for their stacks (Celery logs every thread's on
    # SIGUSR1) and keep what they log within a second in the state directory.
    capture_stacks: bool = False
    # Park a message running at this many hang restarts in a row instead of giving it back
    # (core/quarantine.py); 0: never.
    quarantine_after: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({format_duration(self.backoff_max)}) must be at least "
                f"backoff_initial ({format_duration(self.backoff_initial)})"
            )
        return self

    @property
    def effective_reset_after(self) -> float:
        return self.reset_after if self.reset_after is not None else 2 * self.backoff_max

    def wait_after(self, streak: int) -> float:
        """Least time after the streak-th restart of a streak before the next one may happen."""
        backoff = self.backoff_initial * self.backoff_factor ** (streak - 1)
        return max(self.cooldown, min(backoff, self.backoff_max))


# What may be pushed to a phone: the names of those event kinds (core/events.py builds its
# NOTIFIABLE from these, so an unknown name fails at import, in every test).
NOTIFY_EVENTS: tuple[str, ...] = (
    "restart",
    "restart_failed",
    "restart_refused",
    "quarantined",
    "dry_run_restart",
    "restart_resumed",
    "restart_completed",
    "start_error_begin",
    "escalate",
    "recovery",
    "internal_error",
    "cannot_judge",
)


def from_webhook(url: str, fmt: str) -> str:
    """The Apprise URL for a webhook of the settings before Apprise (`url` and `format`).

    Apprise recognises Slack's, Discord's and Teams' own webhook URLs as they are; a plain JSON
    webhook becomes `json://` (`jsons://` for https)."""
    if fmt != "json":
        return url
    parts = urlsplit(url)
    scheme = {"http": "json", "https": "jsons"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


class Notify(_Section):
    """Where notices go: Apprise URLs. `url` with `format` (the webhook settings from before
    Apprise) is still read and becomes one of `urls`."""

    urls: list[str]
    timeout: PositiveDuration = 5.0
    retries: int = Field(default=2, ge=0, le=10)
    events: list[str] = Field(default_factory=lambda: list(NOTIFY_EVENTS))

    @model_validator(mode="before")
    @classmethod
    def _webhook(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ("url" not in data and "format" not in data):
            return data
        data = dict(data)
        url, fmt = data.pop("url", None), data.pop("format", "json")
        if not isinstance(url, str):
            raise ValueError("format goes with url (the webhook); with Apprise, give urls")
        if fmt not in ("json", "slack", "discord", "teams"):
            raise ValueError(f"format must be json, slack, discord or teams, got {fmt!r}")
        if urlsplit(expand_env(url)).scheme not in ("http", "https"):
            raise ValueError("url must be an http:// or https:// webhook; for others give urls")
        data["urls"] = [*data.get("urls", []), from_webhook(expand_env(url), fmt)]
        return data

    @field_validator("events")
    @classmethod
    def _events(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e not in NOTIFY_EVENTS]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; events are {', '.join(NOTIFY_EVENTS)}")
        return events

    @field_validator("urls")
    @classmethod
    def _apprise_urls(cls, urls: list[str]) -> list[str]:
        # Whether Apprise knows each URL is checked with the deployment (deployment.py): the
        # model itself stays free of plugins and of the environment.
        if not urls:
            raise ValueError("give at least one Apprise URL")
        return [expand_env(u) for u in urls]


class Policy(_Section):
    name: str
    broker: Broker
    target: Target
    detect: Detect = Field(default_factory=Detect)
    restart: Restart = Field(default_factory=Restart)
    notify: Notify | None = None

    @field_validator("restart")
    @classmethod
    def _method_fits_target(cls, restart: Restart, info: ValidationInfo) -> Restart:
        target = info.data.get("target")  # declared before: validated already, if valid
        swarm = target is not None and target.swarm_service is not None
        if restart.method == "force_update" and not swarm:
            raise ValueError("method force_update is for a Swarm service (target.swarm_service)")
        if restart.method == "restart" and swarm:
            raise ValueError(
                "method restart: Swarm replaces a task itself; use cold (the stuck tasks) or "
                "force_update (the whole service, rolling)"
            )
        return restart

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                "must be 1-64 characters of letters, digits, '_', '.', '-', starting with a "
                f"letter or digit, got {name!r}"
            )
        return name


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, secret: bool = True) -> str:
    """Replace `${NAME}` by the environment variable NAME, so that secrets stay out of files;
    `${NAME:-default}` takes `default` when NAME is unset or empty, as a shell does.
    A value is masked wherever it would be shown unless `secret` is false (a container name).

    A reference inside a URL (a password) is URL-quoted; one that is the whole value (a whole
    broker URL from the environment) is taken as it is. A default is the file's own text. When
    NAME is unset and NAME_FILE names a file, its content is the value (Docker secrets).
    """
    whole = _ENV_REF.fullmatch(text) is not None

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        from_file = os.environ.get(f"{name}_FILE")
        if found is None and from_file:
            try:
                found = Path(from_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{name}_FILE={from_file}: {exc.strerror or exc}") from None
        if default is not None and not found:
            return default
        if found is None:
            raise ValueError(f"environment variable {name} is not set")
        if not secret:
            return found
        broker_url.register_secret_value(found)  # masked wherever it would be shown
        return found if whole else quote(found, safe="")

    return _ENV_REF.sub(value, text)


def _describe_error(err: Any) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ")
    secret = any(str(p) == "url" or str(p).endswith("password") for p in err["loc"])
    if (kind.endswith("_type") or kind.endswith("_parsing")) and not secret:
        msg = f"{msg} (got {err['input']!r})"  # never a URL's or a password's value
    return f"{key}: {broker_url.redact(msg)}"


def parse_policy(data: dict[str, Any], source: str) -> Policy:
    """Validate an already-parsed TOML document; errors name `source` and each faulty key."""
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError([f"{source}: {_describe_error(e)}" for e in exc.errors()]) from None


def load_policy(path: Path) -> Policy:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PolicyError([f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([f"{path}: invalid TOML: {exc}"]) from None
    return parse_policy(data, str(path))


def policy_files(paths: list[Path]) -> list[Path]:
    """Expand directories to their `*.toml` files, in name order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise PolicyError([f"{path}: directory holds no *.toml policy file"])
            files.extend(found)
        else:
            files.append(path)
    return files


def load_policy_files(paths: list[Path]) -> list[tuple[Path, Policy]]:
    """Load every file (directories expanded); report all problems at once, or return all."""
    problems: list[str] = []
    loaded: list[tuple[Path, Policy]] = []
    try:
        files = policy_files(paths)
    except PolicyError as exc:
        raise PolicyError(exc.problems) from None
    for path in files:
        try:
            loaded.append((path, load_policy(path)))
        except PolicyError as exc:
            problems.extend(exc.problems)
    seen: dict[str, Path] = {}
    targets: dict[str, tuple[Path, Policy]] = {}
    for path, policy in loaded:
        if policy.name in seen:
            problems.append(f"{path}: name: {policy.name!r} is already used by {seen[policy.name]}")
        else:
            seen[policy.name] = path
        key = policy.target.key
        if key in targets:
            first_path, first = targets[key]
            problems.append(
                f"{path}: target: {policy.target.describe()} is already the target of policy "
                f"{first.name!r} in {first_path}; one target has one policy, so that its "
                "restart history and budget are one: merge them (a policy's [broker] queues "
                "can list several queues)"
            )
        else:
            targets[key] = (path, policy)
    if problems:
        raise PolicyError(problems)
    return loaded


def load_policies(paths: list[Path]) -> list[Policy]:
    """The policies of these files and directories, checked together, the same on any machine
    (what the environment and the installed plugins say is checked by deployment.py)."""
    return [p for _, p in load_policy_files(paths)]
