"""The daemon's history files: rows written once a pass, rotated by size, a full disk raised."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from supervisor.sample import Sample
from supervisor.trace import HistoryWriter, Row, history_files, history_path


def rows_in(state: Path, policy: str) -> int:
    return sum(len(f.read_text().splitlines()) - 1 for f in history_files(state, policy))


def test_rows_reach_the_file_at_the_pass_end_and_rotate_by_size(tmp_path: Path) -> None:
    writer = HistoryWriter(tmp_path, limit=400)
    for i in range(3):
        writer.append("a", Row(Sample(1000.0 + i, i, {"celery": i}), False, 100))
        writer.append("b", Row(Sample.failed(1000.0 + i, "down")))
    writer.flush()
    assert rows_in(tmp_path, "a") == 3 and rows_in(tmp_path, "b") == 3
    assert history_path(tmp_path, "a").read_text().splitlines()[1:] == [
        "1000.000,0,,0,100,", "1001.000,1,,0,100,", "1002.000,2,,0,100,",
    ]  # fmt: skip
    for i in range(60):
        writer.append("a", Row(Sample(2000.0 + i, i, {"celery": i}), True, 100))
        writer.flush()
    files = history_files(tmp_path, "a")
    assert [f.name for f in files] == ["a.csv.1", "a.csv"]
    assert all(f.stat().st_size <= 400 + 40 for f in files)  # a row past the limit at most
    writer.close()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_raised_at_the_flush_and_the_file_reopened_after(tmp_path: Path) -> None:
    path = history_path(tmp_path, "a")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")  # every write: ENOSPC
    writer = HistoryWriter(tmp_path)
    with pytest.raises(OSError) as raised:
        writer.append("a", Row(Sample(1000.0, 1, {"celery": 1})))
        writer.flush()
    assert raised.value.errno == errno.ENOSPC
    path.unlink()  # space again
    writer.append("a", Row(Sample(1001.0, 2, {"celery": 2})))
    writer.flush()
    assert rows_in(tmp_path, "a") == 1
    writer.close()
