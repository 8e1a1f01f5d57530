"""Policy analysis benchmark (`make bench-fw-analysis`): ``fw lint`` and ``fw diff`` on the
10K-rule ClassBench sets in ../shared/data/classbench (acl1, fw1, ipc1), against the bar of
issue 6: each under 60 s.

Per set:
- lint of the set as published (every rule accepts, default drop: redundancy and
  unreachable rules are all there is to find), and of a mixed copy in which every tenth
  rule drops instead (shadowing, generalization, correlation and partial shadowing then
  appear, and the pair and union work is real);
- diff of the set against itself, and against an edited copy: three actions flipped, two
  rules moved, two deleted (a deploy check against a baseline).

Times are the median of --reps runs. The answers are checked, not just timed: every
partial-shadowing and unreachable witness (up to --check of each) and every diff region's
example packet go through the linear reference ``evaluate``; the exit status is 1 if any
disagrees. It prints a table, then ``time NAME: X s`` and ``bar ...: yes/no`` lines; raw
results go to bench/results/fw-analysis-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ramparts.firewall.analysis import Lint, lint
from ramparts.firewall.classbench import read_rules
from ramparts.firewall.diff import Diff, diff
from ramparts.firewall.model import Action, RuleSet, evaluate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data" / "classbench"
BAR_SECONDS = 60.0

T = TypeVar("T")


def timed(fn: Callable[[], T], reps: int) -> tuple[float, T]:
    """(median seconds over ``reps`` runs, the last result)."""
    times: list[float] = []
    result: T | None = None
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    assert result is not None
    return statistics.median(times), result


def mixed(rs: RuleSet, every: int = 10) -> RuleSet:
    """Every ``every``-th rule (1st, 11th, ...) drops instead of accepting."""
    rules = [
        dataclasses.replace(r, action=Action.DROP) if i % every == 0 else r
        for i, r in enumerate(rs.rules)
    ]
    return RuleSet.of(rules, rs.default, rs.name + "+drops")


def edited(rs: RuleSet) -> RuleSet:
    """Three actions flipped, two rules moved, two deleted, at fixed spread positions."""
    rules = list(rs.rules)
    n = len(rules)
    for i in (n // 10, 2 * n // 3, 4 * n // 5):
        rules[i] = dataclasses.replace(rules[i], action=Action.DROP)
    rules.insert(n // 5, rules.pop(n // 2))
    rules.insert(3 * n // 4, rules.pop(n // 4))
    del rules[n // 3]
    del rules[n // 7]
    return RuleSet.of(rules, rs.default, rs.name + "+edited")


def check_lint(rs: RuleSet, result: Lint, limit: int) -> int:
    """Witnesses that the reference contradicts (0 when all hold)."""
    bad = 0
    for kind in ("partial-shadowing", "unreachable"):
        for f in result.of_kind(kind)[:limit]:
            assert f.witness is not None
            v = evaluate(rs, f.witness)
            subject = rs.rules[f.subject - 1]
            if kind == "partial-shadowing":
                ok = v.index == f.rules[0] and subject.matches(f.witness)
            else:
                ok = v.index in f.rules[:-1] and subject.matches(f.witness)
            bad += not ok
    return bad


def check_diff(old: RuleSet, new: RuleSet, result: Diff) -> int:
    bad = 0
    for r in result.regions:
        a, b = evaluate(old, r.example), evaluate(new, r.example)
        bad += (a.index, b.index) != (r.old.index, r.new.index) or (
            a.action,
            a.rule.reject_with if a.rule else None,
        ) == (b.action, b.rule.reject_with if b.rule else None)
    return bad


def bench_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    rs = read_rules(args.data / name)
    out: dict[str, Any] = {"name": name, "rules": len(rs.rules)}
    drops = mixed(rs)
    for label, policy in (("lint", rs), ("lint_mixed", drops)):
        seconds, result = timed(lambda p=policy: lint(p), args.reps)  # type: ignore[misc]
        out[label] = {
            "seconds": round(seconds, 3),
            "findings": len(result.findings),
            "counts": {k: v for k, v in result.counts.items() if v},
            "witness_errors": check_lint(policy, result, args.check),
        }
    changed = edited(rs)
    for label, other in (("diff_self", rs), ("diff_edited", changed)):
        seconds, d = timed(lambda o=other: diff(rs, o), args.reps)  # type: ignore[misc]
        out[label] = {
            "seconds": round(seconds, 3),
            "regions": len(d.regions),
            "boxes": d.boxes_examined,
            "example_errors": check_diff(rs, other, d),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the ClassBench directory")
    ap.add_argument("--families", default="acl1,fw1,ipc1")
    ap.add_argument("--sizes", default="10K")
    ap.add_argument("--reps", type=int, default=3, help="runs per measurement (the median)")
    ap.add_argument("--check", type=int, default=500, help="witnesses checked per kind")
    ap.add_argument("--quick", action="store_true", help="--reps 1")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps = 1
    if not args.data.is_dir():
        print(f"no ClassBench data at {args.data}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    rows = []
    for size in args.sizes.split(","):
        for family in args.families.split(","):
            name = f"{family}_{size}"
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(bench_set(name, args))
    load_after = os.getloadavg()

    head = (
        f"{'set':<10} {'rules':>6} {'lint s':>7} {'findings':>9} {'mixed s':>8} "
        f"{'findings':>9} {'diff self s':>12} {'diff edit s':>12} {'regions':>8} "
        f"{'boxes':>7} {'errors':>7}"
    )
    print(head)
    print("-" * len(head))
    errors = 0
    for r in rows:
        bad = (
            r["lint"]["witness_errors"]
            + r["lint_mixed"]["witness_errors"]
            + r["diff_self"]["example_errors"]
            + r["diff_edited"]["example_errors"]
        )
        errors += bad
        print(
            f"{r['name']:<10} {r['rules']:>6} {r['lint']['seconds']:>7.2f} "
            f"{r['lint']['findings']:>9} {r['lint_mixed']['seconds']:>8.2f} "
            f"{r['lint_mixed']['findings']:>9} {r['diff_self']['seconds']:>12.2f} "
            f"{r['diff_edited']['seconds']:>12.2f} {r['diff_edited']['regions']:>8} "
            f"{r['diff_edited']['boxes']:>7} {bad:>7}"
        )
    print()
    for r in rows:
        print(f"{r['name']} lint: {r['lint']['counts']}")
        print(f"{r['name']} lint (every 10th rule drops): {r['lint_mixed']['counts']}")
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print()
    for r in rows:
        family = r["name"].split("_")[0]
        # seconds, not ratios: the bar is absolute (no peer does this analysis)
        print(f"time fw-lint {family}: {r['lint']['seconds']:.2f} s")
        print(f"time fw-lint-mixed {family}: {r['lint_mixed']['seconds']:.2f} s")
        print(f"time fw-diff-edited {family}: {r['diff_edited']['seconds']:.2f} s")
    lint_worst = max(max(r["lint"]["seconds"], r["lint_mixed"]["seconds"]) for r in rows)
    diff_worst = max(max(r["diff_self"]["seconds"], r["diff_edited"]["seconds"]) for r in rows)
    print(f"bar lint<60s: {'yes' if lint_worst < BAR_SECONDS else 'no'} ({lint_worst:.1f} s)")
    print(f"bar diff<60s: {'yes' if diff_worst < BAR_SECONDS else 'no'} ({diff_worst:.1f} s)")
    print(f"bar answers checked: {'yes' if errors == 0 else 'no'} ({errors} errors)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"fw-analysis-{stamp}.json"
    meta = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    path.write_text(json.dumps({"meta": meta, "args": {"reps": args.reps}, "sets": rows}, indent=2))
    print(f"raw results: {path.relative_to(ROOT)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
