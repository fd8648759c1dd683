from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.audit import AuditEvent, AuditLog, read_audit
from supervisor.errors import StateError
from supervisor.governor import GovernorState
from supervisor.state_store import StateStore


@given(
    st.one_of(st.none(), st.floats(0, 2e9)),
    st.integers(0, 50),
    st.lists(st.floats(0, 2e9), max_size=10),
    st.booleans(),
)
def test_state_round_trips(last: float | None, streak: int, recent: list[float], esc: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = StateStore(Path(d))
        state = GovernorState(last, streak, tuple(recent), esc)
        store.save("w", state)
        assert store.load("w") == state


def test_missing_state_is_an_empty_history_and_reading_creates_nothing(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load("nobody") == GovernorState()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "streak": 1}',
        '{"format": 1, "last_restart": 1, "streak": -1, "recent": [], "escalated": false}',
    ],
)
def test_unusable_state_names_the_file_and_can_be_moved_aside(tmp_path: Path, text: str) -> None:
    store = StateStore(tmp_path)
    store.directory.mkdir(parents=True)
    store.path("w").write_text(text)
    with pytest.raises(StateError, match=r"state/w\.json"):
        store.load("w")
    aside = store.discard("w", "unusable-1")
    assert aside.read_text() == text and not store.path("w").exists()


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for i in range(5):
        store.save("w", GovernorState(float(i), i, (float(i),), False))
    assert sorted(p.name for p in store.directory.iterdir()) == ["w.json"]


def test_audit_appends_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    log.record(AuditEvent.START, dry_run=True, ignored=None)
    log.record(AuditEvent.RESTART, "w", outcome="done", depths=[[1.0, 120]])
    # flushed per record: readable while the log is open
    records = read_audit(path)
    assert [r["event"] for r in records] == ["start", "restart"]
    assert records[0]["dry_run"] is True and "ignored" not in records[0]
    assert records[1]["policy"] == "w" and records[1]["depths"] == [[1.0, 120]]
    assert records[1]["time"].endswith("Z")
    log.close()
    AuditLog(path).record(AuditEvent.STOP)  # reopening appends
    assert len(path.read_text().splitlines()) == 3
    assert all(json.loads(line) for line in path.read_text().splitlines())
