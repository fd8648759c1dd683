"""Command line: `supervisor run | trigger | status | health | check | sample | replay |
notify-test`.

Each command imports only what it needs, inside its function: `health` runs every few seconds
in the container's HEALTHCHECK and must not pay for Celery, docker-py, pydantic or Prometheus.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor import __version__
from supervisor.errors import (
    PolicyError,
    StateRefusedError,
    SupervisorError,
    TraceError,
    UsageError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

STATE_DIR_ENV = "SUPERVISOR_STATE_DIR"  # health.py reads it too, without importing this module
DRY_RUN_ENV = "SUPERVISOR_DRY_RUN"
DEFAULT_STATE_DIR = "state"
METRICS_PORT_ENV = "SUPERVISOR_METRICS_PORT"
METRICS_ADDRESS_ENV = "SUPERVISOR_METRICS_ADDRESS"
LOG_FORMAT_ENV = "SUPERVISOR_LOG_FORMAT"
POLICIES_ENV = "SUPERVISOR_POLICIES"
LEASE_ENV = "SUPERVISOR_LEASE"
DEFAULT_LEASE = 15.0
DOCKER_RETRY_ENV = "SUPERVISOR_DOCKER_RETRY"
DEFAULT_DOCKER_RETRY = 30.0  # seconds: an engine restarting comes back within it

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def env_flag(name: str) -> bool:
    """A boolean setting from the environment; anything unclear is refused, not guessed."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(
        f"{name}={os.environ[name]!r} is not a boolean: use one of 1, true, yes, on, 0, "
        "false, no, off"
    )


def port_setting(flag: int | None, env: str) -> int | None:
    raw = str(flag) if flag is not None else os.environ.get(env, "").strip()
    where = "--metrics-port" if flag is not None else env
    if raw == "":
        return None
    try:
        port = int(raw)
    except ValueError:
        raise UsageError(f"{where}={raw!r} is not a port number (0-65535)") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{where}={port} is not a port number (0-65535)")
    return port


def lease_setting(flag: str | None) -> float | None:
    """The lease period, when several supervisors share the policies; None: off (one instance).
    `on` (or 1, true, yes) takes the default period; a duration sets it."""
    raw = (flag if flag is not None else os.environ.get(LEASE_ENV, "")).strip().lower()
    where = "--lease" if flag is not None else LEASE_ENV
    if raw in _FALSE:
        return None
    if raw in _TRUE:
        return DEFAULT_LEASE
    from supervisor.durations import parse_duration

    try:
        period = parse_duration(raw)
    except ValueError as exc:
        raise UsageError(f"{where}={raw!r}: {exc}; or on/off") from None
    if period < 1:
        raise UsageError(f"{where}={raw!r}: the lease period must be at least 1s")
    return period


def docker_retry_setting() -> float:
    """How long a transient Docker failure is retried within one call (SUPERVISOR_DOCKER_RETRY):
    a duration, 0 for one try only."""
    raw = os.environ.get(DOCKER_RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_DOCKER_RETRY
    from supervisor.durations import parse_duration

    try:
        return parse_duration(float(raw) if raw.replace(".", "", 1).isdigit() else raw)
    except ValueError as exc:
        raise UsageError(f"{DOCKER_RETRY_ENV}={raw!r}: {exc}") from None


def state_dir_setting(args: argparse.Namespace) -> Path:
    path = Path(args.state_dir or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
    if path.exists() and not path.is_dir():
        where = "--state-dir" if args.state_dir else STATE_DIR_ENV
        raise UsageError(f"{where}={str(path)!r} is not a directory")
    return path


def cmd_check(args: argparse.Namespace) -> int:
    from supervisor import deployment

    for policy in deployment.load(args.policies):
        print(
            f"ok: {policy.name} (target {policy.target.describe()}, "
            f"queues {', '.join(policy.broker.queues)})"
        )
    return EXIT_OK


def cmd_proxy_allowlist(args: argparse.Namespace) -> int:
    from supervisor.policy import load_policies
    from supervisor.proxy_allowlist import allowlist, force_update_allowlist, services_allowlist

    policies = load_policies(args.policies)
    if args.force_update:
        print(force_update_allowlist(policies))
    else:
        print(services_allowlist(policies) if args.services else allowlist(policies))
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    import json
    import logging

    from supervisor.adapters.redis_probe import RedisProbe
    from supervisor.core.tracker import watched_of
    from supervisor.errors import StateError
    from supervisor.policy import load_policy
    from supervisor.runtime.state_store import StateStore

    policy = load_policy(args.policy)
    try:  # the queues the daemon watches, discovered ones included (from its state directory)
        stored = StateStore(state_dir_setting(args)).peek(policy.target.key, policy.name)
    except StateError:
        stored = None
    probe = RedisProbe(policy.broker)
    try:
        sample = probe.sample(watched_of(policy, stored.discovered if stored else ()))
    finally:
        probe.close()
    from supervisor.broker_url import redact_tree

    out = {
        "policy": policy.name,
        **sample.to_json(),
        "oldest_wait": _oldest_wait(args, policy.name),
    }
    print(json.dumps(redact_tree(out)))
    if not sample.ok:
        logging.getLogger("supervisor").error("%s: sample failed: %s", policy.name, sample.error)
        return EXIT_FAILED
    return EXIT_OK


def _oldest_wait(args: argparse.Namespace, name: str) -> dict[str, float] | None:
    """Per queue, how long its oldest message has waited, as the running daemon last saw it
    (one sample alone cannot tell: a wait is measured across samples); None when no daemon
    runs here."""
    from supervisor.runtime import heartbeat

    try:
        beat = heartbeat.read(state_dir_setting(args))
    except heartbeat.HeartbeatError:
        return None
    live = beat.policies.get(name)
    return live.waits if live is not None and not beat.stopped else None


def cmd_replay(args: argparse.Namespace) -> int:
    from supervisor.policy import load_policy
    from supervisor.replay import run_replay

    policy = load_policy(args.policy)
    return run_replay(policy, args.trace, args.plot)


def cmd_report(args: argparse.Namespace) -> int:
    from supervisor.report import run_report

    return run_report(state_dir_setting(args), args.policy or [], args.plot)


def cmd_run(args: argparse.Namespace) -> int:
    dry_run = args.dry_run or env_flag(DRY_RUN_ENV)
    port = port_setting(args.metrics_port, METRICS_PORT_ENV)
    state_dir = state_dir_setting(args)
    period = lease_setting(args.lease)
    retry = docker_retry_setting()
    from supervisor.runtime import wiring
    from supervisor.runtime.daemon import Daemon
    from supervisor.runtime.leasing import Leases

    daemon = Daemon(
        args.policies,
        state_dir,
        actuator=wiring.docker_actuator(retry),
        leases=Leases(period) if period is not None else None,
        dry_run=dry_run,
        metrics_address=args.metrics_address or os.environ.get(METRICS_ADDRESS_ENV),
        metrics_port=port,
    )
    try:
        return daemon.run()
    except PolicyError as exc:
        _audit_refusal(state_dir, exc.problems)
        raise
    except StateRefusedError as exc:
        _audit_refusal(state_dir, [str(exc)])
        raise


def _audit_refusal(state_dir: Path, problems: list[str]) -> None:
    """A refused start leaves a record of why in the audit log, when the state directory can
    hold one: under a restart policy, the operator reads why it keeps stopping."""
    from supervisor.core.events import StartRefused
    from supervisor.sinks.audit import AUDIT_FILE, AuditLog

    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        audit = AuditLog(state_dir / AUDIT_FILE)
    except OSError:
        return
    try:
        audit(StartRefused(problems=tuple(problems), pid=os.getpid()))
    finally:
        audit.close()


def _status_policies(args: argparse.Namespace, state_dir: Path) -> list[Path]:
    from supervisor.runtime import heartbeat

    if args.policies:
        return [Path(p) for p in args.policies]
    if os.environ.get(POLICIES_ENV):
        return [Path(os.environ[POLICIES_ENV])]
    try:
        recorded = heartbeat.read(state_dir).policy_paths
    except heartbeat.HeartbeatError:
        recorded = ()
    return [Path(p) for p in recorded] or [Path("policies")]


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from supervisor import clock, status
    from supervisor.policy import load_policies

    state_dir = state_dir_setting(args)
    policies = load_policies(_status_policies(args, state_dir))
    if args.names:
        unknown = sorted(set(args.names) - {p.name for p in policies})
        if unknown:
            raise UsageError(
                f"no policy named {', '.join(unknown)}; known: "
                f"{', '.join(p.name for p in policies)}"
            )
        policies = [p for p in policies if p.name in args.names]
    result = status.gather(policies, state_dir, clock.Stepless().here())
    from supervisor.broker_url import redact, redact_tree

    print(json.dumps(redact_tree(result), indent=2) if args.json else redact(status.render(result)))
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    from supervisor.policy import load_policy
    from supervisor.sinks import notify, notify_urls

    policy = load_policy(args.policy)
    settings = notify.settings_for(policy)
    if settings is None:
        print(
            f"{args.policy}: no [notify] section, and neither {notify.URLS_ENV} nor "
            f"{notify.URL_ENV} in the environment",
            file=sys.stderr,
        )
        return EXIT_INVALID
    notice = notify.Notice(
        "test",
        policy.name,
        policy.target.describe(),
        f"[{policy.name}] test notification from iti-worker-supervisor",
    )
    notify.send(settings, notice)
    print("sent a test notification to " + ", ".join(notify_urls.where(u) for u in settings.urls))
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    from supervisor.runtime import trigger

    state_dir = state_dir_setting(args)
    pid = trigger.request(state_dir, args.name)
    what = f"policy {args.name!r}" if args.name else "every policy"
    print(f"asked supervisor pid {pid} to restart {what} now (see {state_dir / 'audit.jsonl'})")
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from supervisor import quarantine_cmd
    from supervisor.policy import load_policies, load_policy

    if Path(args.policy).is_file():
        policy = load_policy(Path(args.policy))
    else:  # a name, among the policies status would show
        policies = load_policies(_status_policies(args, state_dir_setting(args)))
        found = [p for p in policies if p.name == args.policy]
        if not found:
            known = ", ".join(p.name for p in policies)
            raise UsageError(f"no policy file or name {args.policy!r}; known: {known}")
        policy = found[0]
    return quarantine_cmd.run(args.action, policy, args.task_id, args.json)


def cmd_health(args: argparse.Namespace) -> int:
    from supervisor import health

    return health.run(str(state_dir_setting(args)), args.max_age)


def _policies_and_state(p: argparse.ArgumentParser, what: str, state: str, json: str) -> None:
    """--policies (by default those of the environment, else the daemon's), --state-dir, --json."""
    p.add_argument(
        "--policies",
        nargs="+",
        metavar="POLICY_FILE|POLICY_DIR",
        help=f"{what} (default: env {POLICIES_ENV}, else those the daemon runs)",
    )
    p.add_argument("--state-dir", help=state)
    p.add_argument("--json", action="store_true", help=json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervisor",
        description="Restart a Celery worker whose Redis queue is over threshold and growing.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help=f"stderr log lines for people or as JSON (env {LOG_FORMAT_ENV}; default text)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate policy files; exit 0, or 2 with the problems")
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY_FILE|POLICY_DIR")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "proxy-allowlist",
        help="print SUPERVISOR_WORKER_CONTAINERS for the policies: the container names the "
        "socket proxy lets inspect, kill, start and restart reach",
    )
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY_FILE|POLICY_DIR")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--services",
        action="store_true",
        help="print SUPERVISOR_WORKER_SERVICES instead: the Swarm services it lets be inspected "
        "and their tasks listed",
    )
    which.add_argument(
        "--force-update",
        action="store_true",
        help="print SUPERVISOR_FORCE_UPDATE_SERVICES instead: the Swarm services whose policies "
        "use force_update, which it lets be updated (root-equivalent on the swarm); empty when "
        "none does",
    )
    p.set_defaults(func=cmd_proxy_allowlist)

    p = sub.add_parser("sample", help="sample a policy's queues once and print JSON")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.add_argument(
        "--state-dir", type=Path, help="the daemon's, for the queues it discovered (default: "
        f"${STATE_DIR_ENV} or ./{DEFAULT_STATE_DIR})",
    )  # fmt: skip
    p.set_defaults(func=cmd_sample)

    plot_help = (
        "also draw depth, threshold, stuck runs and every decision with its reason to this PNG "
        "(needs the plot extra: pip install 'iti-worker-supervisor[plot]')"
    )
    p = sub.add_parser("replay", help="run the tracker over a recorded CSV trace")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.add_argument("trace", metavar="TRACE", help="CSV file with t,depth[,processed], or -")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help=plot_help)
    p.set_defaults(func=cmd_replay)

    state_help = f"state and audit directory (env {STATE_DIR_ENV}; default {DEFAULT_STATE_DIR})"
    p = sub.add_parser(
        "report", help="every restart and escalation the supervisor recorded, per policy"
    )
    p.add_argument("state_dir", nargs="?", metavar="STATE_DIR", help=state_help)
    p.add_argument("--policy", action="append", metavar="NAME", help="only this policy (repeat)")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help=plot_help)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="supervise: sample, decide, restart; until SIGTERM")
    p.add_argument("policies", nargs="+", type=Path, metavar="POLICY_FILE|POLICY_DIR")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help=f"decide and audit, but never change a container (env {DRY_RUN_ENV}=1)",
    )
    p.add_argument("--state-dir", help=state_help)
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help=f"serve Prometheus metrics on this port (env {METRICS_PORT_ENV}; default: off)",
    )
    p.add_argument(
        "--metrics-address",
        default=None,
        help=f"address for the metrics port (env {METRICS_ADDRESS_ENV}; default 0.0.0.0)",
    )
    p.add_argument(
        "--lease",
        metavar="on|off|PERIOD",
        default=None,
        help="several supervisors of the same policies: only the holder of a target's lease "
        f"in the broker's Redis acts (env {LEASE_ENV}; default off; on: {DEFAULT_LEASE:g}s)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("trigger", help="ask the running supervisor to restart now")
    p.add_argument("name", nargs="?", help="policy name (default: every policy)")
    p.add_argument("--state-dir", help=state_help)
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("health", help="is the running supervisor alive and its loop turning?")
    p.add_argument("--state-dir", help=state_help)
    p.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="oldest acceptable tick (default: 3 x the longest interval, at least 30 s)",
    )
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("status", help="depth, trend, verdict, restarts and audit, per policy")
    p.add_argument("names", nargs="*", metavar="POLICY", help="policy names (default: all)")
    _policies_and_state(p, "policy files", state_help, "one JSON document")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "quarantine", help="list, requeue or drop the poison messages parked for a policy"
    )
    p.add_argument("action", choices=("list", "requeue", "drop"))
    p.add_argument("policy", metavar="POLICY", help="a policy file, or a policy's name")
    p.add_argument("task_id", nargs="?", metavar="TASK_ID", help="for requeue and drop")
    _policies_and_state(p, "where to find POLICY by name", state_help, "list as JSON")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("notify-test", help="send a test notification with a policy's settings")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.set_defaults(func=cmd_notify_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        log_format = args.log_format or os.environ.get(LOG_FORMAT_ENV, "text").strip() or "text"
        if log_format not in ("text", "json"):
            raise UsageError(f"{LOG_FORMAT_ENV}={log_format!r}: use text or json")
        if args.command != "health":  # health prints one line and logs nothing
            from supervisor.sinks import log

            log.setup(verbose=args.verbose, json_lines=log_format == "json")
        code: int = args.func(args)
    except PolicyError as exc:
        from supervisor.broker_url import redact

        for problem in exc.problems:
            print(redact(problem), file=sys.stderr)
        if args.command == "run":
            print("nothing started", file=sys.stderr)
        return EXIT_INVALID
    except (TraceError, UsageError, StateRefusedError) as exc:
        shown = str(exc) if isinstance(exc, TraceError) else f"supervisor: {exc}"
        print(shown, file=sys.stderr)
        if args.command == "run":
            print("nothing started", file=sys.stderr)
        return EXIT_INVALID
    except SupervisorError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code
