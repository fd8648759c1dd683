"""Durations as operators write them: a number of seconds, or `500ms`, `30s`, `5m`, `1h30m`."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Return seconds; raise ValueError with the offending value in the message."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30 or '30s', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.startswith("-"):
            raise ValueError(f"duration must not be negative, got {value!r}")
        if not _WHOLE.fullmatch(text):
            raise ValueError(
                f"invalid duration {value!r}: use seconds (30) or units ms/s/m/h/d ('1h30m')"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"expected a duration such as 30 or '30s', got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {value!r}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form, the inverse of parse_duration for whole units (`90` -> `1m30s`)."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    parts = []
    rest = seconds
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        whole = int(rest // size)
        if whole:
            parts.append(f"{whole}{unit}")
            rest -= whole * size
    if rest or not parts:
        parts.append(f"{round(rest, 3):g}s")
    return "".join(parts)
