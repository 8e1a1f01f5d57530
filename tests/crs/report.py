"""Run the CRS 3.3.4 regression suite and print a report: the pass rate per rule family,
every failure with its reason, the tests passed because the server's HTTP parser refused
the request with 400 before inspection, and a last line ``N passed, M failed``.

    PYTHONPATH=src .venv/bin/python -m tests.crs.report                  # nginx + ModSecurity
    PYTHONPATH=src .venv/bin/python -m tests.crs.report --port 8080 \\
        --jsonl /path/to/access.log                                       # a running gateway

Exit status: 0 when every test that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .ftw import SUITE, FtwTest, load_suite
from .runner import FAILED, REFUSED, SKIPPED, JsonLinesLog, Report, Runner, Target, Verdict

__all__ = ["format_report", "main", "run_nginx"]


def _bar(passed: int, run: int) -> str:
    return f"{passed:5d}/{run:<5d} {100.0 * passed / run if run else 0.0:6.2f}%"


def _detail(v: Verdict) -> str:
    return f"{v.test.title} ({v.test.file}#{v.test.index})"


def format_report(report: Report, out: TextIO) -> None:
    w = out.write
    w(f"CRS 3.3.4 regression tests against {report.target}\n\n")
    w("pass rate per rule family (refusals count as passed; disabled tests left out)\n")
    for family, (passed, run) in report.families().items():
        w(f"  {family:<45} {_bar(passed, run)}\n")
    w(f"  {'all':<45} {_bar(report.passed, report.passed + report.failed)}\n")
    failed = report.of_kind(FAILED)
    w(f"\nfailures ({len(failed)})\n")
    for v in failed:
        w(f"  {_detail(v)}\n")
        for reason in v.reasons:
            w(f"      {reason}\n")
    refused = report.of_kind(REFUSED)
    w(
        f"\npassed by refusal: the server's HTTP parser answered 400 before inspection "
        f"({len(refused)})\n"
    )
    for v in refused:
        w(f"  {_detail(v)}: {'; '.join(v.reasons)}\n")
    skipped = report.of_kind(SKIPPED)
    if skipped:
        names = ", ".join(v.test.title for v in skipped)
        w(f"\nskipped, disabled in the YAML ({len(skipped)}): {names}\n")
    w(f"\nran in {report.seconds:.1f} s\n")
    w(report.summary() + "\n")


@contextmanager
def _target(kind: str, scratch: Path | None) -> Iterator[Target]:
    from .nginx import crs_nginx
    from .ramparts import crs_ramparts

    start = crs_ramparts if kind == "ramparts" else crs_nginx
    if scratch is not None:
        with start(scratch) as target:
            yield target
        return
    with tempfile.TemporaryDirectory(prefix=f"crs-{kind}-") as tmp, start(Path(tmp)) as target:
        yield target


@contextmanager
def _nginx_target(scratch: Path | None) -> Iterator[Target]:
    with _target("nginx", scratch) as target:
        yield target


def run_nginx(
    tests: Sequence[FtwTest], scratch: Path | None = None, verbose: bool = False
) -> Report:
    """The suite against nginx + ModSecurity + CRS, started here and stopped after."""
    with _nginx_target(scratch) as target:
        return Runner(target).run(tests, _progress if verbose else None)


def _progress(v: Verdict) -> None:
    print(f"{v.kind:8} {v.test.name}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.crs.report", description=__doc__)
    ap.add_argument("--tests", type=Path, default=SUITE, help="the suite's tests directory")
    ap.add_argument("--only", help="regex: run only tests whose family/title matches")
    ap.add_argument("--port", type=int, help="a running target on 127.0.0.1:PORT")
    ap.add_argument("--jsonl", type=Path, help="its JSON-lines access log (with --port)")
    ap.add_argument("--rules-field", default="waf_rules", help="field listing the rule ids")
    ap.add_argument(
        "--target",
        choices=["ramparts", "nginx"],
        default="ramparts",
        help="the gateway to start and run the suite against (without --port)",
    )
    ap.add_argument("--scratch", type=Path, help="keep the target's files here")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per wait")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per test")
    args = ap.parse_args(argv)

    tests = load_suite(args.tests)
    if args.only:
        rx = re.compile(args.only)
        tests = [t for t in tests if rx.search(t.name)]
    progress = _progress if args.verbose else None
    if args.port is not None:
        if args.jsonl is None:
            ap.error("--port needs --jsonl (where the target logs its rule ids)")
        log = JsonLinesLog(args.jsonl, rules_field=args.rules_field)
        target = Target(port=args.port, log=log, name=f"127.0.0.1:{args.port}")
        report = Runner(target, args.timeout, args.timeout).run(tests, progress)
    else:
        with _target(args.target, args.scratch) as target:
            report = Runner(target, args.timeout, args.timeout).run(tests, progress)
    format_report(report, sys.stdout)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
