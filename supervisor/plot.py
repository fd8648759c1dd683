"""Draws `Picture`s to a PNG with matplotlib, an optional extra (`pip install .[plot]`).

What was drawn is read back from matplotlib's own artists and written into the PNG as text
(`iti-worker-supervisor`, JSON), so that a test, or an auditor, can check the picture's data
without reading pixels.
"""

from __future__ import annotations

import bisect
import json
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from supervisor.errors import UsageError
from supervisor.picture import Mark, Picture

METADATA_KEY = "iti-worker-supervisor"
INSTALL = "pip install 'iti-worker-supervisor[plot]'"

_STYLE = {  # marker, colour
    Mark.RESTART: ("v", "tab:red"),
    Mark.DRY_RUN_RESTART: ("v", "tab:orange"),
    Mark.RESTART_FAILED: ("X", "black"),
    Mark.ESCALATE: ("*", "darkred"),
}


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError(f"--plot needs matplotlib, which is not installed: {INSTALL}") from None
    matplotlib.use("Agg")  # files only: never a display
    import matplotlib.pyplot as plt

    return plt


def _depth_at(picture: Picture, t: float) -> float:
    """The marker's height: the depth of the last sample at or before t."""
    times = [p[0] for p in picture.points]
    i = bisect.bisect_right(times, t) - 1
    for j in range(i, -1, -1):
        depth = picture.points[j][1]
        if depth is not None:
            return float(depth)
    return 0.0


def _time_format(picture: Picture) -> str:
    times = [t for t, _ in picture.points]
    span = max(times) - min(times) if times else 0.0
    if span < 3600:
        return "%H:%M:%S"
    return "%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d"


def _extent(patch: Any) -> list[float]:
    """A shaded span's [start, end] as drawn (a Rectangle, or a Polygon before matplotlib 3.9)."""
    if hasattr(patch, "get_width"):
        return [float(patch.get_x()), float(patch.get_x() + patch.get_width())]
    xs = [float(x) for x, _ in patch.get_xy()]
    return [min(xs), max(xs)]


_LISTED = 25  # reasons written out under a panel; more are counted


def _notes(picture: Picture) -> list[str]:
    """The numbered reasons under a panel: the marker with number n is the n-th line."""
    lines = []
    for n, m in enumerate(picture.markers[:_LISTED], start=1):
        when = (
            datetime.fromtimestamp(m.t, UTC).strftime("%Y-%m-%d %H:%M:%S")
            if picture.wall_clock
            else f"t={m.t:g}"
        )
        lines += textwrap.wrap(
            f"{n}. {when} {m.mark.value}: {m.reason}" + (f" ({m.hung})" if m.hung else ""),
            width=180,
            subsequent_indent="      ",
        )
    if len(picture.markers) > _LISTED:
        lines.append(f"... and {len(picture.markers) - _LISTED} more")
    return lines


def render(pictures: Sequence[Picture], path: Path) -> list[dict[str, Any]]:
    """Write one panel per picture to `path` (PNG), each with its markers' reasons written out
    under it; return what was drawn, per panel."""
    if not pictures:
        raise UsageError("nothing to plot: no samples")
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    notes = [_notes(p) for p in pictures]
    heights = []
    for lines in notes:
        heights += [4.0, 0.2 + 0.16 * len(lines)]
    fig, axes = plt.subplots(
        2 * len(pictures),
        1,
        figsize=(12, sum(heights) + 0.3),
        height_ratios=heights,
        squeeze=False,
        layout="constrained",
    )
    drawn: list[dict[str, Any]] = []
    try:
        for i, picture in enumerate(pictures):
            ax, text = axes[2 * i][0], axes[2 * i + 1][0]
            drawn.append(_panel(ax, picture))
            if picture.wall_clock:
                fmt = _time_format(picture)
                ax.xaxis.set_major_formatter(
                    FuncFormatter(lambda t, _, f=fmt: datetime.fromtimestamp(t, UTC).strftime(f))
                )
                ax.set_xlabel("time (UTC)")
            else:
                ax.set_xlabel("t (s, the trace's own clock)")
            text.axis("off")
            text.text(0, 1, "\n".join(notes[i]) or "no decisions", va="top", fontsize=8)
        fig.savefig(path, format="png", dpi=100, metadata={METADATA_KEY: json.dumps(drawn)})
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return drawn


def _panel(ax: Any, picture: Picture) -> dict[str, Any]:
    ts = [t for t, d in picture.points if d is not None]
    depths = [d for _, d in picture.points if d is not None]
    (line,) = ax.plot(ts, depths, color="tab:blue", linewidth=1.2, label="depth")
    if picture.thresholds:
        tt, th = zip(*picture.thresholds, strict=True)
        ax.step(tt, th, where="post", color="tab:red", linestyle="--", label="threshold")
    shaded = []
    for start, end in picture.stuck:
        patch = ax.axvspan(start, end, color="tab:red", alpha=0.12, linewidth=0)
        shaded.append(patch)
    markers: dict[str, list[dict[str, Any]]] = {}
    for mark, (symbol, colour) in _STYLE.items():
        mine = [m for m in picture.markers if m.mark is mark]
        if not mine:
            continue
        xs = [m.t for m in mine]
        ys = [float(m.depth) if m.depth is not None else _depth_at(picture, m.t) for m in mine]
        dots = ax.scatter(xs, ys, marker=symbol, s=110, color=colour, zorder=5, label=mark.value)
        for m, y in zip(mine, ys, strict=True):
            number = picture.markers.index(m) + 1
            ax.annotate(
                str(number), (m.t, y), xytext=(5, 7), textcoords="offset points", fontsize=8
            )
        offsets = dots.get_offsets()
        markers[mark.value] = [
            {"t": float(x), "reason": m.reason} for (x, _), m in zip(offsets, mine, strict=True)
        ]
    ax.set_title(picture.title)
    ax.set_ylabel("messages waiting")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return {
        "title": picture.title,
        "samples": len(line.get_xdata()),
        "stuck": [_extent(p) for p in shaded],
        "markers": markers,
    }
