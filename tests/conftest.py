"""Fixtures shared by every test directory, and a guard against testing a stale build."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import ramparts

from .support import ROOT, Proc, start_origin


def _source_fingerprint(root: Path) -> str:
    # The same digest setup.py records in ramparts/_build_info.py at build time.
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The package under test is installed (its hot path compiled): refuse to run the
    suite against an installed copy built from other sources than this tree's."""
    src = ROOT / "src" / "ramparts"
    installed = Path(ramparts.__file__).resolve().parent
    if installed == src.resolve():
        return  # running from the tree itself (plain Python)
    try:
        from ramparts import _build_info
    except ImportError:
        pytest.exit(f"ramparts at {installed} has no build info: run `make venv`", 2)
    if _source_fingerprint(src) != _build_info.SOURCE_SHA256:
        pytest.exit(
            f"the installed ramparts ({installed}) was built from other sources than "
            f"{src}: run `make venv` (or `make pure`) first",
            2,
        )


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[Proc, int]]:
    """The demo origin on a free port: (process, port)."""
    proc, port = start_origin(tmp_path)
    try:
        yield proc, port
    finally:
        proc.stop()
