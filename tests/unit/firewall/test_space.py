"""Header space (firewall/space.py) against the rule model itself: the boxes of a rule hold
exactly the packets ``Rule.matches`` accepts, witnesses lie where they claim, the box
algebra is set algebra, and the union searches agree with brute force over every cell."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ramparts.firewall.model import Action, Rule, RuleSet
from ramparts.firewall.space import (
    Box,
    FirstRow,
    Search,
    Space,
    first_match_pieces,
    first_uncovered,
    region_text,
    subtract_all,
)
from ramparts.net import IPSet, Packet, parse_ipset, parse_ports

from .policy_strategies import (
    cell_count,
    every_packet,
    meta_rules,
    packets,
    rule_lists,
    tuple_rules,
)

PROFILES = st.sampled_from(["tuple", "meta"])


def _in(boxes: list[Box], cell: tuple[int, ...]) -> bool:
    point = Box(cell, cell)
    return any(b.contains(point) for b in boxes)


# -- a rule's boxes are the packets it matches --------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(tuple_rules(), meta_rules()), min_size=1, max_size=4),
    st.lists(packets(), min_size=1, max_size=25),
)
def test_boxes_hold_exactly_the_matching_packets(rules: list[Rule], pkts: list[Packet]) -> None:
    space = Space(rules)
    for rule in rules:
        boxes = space.boxes(rule)
        for p in pkts:
            assert rule.matches(p) == _in(boxes, space.cell(p)), (rule, p)


@settings(max_examples=60, deadline=None)
@given(PROFILES.flatmap(lambda p: rule_lists(p, 1, 4)))
def test_witnesses_lie_in_their_cell_and_rule(rules: list[Rule]) -> None:
    space = Space(rules)
    for rule in rules:
        for box in space.boxes(rule):
            w = space.witness(box)
            assert rule.matches(w), (rule, box, w)
            assert box.contains(Box(space.cell(w), space.cell(w)))
    if cell_count(space) <= 4000:
        for cell, p in every_packet(space):
            assert space.cell(p) == cell


def test_boxes_of_a_rule_per_version_and_range() -> None:
    # Two address ranges of two versions and a port list of two ranges: one box per
    # combination a packet can have (an IPv6 source never meets an IPv4 destination).
    rule = Rule(
        Action.ACCEPT,
        src=parse_ipset(["10.0.0.0/8", "2001:db8::/32"]),
        proto=6,
        dport=parse_ports("22,80-81"),
    )
    space = Space([rule])
    assert space.names == ("version", "src", "proto", "dport")
    texts = sorted(space.text(b) for b in space.boxes(rule))
    assert texts == [
        "ipv4 tcp 10.0.0.0/8 -> any port 22",
        "ipv4 tcp 10.0.0.0/8 -> any port 80-81",
        "ipv6 tcp 2001:db8::/32 -> any port 22",
        "ipv6 tcp 2001:db8::/32 -> any port 80-81",
    ]


def test_a_rule_with_no_usable_address_has_no_box() -> None:
    empty = Rule(Action.DROP, src=IPSet([]))
    assert Space([empty]).boxes(empty) == []


def test_fields_no_rule_uses_are_not_axes() -> None:
    plain = [Rule(Action.ACCEPT, proto=6, dport=parse_ports(443))]
    space = Space(plain)
    assert space.names == ("proto", "dport")
    assert len(space.universe()) == 1  # no address axis: one box, not one per version
    meta = [Rule(Action.DROP, proto=6, tcp_flags=(0x12, 0x02), iface="eth0", ct_state=None)]
    assert Space(meta).names == ("proto", "flag:1", "flag:4", "iface")


def test_describe_names_only_what_the_box_restricts() -> None:
    rule = Rule(
        Action.ACCEPT,
        src=parse_ipset("192.0.2.0/24"),
        proto=1,
        icmp_type=8,
        direction="in",
        iface="eth0",
        ct_state=frozenset({"new", "established"}),
    )
    space = Space([rule])
    [box] = space.boxes(rule)
    fields = space.describe(box)
    assert fields == {
        "version": "ipv4",
        "src": "192.0.2.0/24",
        "proto": "icmp",
        "icmp_type": "8",
        "direction": "in",
        "iface": "eth0",
        "ct_state": "new,established",
    }
    assert region_text(fields) == (
        "ipv4 icmp 192.0.2.0/24 -> any icmp-type 8 direction in iface eth0 state new,established"
    )
    w = space.witness(box)
    assert (w.src, w.proto, w.icmp_type, w.icmp_code, w.iface) == (
        0xC0000200,
        1,
        8,
        None,
        "eth0",
    )
    assert w.ct_state in ("new", "established")


def test_witness_prefers_tcp_and_an_ephemeral_source_port() -> None:
    rule = Rule(Action.DROP, src=parse_ipset("185.220.101.9"))
    other = Rule(Action.ACCEPT, proto=6, sport=parse_ports("0-65535"), dport=parse_ports(443))
    space = Space([rule, other])
    w = space.witness(space.boxes(rule)[0])
    assert (w.proto, w.sport, w.dport) == (6, 49152, 0)


# -- box algebra ----------------------------------------------------------------------------


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    lo, hi = [], []
    for _ in range(3):
        a, b = sorted(draw(st.integers(0, 4)) for _ in range(2))
        lo.append(a)
        hi.append(b)
    return Box(tuple(lo), tuple(hi))


def _cells(b: Box) -> set[tuple[int, ...]]:
    return set(itertools.product(*(range(a, c + 1) for a, c in zip(b.lo, b.hi, strict=True))))


@settings(max_examples=300, deadline=None)
@given(boxes(), boxes(), boxes())
def test_box_algebra_is_set_algebra(a: Box, b: Box, c: Box) -> None:
    both = a.intersect(b)
    assert (_cells(both) if both else set()) == _cells(a) & _cells(b)
    assert a.contains(b) == (_cells(b) <= _cells(a))
    pieces = a.subtract(b)
    seen: set[tuple[int, ...]] = set()
    for piece in pieces:
        cells = _cells(piece)
        assert not cells & seen, "pieces overlap"
        seen |= cells
    assert seen == _cells(a) - _cells(b)
    assert len(pieces) <= 6
    # A region (disjoint boxes) minus another box; empty is the empty list.
    region = subtract_all(pieces, c)
    cells = [_cells(r) for r in region]
    assert sum(map(len, cells)) == len(set().union(*cells))
    assert set().union(*cells) == _cells(a) - _cells(b) - _cells(c)
    assert subtract_all([a], a) == []


# -- union questions against brute force -----------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(PROFILES.flatmap(lambda p: rule_lists(p, 2, 5)))
def test_union_searches_agree_with_every_cell(rules: list[Rule]) -> None:
    space = Space(rules)
    assume(cell_count(space) <= 6000)
    table = space.table(RuleSet.of(rules))
    all_cells = [c for c, _ in every_packet(space)]

    def first_row(cell: tuple[int, ...], rows: range) -> int | None:
        for r in rows:
            if table.box(r).contains(Box(cell, cell)):
                return r
        return None

    finder = FirstRow(table, [d.size for d in space.dims])
    shape = (len(all_cells), len(space.dims))
    got = finder.first(np.array(all_cells, dtype=np.int64).reshape(shape))
    expected = [first_row(c, range(len(table))) for c in all_cells]
    assert [None if g < 0 else g for g in got.tolist()] == expected

    for y in range(1, len(rules)):
        earlier = np.arange(int(table.start[y]), dtype=np.int64)
        for r in table.rows_of(y):
            box = table.box(r)
            inside = [c for c in all_cells if box.contains(Box(c, c))]
            free = [c for c in inside if first_row(c, range(int(table.start[y]))) is None]
            status, point = first_uncovered(table, earlier, box)
            assert status is (Search.FOUND if free else Search.EXHAUSTED)
            if point is not None:
                assert point.lo in free
            status, owners, gap = first_match_pieces(table, earlier, box)
            assert status is Search.EXHAUSTED
            decided = {first_row(c, range(int(table.start[y]))) for c in inside}
            assert set(owners) == decided - {None}
            assert (gap is not None) == (None in decided)
            for row, piece in owners.items():
                # Every cell of the piece is decided by that row.
                for c in inside:
                    if piece.contains(Box(c, c)):
                        assert first_row(c, range(int(table.start[y]))) == row


def test_a_union_cover_beyond_the_budget_is_undecided_not_guessed() -> None:
    # Rule 3 is covered only by rules 1 and 2 together; with no budget the search stops.

    rules = [
        Rule(Action.ACCEPT, proto=6, dport=parse_ports("0-1023")),
        Rule(Action.ACCEPT, proto=6, dport=parse_ports("1024-65535")),
        Rule(Action.DROP, proto=6, dport=parse_ports("80-2000"), src=parse_ipset("10.0.0.0/8")),
    ]
    space = Space(rules)
    table = space.table(RuleSet.of(rules))
    earlier = np.arange(int(table.start[2]), dtype=np.int64)
    box = table.box(int(table.start[2]))
    assert first_uncovered(table, earlier, box, budget=0)[0] is Search.BUDGET
    assert first_uncovered(table, earlier, box)[0] is Search.EXHAUSTED
