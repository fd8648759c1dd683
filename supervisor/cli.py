"""Command line: `supervisor run | trigger | status | health | check | sample | replay |
notify-test`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from supervisor import __version__, health, logs, notifier, status
from supervisor.audit import AUDIT_FILE
from supervisor.daemon import Daemon, request_trigger
from supervisor.errors import PolicyError, SupervisorError, TraceError
from supervisor.policy import load_policies, load_policy
from supervisor.redis_probe import RedisProbe
from supervisor.replay import read_trace, replay

log = logging.getLogger("supervisor")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2

STATE_DIR_ENV = "SUPERVISOR_STATE_DIR"
DRY_RUN_ENV = "SUPERVISOR_DRY_RUN"
DEFAULT_STATE_DIR = "state"
METRICS_PORT_ENV = "SUPERVISOR_METRICS_PORT"
METRICS_ADDRESS_ENV = "SUPERVISOR_METRICS_ADDRESS"
LOG_FORMAT_ENV = "SUPERVISOR_LOG_FORMAT"
POLICIES_ENV = "SUPERVISOR_POLICIES"


def cmd_check(args: argparse.Namespace) -> int:
    policies = load_policies(args.policies)
    for policy in policies:
        print(
            f"ok: {policy.name} (target {policy.target.describe()}, "
            f"queues {', '.join(policy.broker.queues)})"
        )
    return EXIT_OK


def cmd_sample(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    probe = RedisProbe(policy.broker)
    try:
        sample = probe.sample()
    finally:
        probe.close()
    print(json.dumps({"policy": policy.name, **sample.to_json()}))
    if not sample.ok:
        log.error("%s: sample failed: %s", policy.name, sample.error)
        return EXIT_FAILED
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    source = "<stdin>" if args.trace == "-" else args.trace
    stream: TextIO
    try:
        stream = sys.stdin if args.trace == "-" else open(args.trace, newline="")  # noqa: SIM115
    except OSError as exc:
        print(f"{source}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    counts = {"samples": 0, "failed": 0, "restart": 0, "escalate": 0}
    try:
        for step in replay(policy, read_trace(stream, source)):
            counts["samples"] += 1
            counts["failed"] += not step.sample.ok
            d = step.decision
            log.debug("t=%g depth=%s %s", step.sample.t, step.sample.depth, d.describe())
            for action in d.actions:
                counts[action.kind.value] += 1
                log.info("t=%g %s: %s", action.t, action.kind.value, action.reason)
                print(json.dumps(action.to_json()), flush=True)
    finally:
        if stream is not sys.stdin:
            stream.close()
    log.info(
        "%s: replayed %d samples (%d failed): %d restarts, %d escalations",
        policy.name,
        counts["samples"],
        counts["failed"],
        counts["restart"],
        counts["escalate"],
    )
    return EXIT_OK


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def cmd_run(args: argparse.Namespace) -> int:
    dry_run = args.dry_run or _env_flag(DRY_RUN_ENV)
    port = args.metrics_port if args.metrics_port is not None else os.environ.get(METRICS_PORT_ENV)
    return Daemon(
        args.policies,
        _state_dir(args),
        dry_run=dry_run,
        metrics_address=args.metrics_address or os.environ.get(METRICS_ADDRESS_ENV),
        metrics_port=int(port) if port not in (None, "") else None,
    ).run()


def _status_policies(args: argparse.Namespace, state_dir: Path) -> list[Path]:
    if args.policies:
        return [Path(p) for p in args.policies]
    if os.environ.get(POLICIES_ENV):
        return [Path(os.environ[POLICIES_ENV])]
    try:
        recorded = json.loads((state_dir / health.HEARTBEAT_FILE).read_text())["policy_paths"]
        return [Path(p) for p in recorded]
    except (OSError, ValueError, KeyError, TypeError):
        return [Path("policies")]


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    policies = load_policies(_status_policies(args, state_dir))
    if args.names:
        unknown = sorted(set(args.names) - {p.name for p in policies})
        if unknown:
            raise SupervisorError(
                f"no policy named {', '.join(unknown)}; known: "
                f"{', '.join(p.name for p in policies)}"
            )
        policies = [p for p in policies if p.name in args.names]
    result = status.gather(policies, state_dir, time.time())
    print(json.dumps(result, indent=2) if args.json else status.render(result))
    return EXIT_OK


def cmd_notify_test(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    settings = notifier.settings_for(policy)
    if settings is None:
        print(
            f"{args.policy}: no [notify] section and no {notifier.URL_ENV} in the environment",
            file=sys.stderr,
        )
        return EXIT_INVALID
    notice = notifier.Notice(
        "test",
        policy.name,
        policy.target.describe(),
        f"[{policy.name}] test notification from iti-worker-supervisor",
    )
    notifier.send(settings, notice)
    print(f"sent a test notification to {notifier.where(settings.url)} ({settings.format})")
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    pid = request_trigger(state_dir, args.name)
    what = f"policy {args.name!r}" if args.name else "every policy"
    print(f"asked supervisor pid {pid} to restart {what} now (see {state_dir / AUDIT_FILE})")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    result = health.check(_state_dir(args), time.time(), args.max_age)
    print(result.message)
    return EXIT_OK if result.healthy else EXIT_FAILED


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

    p = sub.add_parser("sample", help="sample a policy's queues once and print JSON")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("replay", help="run the engine over a recorded CSV trace")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.add_argument("trace", metavar="TRACE", help="CSV file with t,depth[,processed], or -")
    p.set_defaults(func=cmd_replay)

    state_help = f"state and audit directory (env {STATE_DIR_ENV}; default {DEFAULT_STATE_DIR})"
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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("trigger", help="ask the running supervisor to restart now")
    p.add_argument("name", nargs="?", help="policy name (default: every policy)")
    p.add_argument("--state-dir", help=state_help)
    p.set_defaults(func=cmd_trigger)

    p = sub.add_parser("health", help="is the running supervisor's loop alive? exit 0 or 1")
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
    p.add_argument(
        "--policies",
        nargs="+",
        metavar="POLICY_FILE|POLICY_DIR",
        help=f"policy files (default: env {POLICIES_ENV}, else those the daemon runs)",
    )
    p.add_argument("--state-dir", help=state_help)
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("notify-test", help="send a test notification with a policy's settings")
    p.add_argument("policy", type=Path, metavar="POLICY_FILE")
    p.set_defaults(func=cmd_notify_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_format = args.log_format or os.environ.get(LOG_FORMAT_ENV, "text")
    logs.setup(verbose=args.verbose, json_lines=log_format == "json")
    try:
        code: int = args.func(args)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if args.command == "run":
            print("nothing started", file=sys.stderr)
        return EXIT_INVALID
    except TraceError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    except SupervisorError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code
