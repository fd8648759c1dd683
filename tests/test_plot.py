"""Pictures of decisions: the pure data (stuck spans, markers from replay and from the audit),
then the PNGs that `replay --plot` and `report --plot` write, checked by the data drawn in them
(read back from matplotlib's artists into the PNG's text), never by pixels."""

from __future__ import annotations

import itertools
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from harness.parts import REPO, SupervisorProcess, write_policy
from supervisor.cli import main
from supervisor.picture import Mark, markers_from_audit, spans
from supervisor.plot import METADATA_KEY
from supervisor.trace import history_files
from tests.helpers import no_docker

EXAMPLES = REPO / "examples"
SHIPPED = REPO / "policies" / "dify-worker.toml"


@given(st.lists(st.booleans(), max_size=40))
def test_spans_cover_exactly_the_stuck_samples(flags: list[bool]) -> None:
    points = [(float(i * 10), f) for i, f in enumerate(flags)]
    found = spans(points)
    runs = sum(1 for i, f in enumerate(flags) if f and (i == 0 or not flags[i - 1]))
    assert len(found) == runs
    for t, stuck in points:
        # a stuck sample lies in a span; one that is not stuck at most ends one
        if stuck:
            assert any(a <= t <= b for a, b in found)
        else:
            assert not any(a <= t < b for a, b in found)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(found))


def test_markers_from_the_audit_are_the_policys_decisions_in_time_order() -> None:
    records: list[dict[str, Any]] = [
        {"event": "escalate", "policy": "w", "t": 50.5, "decided_at": 50.0, "reason": "budget"},
        {"event": "dry_run_restart", "policy": "w", "t": 20.2, "decided_at": 20.0, "reason": "r"},
        {"event": "restart", "policy": "other", "t": 30.0, "reason": "x"},
        {"event": "recovery", "policy": "w", "t": 40.0, "reason": "back"},
        {"event": "restart_failed", "policy": "w", "decided_at": 30.0, "reason": "stuck",
         "error": "403 refused"},
    ]  # fmt: skip
    marks = markers_from_audit("w", records)
    assert [(m.t, m.mark) for m in marks] == [
        (20.0, Mark.DRY_RUN_RESTART),
        (30.0, Mark.RESTART_FAILED),
        (50.0, Mark.ESCALATE),
    ]
    assert marks[1].reason == "stuck (failed: 403 refused)"


def drawn(png: Path) -> list[dict[str, Any]]:
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 800
        return list(json.loads(image.text[METADATA_KEY]))


def printed(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def flat_policy(tmp_path: Path) -> Path:
    # The shipped policy judging a flat backlog stuck, with a budget of one restart: it
    # restarts, and when the (recorded) backlog stays, escalates.
    text = SHIPPED.read_text().replace("[detect]\n", "[detect]\nrequire_growth = false\n", 1)
    path = tmp_path / "flat.toml"
    path.write_text(text.replace("max_restarts = 3", "max_restarts = 1"))
    return path


@pytest.mark.parametrize("trace", ["stuck-worker.csv", "busy-worker.csv", "flat-backlog.csv"])
def test_replay_plot_marks_exactly_the_actions_replay_prints(
    trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = flat_policy(tmp_path) if trace == "flat-backlog.csv" else SHIPPED
    png = tmp_path / "replay.png"
    assert main(["replay", str(policy), str(EXAMPLES / trace), "--plot", str(png)]) == 0
    actions = printed(capsys.readouterr().out)
    [panel] = drawn(png)
    marked = sorted(
        (m["t"], kind, m["reason"]) for kind, ms in panel["markers"].items() for m in ms
    )
    assert marked == sorted((a["t"], a["action"], a["reason"]) for a in actions)
    samples = (EXAMPLES / trace).read_text().splitlines()[1:]
    assert panel["samples"] == sum(1 for row in samples if row.split(",")[1].strip())
    for action in actions:  # every restart is decided in a period judged stuck
        if action["action"] == "restart":
            assert any(a <= action["t"] <= b for a, b in panel["stuck"]), action
    if trace == "stuck-worker.csv":
        assert [a["action"] for a in actions] == ["restart"]
    if trace == "busy-worker.csv":
        assert actions == [] and panel["markers"] == {} and panel["stuck"] == []
    if trace == "flat-backlog.csv":
        assert {a["action"] for a in actions} == {"restart", "escalate"}


def test_without_matplotlib_the_plot_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "x.png"
    code = main(["replay", str(SHIPPED), str(EXAMPLES / "stuck-worker.csv"), "--plot", str(png)])
    assert code == 2 and not png.exists()
    assert "pip install 'iti-worker-supervisor[plot]'" in capsys.readouterr().err


@pytest.mark.integration
def test_report_draws_what_a_real_daemon_recorded_and_audited(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    path = write_policy(tmp_path / "w.toml", "w", redis_url, "iti-dify-worker")
    state = tmp_path / "state"
    sup = SupervisorProcess([path], state, extra_env=no_docker(tmp_path))
    try:
        sup.wait_started()
        for _ in range(8):
            client.rpush("celery", *range(3))
            time.sleep(0.3)
        sup.signal(signal.SIGUSR1)  # Docker is unreachable: a failed (manual) restart
        [failed] = sup.wait_for(lambda: sup.events("restart_failed"), 60, "restart_failed")
        time.sleep(1)
    finally:
        assert sup.stop() == 0
    files = history_files(state, "w")
    rows = sum(len(f.read_text().splitlines()) - 1 for f in files)
    assert rows >= 5

    png = tmp_path / "report.png"
    assert main(["report", str(state), "--plot", str(png)]) == 0
    decisions = printed(capsys.readouterr().out)
    assert [(d["event"], d["t"]) for d in decisions] == [("restart_failed", failed["decided_at"])]
    [panel] = drawn(png)
    assert panel["title"] == "w" and panel["samples"] == rows
    [mark] = panel["markers"]["restart_failed"]
    assert mark["t"] == failed["decided_at"] and "unreachable" in mark["reason"]

    assert main(["report", str(state), "--policy", "nope"]) == 2
    assert "nothing recorded for nope; it holds w" in capsys.readouterr().err
