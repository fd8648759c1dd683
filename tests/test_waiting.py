"""How long each queue's oldest message has waited (core/waiting.py), against its definition."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core.waiting import HeadState, observe, oldest
from supervisor.sample import Sample

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def heads_sample(t: float, heads: dict[str, tuple[str, ...]] | None) -> Sample:
    return Sample(t, 1, queues={q: len(h) for q, h in (heads or {}).items()}, heads=heads)


def test_a_head_waits_from_the_first_sample_that_saw_it_and_the_next_one_starts_afresh() -> None:
    state = HeadState()
    trace = [(0.0, ()), (10.0, ("a",)), (20.0, ("a",)), (140.0, ("a",)), (150.0, ("b",))]
    waits = []
    for t, heads in trace:
        state, w = observe(state, heads_sample(t, {"mail": heads}))
        assert w is not None
        waits.append(w["mail"])
    assert waits == [0.0, 0.0, 10.0, 130.0, 0.0]


def test_the_oldest_of_a_queues_priority_lists_counts_and_failed_samples_change_nothing() -> None:
    state, _ = observe(HeadState(), heads_sample(0.0, {"q": ("low",)}))
    state, _ = observe(state, Sample.failed(5.0, "down"))
    state, w = observe(state, heads_sample(10.0, {"q": ("high", "low")}))
    assert w == {"q": 10.0}
    assert oldest(w) == 10.0 and oldest(w, ("other",)) == 0.0 and oldest(None) is None


def test_heads_not_read_forget_what_was_seen() -> None:
    state, _ = observe(HeadState(), heads_sample(0.0, {"q": ("a",)}))
    state, w = observe(state, heads_sample(10.0, None))
    assert w is None and state == HeadState()
    _, w = observe(state, heads_sample(20.0, {"q": ("a",)}))
    assert w == {"q": 0.0}


steps = st.lists(
    st.tuples(
        st.sampled_from([1.0, 2.0, 10.0]),
        st.one_of(
            st.just("failed"),
            st.just("unread"),
            st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True),
        ),
    ),
    max_size=60,
)


@SETTINGS
@given(steps)
def test_the_wait_is_the_age_of_the_trailing_stretch_that_saw_the_head(trace: list) -> None:
    """Brute force: a head's wait is now minus the first of the latest successful samples that
    all saw it at the head, with no unread sample in between."""
    state, history, t = HeadState(), [], 0.0
    for dt, heads in trace:
        t += dt
        if heads == "failed":
            sample = Sample.failed(t, "x")
        else:
            sample = heads_sample(t, None if heads == "unread" else {"q": tuple(heads)})
        state, waits = observe(state, sample)
        if not sample.ok:
            assert waits is None
            continue
        history.append(sample)
        if sample.heads is None:
            assert waits is None
            continue
        expected = 0.0
        for head in sample.heads["q"]:
            first = t
            for earlier in reversed(history):
                if earlier.heads is None or head not in earlier.heads["q"]:
                    break
                first = earlier.t
            expected = max(expected, t - first)
        assert waits == {"q": expected}
