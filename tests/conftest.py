"""Fixtures shared by every test directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import Proc, start_origin


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[Proc, int]]:
    """The demo origin on a free port: (process, port)."""
    proc, port = start_origin(tmp_path)
    try:
        yield proc, port
    finally:
        proc.stop()
