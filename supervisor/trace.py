"""Traces: a policy's samples over time as CSV, `t,depth[,processed[,stuck,threshold[,evidence]]]`.

One definition for the three that use it: `supervisor replay` reads traces (recorded ones, or
the examples), the daemon records each policy's samples as one in its state directory
(`history/POLICY.csv`, with what it judged), and `supervisor report` draws them. An empty depth
is a failed sample; an empty processed, progress unknown.

The header is the format's version: a trace names the columns it has, and every older header
still reads. `evidence` (issue 26) is what the rules at any depth need to decide again in
`replay`: per queue its depth and the ids of its heads, and the target's live workers as their
heartbeats describe them, with the answers they gave when asked (JSON; empty when there was
none). A history file with an older header is rotated when the daemon first appends to it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from supervisor.errors import TraceError
from supervisor.sample import Load, Sample

HISTORY_DIR = "history"  # inside the state directory
HISTORY_LIMIT = 4 * 1024 * 1024  # bytes; then the file becomes POLICY.csv.1 (one is kept)


@dataclass(frozen=True)
class Row:
    sample: Sample
    stuck: bool | None = None  # what the daemon judged; None in a trace it did not record
    threshold: int | None = None


COLUMNS = ("t", "depth", "processed", "stuck", "threshold", "evidence")
# Recorded by the daemon, read by `report`; replay ignores them: it judges for itself.
RECORDED = ("stuck", "threshold")
FAILED_SAMPLE = "failed sample in trace"


def read_trace(stream: TextIO, source: str) -> Iterator[Sample]:
    """Samples from a CSV trace: header `t,depth[,processed]`; an empty depth is a failed sample."""
    for row in read_rows(stream, source):
        yield row.sample


def read_rows(stream: TextIO, source: str) -> Iterator[Row]:
    """Every row of a trace, with what the daemon recorded beside the sample, if anything."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise TraceError(f"{source}: empty trace, expected a header line 't,depth[,processed]'")
    names = [h.strip() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise TraceError(
            f"{source}: line 1: unknown column {unknown[0]!r} (columns are {', '.join(COLUMNS)})"
        )
    for needed in ("t", "depth"):
        if needed not in names:
            raise TraceError(f"{source}: line 1: missing column {needed!r}")
    index = {n: i for i, n in enumerate(names)}
    previous_t = -math.inf
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise TraceError(f"{source}: line {line}: {len(row)} fields, expected {len(names)}")
        t = _number(row[index["t"]], source, line, "t")
        if t < previous_t:
            raise TraceError(f"{source}: line {line}: t={t:g} is before the previous row's t")
        previous_t = t
        depth = _count(row[index["depth"]], source, line, "depth")
        processed = (
            _count(row[index["processed"]], source, line, "processed")
            if "processed" in index
            else None
        )
        stuck = _count(row[index["stuck"]], source, line, "stuck") if "stuck" in index else None
        threshold = (
            _count(row[index["threshold"]], source, line, "threshold")
            if "threshold" in index
            else None
        )
        evidence = row[index["evidence"]].strip() if "evidence" in index else ""
        sample = (
            Sample.failed(t, FAILED_SAMPLE)
            if depth is None
            else _with_evidence(
                Sample(t=t, depth=depth, queues={}, processed=processed), evidence, source, line
            )
        )
        yield Row(sample, None if stuck is None else bool(stuck), threshold)


def evidence(sample: Sample) -> str:
    """The `evidence` cell of a sample: empty when the rules at any depth had nothing to read,
    and while every watched queue is empty (the depth says so; with nothing waiting neither
    rule can find anything, and each run ends alike with or without the workers' loads): a
    quiet install's history stays about as small as before the evidence column."""
    if not sample.ok or sample.depth == 0 or (not sample.loads and sample.heads is None):
        return ""
    data: dict[str, object] = {
        "queues": dict(sample.queues),
        "loads": [load.to_json() for load in sample.loads],
    }
    if sample.heads is not None:
        data["heads"] = {q: list(h) for q, h in sample.heads.items()}
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _with_evidence(sample: Sample, cell: str, source: str, line: int) -> Sample:
    if not cell:
        return sample
    try:
        data = json.loads(cell)
        queues = {str(q): int(d) for q, d in data.get("queues", {}).items()}
        loads = tuple(Load.from_json(x) for x in data.get("loads", ()))
        heads = data.get("heads")
        return Sample(
            t=sample.t,
            depth=sample.depth,
            queues=queues,
            processed=sample.processed,
            loads=loads,
            heads=None if heads is None else {str(q): tuple(map(str, h)) for q, h in heads.items()},
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise TraceError(f"{source}: line {line}: evidence is not valid: {exc}") from None


def _number(cell: str, source: str, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise TraceError(f"{source}: line {line}: {column}={cell!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{source}: line {line}: {column}={cell!r} is not finite")
    return value


def _count(cell: str, source: str, line: int, column: str) -> int | None:
    text = cell.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise TraceError(
            f"{source}: line {line}: {column}={cell!r} is not a whole number"
        ) from None
    if value < 0:
        raise TraceError(f"{source}: line {line}: {column}={value} is negative")
    return value


def _quoted(cell: str) -> str:
    """A CSV cell as the csv module reads it back: JSON has commas and quotes."""
    return '"' + cell.replace('"', '""') + '"' if cell else ""


def history_path(state_dir: Path, policy: str) -> Path:
    return state_dir / HISTORY_DIR / f"{policy}.csv"


def history_files(state_dir: Path, policy: str) -> list[Path]:
    """A policy's recorded history, oldest file first."""
    path = history_path(state_dir, policy)
    return [p for p in (path.with_name(path.name + ".1"), path) if p.is_file()]


class HistoryWriter:
    """Appends a policy's rows to its history file. Not fsynced: it is for looking back, and a
    lost last line costs nothing, while the restart state files are what must survive."""

    def __init__(self, state_dir: Path, limit: int = HISTORY_LIMIT) -> None:
        self.state_dir = state_dir
        self.limit = limit
        # Open files and their sizes: one write per row, not an open, stat and close.
        self._open: dict[str, tuple[TextIO, int]] = {}

    def append(self, policy: str, row: Row) -> None:
        f, size = self._open.get(policy) or self._reopen(policy)
        if size >= self.limit:
            f.close()
            path = history_path(self.state_dir, policy)
            path.replace(path.with_name(path.name + ".1"))
            f, size = self._reopen(policy)
        s = row.sample
        cells = [
            f"{s.t:.3f}",
            "" if s.depth is None or not s.ok else str(s.depth),
            "" if s.processed is None else str(s.processed),
            "" if row.stuck is None else str(int(row.stuck)),
            "" if row.threshold is None else str(row.threshold),
        ]
        line = ",".join(cells) + "," + _quoted(evidence(s)) + "\n"
        try:
            f.write(line)  # flushed with the pass's other rows (flush)
        except OSError:
            self.close(policy)
            raise
        self._open[policy] = (f, size + len(line.encode()))

    def flush(self) -> None:
        """What was appended, in the files: `report` reads them while the daemon runs. Once a
        pass, for all policies, rather than a write per row. Raises the first OSError."""
        failed: OSError | None = None
        for policy, (f, _) in list(self._open.items()):
            try:
                f.flush()
            except OSError as exc:
                self.close(policy)
                failed = failed or exc
        if failed is not None:
            raise failed

    def _reopen(self, policy: str) -> tuple[TextIO, int]:
        path = history_path(self.state_dir, policy)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ",".join(COLUMNS) + "\n"
        if path.is_file():  # (not /dev/full, nor any device)
            with contextlib.suppress(OSError, UnicodeDecodeError):
                with path.open(encoding="utf-8") as old:
                    first = old.readline(len(header) + 1)
                if first and first != header:  # an older format's file: it keeps its header
                    path.replace(path.with_name(path.name + ".1"))
        f = path.open("a", encoding="utf-8")
        size = f.tell()
        if size == 0:
            f.write(header)
            size = len(header.encode())
        self._open[policy] = (f, size)
        return f, size

    def close(self, policy: str | None = None) -> None:
        for name in [policy] if policy is not None else list(self._open):
            entry = self._open.pop(name, None)
            if entry is not None:
                with contextlib.suppress(OSError):
                    entry[0].close()
