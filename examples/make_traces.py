"""Writes the example traces under examples/ (10 s samples, as the shipped policy takes them).

stuck-worker.csv: the chapter's incident. The queue idles near 5, the worker hangs at 10 min
(its started-task counter stops), the queue climbs past 100 and keeps climbing; once restarted
the worker drains it.
busy-worker.csv: a burst of producers outruns a healthy worker for 15 min; the queue is far over
100 and growing, but the worker keeps starting tasks, so it must not be restarted.
flat-backlog.csv: 418 messages wait behind a hung worker and nothing new arrives: the queue does
not grow, the worker's started-task counter is frozen. Stuck only with require_growth = false.
"""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent


def stuck() -> list[tuple[float, int | None, int | None]]:
    rows: list[tuple[float, int | None, int | None]] = []
    depth, processed, hung_at, restarted = 5, 1000, None, None
    for i in range(0, 241):
        t = i * 10.0
        if t == 600:
            hung_at = t
        if hung_at is not None and restarted is None:
            depth += 6  # producers keep publishing, nothing is consumed
        elif restarted is not None:
            depth = max(5, depth - 40)
            processed += 40 if depth > 5 else 2
        else:
            processed += 2
        if i in (70, 71):
            rows.append((t, None, None))  # Redis briefly unreachable
            continue
        rows.append((t, depth, processed))
        if depth > 100 and hung_at is not None and t - hung_at > 900:
            restarted = t
            processed = 0
    return rows


def busy() -> list[tuple[float, int | None, int | None]]:
    rows: list[tuple[float, int | None, int | None]] = []
    depth, processed = 5, 0
    for i in range(0, 181):
        t = i * 10.0
        if 300 <= t < 1200:
            depth += 9  # producers publish 10 per tick, the worker starts 1
            processed += 1
        elif depth > 5:
            depth = max(5, depth - 30)
            processed += 30
        rows.append((t, depth, processed))
    return rows


def flat() -> list[tuple[float, int | None, int | None]]:
    rows: list[tuple[float, int | None, int | None]] = []
    processed = 2000
    for i in range(0, 121):
        t = i * 10.0
        if t < 300:
            processed += 3
            rows.append((t, 3, processed))
        else:
            rows.append((t, 418, processed))  # the burst landed; the worker starts nothing
    return rows


def write(name: str, rows: list[tuple[float, int | None, int | None]]) -> None:
    with (HERE / name).open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["t", "depth", "processed"])
        for t, depth, processed in rows:
            out.writerow(
                [f"{t:g}", "" if depth is None else depth, "" if processed is None else processed]
            )


if __name__ == "__main__":
    write("stuck-worker.csv", stuck())
    write("busy-worker.csv", busy())
    write("flat-backlog.csv", flat())
