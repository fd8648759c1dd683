from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.clock import Frame, Here
from supervisor.core import events as ev
from supervisor.core import tracker
from supervisor.core.engine import Trigger
from supervisor.core.events import Why
from supervisor.core.governor import GovernorState
from supervisor.core.tracker import Intent
from supervisor.errors import StateError
from supervisor.runtime.state_store import StateStore, Stored
from supervisor.sinks.audit import AuditLog, read_audit


@given(
    st.one_of(st.none(), st.floats(0, 2e9)),
    st.integers(0, 50),
    st.lists(st.floats(0, 2e9), max_size=10),
    st.booleans(),
    st.one_of(
        st.none(),
        st.builds(Intent, st.floats(0, 2e9), st.sampled_from(Trigger), st.text(max_size=30)),
    ),
)
def test_state_round_trips(
    last: float | None, streak: int, recent: list[float], esc: bool, intent: Intent | None
) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = StateStore(Path(d), lambda: Here(Frame("boot", 0.0), 3e9, 3e9))
        history = GovernorState(last, streak, tuple(recent), esc)
        store.save("container:w", "w", tracker.new(history, intent))
        assert store.load("container:w", "w") == Stored("container:w", history, intent)


def test_missing_state_is_none_and_reading_creates_nothing(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load("container:nobody", "nobody") is None
    assert list(tmp_path.iterdir()) == []


def test_a_format_1_file_keeps_its_history_for_the_current_target(tmp_path: Path) -> None:
    store = StateStore(tmp_path, lambda: Here(Frame("boot", 0.0), 100.0, 100.0))  # wall = stepless
    store.directory.mkdir(parents=True)
    store.legacy_path("w").write_text(
        '{"format": 1, "last_restart": 5.0, "streak": 1, "recent": [5.0], "escalated": false}'
    )
    assert store.load("container:w", "w") == Stored(None, GovernorState(5.0, 1, (5.0,), False))
    assert store.path("container:w").exists() and not store.legacy_path("w").exists()


def test_the_history_belongs_to_the_target_not_to_the_policys_name(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    history = GovernorState(5.0, 2, (4.0, 5.0), False)
    store.save("compose:docker/worker", "dify", tracker.new(history))
    renamed = store.load("compose:docker/worker", "dify-worker")  # the policy was renamed
    assert renamed is not None and renamed.history == history
    assert store.load("container:other", "dify") is None  # another target: not its history
    assert store.path("compose:docker/worker").name == "compose%3Adocker%2Fworker.json"


def test_a_policy_named_file_of_another_target_is_left_alone(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.legacy_path("w").write_text(
        '{"format": 2, "target": "container:x", "last_restart": 5.0, "streak": 1, '
        '"recent": [5.0], "escalated": false, "intent": null}'
    )
    assert store.load("container:w", "w") is None and store.legacy_path("w").exists()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "streak": 1}',
        '{"format": 1, "last_restart": 1, "streak": -1, "recent": [], "escalated": false}',
        '{"format": 2, "target": "container:w", "last_restart": null, "streak": 0, '
        '"recent": [], "escalated": false, "intent": {"t": 1, "trigger": "sideways"}}',
    ],
)
def test_unusable_state_names_the_file_and_can_be_moved_aside(tmp_path: Path, text: str) -> None:
    store = StateStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path("container:w").parent.mkdir(parents=True)
    store.path("container:w").write_text(text)
    with pytest.raises(StateError, match=r"container%3Aw\.json"):
        store.load("container:w", "w")
    aside = store.discard("container:w", "w", "unusable-1")
    assert aside.read_text() == text and not store.path("container:w").exists()


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(5):
        history = GovernorState(float(i), i, (float(i),), False)
        store.save("container:w", "w", tracker.new(history))
    assert [p.name for p in store.path("container:w").parent.iterdir()] == ["container%3Aw.json"]


def test_audit_appends_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log(ev.Started(dry_run=True, policies=("w",), pid=7))
    why = Why(reason="stuck", trigger="automatic", decided_at=1.0, depths=((1.0, 120),))
    log(ev.Restarted(policy="w", target="w", why=why, outcome="done", method="cold"))
    # flushed per record: readable while the log is open
    records = read_audit(path)
    assert [r["event"] for r in records] == ["start", "restart"]
    assert records[0]["dry_run"] is True and "error" not in records[1]  # None: left out
    assert records[1]["policy"] == "w" and records[1]["depths"] == [[1.0, 120]]
    assert records[1]["reason"] == "stuck" and records[1]["trigger"] == "automatic"
    assert records[1]["time"].endswith("Z") and records[1]["text"].startswith("restarted ")
    log.close()
    AuditLog(path)(ev.Stopped(pid=7))  # reopening appends
    assert len(path.read_text().splitlines()) == 3
    assert all(json.loads(line) for line in path.read_text().splitlines())
