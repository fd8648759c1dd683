"""The notification sink: webhook messages for the events a person should hear about.

Sending happens in a thread of its own, bounded in time and retried a little; a slow or failing
webhook is logged and never delays a restart. Webhook URLs carry secrets (Slack and Discord put
the token in the path), so only their scheme and host are ever logged.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from supervisor.core.events import Event
from supervisor.errors import SupervisorError
from supervisor.policy import Notify, Policy, expand_env

log = logging.getLogger("supervisor.notify")

URL_ENV = "SUPERVISOR_WEBHOOK_URL"
FORMAT_ENV = "SUPERVISOR_WEBHOOK_FORMAT"


_DETAILS = ("reason", "trigger", "outcome", "containers", "error", "depth")


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


def settings_for(policy: Policy) -> Notify | None:
    """The policy's [notify], or else the one from the environment, or None."""
    if policy.notify is not None:
        return policy.notify
    url = os.environ.get(URL_ENV)
    if not url:
        return None
    return Notify.model_validate(
        {"url": expand_env(url), "format": os.environ.get(FORMAT_ENV, "json")}
    )


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/…"


def payload(fmt: str, notice: Notice) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": notice.text}
    if fmt == "discord":
        return {"content": notice.text[:2000]}
    if fmt == "teams":
        return {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": f"{notice.policy}: {notice.event}",
            "themeColor": "D70000" if notice.event in ("escalate", "restart_failed") else "0076D7",
            "text": notice.text,
        }
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event": notice.event,
        "policy": notice.policy,
        "target": notice.target,
        "dry_run": notice.dry_run,
        "text": notice.text,
        **notice.details,
    }


def send(settings: Notify, notice: Notice) -> None:
    """Deliver one notice now; NotifyError after the retries are spent."""
    body = payload(settings.format, notice)
    retrying = Retrying(
        retry=retry_if_exception_type(requests.RequestException),
        stop=stop_after_attempt(settings.retries + 1),
        wait=wait_exponential(multiplier=0.5, max=4.0),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                response = requests.post(settings.url, json=body, timeout=settings.timeout)
                response.raise_for_status()
    except requests.RequestException as exc:
        status = getattr(exc.response, "status_code", None) if hasattr(exc, "response") else None
        reason = f"HTTP {status}" if status else type(exc).__name__
        raise NotifyError(
            f"webhook {where(settings.url)} failed after {settings.retries + 1} attempt(s): "
            f"{reason}"
        ) from None


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
        details = {k: v for k, v in ev.fields.items() if k in _DETAILS}
        self.submit(
            settings_for(policy),
            Notice(
                ev.kind.value,
                policy.name,
                policy.target.describe(),
                prefix + ev.text,
                dry_run,
                details,
            ),
        )

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

    def close(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            started = self._started
        if started:
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            self._thread.join(timeout)
