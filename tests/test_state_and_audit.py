from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

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
from supervisor.errors import StateError, StateRefusedError
from supervisor.runtime.state_store import FORMAT, StateStore, Stored
from supervisor.sinks.audit import AuditLog, read_audit
from tests.helpers import cli, no_docker, policy_dict
from tests.inprocess import to_toml


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
        '{"no": "format"}',
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
    with pytest.raises(StateError, match=r"container%3Aw\.json") as raised:
        store.load("container:w", "w")
    assert not isinstance(raised.value, StateRefusedError)  # it does not parse: moved aside
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


# -- a file this version must leave as it is ---------------------------------------------------

# One format past this version's (FORMAT may be raised on another branch: this follows it).
NEWER = (
    f'{{"format": {FORMAT + 1}, "policy": "w", "target": "container:w", "last_restart": 5.0, '
    '"streak": 1, "recent": [5.0], "escalated": false, "intent": {"t": 5.0, "trigger": '
    '"automatic", "reason": "stuck"}, "clock": {"frame": "new"}}'
)


def write_state(tmp: Path, text: str, target: str = "container:w") -> Path:
    path = StateStore(tmp).path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (NEWER, f"format {FORMAT + 1}, written by a newer supervisor"),
        ('{"format": 99}', "format 99, written by a newer supervisor"),
        ('{"format": "3"}', "unknown format '3'"),
        ('{"format": 0, "streak": 1}', "unknown format 0"),
        ('{"format": null}', "unknown format None"),
    ],
)
def test_a_newer_or_unknown_format_is_refused_and_left_in_place(
    tmp_path: Path, text: str, said: str
) -> None:
    path = write_state(tmp_path, text)
    with pytest.raises(StateRefusedError) as raised:
        StateStore(tmp_path).load("container:w", "w")
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and said in message
    assert "run the version that wrote it, or move the file aside" in message
    assert path.read_text() == text and [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EIO])
def test_a_read_error_is_refused_not_taken_for_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    store = StateStore(tmp_path)
    store.save("container:w", "w", tracker.new(GovernorState(5.0, 1, (5.0,), False)))
    path = store.path("container:w")
    real = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self == path:
            raise OSError(code, os.strerror(code), str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(StateRefusedError, match=os.strerror(code)) as raised:
        StateStore(tmp_path).load("container:w", "w")
    assert str(raised.value).startswith(f"{path}: cannot read the state file")
    assert "move it aside to start this target afresh" in str(raised.value)
    monkeypatch.undo()
    assert StateStore(tmp_path).load("container:w", "w") is not None  # readable again: all kept


def _run(tmp: Path, state: Path) -> subprocess.CompletedProcess[str]:
    policy = tmp / "w.toml"
    policy.write_text(to_toml(policy_dict(name="w", target={"container": "w"})))
    return cli("run", "--state-dir", str(state), str(policy), env=no_docker(tmp))


@pytest.mark.parametrize("kind", ["newer", "unreadable"])
def test_run_refuses_to_start_on_a_file_it_must_not_touch(tmp_path: Path, kind: str) -> None:
    """exit 2, the file and what to do named, nothing moved aside, and nothing started (the
    audit holds the refusal only)."""
    state = tmp_path / "state"
    path = StateStore(state).path("container:w")
    if kind == "newer":
        write_state(state, NEWER)
    else:  # a real read error as root too: a directory where the file should be (EISDIR)
        path.mkdir(parents=True)
    before = sorted(p.name for p in path.parent.iterdir())
    out = _run(tmp_path, state)
    assert out.returncode == 2, out.stderr
    assert f"supervisor: {path}: " in out.stderr and "nothing started" in out.stderr
    assert "move" in out.stderr and "aside" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in path.parent.iterdir()) == before
    if kind == "newer":
        assert path.read_text() == NEWER
    assert [r["event"] for r in read_audit(state / "audit.jsonl")] == ["start_refused"]


def test_the_daemon_moves_aside_and_audits_a_file_that_does_not_parse(tmp_path: Path) -> None:
    from tests.inprocess import Harness

    path = write_state(tmp_path / "state", "{not json")
    h = Harness(tmp_path)
    d = h.start()
    try:
        assert sorted(d.supervised) == ["w"]
        [discarded] = [
            r for r in read_audit(tmp_path / "state" / "audit.jsonl")
            if r["event"] == "state_discarded"
        ]  # fmt: skip
        assert Path(discarded["kept_as"]).read_text() == "{not json"
        assert str(path) in discarded["reason"]
    finally:
        h.stop()


def test_a_reload_meeting_a_newer_state_file_is_refused(tmp_path: Path) -> None:
    from supervisor.runtime import control
    from tests.inprocess import Harness

    h = Harness(tmp_path)
    d = h.start()
    try:
        newer = write_state(tmp_path / "state", NEWER.replace("container:w", "container:v"),
                            target="container:v")  # fmt: skip
        other = policy_dict(name="v", target={"container": "v"})
        (tmp_path / "policies" / "v.toml").write_text(to_toml(other))
        control.reload(d)
        assert sorted(d.supervised) == ["w"]  # nothing changed
        records = read_audit(tmp_path / "state" / "audit.jsonl")
        [refused] = [r for r in records if r["event"] == "reload_refused"]
        assert str(newer) in refused["problems"][0] and "newer supervisor" in refused["problems"][0]
        assert not [r for r in records if r["event"] in ("state_discarded", "reloaded")]
        assert newer.read_text() == NEWER.replace("container:w", "container:v")
    finally:
        h.stop()


@pytest.fixture
def unwritable(tmp_path: Path) -> Any:
    """A state directory nobody may write, root included: the immutable attribute (chattr +i;
    root ignores mode bits), or mode 0555 for another user."""
    folder = tmp_path / "ro-state"
    folder.mkdir()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i is not possible here: {made.stderr!r}")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("where", ["read-only", "under-a-file"])
def test_an_unwritable_state_directory_is_said_with_exit_2(
    tmp_path: Path, unwritable: Path, where: str
) -> None:
    if where == "read-only":
        state = unwritable
        with pytest.raises(OSError):  # what the daemon met: not even root writes there
            (state / "probe").write_text("x")
    else:
        (tmp_path / "a-file").write_text("")
        state = tmp_path / "a-file" / "state"
    out = _run(tmp_path, state)
    assert out.returncode == 2, out.stderr
    assert f"supervisor: state directory {state} cannot be written" in out.stderr, out.stderr
    assert "nothing started" in out.stderr and "Traceback" not in out.stderr


def test_a_dry_run_leaves_a_live_file_that_does_not_parse_as_it_is(tmp_path: Path) -> None:
    """A dry run starts from the live file: one that does not parse is not its to move."""
    from supervisor.runtime.state_store import StateStore

    live = StateStore(tmp_path).path("container:w")
    live.parent.mkdir(parents=True)
    live.write_text("{not json")
    dry = StateStore(tmp_path, dry_run=True)
    assert dry.discard("container:w", "w", "unusable-1") == live and live.exists()
    (live.parent / "container%3Aw.dry-run.json").write_text("{not json")
    moved = dry.discard("container:w", "w", "unusable-2")
    assert moved.name == "container%3Aw.dry-run.json.unusable-2" and live.exists()
