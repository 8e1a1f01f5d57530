"""Port-list algebra (net/ports.py) against brute force over 0-65535: ranges are drawn
near both ends so that merging, overlaps and the edges of the universe all occur."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ramparts.net.ports import (
    PortRange,
    complement_ports,
    intersect_ports,
    merge_ports,
    parse_ports,
)

ALL = set(range(65536))
_PORTS = st.one_of(st.integers(0, 12), st.integers(65523, 65535))
RANGES = st.builds(lambda a, b: PortRange(min(a, b), max(a, b)), _PORTS, _PORTS)
LISTS = st.lists(RANGES, max_size=5)


def ports(ranges: tuple[PortRange, ...] | list[PortRange]) -> set[int]:
    return {p for r in ranges for p in range(r.lo, r.hi + 1)}


def normalised(ranges: tuple[PortRange, ...]) -> bool:
    return all(a.hi + 1 < b.lo for a, b in itertools.pairwise(ranges))


@given(LISTS)
def test_merge(ranges: list[PortRange]) -> None:
    merged = merge_ports(ranges)
    assert ports(merged) == ports(ranges)
    assert normalised(merged)
    assert merge_ports(reversed(ranges)) == merged


@given(LISTS, LISTS)
def test_intersect(a: list[PortRange], b: list[PortRange]) -> None:
    both = intersect_ports(a, b)
    assert ports(both) == ports(a) & ports(b)
    assert list(both) == sorted(both)
    assert intersect_ports(merge_ports(b), merge_ports(a)) == merge_ports(both)


@given(LISTS, LISTS)
def test_intersect_of_normalised_lists_is_normalised(
    a: list[PortRange], b: list[PortRange]
) -> None:
    both = intersect_ports(merge_ports(a), merge_ports(b))
    assert normalised(both)
    assert both == merge_ports(both)


def test_intersect_keeps_unmerged_pieces_apart() -> None:
    # nftables lists a set's elements one by one; the importer keeps them so.
    a = (PortRange(80, 80), PortRange(81, 81))
    assert intersect_ports(a, (PortRange(0, 100),)) == a
    assert intersect_ports(a, (PortRange(90, 100),)) == ()


@given(LISTS)
def test_complement(ranges: list[PortRange]) -> None:
    rest = complement_ports(ranges)
    assert ports(rest) == ALL - ports(ranges)
    assert normalised(rest)
    assert complement_ports(rest) == merge_ports(ranges)


def test_complement_edges() -> None:
    assert complement_ports(()) == (PortRange(0, 65535),)
    assert complement_ports((PortRange(0, 65535),)) == ()
    assert complement_ports(parse_ports("22,80-90")) == parse_ports("0-21,23-79,91-65535")


def test_parse_ports_normalises() -> None:
    assert parse_ports("81, 80, 82-90, 85") == (PortRange(80, 90),)
    assert parse_ports([443, "8000:8080"]) == (PortRange(443, 443), PortRange(8000, 8080))
