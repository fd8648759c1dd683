"""Metrics, notifications, status and logs: units, then a real daemon, Redis and HTTP server."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.parts import SupervisorProcess, Webhook, write_policy
from harness.services import free_port
from supervisor import deployment, status
from supervisor.cli import main
from supervisor.core import tracker
from supervisor.core.events import NOTIFIABLE
from supervisor.core.governor import GovernorState
from supervisor.errors import PolicyError
from supervisor.policy import from_webhook, parse_policy
from supervisor.runtime.state_store import StateStore
from supervisor.sinks import log as logs
from supervisor.sinks import notify as notifier
from supervisor.sinks import notify_urls
from supervisor.sinks.notify import Notice, settings_for
from supervisor.sinks.notify_urls import where
from supervisor.sinks.render import text
from tests.event_examples import examples
from tests.helpers import make_policy, no_docker, policy_dict

# -- units -------------------------------------------------------------------------------------


def test_sparkline_scales_between_min_and_max() -> None:
    assert status.sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert status.sparkline([5, 5, 5]) == "▁▁▁"
    assert status.sparkline([1, None, 8]) == "▁·█"
    assert status.sparkline([]) == ""


NOTICE = Notice("restart", "w", "iti-dify-worker", "[w] restarted", details={"containers": "ab"})


def test_a_notice_is_flat_fields_and_an_apprise_type() -> None:
    fields = NOTICE.fields()
    assert fields["event"] == "restart" and fields["policy"] == "w"
    assert fields["target"] == "iti-dify-worker" and fields["dry_run"] == "false"
    assert fields["containers"] == "ab"
    listed = Notice("r", "w", "c", "x", details={"containers": ["a", "b"]})
    assert listed.fields()["containers"] == "a,b"
    assert NOTICE.kind == "warning"
    assert Notice("escalate", "w", "c", "x").kind == "failure"
    assert Notice("recovery", "w", "c", "x").kind == "success"
    assert Notice("test", "w", "c", "x").kind == "info"


def test_fields_go_into_the_url_only_for_structured_receivers() -> None:
    url = notify_urls.with_fields("json://h/x?a=1", {"event": "restart", "reason": "5 > 3 & up"})
    assert url == "json://h/x?a=1&:event=restart&:reason=5%20%3E%203%20%26%20up"
    assert notify_urls.with_fields("ntfy://ntfy.sh/topic", {"event": "restart"}) == (
        "ntfy://ntfy.sh/topic"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/secret", "slack://T...0/…"),
        ("jsons://user:hunter2@h.example/p/secret", "jsons://h.example/…"),
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/4567", "tgram://1...w/…"),
        ("ntfy://ntfy.sh/secret-topic", "ntfy://ntfy.sh/…"),
        ("nonsense://x/secret", "nonsense://x/…"),
    ],
)
def test_notification_urls_are_shown_without_their_secrets(url: str, shown: str) -> None:
    assert where(url) == shown


def test_webhook_settings_from_before_apprise_become_apprise_urls() -> None:
    assert from_webhook("https://h.example/hook?k=v", "json") == ("jsons://h.example/hook?k=v")
    assert from_webhook("http://h:8080/hook", "json") == "json://h:8080/hook"
    slack = "https://hooks.slack.com/services/T0/B0/secret"
    assert from_webhook(slack, "slack") == slack  # Apprise knows Slack's own URLs


def test_notify_section_is_validated_and_takes_env_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(PolicyError, match=r"notify: url must be an http"):
        parse_policy(policy_dict(notify={"url": "ftp://x"}), "p.toml")
    with pytest.raises(PolicyError, match=r"notify: format must be .*got 'pager'"):
        parse_policy(policy_dict(notify={"url": "http://x", "format": "pager"}), "p.toml")
    bogus = tmp_path / "p.toml"
    bogus.write_text('name = "p"\n[broker]\nurl = "redis://h/0"\n[target]\ncontainer = "w"\n'
                     '[notify]\nurls = ["bogus://h/secret"]\n')  # fmt: skip
    with pytest.raises(PolicyError, match=r"p.toml: notify\.urls\.0: Apprise does not recognise"):
        deployment.load([bogus])  # the deployment's check: the model knows no plugin
    with pytest.raises(PolicyError, match=r"notify\.urls: give at least one"):
        parse_policy(policy_dict(notify={"urls": []}), "p.toml")
    monkeypatch.setenv("HOOK_TOKEN", "abc")
    policy = parse_policy(
        policy_dict(notify={"urls": ["ntfy://ntfy.sh/${HOOK_TOKEN}"], "url": "https://h/x"}),
        "p.toml",
    )
    assert policy.notify is not None
    assert policy.notify.urls == ["ntfy://ntfy.sh/abc", "jsons://h/x"]
    assert policy.notify.events == [k.value for k in NOTIFIABLE]
    assert {"restart", "restart_failed", "escalate", "recovery"} <= set(policy.notify.events)
    with pytest.raises(PolicyError, match=r"notify\.events: .*unknown event 'reboot'"):
        parse_policy(policy_dict(notify={"urls": ["json://x"], "events": ["reboot"]}), "p.toml")


def test_environment_urls_apply_when_the_policy_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (notifier.URLS_ENV, notifier.URL_ENV, notifier.FORMAT_ENV):
        monkeypatch.delenv(name, raising=False)
    assert settings_for(make_policy()) is None
    monkeypatch.setenv(notifier.URLS_ENV, "ntfy://ntfy.sh/a, gotify://g.example/token")
    settings = settings_for(make_policy())
    assert settings is not None
    assert settings.urls == ["ntfy://ntfy.sh/a", "gotify://g.example/token"]
    monkeypatch.delenv(notifier.URLS_ENV)
    monkeypatch.setenv(notifier.URL_ENV, "https://hooks.slack.com/services/T0/B0/x")
    monkeypatch.setenv(notifier.FORMAT_ENV, "slack")
    settings = settings_for(make_policy())
    assert settings is not None and settings.urls == ["https://hooks.slack.com/services/T0/B0/x"]


def test_log_lines_carry_the_policy_and_hide_passwords(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.setup(json_lines=True)
    logs.for_policy(logging.getLogger("supervisor.t"), "dify-worker").warning(
        "cannot reach %s", "redis://user:hunter2@iti-redis:6379/0"
    )
    logging.getLogger("supervisor.t").info("no policy here")
    first, second = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert first["policy"] == "dify-worker" and first["level"] == "WARNING"
    assert first["message"] == "cannot reach redis://user:***@iti-redis:6379/0"
    assert second["policy"] == "-"
    logs.setup()
    logs.for_policy(logging.getLogger("supervisor.t"), "w").error("x rediss://:pw@h/0")
    line = capsys.readouterr().err
    assert "[w] supervisor.t: x rediss://:***@h/0" in line


# -- a real HTTP webhook -----------------------------------------------------------------------


def policy_with_hook(path: Path, url: str, *hooks: str, **extra: Any) -> Path:
    write_policy(path, "w", url, "iti-dify-worker", **extra)
    with path.open("a") as f:
        f.write(f"[notify]\nurls = {json.dumps(hooks)}\ntimeout = 1\nretries = 1\n")
    return path


@pytest.mark.integration
def test_notify_test_delivers_and_reports_failures(
    webhook: Webhook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = policy_with_hook(tmp_path / "p.toml", "redis://127.0.0.1:1/0", webhook.json_url)
    assert main(["notify-test", str(path)]) == 0
    [notice] = webhook.received
    assert notice["message"] == "[w] test notification from iti-worker-supervisor"
    assert notice["title"] == "iti-worker-supervisor: test (w)" and notice["event"] == "test"
    out = capsys.readouterr().out
    port = webhook.server.server_port
    assert "secret-token" not in out and f"json://127.0.0.1:{port}/…" in out
    webhook.status = 500
    assert main(["notify-test", str(path)]) == 1
    err = capsys.readouterr().err
    assert "failed after 2 attempt(s)" in err and "500" in err and "secret-token" not in err
    assert len(webhook.received) == 3
    bare = tmp_path / "bare.toml"
    write_policy(bare, "w", "redis://127.0.0.1:1/0", "c")
    assert main(["notify-test", str(bare)]) == 2


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.mark.integration
def test_daemon_metrics_status_and_a_failed_restart_notice(
    redis_url: str, webhook: Webhook, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.rpush("celery", *range(7))
    client.rpush("mail", *range(2))
    path = policy_with_hook(tmp_path / "w.toml", redis_url, webhook.json_url)
    text = path.read_text().replace('queues = ["celery"]', 'queues = ["celery", "mail"]')
    path.write_text(text)
    port = free_port()
    sup = SupervisorProcess(
        [path],
        tmp_path / "state",
        extra_env={
            **no_docker(tmp_path),
            "SUPERVISOR_METRICS_PORT": str(port),
            "SUPERVISOR_METRICS_ADDRESS": "127.0.0.1",
        },
    )
    try:
        sup.wait_started()
        metrics = sup.wait_for(
            lambda: scrape(port).get('iti_supervisor_samples_total{policy="w"}') and scrape(port),
            20,
            "metrics",
        )
        assert metrics['iti_supervisor_depth{policy="w"}'] == 9
        assert metrics['iti_supervisor_queue_depth{policy="w",queue="celery"}'] == 7
        assert metrics['iti_supervisor_queue_depth{policy="w",queue="mail"}'] == 2
        assert metrics['iti_supervisor_redis_up{policy="w"}'] == 1
        assert metrics['iti_supervisor_stuck{policy="w"}'] == 0
        assert metrics['iti_supervisor_restart_allowed_in_seconds{policy="w"}'] == 0
        assert metrics["iti_supervisor_process_resident_memory_bytes"] > 0
        assert not any(k.endswith("_created") for k in metrics)

        sup.signal(signal.SIGUSR1)  # Docker is unreachable: the restart fails
        sup.wait_for(lambda: webhook.received, 60, "a notification")
        [notice] = webhook.received
        assert notice["event"] == "restart_failed" and notice["policy"] == "w"
        assert notice["type"] == "failure"
        assert "FAILED" in notice["message"] and "unreachable" in notice["message"]
        # The gauges are set at the next tick after the restart (the cooldown counts down).
        allowed_in = 'iti_supervisor_restart_allowed_in_seconds{policy="w"}'
        metrics = sup.wait_for(
            lambda: (m := scrape(port)).get(allowed_in, 0) > 0 and m, 10, "the cooldown"
        )
        key = 'iti_supervisor_restarts_total{outcome="failed",policy="w",trigger="manual"}'
        assert metrics[key] == 1
        assert metrics["iti_supervisor_docker_up"] == 0
        sup.wait_for(  # the heartbeat (at most one a second) has the samples since the restart
            lambda: (sup.heartbeat().get("policies") or {}).get("w", {}).get("trend"),
            10,
            "the trend in the heartbeat",
        )

        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor",
                "status",
                "--state-dir",
                str(tmp_path / "state"),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        live = json.loads(out.stdout)
        assert live["supervisor"]["running"] is True
        [w] = live["policies"]
        assert w["sample"]["depth"] == 9 and w["sample"]["queues"] == {"celery": 7, "mail": 2}
        assert w["trend"] and w["verdict"] == "not_stuck"
        assert len(w["restarts_in_budget_window"]) == 1 and w["next_restart_in_seconds"] > 0
        assert w["audit"][-1]["event"] == "restart_failed"
    finally:
        sup.stop()

    # The same view when the daemon is not running: live Redis, state file and audit only.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "status",
            "w",
            "--policies",
            str(path),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "supervisor: not running here" in out.stdout
    assert "depth now    9  (celery 7, mail 2; unacked 0)" in out.stdout
    assert "restarts     1 of 3 allowed" in out.stdout
    assert "restart_failed" in out.stdout


@pytest.mark.integration
def test_a_hung_webhook_never_delays_a_restart_decision(
    redis_url: str, webhook: Webhook, tmp_path: Path
) -> None:
    webhook.release.clear()  # the webhook accepts, then hangs
    path = policy_with_hook(tmp_path / "w.toml", redis_url, webhook.json_url, webhook.form_url)
    sup = SupervisorProcess([path], tmp_path / "state", extra_env=no_docker(tmp_path))
    try:
        sup.wait_started()
        sup.signal(signal.SIGUSR1)
        sup.wait_for(lambda: sup.events("restart_failed"), 60, "first restart")
        time.sleep(1)  # its notice is now stuck in the hung webhook
        sup.signal(signal.SIGUSR1)
        records = sup.wait_for(
            lambda: len(sup.events("restart_failed")) == 2 and sup.events("restart_failed"),
            60,
            "second restart while the webhook hangs",
        )
        assert len(records) == 2
        assert webhook.received == []
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", "health", "--state-dir", str(tmp_path / "state")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout
    finally:
        webhook.release.set()
        assert sup.stop() == 0


@pytest.mark.integration
def test_status_names_an_unknown_policy(redis_url: str, tmp_path: Path) -> None:
    path = write_policy(tmp_path / "w.toml", "w", redis_url, "c")
    history = GovernorState(time.time(), 1, (time.time(),), False)
    StateStore(tmp_path / "state").save("container:c", "w", tracker.new(history))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "supervisor",
            "status",
            "nope",
            "--policies",
            str(path),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "no policy named nope" in out.stderr


def test_notices_submitted_from_many_threads_at_once_start_one_sender(webhook: Webhook) -> None:
    settings = parse_policy(policy_dict(notify={"urls": [webhook.json_url]}), "p.toml").notify
    sender = notifier.Notifier()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def submit(i: int) -> None:
        try:
            start.wait()
            sender.submit(settings, notifier.Notice("restart", "w", "c", f"n{i}"))
        except BaseException as exc:  # noqa: BLE001 - the test reports any
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: make the race likely
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    sender.close()
    assert errors == []
    assert sorted(n["message"] for n in webhook.received) == sorted(f"n{i}" for i in range(8))


def test_every_notifiable_event_reaches_json_and_form_receivers(webhook: Webhook) -> None:
    policy = make_policy(notify={"urls": [webhook.json_url, webhook.form_url]})
    sender = notifier.Notifier()
    every = examples(policy.name)
    for kind in NOTIFIABLE:
        sender.on_event(every[kind], policy, dry_run=kind.value == "dry_run_restart")
    sender.close()
    assert len(webhook.received) == 2 * len(NOTIFIABLE)
    for kind in NOTIFIABLE:
        both = [n for n in webhook.received if n["event"] == kind.value]
        assert len(both) == 2, kind  # one JSON, one form
        for notice in both:
            assert notice["policy"] == policy.name
            assert notice["reason"] == every[kind].facts()["reason"]
            assert notice["message"].endswith(text(every[kind]))
            assert notice["dry_run"] == ("true" if kind.value == "dry_run_restart" else "false")


def test_apprise_loads_only_the_plugins_of_the_schemes_used() -> None:
    """All of Apprise's ~190 plugins cost the daemon about 18 MB; a policy's URLs need one or
    two. (A process of its own: Apprise's plugin manager is one per process.)"""
    code = (
        "from supervisor.sinks import notify_urls\n"
        "from apprise.manager_plugins import NotificationManager\n"
        "notify_urls.check('json://127.0.0.1:1/x'); notify_urls.check('ntfy://topic')\n"
        "print(sorted(NotificationManager()._module_map))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "['custom_json', 'ntfy']", out.stdout + out.stderr
