"""The stuck rule, edge by edge. Policy: interval 1 s, window 10 s, threshold 100, max_gap 3 s."""

from __future__ import annotations

from supervisor.core.detector import Diagnosis, RunState, Verdict, observe
from supervisor.policy import Policy
from supervisor.sample import Sample

from .helpers import make_policy

Row = tuple[float, int | None] | tuple[float, int | None, int | None]


def diagnose(
    rows: list[Row], policy: Policy | None = None, last_restart: float | None = None
) -> list[Diagnosis]:
    policy = policy or make_policy()
    run = RunState()
    out = []
    for row in rows:
        t, depth = row[0], row[1]
        processed = row[2] if len(row) > 2 else None  # type: ignore[misc]
        sample = (
            Sample.failed(t, "boom") if depth is None else Sample(t, depth, processed=processed)
        )
        run, diagnosis = observe(run, sample, policy.detect, last_restart)
        out.append(diagnosis)
    return out


def ramp(start: float, end: float, depth0: int, step: int = 1, every: float = 1.0) -> list[Row]:
    rows: list[Row] = []
    t, depth = start, depth0
    while t <= end + 1e-9:
        rows.append((t, depth))
        t += every
        depth += step
    return rows


def test_stuck_exactly_when_the_run_reaches_the_window() -> None:
    verdicts = [d.verdict for d in diagnose(ramp(0, 10, 101))]
    assert verdicts[:10] == [Verdict.NOT_STUCK] * 10  # t = 0 .. 9: run younger than 10 s
    assert verdicts[10] is Verdict.STUCK  # t - t(s0) == window


def test_depth_equal_to_threshold_is_not_above_it() -> None:
    rows = [(float(t), 100) for t in range(12)] + [(12.0, 101)]
    assert all(d.verdict is Verdict.NOT_STUCK for d in diagnose(rows))
    # a run that starts at exactly the threshold starts one sample later
    rows = [(0.0, 100), *ramp(1, 11, 101)]
    verdicts = [d.verdict for d in diagnose(rows)]
    assert verdicts[-2] is Verdict.NOT_STUCK and verdicts[-1] is Verdict.STUCK


def test_a_flat_queue_is_not_growing() -> None:
    rows: list[Row] = [(float(t), 150) for t in range(30)]
    assert all(d.verdict is Verdict.NOT_STUCK for d in diagnose(rows))


def test_plateaus_inside_the_run_are_allowed_but_the_end_must_be_higher() -> None:
    rows: list[Row] = [(float(t), 150) for t in range(10)] + [(10.0, 151)]
    assert diagnose(rows)[-1].verdict is Verdict.STUCK


def test_any_decrease_restarts_the_run() -> None:
    rows = [*ramp(0, 8, 101), (9.0, 108), *ramp(10, 19, 109)]  # a dip of just 1
    verdicts = [d.verdict for d in diagnose(rows)]
    assert Verdict.STUCK not in verdicts[:19]  # the run restarts at t = 9
    assert verdicts[19] is Verdict.STUCK  # t = 19 is 10 s after the dip


def test_gap_of_exactly_max_gap_keeps_the_run_and_longer_breaks_it() -> None:
    rows: list[Row] = [(0.0, 101), (3.0, 102), (6.0, 103), (9.0, 104), (10.0, 105)]
    assert diagnose(rows)[-1].verdict is Verdict.STUCK
    rows = [(0.0, 101), (3.0, 102), (6.001, 103), (9.0, 104), (10.0, 105)]
    last = diagnose(rows)[-1]
    assert last.verdict is Verdict.NOT_STUCK
    assert last.run_start is not None and last.run_start.t == 6.001


def test_failed_samples_do_not_break_a_run_only_the_gap_does() -> None:
    rows: list[Row] = [(0.0, 101), (1.0, None), (2.0, None), (3.0, 102), *ramp(4, 10, 103)]
    diagnoses = diagnose(rows)
    assert diagnoses[1].verdict is Verdict.UNKNOWN
    assert "boom" in diagnoses[1].reason
    assert diagnoses[-1].verdict is Verdict.STUCK
    rows = [(0.0, 101), (1.0, None), (2.0, None), (3.0, None), (4.0, 102), *ramp(5, 14, 103)]
    diagnoses = diagnose(rows)
    assert diagnoses[-1].verdict is Verdict.STUCK
    assert diagnoses[-1].run_start is not None and diagnoses[-1].run_start.t == 4.0


def test_nothing_is_decided_on_a_failed_sample_even_when_the_run_is_old() -> None:
    rows = [*ramp(0, 9, 101), (10.0, None)]
    assert diagnose(rows)[-1].verdict is Verdict.UNKNOWN


def test_worker_progress_breaks_the_run() -> None:
    rows: list[Row] = [(float(t), 101 + t, 7) for t in range(11)]
    assert diagnose(rows)[-1].verdict is Verdict.STUCK
    rows = [(float(t), 101 + t, 7 + (t == 10)) for t in range(11)]
    last = diagnose(rows)[-1]
    assert last.verdict is Verdict.NOT_STUCK
    assert "progressed" in last.reason


def test_progress_is_ignored_when_the_policy_says_so() -> None:
    policy = make_policy(detect={"require_no_progress": False})
    rows: list[Row] = [(float(t), 101 + t, t) for t in range(11)]
    assert diagnose(rows, policy)[-1].verdict is Verdict.STUCK


def test_unknown_progress_leaves_the_depth_rule_alone() -> None:
    rows: list[Row] = [(float(t), 101 + t, None) for t in range(11)]
    assert diagnose(rows)[-1].verdict is Verdict.STUCK


def test_after_progress_changes_the_run_starts_after_the_last_known_value() -> None:
    # progress known at t=0 (5); unknown t=1..8; known again at t=9 with another value (6)
    rows: list[Row] = [(0.0, 101, 5)] + [(float(t), 101 + t, None) for t in range(1, 9)]
    rows += [(9.0, 110, 6), (10.0, 111, 6), (11.0, 112, None)]
    diagnoses = diagnose(rows)
    assert diagnoses[9].run_start is not None and diagnoses[9].run_start.t == 1.0
    assert diagnoses[10].verdict is Verdict.NOT_STUCK  # 9 s since t=1
    assert diagnoses[11].verdict is Verdict.STUCK


def test_a_restart_at_or_after_the_first_sample_excludes_it() -> None:
    rows = ramp(0, 10, 101)
    assert diagnose(rows, last_restart=0.0)[-1].verdict is Verdict.NOT_STUCK
    assert diagnose(rows, last_restart=-0.001)[-1].verdict is Verdict.STUCK
    assert diagnose([*rows, (11.0, 112)], last_restart=0.5)[-1].verdict is Verdict.STUCK


def test_the_reason_names_the_progress_source_and_never_a_stale_count() -> None:
    policy = make_policy()
    run = RunState()
    for t in range(11):
        sample = Sample(float(t), 101 + t, processed=7, progress_source="remote control")
        run, diagnosis = observe(run, sample, policy.detect, None)
    assert diagnosis.verdict is Verdict.STUCK
    assert diagnosis.reason.endswith("stuck at 7 started tasks, from remote control")
    # Progress was known for most of the run, then heartbeats stopped: unknown now.
    gone = Sample(11.0, 113, progress_unknown="no heartbeat from w@h for 6s")
    run, diagnosis = observe(run, gone, policy.detect, None)
    assert diagnosis.verdict is Verdict.STUCK
    assert "progress unknown: no heartbeat from w@h for 6s" in diagnosis.reason
    assert "stuck at 7" not in diagnosis.reason
