"""Fixtures for the end-to-end tests: the ``ramparts`` command as a subprocess, and a
private copy of examples/ with a freshly made certificate.

The examples reference their certificate as ``certs/cert.pem`` (relative to the example),
which is not committed. Tests never write into the source tree: each test that needs the
examples copies examples/ into its own tmp_path and runs ``ramparts cert --out
COPY/certs`` there, exactly as a user would in the checkout. So the tests can run in
parallel or from a read-only checkout, and leave nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..support import ROOT

EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ramparts.cli ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def examples_copy(tmp_path: Path) -> Path:
    """A copy of examples/ (without any local .pem files) with a new certificate in certs/."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("*.pem"))
    done = run_cli("cert", "--out", str(copy / "certs"))
    assert done.returncode == 0, done.stderr
    return copy
