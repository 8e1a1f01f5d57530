"""Firewall classifier benchmark (`make bench-fw`): the compiled classifier against the
linear reference on the ClassBench rule sets and traces in ../shared/data/classbench
(acl1, fw1, ipc1 at 1K and 10K rules), measured in one run.

Per set: build time (median of --reps builds) and the peak memory of one build
(tracemalloc, which also sees numpy's buffers); the median single-packet lookup over every
packet of the trace (``lookup_index`` timed one call at a time, timer included; the median
of --reps passes); batch throughput (``classify_batch`` on the whole trace, median of
--reps runs after a warm-up); the linear reference's median per packet on an evenly spread
sample, and the speed-up. Every answer is checked against the trace's IDX column.

It prints a table, the growth from 1K to 10K rules, then ``ratio NAME: X`` lines and the
``bar ...: yes/no`` lines of the firewall bar (issue 3). Raw results go to
bench/results/firewall-<timestamp>.json. Exit status 1 when any answer disagrees with IDX.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from ramparts.firewall.classbench import (
    Trace,
    measure_batch,
    measure_reference,
    measure_single,
    read_rules,
    read_trace,
    sample_indices,
)
from ramparts.firewall.classifier import Classifier
from ramparts.firewall.model import RuleSet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = ROOT.parent / "shared" / "data" / "classbench"

BAR_SINGLE_US = 3.0
BAR_BATCH_MPPS = 2.0
BAR_BUILD_S = 10.0
BAR_BUILD_MB = 500.0


def build_peak_mb(rs: RuleSet) -> float:
    tracemalloc.start()
    try:
        Classifier(rs)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def bench_set(name: str, args: argparse.Namespace) -> dict[str, Any]:
    rs = read_rules(args.data / name)
    trace: Trace = read_trace(args.data / f"{name}_trace")
    builds = []
    clf = None
    for _ in range(args.reps):
        t0 = time.perf_counter()
        clf = Classifier(rs)
        builds.append(time.perf_counter() - t0)
    assert clf is not None
    peak = build_peak_mb(rs)
    singles, batches = [], []
    bad_single = bad_batch = 0
    for _ in range(args.reps):
        us, answers = measure_single(clf, trace)
        singles.append(us)
        bad_single = max(bad_single, int(np.count_nonzero(answers != trace.idx)))
        secs, answers = measure_batch(clf, trace, repeats=3)
        batches.append(secs)
        bad_batch = max(bad_batch, int(np.count_nonzero(answers != trace.idx)))
    sample = args.reference_sample if name.endswith("10K") else args.reference_sample_1k
    positions = sample_indices(len(trace), sample)
    ref_us, ref = measure_reference(rs, trace, positions)
    bad_ref = sum(1 for p, r in zip(positions, ref, strict=True) if r != int(trace.idx[p]))
    single = statistics.median(singles)
    batch = statistics.median(batches)
    return {
        "name": name,
        "rules": len(rs.rules),
        "packets": len(trace),
        "build_s": statistics.median(builds),
        "build_s_all": builds,
        "build_peak_mb": peak,
        "single_us": single,
        "single_us_all": singles,
        "batch_mpps": len(trace) / batch / 1e6,
        "batch_s_all": batches,
        "reference_us": ref_us,
        "reference_sample": len(positions),
        "speedup": ref_us / single if single else float("nan"),
        "mismatches": {"single": bad_single, "batch": bad_batch, "reference": bad_ref},
        "stats": clf.stats,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="the ClassBench directory")
    ap.add_argument("--families", default="acl1,fw1,ipc1")
    ap.add_argument("--sizes", default="1K,10K")
    ap.add_argument("--reps", type=int, default=3, help="builds and measured passes per set")
    ap.add_argument("--reference-sample", type=int, default=300, help="10K sets (~1.5 ms each)")
    ap.add_argument("--reference-sample-1k", type=int, default=1000, help="1K sets")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    ap.add_argument("--quick", action="store_true", help="--reps 1 --reference-sample 50")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.reference_sample, args.reference_sample_1k = 1, 50, 200
    if not args.data.is_dir():
        print(f"no ClassBench data at {args.data}", file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    families = args.families.split(",")
    sizes = args.sizes.split(",")
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    for size in sizes:
        for family in families:
            name = f"{family}_{size}"
            print(f"... {name}", file=sys.stderr, flush=True)
            rows[name] = bench_set(name, args)
    load_after = os.getloadavg()

    head = (
        f"{'set':<10} {'rules':>6} {'packets':>8} {'build s':>8} {'peak MB':>8} "
        f"{'single us':>10} {'batch Mpps':>11} {'ref us':>9} {'ref n':>6} {'speed-up':>9} "
        f"{'mismatch':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows.values():
        bad = sum(r["mismatches"].values())
        print(
            f"{r['name']:<10} {r['rules']:>6} {r['packets']:>8} {r['build_s']:>8.2f} "
            f"{r['build_peak_mb']:>8.1f} {r['single_us']:>10.2f} {r['batch_mpps']:>11.2f} "
            f"{r['reference_us']:>9.1f} {r['reference_sample']:>6} {r['speedup']:>8.0f}x "
            f"{bad:>9}"
        )
    print()
    for family in families:
        small, large = rows.get(f"{family}_1K"), rows.get(f"{family}_10K")
        if small and large:
            print(
                f"growth {family} 1K->10K: rules x{large['rules'] / small['rules']:.1f}, "
                f"single lookup x{large['single_us'] / small['single_us']:.2f}, "
                f"batch time x{small['batch_mpps'] / large['batch_mpps']:.2f}, "
                f"reference x{large['reference_us'] / small['reference_us']:.1f}"
            )
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; "
        f"process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    print()
    big = [r for r in rows.values() if r["name"].endswith("_10K")]
    for r in big:
        family = r["name"].split("_")[0]
        print(f"ratio fw-speedup-{family}: {r['speedup']:.0f}")
    for r in big:
        family = r["name"].split("_")[0]
        print(f"ratio fw-single-us-{family}: {r['single_us']:.2f}")
    for r in big:
        family = r["name"].split("_")[0]
        print(f"ratio fw-batch-mpps-{family}: {r['batch_mpps']:.2f}")
    for family in families:
        small, large = rows.get(f"{family}_1K"), rows.get(f"{family}_10K")
        if small and large:
            print(f"ratio fw-growth-{family}: {large['single_us'] / small['single_us']:.2f}")
    mismatches = sum(sum(r["mismatches"].values()) for r in rows.values())
    if big:

        def yes(ok: bool) -> str:
            return "yes" if ok else "no"

        print(f"bar single<=3us: {yes(all(r['single_us'] <= BAR_SINGLE_US for r in big))}")
        print(f"bar batch>=2Mpps: {yes(all(r['batch_mpps'] >= BAR_BATCH_MPPS for r in big))}")
        print(f"bar build<10s: {yes(all(r['build_s'] < BAR_BUILD_S for r in big))}")
        print(f"bar build<500MB: {yes(all(r['build_peak_mb'] < BAR_BUILD_MB for r in big))}")
        print(f"bar identical-verdicts: {yes(mismatches == 0)}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"firewall-{stamp}.json"
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": load_after,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    out.write_text(json.dumps({"meta": meta, "sets": rows}, indent=2))
    print(f"results: {out.relative_to(ROOT)}", file=sys.stderr)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
