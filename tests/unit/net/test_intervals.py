"""Integer intervals (net/intervals.py) against brute force on a small universe."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ramparts.net.intervals import complement_intervals, merge_intervals

TOP = 24


@st.composite
def interval_lists(draw: st.DrawFn, top: int = TOP) -> list[tuple[int, int]]:
    pairs = draw(st.lists(st.tuples(st.integers(0, top), st.integers(0, top)), max_size=6))
    return [(min(a, b), max(a, b)) for a, b in pairs]


def points(intervals: list[tuple[int, int]]) -> set[int]:
    return {p for lo, hi in intervals for p in range(lo, hi + 1)}


def normalised(intervals: list[tuple[int, int]]) -> bool:
    return all(lo <= hi for lo, hi in intervals) and all(
        a[1] + 1 < b[0] for a, b in itertools.pairwise(intervals)
    )


@given(interval_lists())
def test_merge_keeps_the_points_and_normalises(intervals: list[tuple[int, int]]) -> None:
    merged = merge_intervals(intervals)
    assert points(merged) == points(intervals)
    assert normalised(merged)
    assert merge_intervals(merged) == merged


@given(interval_lists(), st.integers(0, 3))
def test_complement_is_the_rest_of_the_universe(
    intervals: list[tuple[int, int]], extra: int
) -> None:
    top = TOP + extra
    rest = complement_intervals(intervals, top)
    assert points(rest) == set(range(top + 1)) - points(intervals)
    assert normalised(rest)
    assert complement_intervals(rest, top) == merge_intervals(intervals)


def test_edges() -> None:
    assert merge_intervals([]) == []
    assert merge_intervals([(5, 6), (0, 1), (2, 3), (3, 4)]) == [(0, 6)]
    assert merge_intervals([(0, 1), (3, 4)]) == [(0, 1), (3, 4)]
    assert complement_intervals([], 9) == [(0, 9)]
    assert complement_intervals([(0, 9)], 9) == []
    assert complement_intervals([(4, 5), (0, 0), (9, 9)], 9) == [(1, 3), (6, 8)]
