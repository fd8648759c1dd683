"""Building and driving the wall-clock shim (shim.c) for a test: the process started with
`env` sees the wall clock offset by what `step` last wrote; its boot and monotonic clocks are
the machine's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).with_name("shim.c")


class WallStep:
    def __init__(self, folder: Path) -> None:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            pytest.skip("no C compiler (cc or gcc) to build tests/clockstep/shim.c")
        self.library = folder / "clockstep.so"
        self.file = folder / "clockstep.offset"
        built = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(self.library), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            pytest.fail(f"cannot build the shim: {built.stderr}")
        self.step(0.0)

    def step(self, seconds: float) -> None:
        """From now on the wall clock reads `seconds` off the machine's (not cumulative)."""
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:.6f}\n")
        os.replace(tmp, self.file)

    @property
    def env(self) -> dict[str, str]:
        preload = " ".join(p for p in (str(self.library), os.environ.get("LD_PRELOAD")) if p)
        return {"LD_PRELOAD": preload, "CLOCKSTEP_FILE": str(self.file)}
