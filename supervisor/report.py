"""`supervisor report STATE_DIR`: every decision the daemon recorded, per policy, from its audit
log, and with `--plot` a picture of them over the history it recorded (depth, threshold, stuck
runs, each restart, dry-run restart, failed restart and escalation with its reason)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from supervisor.errors import UsageError
from supervisor.picture import Picture, from_history, markers_from_audit
from supervisor.sinks.audit import AUDIT_FILE, read_audit
from supervisor.trace import HISTORY_DIR, Row, history_files, read_rows

log = logging.getLogger("supervisor.report")


def _rows(state_dir: Path, policy: str) -> list[Row]:
    rows: list[Row] = []
    for path in history_files(state_dir, policy):
        with path.open(newline="", encoding="utf-8") as f:
            rows.extend(read_rows(f, str(path)))
    return rows


def policies_in(state_dir: Path, records: Sequence[dict[str, object]]) -> list[str]:
    names = {p.name.split(".csv")[0] for p in (state_dir / HISTORY_DIR).glob("*.csv*")}
    names |= {str(r["policy"]) for r in records if r.get("policy")}
    return sorted(names)


def run_report(state_dir: Path, names: Sequence[str], plot: Path | None) -> int:
    if not state_dir.is_dir():
        raise UsageError(f"{state_dir}: no such state directory")
    records = read_audit(state_dir / AUDIT_FILE)
    known = policies_in(state_dir, records)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"{state_dir}: nothing recorded for {', '.join(unknown)}; "
            f"it holds {', '.join(known) or 'nothing'}"
        )
    pictures: list[Picture] = []
    for name in names or known:
        for marker in markers_from_audit(name, records):
            print(
                json.dumps(
                    {
                        "t": marker.t,
                        "event": marker.mark.value,
                        "policy": name,
                        "reason": marker.reason,
                        **({"hung": marker.hung} if marker.hung else {}),
                    }
                )
            )
        rows = _rows(state_dir, name)
        if rows:
            pictures.append(from_history(name, rows, records))
        log.info("%s: %d samples recorded", name, len(rows))
    if plot is not None:
        from supervisor.plot import render

        render(pictures, plot)
        log.info("wrote %s", plot)
    return 0
