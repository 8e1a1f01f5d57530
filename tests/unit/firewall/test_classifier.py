"""The compiled classifier against the linear reference: hypothesis property tests on random
rule sets and packets (IPv4 and IPv6, address sets of several ranges, port lists, any or
numbered protocols, TCP flags, ICMP type and code, direction, interface, connection state),
through every entry point (lookup, lookup_index, the numpy batch, the per-packet fallbacks
and residual tree leaves), and example cases for the edges."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.firewall.classifier import Classifier
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import IPRange, IPSet, Packet, PortRange, parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, RST, SYN

# A small universe so that random rules overlap and random packets hit their edges.
V4_BASE = 0x0A000000  # 10.0.0.0
V6_BASE = 0x20010DB8 << 96  # 2001:db8::
SPAN = 64
V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1
PORTS = [0, 1, 2, 3, 21, 22, 23, 79, 80, 81, 1023, 1024, 1025, 65534, 65535]
PROTOS = [None, 1, 6, 17, 47, 58, 132]

Settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def address_ranges(draw: st.DrawFn, version: int) -> IPRange:
    base, top = (V4_BASE, V4_MAX) if version == 4 else (V6_BASE, V6_MAX)
    if draw(st.integers(0, 9)) == 0:  # now and then a huge range: a /1, or to the very top
        lo = draw(st.sampled_from([0, 1 << (31 if version == 4 else 127), base]))
        return IPRange(version, lo, top)
    lo = base + draw(st.integers(0, SPAN))
    hi = lo + draw(st.sampled_from([0, 0, 1, 3, 7, 15, 31]))
    return IPRange(version, lo, hi)


@st.composite
def address_sets(draw: st.DrawFn, versions: tuple[int, ...]) -> IPSet | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    ranges = [
        draw(address_ranges(draw(st.sampled_from(versions))))
        for _ in range(draw(st.integers(1, 3)))
    ]
    return IPSet(ranges)


@st.composite
def port_lists(draw: st.DrawFn) -> tuple[PortRange, ...] | None:
    if draw(st.booleans()):
        return None
    ranges = []
    for _ in range(draw(st.integers(1, 3))):
        a, b = sorted(draw(st.sampled_from(PORTS)) for _ in range(2))
        ranges.append(f"{a}-{b}")
    return parse_ports(ranges)


@st.composite
def rules(draw: st.DrawFn, index: int) -> Rule:
    versions = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    src = draw(address_sets(versions))
    dst = draw(address_sets(versions))
    if src is not None and dst is not None and not src.versions & dst.versions:
        dst = None
    proto = draw(st.sampled_from(PROTOS))
    if draw(st.integers(0, 5)) == 0:  # a broad rule: it covers whole regions of the others
        extra: dict[str, Any] = {}
        if draw(st.integers(0, 2)) == 0:
            extra["direction"] = draw(st.sampled_from(["in", "out"]))
        return Rule(draw(st.sampled_from(list(Action))), id=f"r{index}", proto=proto, **extra)
    kw: dict[str, Any] = {}
    if proto in (6, 17, 132):
        kw["sport"] = draw(port_lists())
        kw["dport"] = draw(port_lists())
    if proto == 6 and draw(st.integers(0, 3)) == 0:
        mask = draw(st.sampled_from([SYN, SYN | ACK, RST, FIN | ACK]))
        kw["tcp_flags"] = (mask, draw(st.sampled_from([0, mask, SYN & mask])))
    if proto in (1, 58) and draw(st.integers(0, 2)) == 0:
        kw["icmp_type"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            kw["icmp_code"] = draw(st.integers(0, 1))
    if draw(st.integers(0, 4)) == 0:
        kw["direction"] = draw(st.sampled_from(["in", "out"]))
    if draw(st.integers(0, 5)) == 0:
        kw["iface"] = draw(st.sampled_from(["eth0", "eth1"]))
    if draw(st.integers(0, 4)) == 0:
        states = draw(
            st.sets(st.sampled_from(["new", "established", "related", "invalid"]), min_size=1)
        )
        kw["ct_state"] = frozenset(states)
    action = draw(st.sampled_from([Action.ACCEPT, Action.DROP, Action.REJECT]))
    return Rule(action, id=f"r{index}", src=src, dst=dst, proto=proto, **kw)


@st.composite
def rulesets(draw: st.DrawFn, max_rules: int = 12) -> RuleSet:
    n = draw(st.integers(0, max_rules))
    default = draw(st.sampled_from([Action.DROP, Action.ACCEPT]))
    return RuleSet.of([draw(rules(i)) for i in range(1, n + 1)], default)


def edges(ranges: list[tuple[int, int]], top: int) -> list[int]:
    """Every range's ends and the values just outside them."""
    out = {0, top}
    for lo, hi in ranges:
        out.update(v for v in (lo - 1, lo, hi, hi + 1) if 0 <= v <= top)
    return sorted(out)


@st.composite
def packets(draw: st.DrawFn, rs: RuleSet, plain: bool | None = None) -> Packet:
    """A packet aimed, most of the time, at one rule (each field on the edge of that rule's
    ranges, now and then just outside), else with fields on any rule's edges or anywhere
    in the universe: so that verdicts come from all over the rule set."""
    target = draw(st.sampled_from(rs.rules)) if rs.rules and draw(st.integers(0, 4)) else None
    versions = [4, 6]
    if target is not None:
        for f in (target.src, target.dst):
            if f is not None:
                versions = [v for v in versions if v in f.versions]
    version = draw(st.sampled_from(versions or [4, 6]))
    top = V4_MAX if version == 4 else V6_MAX
    base = V4_BASE if version == 4 else V6_BASE

    def ranges(rule: Rule, field: str) -> list[tuple[int, int]]:
        value = getattr(rule, field)
        if isinstance(value, IPSet):
            return [(x.lo, x.hi) for x in value.ranges if x.version == version]
        return [] if value is None else [(x.lo, x.hi) for x in value]

    def pick(field: str, top: int, anywhere: list[int]) -> int:
        if target is not None and draw(st.integers(0, 5)):
            own = ranges(target, field)
            if own:
                lo, hi = draw(st.sampled_from(own))
                return draw(st.sampled_from([lo, hi, (lo + hi) // 2]))
        choice = draw(st.integers(0, 3))
        if choice == 0:
            return draw(st.sampled_from(anywhere))
        return draw(st.sampled_from(edges([r for x in rs.rules for r in ranges(x, field)], top)))

    universe = list(range(base - 2, base + SPAN + 40, 3))
    src, dst = pick("src", top, universe), pick("dst", top, universe)
    sport, dport = pick("sport", 65535, PORTS), pick("dport", 65535, PORTS)
    if target is not None and target.proto is not None and draw(st.integers(0, 5)):
        proto = target.proto
    else:
        proto = draw(st.sampled_from([0, 1, 6, 17, 47, 58, 132, 255]))
    kw: dict[str, Any] = {}
    if plain is None:
        plain = draw(st.booleans())
    if not plain:
        if proto == 6:
            kw["tcp_flags"] = draw(st.sampled_from([0, SYN, SYN | ACK, ACK, RST, FIN | ACK]))
        if proto in (1, 58) and draw(st.booleans()):
            kw["icmp_type"] = draw(st.integers(0, 3))
            kw["icmp_code"] = draw(st.integers(0, 1))
        kw["direction"] = draw(st.sampled_from([None, "in", "out"]))
        kw["iface"] = draw(st.sampled_from([None, "eth0", "eth1"]))
        kw["ct_state"] = draw(st.sampled_from([None, "new", "established", "related", "invalid"]))
    return Packet(version, src, dst, proto, sport, dport, **kw)


def packet_lists(rs: RuleSet, plain: bool | None, size: int) -> st.SearchStrategy[list[Packet]]:
    return st.lists(packets(rs, plain), min_size=1, max_size=size)


def check_same(clf: Classifier, rs: RuleSet, p: Packet) -> None:
    want = evaluate(rs, p)
    got = clf.lookup(p)
    assert (got.index, got.action, got.rule) == (want.index, want.action, want.rule), p


def batch_columns(ps: list[Packet]) -> list[list[int]]:
    return [[getattr(p, f) for p in ps] for f in ("src", "dst", "sport", "dport", "proto")]


# -- properties ----------------------------------------------------------------------------


@Settings
@given(rulesets(), st.data())
def test_lookup_equals_reference(rs: RuleSet, data: st.DataObject) -> None:
    ps = data.draw(packet_lists(rs, None, 30))
    clf = Classifier(rs)
    for p in ps:
        check_same(clf, rs, p)


@Settings
@given(rulesets(), st.data())
def test_lookup_index_and_batch_equal_reference(rs: RuleSet, data: st.DataObject) -> None:
    ps = data.draw(packet_lists(rs, True, 30))
    clf = Classifier(rs)
    want = {4: [], 6: []}  # type: dict[int, list[int]]
    for p in ps:
        index = evaluate(rs, p).index or 0
        assert clf.lookup_index(p.version, p.src, p.dst, p.proto, p.sport, p.dport) == index
        want[p.version].append(index)
    for version in (4, 6):
        group = [p for p in ps if p.version == version]
        got = clf.classify_batch(*batch_columns(group), version=version)
        assert got.tolist() == want[version]


@Settings
@given(
    rulesets(max_rules=20),
    st.data(),
    st.sampled_from([(2, 48), (5, 3), (1_000_000, 1), (1_000_000, 0)]),
)
def test_residual_leaves_fall_back_exactly(
    rs: RuleSet, data: st.DataObject, limits: tuple[int, int]
) -> None:
    """A tree cut short by its node or depth budget hands its packets to the bit vectors."""
    ps = data.draw(packet_lists(rs, True, 40))
    max_nodes, max_depth = limits
    clf = Classifier(rs, max_nodes=max_nodes, max_depth=max_depth)
    v4 = [p for p in ps if p.version == 4]
    want = [evaluate(rs, p).index or 0 for p in v4]
    assert clf.classify_batch(*batch_columns(v4)).tolist() == want


@Settings
@given(rulesets(), st.data())
def test_batch_without_trees_equals_reference(rs: RuleSet, data: st.DataObject) -> None:
    ps = data.draw(packet_lists(rs, True, 20))
    v4 = [p for p in ps if p.version == 4]
    want = [evaluate(rs, p).index or 0 for p in v4]
    for clf in (Classifier(rs, batch_trees=False), Classifier(rs, max_boxes=1)):
        assert clf.classify_batch(*batch_columns(v4)).tolist() == want


# -- examples ------------------------------------------------------------------------------


def pkt(
    src: str = "192.0.2.1",
    dst: str = "198.51.100.1",
    proto: str | int = "tcp",
    sport: int = 40000,
    dport: int = 80,
    **extra: Any,
) -> Packet:
    return Packet.make(src, dst, proto, sport, dport, **extra)


@pytest.mark.parametrize("default", [Action.DROP, Action.ACCEPT])
def test_empty_rule_set_gives_the_default(default: Action) -> None:
    clf = Classifier(RuleSet.of([], default))
    for p in (pkt(), pkt("2001:db8::1", "2001:db8::2", "udp"), pkt(proto="icmp", icmp_type=8)):
        v = clf.lookup(p)
        assert (v.action, v.rule, v.index, v.by_default) == (default, None, None, True)
    assert clf.lookup_index(4, 1, 2, 6, 3, 4) == 0
    assert clf.classify_batch([1, 2], [3, 4], [5, 6], [7, 8], [6, 17]).tolist() == [0, 0]
    assert clf.classify_batch([], [], [], [], []).tolist() == []


def test_first_of_overlapping_rules_decides() -> None:
    rs = RuleSet.of(
        [
            Rule(Action.DROP, "bad", src=parse_ipset("192.0.2.66")),
            Rule(Action.ACCEPT, "web", proto=6, dport=parse_ports([80, 443])),
            Rule(
                Action.ACCEPT,
                "ssh",
                src=parse_ipset("192.0.2.0/24"),
                proto=6,
                dport=parse_ports(22),
            ),
            Rule(Action.REJECT, "net", dst=parse_ipset("198.51.100.0/24")),
        ]
    )
    clf = Classifier(rs)
    cases = {
        pkt("192.0.2.66", dport=80): 1,
        pkt("192.0.2.65", dport=80): 2,
        pkt("192.0.2.65", dport=443): 2,
        pkt("192.0.2.65", dport=22): 3,
        pkt("192.0.3.1", dport=22): 4,
        pkt("192.0.3.1", "203.0.113.1", dport=22): 0,
        pkt("2001:db8::1", "2001:db8::2", dport=80): 2,
        pkt("2001:db8::1", "2001:db8::2", dport=22): 0,
    }
    for p, index in cases.items():
        v = clf.lookup(p)
        assert (v.index or 0) == index, p
        assert v == evaluate(rs, p)
    assert clf.lookup(pkt("192.0.3.1", "203.0.113.1", dport=22)).action is Action.DROP


def test_several_ranges_and_versions_in_one_rule() -> None:
    rs = RuleSet.of(
        [
            Rule(
                Action.ACCEPT,
                "multi",
                src=parse_ipset(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]),
                proto=17,
                sport=parse_ports(["53", "5353", "6000-6010"]),
            ),
        ],
        Action.DROP,
    )
    clf = Classifier(rs)
    hits = [
        pkt("10.1.2.3", proto="udp", sport=53),
        pkt("192.0.2.7", proto="udp", sport=6005),
        pkt("2001:db8::9", "2001:db8::1", proto="udp", sport=5353),
    ]
    misses = [
        pkt("10.1.2.3", proto="tcp", sport=53),
        pkt("192.0.2.8", proto="udp", sport=53),
        pkt("192.0.2.7", proto="udp", sport=6011),
        pkt("2001:db9::9", "2001:db8::1", proto="udp", sport=53),
    ]
    for p in hits:
        assert clf.lookup(p).index == 1
    for p in misses:
        assert clf.lookup(p).index is None
    batch = clf.classify_batch(*batch_columns([p for p in hits + misses if p.version == 4]))
    assert batch.tolist() == [1, 1, 0, 0, 0]


def test_rules_beyond_the_5_tuple() -> None:
    rs = RuleSet.of(
        [
            Rule(Action.ACCEPT, "est", ct_state=frozenset({"established", "related"})),
            Rule(Action.DROP, "syn-only", proto=6, tcp_flags=(SYN | ACK, SYN), direction="in"),
            Rule(Action.ACCEPT, "no-rst", proto=6, tcp_flags=(RST, 0)),
            Rule(Action.ACCEPT, "ping", proto=1, icmp_type=8, icmp_code=0),
            Rule(Action.ACCEPT, "lan", iface="eth1"),
        ]
    )
    clf = Classifier(rs)
    cases = [
        (pkt(ct_state="established"), 1),
        (pkt(tcp_flags=SYN, direction="in"), 2),
        (pkt(tcp_flags=SYN, direction="out"), 3),
        (pkt(tcp_flags=RST, direction="out"), None),
        (pkt(), 3),  # a plain packet: no flags, so "no RST" holds
        (pkt(proto="icmp", icmp_type=8, icmp_code=0), 4),
        (pkt(proto="icmp", icmp_type=0), None),
        (pkt(proto="icmp"), None),
        (pkt(proto="udp", iface="eth1"), 5),
        (pkt(proto="udp", iface="eth0"), None),
    ]
    for p, index in cases:
        assert clf.lookup(p).index == index, p
        assert clf.lookup(p) == evaluate(rs, p)
    # The plain fast path skips the rules a packet without these fields cannot match.
    assert clf.lookup_index(4, 1, 2, 6, 1000, 80) == 3
    assert clf.lookup_index(4, 1, 2, 1, 0, 0) == 0


def test_out_of_range_values_are_refused() -> None:
    clf = Classifier(RuleSet.of([Rule(Action.ACCEPT)], Action.DROP))
    for args in [
        (4, -1, 0, 6, 0, 0),
        (4, 1 << 32, 0, 6, 0, 0),
        (4, 0, 0, 6, 65536, 0),
        (4, 0, 0, 256, 0, 0),
        (4, 0, 0, 6, 0, -1),
        (5, 0, 0, 6, 0, 0),
        (6, 0, 1 << 128, 6, 0, 0),
    ]:
        with pytest.raises(ValueError):
            clf.lookup_index(*args)
    with pytest.raises(ValueError):
        clf.classify_batch([0], [0], [0], [70000], [6])
    with pytest.raises(ValueError):
        clf.classify_batch([0, 1], [0], [0], [0], [6])
    with pytest.raises(ValueError):
        clf.lookup(Packet(4, 0, 0, 6, -5, 0, tcp_flags=SYN))


def test_the_fields_beyond_the_5_tuple_are_all_known() -> None:
    """The classifier lists the fields a rule may test beyond the 5-tuple (and a packet's
    defaults for them); a new field in the model must be taught to it first."""
    assert {f.name for f in fields(Packet)} == {
        *("version", "src", "dst", "proto", "sport", "dport"),
        *("icmp_type", "icmp_code", "tcp_flags", "direction", "iface", "out_iface", "ct_state"),
    }
    assert {f.name for f in fields(Rule)} == {
        *("action", "id", "src", "dst", "proto", "sport", "dport"),
        *("icmp_type", "icmp_code", "tcp_flags", "direction", "iface", "out_iface", "ct_state"),
        *("reject_with", "comment", "line"),
    }


def test_verdict_and_stats() -> None:
    rs = RuleSet.of([Rule(Action.REJECT, "x", proto=6, dport=parse_ports(23))], Action.ACCEPT)
    clf = Classifier(rs)
    assert clf.verdict(0).by_default and clf.verdict(0).action is Action.ACCEPT
    assert clf.verdict(1).rule is rs.rules[0] and clf.verdict(1).decided_by == "firewall:x"
    stats = clf.stats
    assert stats["rules"] == 1 and stats["trees"] == 1 and stats["residual_leaves"] == 0


def test_large_batch_is_chunked_and_numpy_columns_work() -> None:
    rs = RuleSet.of(
        [Rule(Action.ACCEPT, f"p{i}", proto=6, dport=parse_ports(i)) for i in range(1, 200)]
    )
    clf = Classifier(rs)
    rng = np.random.default_rng(7)
    n = 300_000
    dport = rng.integers(0, 260, n, dtype=np.int64)
    proto = rng.choice(np.array([6, 17]), n)
    src = rng.integers(0, 1 << 32, n, dtype=np.uint32)
    got = clf.classify_batch(src, src, np.zeros(n, dtype=np.uint16), dport, proto)
    want = np.where((proto == 6) & (dport >= 1) & (dport < 200), dport, 0)
    assert np.array_equal(got, want)
