"""The notification sink: notices through Apprise (ntfy, Gotify, Telegram, Slack, Discord,
Teams, e-mail, PagerDuty, JSON and form webhooks...) for the events a person should hear about.

Sending happens in a thread of its own, bounded in time and retried a little; a slow or failing
service is logged and never delays a restart. URLs carry secrets, so they are only ever shown
by `notify_urls.where`. Apprise is imported by the sending thread, on the first notice: without
notifications it is never loaded.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_exponential

from supervisor.broker_url import redact
from supervisor.core.events import Event
from supervisor.errors import SupervisorError
from supervisor.policy import Notify, Policy
from supervisor.sinks import notify_urls
from supervisor.sinks.notify_urls import where, with_fields
from supervisor.sinks.render import text

log = logging.getLogger("supervisor.notify")

URLS_ENV = "SUPERVISOR_NOTIFY_URLS"  # Apprise URLs, separated by spaces or commas
URL_ENV = "SUPERVISOR_WEBHOOK_URL"  # before Apprise: one webhook, in SUPERVISOR_WEBHOOK_FORMAT
FORMAT_ENV = "SUPERVISOR_WEBHOOK_FORMAT"

_DETAILS = ("reason", "trigger", "outcome", "containers", "error", "depth")
# What kind of news each event is, for the services that show it (colour, icon, priority).
_FAILURE = frozenset(
    {"restart_failed", "escalate", "internal_error", "start_error_begin", "quarantined"}
)
_WARNING = frozenset({"restart", "dry_run_restart", "restart_resumed"})
_SUCCESS = frozenset({"recovery", "restart_completed"})


class NotifyError(SupervisorError):
    """A notification could not be delivered."""


@dataclass(frozen=True)
class Notice:
    event: str  # an event's name (core/events.py), or "test"
    policy: str
    target: str
    text: str
    dry_run: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"iti-worker-supervisor: {self.event} ({self.policy})"

    @property
    def kind(self) -> str:
        """Apprise's notify type."""
        if self.event in _FAILURE:
            return "failure"
        if self.event in _WARNING:
            return "warning"
        return "success" if self.event in _SUCCESS else "info"

    def fields(self) -> dict[str, str]:
        """The notice as flat fields, for receivers that take structured payloads."""
        out = {
            "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "event": self.event,
            "policy": self.policy,
            "target": self.target,
            "dry_run": "true" if self.dry_run else "false",
        }
        for key, value in self.details.items():
            out[key] = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        return out


def settings_for(policy: Policy) -> Notify | None:
    """The policy's [notify], or else the one from the environment, or None."""
    if policy.notify is not None:
        return policy.notify
    return _from_environment(
        os.environ.get(URLS_ENV, ""), os.environ.get(URL_ENV), os.environ.get(FORMAT_ENV, "json")
    )


@functools.lru_cache(maxsize=4)
def _from_environment(urls_text: str, legacy: str | None, fmt: str) -> Notify | None:
    # Cached: checking the URLs instantiates Apprise's plugins, and this runs for every event.
    urls = [u for u in re.split(r"[\s,]+", urls_text) if u]
    if legacy:
        return Notify.model_validate({"urls": urls, "url": legacy, "format": fmt})
    return Notify.model_validate({"urls": urls}) if urls else None


def send(settings: Notify, notice: Notice) -> None:
    """Deliver one notice to every URL now; NotifyError naming those that failed after their
    retries (the others have it)."""
    failures = []
    for url in settings.urls:
        try:
            _send_one(url, settings, notice)
        except NotifyError as exc:
            failures.append(str(exc))
    if failures:
        raise NotifyError("; ".join(failures))


def _send_one(url: str, settings: Notify, notice: Notice) -> None:
    import apprise

    plugin = notify_urls.plugin(with_fields(url, notice.fields()))
    if plugin is None:  # the policy check accepted it: only a field could make it unreadable
        plugin = notify_urls.plugin(url)
    plugin.socket_connect_timeout = settings.timeout
    plugin.socket_read_timeout = settings.timeout
    attempts = settings.retries + 1
    retrying = Retrying(
        retry=retry_if_result(lambda ok: not ok),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.5, max=4.0),
        retry_error_callback=lambda _: False,
    )
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:  # type: ignore[no-untyped-call]
        ok = retrying(
            plugin.notify,
            body=notice.text,
            title=notice.title,
            notify_type=apprise.NotifyType(notice.kind),
        )
    if not ok:
        lines = [x for x in captured.getvalue().splitlines() if x.strip()]
        reason = lines[-1].strip() if lines else "no reason given"
        raise NotifyError(f"{where(url)} failed after {attempts} attempt(s): {reason}")


class Notifier:
    """Queues notices and sends them from a background thread, started on the first notice."""

    def __init__(self, max_pending: int = 100) -> None:
        self._queue: queue.Queue[tuple[Notify, Notice] | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()  # submit may come from several threads

    def on_event(self, ev: Event, policy: Policy | None, dry_run: bool) -> None:
        """The event sink: a notice for each event the policy's [notify] asks for."""
        if policy is None:
            return
        prefix = f"[{policy.name}] " + ("DRY-RUN " if dry_run else "")
        details = {
            k: redact(v) if isinstance(v, str) else v
            for k, v in ev.facts().items()
            if k in _DETAILS
        }
        target = policy.target.describe()
        said = redact(prefix + text(ev))
        notice = Notice(ev.kind.value, policy.name, target, said, dry_run, details)
        self.submit(settings_for(policy), notice)

    def submit(self, settings: Notify | None, notice: Notice) -> None:
        if settings is None:
            return
        if notice.event not in settings.events:
            return
        with self._start_lock:
            if not self._started:
                self._thread.start()
                self._started = True
        try:
            self._queue.put_nowait((settings, notice))
        except queue.Full:
            log.warning(
                "notification queue full; dropped %s", notice.event, extra={"policy": notice.policy}
            )

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            settings, notice = item
            try:
                send(settings, notice)
            except NotifyError as exc:
                log.error(
                    "notification %s not delivered: %s",
                    notice.event,
                    exc,
                    extra={"policy": notice.policy},
                )
            except Exception:
                log.exception("notification %s not delivered", notice.event)

    def close(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            started = self._started
        if started:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            self._thread.join(timeout)
