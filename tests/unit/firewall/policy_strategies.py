"""Hypothesis strategies and exhaustive enumeration for the policy-analysis tests
(test_space, test_analysis, test_diff).

Rules are drawn over a tiny corner of packet space (addresses 10.0.0.0-10.0.0.15 and
2001:db8::-2001:db8::f, ports 0-7 and 65535, a few ICMP types, three TCP flags, two
interfaces) so that random rules overlap often. Two profiles keep the number of
elementary cells small enough to enumerate: "tuple" (version, addresses, protocol, ports)
and "meta" (protocol, ICMP, TCP flags, direction, interface, state).

``every_packet`` enumerates one packet per elementary cell of a Space: every packet of
the whole space lies in exactly one cell and a cell holds no rule boundary, so a property
that holds for these packets holds for all packets (test_space checks both halves of that
claim against Rule.matches).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from hypothesis import strategies as st

from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.firewall.space import Box, Space
from ramparts.net import IPRange, IPSet, Packet, PortRange

V4 = 0x0A000000  # 10.0.0.0
V6 = 0x20010DB8 << 96  # 2001:db8::
PORTS = [0, 1, 2, 3, 5, 7, 65535]
SYN, ACK, RST = 0x02, 0x10, 0x04
STATES = ["new", "established", "related", "invalid"]


@st.composite
def address_sets(draw: st.DrawFn) -> IPSet | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    ranges = []
    for _ in range(draw(st.integers(1, 2))):
        version = draw(st.sampled_from([4, 4, 4, 6]))
        base = V4 if version == 4 else V6
        lo = base + draw(st.integers(0, 15))
        size = draw(st.sampled_from([1, 2, 4, 8]))
        ranges.append(IPRange(version, lo, min(lo + size - 1, base + 15)))
    return IPSet(ranges)


@st.composite
def port_lists(draw: st.DrawFn) -> tuple[PortRange, ...] | None:
    if draw(st.booleans()):
        return None
    out = []
    for _ in range(draw(st.integers(1, 2))):
        a, b = sorted(draw(st.sampled_from(PORTS)) for _ in range(2))
        out.append(PortRange(a, b))
    return tuple(out)


ACTIONS = st.sampled_from([Action.ACCEPT, Action.ACCEPT, Action.DROP, Action.REJECT])


@st.composite
def tuple_rules(draw: st.DrawFn) -> Rule:
    """A rule on version, addresses, protocol and ports."""
    proto = draw(st.sampled_from([None, 6, 17, 1]))
    src, dst = draw(address_sets()), draw(address_sets())
    if src is not None and dst is not None and not src.versions & dst.versions:
        dst = None
    ports = proto in (6, 17)
    return Rule(
        draw(ACTIONS),
        src=src,
        dst=dst,
        proto=proto,
        sport=draw(port_lists()) if ports else None,
        dport=draw(port_lists()) if ports else None,
    )


@st.composite
def meta_rules(draw: st.DrawFn) -> Rule:
    """A rule on protocol, ICMP type/code, TCP flags, direction, interface and state."""
    proto = draw(st.sampled_from([None, 6, 1, 17]))
    icmp_type = icmp_code = None
    flags = None
    if proto == 1 and draw(st.booleans()):
        icmp_type = draw(st.integers(0, 3))
        if draw(st.booleans()):
            icmp_code = draw(st.integers(0, 1))
    if proto == 6 and draw(st.booleans()):
        mask = draw(st.sampled_from([SYN, SYN | ACK, SYN | ACK | RST]))
        value = draw(st.sampled_from([0, SYN, SYN | ACK, ACK])) & mask
        flags = (mask, value)
    state = None
    if draw(st.booleans()):
        state = frozenset(draw(st.lists(st.sampled_from(STATES), min_size=1, max_size=3)))
    direction = draw(st.sampled_from([None, None, "in", "out"]))
    out_iface = None
    if direction is None:  # (the output interface of a forwarded packet)
        out_iface = draw(st.sampled_from([None, None, "eth1", "lo"]))
    return Rule(
        draw(ACTIONS),
        proto=proto,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        tcp_flags=flags,
        direction=direction,
        iface=draw(st.sampled_from([None, None, "eth0", "lo"])),
        out_iface=out_iface,
        ct_state=state,
    )


def rule_lists(profile: str, min_size: int = 1, max_size: int = 5) -> st.SearchStrategy[list[Rule]]:
    return st.lists(
        tuple_rules() if profile == "tuple" else meta_rules(),
        min_size=min_size,
        max_size=max_size,
    )


@st.composite
def rulesets(draw: st.DrawFn, profile: str, max_size: int = 5) -> RuleSet:
    rules = draw(rule_lists(profile, 0, max_size))
    return RuleSet.of(rules, draw(st.sampled_from(list(Action))))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    """A concrete packet near (and just outside) the tiny corner the rules live in."""
    version = draw(st.sampled_from([4, 6]))
    base = V4 if version == 4 else V6
    top = (1 << 32) - 1 if version == 4 else (1 << 128) - 1
    addr = st.one_of(st.integers(base - 1, base + 17), st.sampled_from([0, top]))
    proto = draw(st.sampled_from([0, 1, 6, 17, 58, 132]))
    return Packet(
        version,
        draw(addr),
        draw(addr),
        proto,
        draw(st.sampled_from([*PORTS, 4, 6, 8, 1024, 65534])),
        draw(st.sampled_from([*PORTS, 4, 6, 8, 1024, 65534])),
        icmp_type=draw(st.sampled_from([None, 0, 1, 2, 3, 4, 255])),
        icmp_code=draw(st.sampled_from([None, 0, 1, 2])),
        tcp_flags=draw(st.integers(0, 0x3F)),
        direction=draw(st.sampled_from([None, "in", "out"])),
        iface=draw(st.sampled_from([None, "eth0", "lo", "wlan0"])),
        out_iface=draw(st.sampled_from([None, "eth1", "lo", "wlan0"])),
        ct_state=draw(st.sampled_from([None, *STATES])),
    )


def cells(space: Space) -> Iterator[tuple[int, ...]]:
    """Every elementary cell of the space (its coordinates)."""
    return itertools.product(*(range(d.size) for d in space.dims))


def cell_count(space: Space) -> int:
    n = 1
    for d in space.dims:
        n *= d.size
    return n


def every_packet(space: Space) -> Iterator[tuple[tuple[int, ...], Packet]]:
    """One packet per elementary cell, with the cell. Cells that mix an IP version with the
    other version's part of the address axis (no packet is there) are skipped."""
    universe = space.universe()
    for c in cells(space):
        box = Box(c, c)
        if any(u.contains(box) for u in universe):
            yield c, space.witness(box)


def effect(ruleset: RuleSet, p: Packet) -> tuple[Action, str | None, int]:
    """What the reference decides for ``p``: (action, reject type, 1-based rule or 0)."""
    v = evaluate(ruleset, p)
    return v.action, v.rule.reject_with if v.rule else None, v.index or 0
