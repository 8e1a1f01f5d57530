"""ClassBench: rule and trace parsing (and what they refuse, with file:line:column), and the
published traces reproduced on every packet of every trace in ../shared/data/classbench:
by the compiled classifier (single lookups and the batch), by the linear reference's
first-match definition vectorised over rules (``first_match_many``, itself checked against
``evaluate`` in test_reference.py), and by ``evaluate`` one packet at a time on every
packet of the 1K traces and an evenly spread sample of the 10K ones (at 1.5 ms a packet,
all 280K packets would take seven minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ramparts.errors import ConfigError
from ramparts.firewall.classbench import (
    Trace,
    classify_trace,
    measure_reference,
    parse_rules,
    parse_trace,
    read_rules,
    read_trace,
    sample_indices,
)
from ramparts.firewall.classifier import Classifier
from ramparts.firewall.model import Action, RuleSet
from ramparts.firewall.reference import first_match_many
from ramparts.net import PortRange

from ...support import ROOT

DATA = ROOT.parent / "shared" / "data" / "classbench"
FAMILIES = ["acl1", "fw1", "ipc1"]
SIZES = ["1K", "10K"]
REFERENCE_SAMPLE_10K = 300  # packets per 10K trace checked through the reference

# The data lies beside the checkout (../shared/data), on every machine and in CI; its
# absence is a failure, not a reason to skip.
needs_data = pytest.mark.usefixtures("classbench_data")


@pytest.fixture(scope="module")
def classbench_data() -> None:
    assert DATA.is_dir(), f"ClassBench data missing at {DATA} (../shared/data/classbench)"


# -- parsing -------------------------------------------------------------------------------


RULES = """\
@192.0.2.0/24 198.51.100.7/32 0 : 65535 80 : 80 0x06/0xFF
@0.0.0.0/0 10.1.2.3/8 1024 : 65535 53 : 53 0x11/0xFF
@203.0.113.9/32 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00
@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x2f/0xFF 0x0000/0x0000
"""


def test_rules_parse_into_the_model() -> None:
    rs = parse_rules(RULES, file="x.rules", name="x")
    assert (rs.name, rs.default, len(rs.rules)) == ("x", Action.DROP, 4)
    web, dns, host, gre = rs.rules
    assert [r.id for r in rs.rules] == ["1", "2", "3", "4"]
    assert [r.line for r in rs.rules] == [1, 2, 3, 4]
    assert all(r.action is Action.ACCEPT for r in rs.rules)
    assert (str(web.src), str(web.dst), web.proto, web.sport, web.dport) == (
        "192.0.2.0/24",
        "198.51.100.7",
        6,
        None,
        (PortRange(80, 80),),
    )
    # host bits under the prefix length are ignored, as ClassBench itself does
    assert (str(dns.src), str(dns.dst), dns.proto) == ("0.0.0.0/0", "10.0.0.0/8", 17)
    assert dns.sport == (PortRange(1024, 65535),)
    assert (host.proto, host.sport, host.dport) == (None, None, None)
    assert gre.proto == 47


PREFIX = "@1.2.3.4/32 5.6.7.8/32 "


@pytest.mark.parametrize(
    ("line", "where", "reason"),
    [
        # (the bad line, the text at the column the error must name, what it must say)
        (PREFIX + "0 : 65535 0 : 65535 0x06/0x0F", "0x06/0x0F", "protocol mask"),
        (PREFIX + "0 : 65535 0 : 65535 0x06/0x00", "0x06/0x00", "protocol mask"),
        (PREFIX + "0 : 65535 0 : 65535 0x106/0xFF", "0x106", "out of range"),
        (PREFIX + "0 : 65535 0 : 65535 6/FF/0", "6/FF/0", "value/mask"),
        ("@1.2.3.4/33 5.6.7.8/32 0 : 65535 0 : 65535 0x06/0xFF", "@1.2.3.4/33", "prefix"),
        ("@1.2.3.400/32 5.6.7.8/32 0 : 65535 0 : 65535 0x06/0xFF", "@1.2", "address"),
        ("@1.2.3.4/32 5.6.7/32 0 : 65535 0 : 65535 0x06/0xFF", "5.6.7/32", "address"),
        (PREFIX + "0 : 65536 0 : 65535 0x06/0xFF", "0 : 65536", "port"),
        (PREFIX + "9 : 8 0 : 65535 0x06/0xFF", "9 : 8", "empty port range"),
        (PREFIX + "0 : 65535 53 : 53 0x00/0x00", "0x00/0x00", "ports need protocol"),
        (PREFIX + "0 : 65535 0 : 65535 0x06/0xFF 0x02/0x02", "0x02/0x02", "TCP flag"),
        (PREFIX + "0 - 65535 0 : 65535 0x06/0xFF", "@", "expected"),
        (PREFIX + "0 : 65535 0 : 65535", "@", "expected"),
        ("1.2.3.4/32 5.6.7.8/32 0 : 65535 0 : 65535 0x06/0xFF", "1.2", "starts with '@'"),
    ],
)
def test_bad_rules_are_refused_with_their_place(line: str, where: str, reason: str) -> None:
    text = RULES + "\n" + line + "\n"
    with pytest.raises(ConfigError) as info:
        parse_rules(text, file="bad.rules")
    err = info.value
    assert (err.file, err.line, err.column) == ("bad.rules", 6, line.index(where) + 1)
    assert reason in err.reason
    assert str(err).startswith(f"bad.rules:6:{line.index(where) + 1}: ")


def test_traces_parse_into_columns() -> None:
    t = parse_trace("1 2 3 4 6 1\n\n4294967295 0 65535 0 255 7\n")
    assert len(t) == 2
    assert t.src.tolist() == [1, 4294967295] and t.idx.tolist() == [1, 7]
    assert t.src.dtype == np.int64
    p = t.packet(1)
    assert (p.version, p.src, p.dst, p.sport, p.dport, p.proto) == (4, 4294967295, 0, 65535, 0, 255)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("1 2 3 4 6 1\n1 2 3 4 6\n", 2, "expected 6"),
        ("1 2 3 4 6 1\n1 2 3 x 6 1\n", 2, "not a decimal"),
        ("1 2 3 4 6 1\n4294967296 2 3 4 6 1\n", 2, "source address out of range"),
        ("1 2 3 70000 6 1\n", 1, "destination port out of range"),
        ("1 2 3 4 256 1\n", 1, "protocol out of range"),
        ("1 2 3 4 6 -1\n", 1, "rule index out of range"),
        ("1 2 3 4 6 99999999999999999999999\n", 1, "not a decimal"),
    ],
)
def test_bad_traces_are_refused_with_their_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_trace(text, file="t")
    assert (info.value.file, info.value.line) == ("t", line)
    assert reason in info.value.reason


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the rule file"):
        read_rules(tmp_path / "missing")
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read the trace file"):
        read_trace(tmp_path / "bin")


def test_classify_trace_on_a_small_set(tmp_path: Path) -> None:
    (tmp_path / "r").write_text(RULES)
    # 192.0.2.5 -> 198.51.100.7 tcp 80: rule 1; 10.9.9.9 udp 2000 -> 53: rule 2; ...
    (tmp_path / "t").write_text(
        "3221225989 3325256711 1234 80 6 1\n"
        "168430089 167838211 2000 53 17 2\n"
        "3405803785 1 7 7 1 3\n"
        "1 1 0 0 47 4\n"
        "1 1 0 0 6 0\n"
    )
    out = classify_trace(tmp_path / "r", tmp_path / "t", reference=True)
    assert out["packets"] == 5 and out["rules"] == 4
    assert out["mismatches"] == 0 and out["reference_mismatches"] == 0
    assert out["reference_sample"] == 5
    for key in ("build_seconds", "us_per_packet_single", "us_per_packet_batch"):
        assert out[key] >= 0
    assert "reference_us_per_packet" not in classify_trace(tmp_path / "r", tmp_path / "t")
    # a wrong IDX is counted
    (tmp_path / "t").write_text("1 1 0 0 6 4\n1 1 0 0 47 4\n")
    assert classify_trace(tmp_path / "r", tmp_path / "t")["mismatches"] == 1


def test_sample_indices_spread_over_the_trace() -> None:
    assert sample_indices(5, 10) == [0, 1, 2, 3, 4]
    s = sample_indices(1000, 10)
    assert len(s) == 10 and s[0] == 0 and s[-1] == 999


# -- the published traces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sets() -> dict[str, tuple[RuleSet, Trace, Classifier]]:
    out = {}
    for family in FAMILIES:
        for size in SIZES:
            name = f"{family}_{size}"
            rs = read_rules(DATA / name)
            out[name] = (rs, read_trace(DATA / f"{name}_trace"), Classifier(rs))
    return out


NAMES = [f"{f}_{s}" for f in FAMILIES for s in SIZES]


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_compiled_classifier_reproduces_every_packet(
    sets: dict[str, tuple[RuleSet, Trace, Classifier]], name: str
) -> None:
    rs, trace, clf = sets[name]
    assert len(rs.rules) > 700 and len(trace) > 8000
    batch = clf.classify_batch(trace.src, trace.dst, trace.sport, trace.dport, trace.proto)
    assert np.array_equal(batch, trace.idx)
    li = clf.lookup_index
    single = [
        li(4, s, d, pr, sp, dp)
        for s, d, sp, dp, pr in zip(
            trace.src.tolist(),
            trace.dst.tolist(),
            trace.sport.tolist(),
            trace.dport.tolist(),
            trace.proto.tolist(),
            strict=True,
        )
    ]
    assert single == trace.idx.tolist()
    assert clf.stats["residual_leaves"] == 0  # the trees alone decided the batch


@needs_data
@pytest.mark.parametrize("name", NAMES)
def test_reference_reproduces_the_trace(
    sets: dict[str, tuple[RuleSet, Trace, Classifier]], name: str
) -> None:
    rs, trace, clf = sets[name]
    bulk = first_match_many(rs, trace.src, trace.dst, trace.sport, trace.dport, trace.proto)
    assert np.array_equal(bulk, trace.idx), f"{int(np.count_nonzero(bulk != trace.idx))} differ"
    sample = len(trace) if name.endswith("_1K") else REFERENCE_SAMPLE_10K
    positions = sample_indices(len(trace), sample)
    _, answers = measure_reference(rs, trace, positions)
    assert answers == trace.idx[positions].tolist()
    # and the full Verdict of the compiled form is the reference's on those packets
    for i in positions[:: max(1, len(positions) // 100)]:
        p = trace.packet(i)
        assert clf.lookup(p).rule is rs.rules[int(trace.idx[i]) - 1]


@needs_data
def test_classify_trace_reports_no_mismatch() -> None:
    out = classify_trace(
        DATA / "fw1_1K", DATA / "fw1_1K_trace", reference=True, reference_sample=200
    )
    assert out["mismatches"] == 0
    assert out["packets"] == 8050 and out["reference_sample"] == 200
    assert out["reference_mismatches"] == 0 and out["reference_bulk_mismatches"] == 0
    assert set(out) >= {
        "packets",
        "mismatches",
        "build_seconds",
        "us_per_packet_single",
        "us_per_packet_batch",
        "reference_us_per_packet",
    }
