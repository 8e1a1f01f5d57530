"""TCP flag conditions (net/packet.py) against every value of the eight flag bits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ramparts.net.packet import meet_tcp_flags

CONDITIONS = st.integers(0, 255).flatmap(
    lambda mask: st.integers(0, 255).map(lambda v: (mask, v & mask))
)


def satisfies(flags: int, cond: tuple[int, int]) -> bool:
    return flags & cond[0] == cond[1]


@given(CONDITIONS, CONDITIONS)
def test_meet_tcp_flags(a: tuple[int, int], b: tuple[int, int]) -> None:
    both = [f for f in range(256) if satisfies(f, a) and satisfies(f, b)]
    meet = meet_tcp_flags(a, b)
    if meet is None:
        assert both == []
    else:
        assert [f for f in range(256) if satisfies(f, meet)] == both


def test_examples() -> None:
    syn_only = (0x3F, 0x02)
    assert meet_tcp_flags(syn_only, (0x10, 0x00)) == (0x3F, 0x02)
    assert meet_tcp_flags(syn_only, (0x10, 0x10)) is None
    assert meet_tcp_flags((0x02, 0x02), (0x10, 0x10)) == (0x12, 0x12)
