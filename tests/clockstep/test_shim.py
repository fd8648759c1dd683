"""The shim steps only the wall clock: checked before any test relies on it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.clockstep.shim import WallStep

PROBE = r"""
import json, sys, time
print(json.dumps({"wall": time.time(), "mono": time.monotonic(),
                  "boot": time.clock_gettime(time.CLOCK_BOOTTIME)}), flush=True)
start = time.monotonic()
time.sleep(0.3)
slept = time.monotonic() - start
sys.stdin.readline()  # the test steps the clock meanwhile
print(json.dumps({"wall": time.time(), "slept": slept,
                  "datetime": __import__("datetime").datetime.now().timestamp()}), flush=True)
"""


def test_the_shim_offsets_the_wall_clock_and_leaves_sleep_monotonic_and_boot_alone(
    tmp_path: Path,
) -> None:
    shim = WallStep(tmp_path)
    shim.step(-3 * 3600)
    proc = subprocess.Popen(
        [sys.executable, "-c", PROBE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, **shim.env},
    )
    assert proc.stdin is not None and proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    wall, mono, boot = time.time(), time.monotonic(), time.clock_gettime(time.CLOCK_BOOTTIME)
    assert abs(first["wall"] - (wall - 3 * 3600)) < 5
    assert abs(first["mono"] - mono) < 5 and abs(first["boot"] - boot) < 5
    shim.step(7200.5)  # re-read on every call: the running process is stepped forward
    proc.stdin.write("\n")
    proc.stdin.flush()
    second = json.loads(proc.stdout.readline())
    proc.wait(10)
    assert 0.29 <= second["slept"] < 2  # time.sleep waited as long as asked, no more
    assert abs(second["wall"] - (time.time() + 7200.5)) < 5
    assert abs(second["datetime"] - second["wall"]) < 1  # datetime reads the same clock
