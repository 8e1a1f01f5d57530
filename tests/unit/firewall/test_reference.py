"""The vectorised linear reference (``first_match_many``) against ``evaluate``, the
one-packet-at-a-time reference, on random 5-tuple rule sets and packets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.firewall.reference import first_match_many
from ramparts.net import IPRange, IPSet, Packet, PortRange

BASE = 0x0A000000  # 10.0.0.0: a small corner of the space, so rules overlap often
PORTS = [0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 65535]
PROTOS = [None, 6, 17, 1]


@st.composite
def v4_sets(draw: st.DrawFn) -> IPSet | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    ranges = []
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:
            # now and then an IPv6 range, which no IPv4 packet matches
            ranges.append(IPRange(6, 5, 9))
            continue
        lo = BASE + draw(st.integers(0, 40))
        ranges.append(IPRange(4, lo, lo + draw(st.sampled_from([0, 1, 3, 7, 15]))))
    return IPSet(ranges)


@st.composite
def port_lists(draw: st.DrawFn) -> tuple[PortRange, ...] | None:
    if draw(st.booleans()):
        return None
    out = []
    for _ in range(draw(st.integers(1, 3))):
        a, b = sorted(draw(st.sampled_from(PORTS)) for _ in range(2))
        out.append(PortRange(a, b))
    return tuple(out)


@st.composite
def rules(draw: st.DrawFn) -> Rule:
    proto = draw(st.sampled_from(PROTOS))
    ports = proto in (6, 17)
    src, dst = draw(v4_sets()), draw(v4_sets())
    if src is not None and dst is not None and not src.versions & dst.versions:
        dst = None
    return Rule(
        draw(st.sampled_from(list(Action))),
        src=src,
        dst=dst,
        proto=proto,
        sport=draw(port_lists()) if ports else None,
        dport=draw(port_lists()) if ports else None,
    )


@st.composite
def columns(draw: st.DrawFn) -> list[tuple[int, int, int, int, int]]:
    addr = st.integers(0, 60).map(lambda x: BASE + x)
    port = st.one_of(st.sampled_from(PORTS), st.integers(0, 65535))
    proto = st.sampled_from([6, 17, 1, 47])
    one = st.tuples(addr, addr, port, port, proto)
    return draw(st.lists(one, min_size=1, max_size=80))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(rules(), max_size=25),
    columns(),
    st.sampled_from([1, 3, 64]),
    st.sampled_from([1, 2, 1024]),
)
def test_bulk_reference_equals_evaluate(
    rs: list[Rule], pkts: list[tuple[int, int, int, int, int]], pblock: int, rblock: int
) -> None:
    ruleset = RuleSet.of(rs)
    cols = [np.array(c, dtype=np.int64) for c in zip(*pkts, strict=True)]
    got = first_match_many(ruleset, *cols, packet_block=pblock, rule_block=rblock)
    want = [evaluate(ruleset, Packet(4, s, d, pr, sp, dp)).index or 0 for s, d, sp, dp, pr in pkts]
    assert got.tolist() == want


def test_rules_beyond_the_five_tuple_are_refused() -> None:
    rs = RuleSet.of([Rule(Action.ACCEPT, proto=6, tcp_flags=(2, 2))])
    one = np.array([1], dtype=np.int64)
    with pytest.raises(ValueError, match="rule 1: only 5-tuple"):
        first_match_many(rs, one, one, one, one, one)
