"""Logging for people (text, the default) or machines (JSON lines). Every line carries the policy
it is about (`-` when none), and anything that looks like a password in a URL is redacted."""

from __future__ import annotations

import logging
import sys
from typing import Any

from supervisor.broker_url import redact
from supervisor.core.events import Event
from supervisor.sinks.render import text


class _PolicyAndRedaction(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "policy"):
            record.policy = "-"
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def setup(verbose: bool = False, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json_lines:
        from pythonjsonlogger.json import JsonFormatter  # only where JSON lines are asked for

        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(policy)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s [%(policy)s] %(name)s: %(message)s"
        )
    handler.setFormatter(formatter)
    handler.addFilter(_PolicyAndRedaction())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:  # the libraries' own debug chatter is not ours to show
        for noisy in ("kombu", "celery", "urllib3", "docker", "redis", "amqp"):
            logging.getLogger(noisy).setLevel(logging.INFO)


def for_policy(logger: logging.Logger, policy: str) -> logging.LoggerAdapter[Any]:
    return logging.LoggerAdapter(logger, {"policy": policy})


_events = logging.getLogger("supervisor.events")


def log_event(ev: Event) -> None:
    """The log sink: one line per event, led by the event's name."""
    _events.log(ev.level, "%s: %s", ev.kind.value, text(ev), extra={"policy": ev.policy or "-"})
