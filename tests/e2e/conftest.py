"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack(docker_engine: Any, redis_server_factory: Any, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(docker_engine, redis_server_factory, tmp_path)
    yield s
    s.close()
