import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h5m10s", 7510.0),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("1d", 86400.0),
    ],
)
def test_parses_numbers_and_unit_strings(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-5s", -1, "abc", "5", "5x", "", "m5", True, None, [1], "1h-5m"])
def test_refuses_bad_durations_naming_the_value(bad: object) -> None:
    with pytest.raises(ValueError, match="duration") as info:
        parse_duration(bad)
    assert repr(bad) in str(info.value) or str(bad) in str(info.value)


@given(st.integers(min_value=0, max_value=10**6))
def test_format_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
