"""Build script: the request hot path is compiled to C with mypyc; everything else installs
as plain Python. ``RAMPARTS_PURE=1`` installs all of it as plain Python (same behaviour,
slower). The build also records a fingerprint of the sources, so a test run can tell when
the installed package no longer matches the tree (see tests/conftest.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# The modules every request runs through; each must type-check under mypy --strict.
COMPILED = [
    "src/ramparts/http/headers.py",
    "src/ramparts/http/path.py",
    "src/ramparts/http/request.py",
    "src/ramparts/http/status.py",
    "src/ramparts/pipeline/context.py",
    "src/ramparts/pipeline/phases.py",
    "src/ramparts/pipeline/router.py",
    "src/ramparts/policies/headers.py",
    "src/ramparts/policies/access.py",
    "src/ramparts/policies/realip.py",
    "src/ramparts/policies/ratelimit.py",
    "src/ramparts/policies/bans.py",
    "src/ramparts/config/policies.py",
    "src/ramparts/pipeline/template.py",
    "src/ramparts/state/memory.py",
    "src/ramparts/state/resp.py",
    "src/ramparts/config/plan.py",
    "src/ramparts/server/balance.py",
    "src/ramparts/server/timer.py",
    "src/ramparts/server/upstream.py",
    "src/ramparts/server/http1.py",
    "src/ramparts/observe/accesslog.py",
]


def source_fingerprint(root: Path = HERE / "src" / "ramparts") -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


PURE = bool(os.environ.get("RAMPARTS_PURE"))


class BuildPy(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        info = Path(self.build_lib) / "ramparts" / "_build_info.py"
        info.write_text(
            '"""Written by setup.py at build time."""\n\n'
            f'SOURCE_SHA256 = "{source_fingerprint()}"\n'
            f"COMPILED = {not PURE!r}\n"
        )


ext_modules: list[Any] = []
if not PURE:
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED, opt_level="3")

setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPy})
