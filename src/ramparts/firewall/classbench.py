"""ClassBench rule sets and header traces, the standard benchmark of the
packet-classification literature: read them into the rule model and numpy columns, and
classify a trace against its IDX column (``ramparts fw classify``).

Rule file, one rule a line, highest priority first::

    @SIP/len DIP/len SPlo : SPhi DPlo : DPhi 0xPP/0xMM

Every rule accepts (its id is its 1-based position), the default drops. Host bits below
a prefix length are ignored, as in ClassBench's own matching. The protocol is exact with
mask 0xFF and any with ``0x00/0x00``; other masks are refused, as are port ranges on a
protocol without ports (the rule model's own check). A trailing flags field is accepted
only as a wildcard (mask 0).

Trace file, one packet a line, decimal: ``SIP DIP SPORT DPORT PROTO IDX``, IDX the 1-based
index of the first matching rule (0 would be the default).

Errors name the file, line and column, and nothing is half-loaded.
"""

from __future__ import annotations

import ipaddress
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..net.addr import IPRange, IPSet
from ..net.packet import Packet
from ..net.ports import PortRange
from .classifier import Classifier
from .model import Action, Rule, RuleSet, evaluate
from .reference import first_match_many

__all__ = [
    "DEFAULT_REFERENCE_SAMPLE",
    "Trace",
    "classify_trace",
    "measure_batch",
    "measure_reference",
    "measure_single",
    "parse_rules",
    "parse_trace",
    "read_rules",
    "read_trace",
]

# Packets timed through the linear reference: about 0.1 ms each at 1K rules, 1-2 ms at 10K.
DEFAULT_REFERENCE_SAMPLE = 1000
_TOKEN = re.compile(r"\S+")
_TRACE_LIMITS = (
    ("source address", (1 << 32) - 1),
    ("destination address", (1 << 32) - 1),
    ("source port", 65535),
    ("destination port", 65535),
    ("protocol", 255),
    ("rule index", (1 << 62)),
)


# -- rules ---------------------------------------------------------------------------------


def _prefix(text: str) -> IPSet:
    addr, slash, length = text.partition("/")
    if not slash or not length.isdigit() or not 0 <= int(length) <= 32:
        raise ValueError(f"not an IPv4 prefix: {text!r}")
    try:
        value = int(ipaddress.IPv4Address(addr))
    except ValueError:
        raise ValueError(f"not an IPv4 address: {addr!r}") from None
    size = 1 << (32 - int(length))
    lo = value & ~(size - 1)
    return IPSet([IPRange(4, lo, lo + size - 1)])


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"not a port: {text!r}")
    return int(text)


def _ports(lo: int, hi: int) -> tuple[PortRange, ...] | None:
    if lo > hi:
        raise ValueError(f"empty port range {lo} : {hi}")
    return None if (lo, hi) == (0, 65535) else (PortRange(lo, hi),)


def _masked(text: str, bits: int) -> tuple[int, int]:
    value, slash, mask = text.partition("/")
    try:
        if not slash:
            raise ValueError
        v, m = int(value, 16), int(mask, 16)
    except ValueError:
        raise ValueError(f"not a value/mask pair like 0x06/0xFF: {text!r}") from None
    if not (0 <= v < (1 << bits) and 0 <= m < (1 << bits)):
        raise ValueError(f"value/mask out of range: {text!r}")
    return v, m


def _protocol(text: str) -> int | None:
    value, mask = _masked(text, 8)
    if mask == 0xFF:
        return value
    if mask == 0 and value == 0:
        return None
    raise ValueError(f"protocol mask {text!r}: only 0xNN/0xFF (exact) and 0x00/0x00 (any)")


def _rule(line: str, index: int, lineno: int) -> Rule:
    """One rule line; ValueError carries the 0-based token number as args[1]."""
    tokens = line.split()
    if len(tokens) not in (9, 10) or tokens[3] != ":" or tokens[6] != ":":
        raise ValueError("expected '@SIP/len DIP/len SPlo : SPhi DPlo : DPhi 0xPP/0xMM'", 0)
    if not tokens[0].startswith("@"):
        raise ValueError("a rule starts with '@'", 0)
    field = 0
    try:
        src = _prefix(tokens[0][1:])
        field = 1
        dst = _prefix(tokens[1])
        field = 2
        sport = _ports(_port(tokens[2]), _port(tokens[4]))
        field = 5
        dport = _ports(_port(tokens[5]), _port(tokens[7]))
        field = 8
        proto = _protocol(tokens[8])
        if len(tokens) == 10:
            field = 9
            if _masked(tokens[9], 16)[1] != 0:
                raise ValueError(f"TCP flag matching ({tokens[9]}) is not supported")
        field = 8  # the model's own checks (ports need tcp, udp or sctp) are about the protocol
        return Rule(
            Action.ACCEPT,
            id=str(index),
            src=src,
            dst=dst,
            proto=proto,
            sport=sport,
            dport=dport,
            line=lineno,
        )
    except ValueError as exc:
        raise ValueError(str(exc), field) from None


def parse_rules(text: str, *, file: str = "<classbench>", name: str = "") -> RuleSet:
    """A rule set from the text of a ClassBench rule file."""
    rules: list[Rule] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rules.append(_rule(line, len(rules) + 1, lineno))
        except ValueError as exc:
            token = exc.args[1] if len(exc.args) > 1 else 0
            starts = [m.start() for m in _TOKEN.finditer(line)]
            column = starts[token] + 1 if token < len(starts) else 1
            raise ConfigError(str(exc.args[0]), file=file, line=lineno, column=column) from None
    return RuleSet.of(rules, Action.DROP, name)


def read_rules(path: str | Path) -> RuleSet:
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the rule file: {exc}", file=str(p)) from None
    return parse_rules(text, file=str(p), name=p.name)


# -- traces --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trace:
    """A header trace as int64 columns; ``idx`` is the expected rule (0: the default)."""

    src: npt.NDArray[np.int64]
    dst: npt.NDArray[np.int64]
    sport: npt.NDArray[np.int64]
    dport: npt.NDArray[np.int64]
    proto: npt.NDArray[np.int64]
    idx: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.idx.size)

    def packet(self, i: int) -> Packet:
        return Packet(
            4,
            int(self.src[i]),
            int(self.dst[i]),
            int(self.proto[i]),
            int(self.sport[i]),
            int(self.dport[i]),
        )


def parse_trace(text: str, *, file: str = "<trace>") -> Trace:
    """A trace from the text of a ClassBench trace file."""
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for n, tokens in lines:
        if len(tokens) != 6:
            raise ConfigError(
                f"expected 6 decimal fields (SIP DIP SPORT DPORT PROTO IDX), got {len(tokens)}",
                file=file,
                line=n,
            )
    try:
        table = np.array([t for _, t in lines], dtype=np.int64).reshape(-1, 6)
    except (ValueError, OverflowError):
        for n, tokens in lines:
            for col, tok in enumerate(tokens):
                if not tok.isdigit() or len(tok) > 18:
                    raise ConfigError(
                        f"not a decimal number: {tok!r}", file=file, line=n, column=col + 1
                    ) from None
        raise
    for col, (what, top) in enumerate(_TRACE_LIMITS):
        bad = np.flatnonzero((table[:, col] < 0) | (table[:, col] > top))
        if bad.size:
            n = lines[int(bad[0])][0]
            raise ConfigError(f"{what} out of range (0..{top})", file=file, line=n)
    cols = [np.ascontiguousarray(table[:, c]) for c in range(6)]
    return Trace(*cols)


def read_trace(path: str | Path) -> Trace:
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the trace file: {exc}", file=str(p)) from None
    return parse_trace(text, file=str(p))


# -- measurement -----------------------------------------------------------------------------


def measure_single(
    clf: Classifier, trace: Trace, limit: int | None = None
) -> tuple[float, npt.NDArray[np.int64]]:
    """Every packet (or the first ``limit``) through ``lookup_index``, one call at a time:
    (median microseconds per call, the answers). The time includes the timer's own call."""
    li = clf.lookup_index
    clock = time.perf_counter_ns
    n = len(trace) if limit is None else min(limit, len(trace))
    rows = zip(
        trace.src[:n].tolist(),
        trace.dst[:n].tolist(),
        trace.proto[:n].tolist(),
        trace.sport[:n].tolist(),
        trace.dport[:n].tolist(),
        strict=True,
    )
    answers: list[int] = []
    times: list[int] = []
    for s, d, pr, sp, dp in rows:
        t0 = clock()
        r = li(4, s, d, pr, sp, dp)
        times.append(clock() - t0)
        answers.append(r)
    median = statistics.median(times) / 1000 if times else 0.0
    return median, np.array(answers, dtype=np.int64).reshape(-1)


def measure_batch(
    clf: Classifier, trace: Trace, repeats: int = 3
) -> tuple[float, npt.NDArray[np.int64]]:
    """The whole trace through ``classify_batch`` ``repeats`` times after one warm-up run:
    (median seconds per run, the answers)."""
    cols = (trace.src, trace.dst, trace.sport, trace.dport, trace.proto)
    answers = clf.classify_batch(*cols)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        clf.classify_batch(*cols)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), answers


def sample_indices(packets: int, sample: int) -> list[int]:
    """``sample`` packet positions spread evenly over the trace (all of them if fewer)."""
    if sample >= packets:
        return list(range(packets))
    return sorted({int(i) for i in np.linspace(0, packets - 1, max(1, sample))})


def measure_reference(
    ruleset: RuleSet, trace: Trace, positions: list[int]
) -> tuple[float, list[int]]:
    """The given packets through the linear reference ``evaluate``, one at a time:
    (median microseconds per packet, the answers as indices, 0 for the default)."""
    times: list[int] = []
    answers: list[int] = []
    clock = time.perf_counter_ns
    for i in positions:
        pkt = trace.packet(i)
        t0 = clock()
        v = evaluate(ruleset, pkt)
        times.append(clock() - t0)
        answers.append(v.index or 0)
    median = statistics.median(times) / 1000 if times else 0.0
    return median, answers


def classify_trace(
    rules_path: str | Path,
    trace_path: str | Path,
    reference: bool = False,
    *,
    reference_sample: int = DEFAULT_REFERENCE_SAMPLE,
    repeats: int = 3,
) -> dict[str, Any]:
    """Classify a ClassBench trace with the compiled classifier, one packet at a time
    (every packet, timed one by one: the median) and as one batch (the median of
    ``repeats`` runs), and optionally a sample through the linear reference.

    ``mismatches`` counts the packets on which any of them disagrees with IDX."""
    ruleset = read_rules(rules_path)
    trace = read_trace(trace_path)
    t0 = time.perf_counter()
    clf = Classifier(ruleset)
    build = time.perf_counter() - t0
    packets = len(trace)
    single_us, single = measure_single(clf, trace)
    batch_s, batch = measure_batch(clf, trace, repeats)
    bad = (single != trace.idx) | (batch != trace.idx)
    out: dict[str, Any] = {
        "rules": len(ruleset.rules),
        "packets": packets,
        "mismatches": 0,
        "mismatches_single": int(np.count_nonzero(single != trace.idx)),
        "mismatches_batch": int(np.count_nonzero(batch != trace.idx)),
        "build_seconds": round(build, 4),
        "us_per_packet_single": round(single_us, 3),
        "us_per_packet_batch": round(batch_s / packets * 1e6, 4) if packets else 0.0,
        "batch_mpps": round(packets / batch_s / 1e6, 3) if packets and batch_s else 0.0,
    }
    if reference:
        positions = sample_indices(packets, reference_sample)
        ref_us, ref = measure_reference(ruleset, trace, positions)
        ref_bad = [p for p, r in zip(positions, ref, strict=True) if r != int(trace.idx[p])]
        bad[ref_bad] = True
        # Every packet through the same first-match definition, vectorised over rules.
        bulk = first_match_many(
            ruleset, trace.src, trace.dst, trace.sport, trace.dport, trace.proto
        )
        bad |= bulk != trace.idx
        out["reference_us_per_packet"] = round(ref_us, 2)
        out["reference_sample"] = len(positions)
        out["reference_mismatches"] = len(ref_bad)
        out["reference_bulk_mismatches"] = int(np.count_nonzero(bulk != trace.idx))
        out["speedup_single"] = round(ref_us / single_us, 1) if single_us else None
    out["mismatches"] = int(np.count_nonzero(bad))
    return out
