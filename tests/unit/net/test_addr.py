"""IPSet algebra (net/addr.py). An IPSet's membership changes only at the ends of its
ranges, so checking every range end (and its neighbours) of the operands is exhaustive;
intersection is also checked against the pairwise overlap of the ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ramparts.net.addr import IPRange, IPSet, parse_ipset

_TOP = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


@st.composite
def ranges(draw: st.DrawFn) -> IPRange:
    version = draw(st.sampled_from([4, 6]))
    end = st.one_of(st.integers(0, 12), st.integers(_TOP[version] - 12, _TOP[version]))
    a, b = draw(end), draw(end)
    return IPRange(version, min(a, b), max(a, b))


SETS = st.lists(ranges(), max_size=5).map(IPSet)


def probes(*sets: IPSet) -> set[tuple[int, int]]:
    """Every point where membership of any of ``sets`` (or their algebra) can change."""
    out = {(v, p) for v in (4, 6) for p in (0, 1, _TOP[v] - 1, _TOP[v])}
    for s in sets:
        for r in s.ranges:
            for p in (r.lo - 1, r.lo, r.hi, r.hi + 1):
                if 0 <= p <= _TOP[r.version]:
                    out.add((r.version, p))
    return out


@given(SETS, SETS)
def test_intersection(a: IPSet, b: IPSet) -> None:
    both = a.intersection(b)
    for v, p in probes(a, b):
        assert both.contains(v, p) == (a.contains(v, p) and b.contains(v, p))
    pairwise = [
        IPRange(x.version, max(x.lo, y.lo), min(x.hi, y.hi))
        for x in a.ranges
        for y in b.ranges
        if x.version == y.version and max(x.lo, y.lo) <= min(x.hi, y.hi)
    ]
    assert both == IPSet(pairwise) == b.intersection(a)


@given(SETS, st.sampled_from([4, 6]))
def test_complement(s: IPSet, version: int) -> None:
    rest = s.complement(version)
    assert rest.versions <= {version}
    for v, p in probes(s):
        if v == version:
            assert rest.contains(v, p) != s.contains(v, p)
    assert rest.complement(version) == s.only(frozenset({version}))


@given(SETS, st.sampled_from([frozenset(), frozenset({4}), frozenset({6}), frozenset({4, 6})]))
def test_only(s: IPSet, versions: frozenset[int]) -> None:
    kept = s.only(versions)
    assert kept == IPSet(r for r in s.ranges if r.version in versions)
    if s.versions <= versions:
        assert kept is s


def test_examples() -> None:
    s = parse_ipset("10.0.0.0/8, 2001:db8::/32")
    assert s.intersection(parse_ipset("10.1.0.0/16, 192.0.2.0/24")) == parse_ipset("10.1.0.0/16")
    assert not s.intersection(parse_ipset("192.0.2.0/24"))
    assert s.complement(4) == parse_ipset("0.0.0.0-9.255.255.255, 11.0.0.0-255.255.255.255")
    assert not parse_ipset("0.0.0.0/0").complement(4)
    assert IPSet([]).complement(6) == parse_ipset("::/0")
    assert s.only(frozenset({6})) == parse_ipset("2001:db8::/32")
