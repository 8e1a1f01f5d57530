"""Inclusive integer intervals ``(lo, hi)``: the set algebra that port lists, address sets
and the classifier's axes share. Results are *normalised*: sorted, disjoint and not
adjacent, so two equal sets have one spelling."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["complement_intervals", "merge_intervals"]


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The same integers as ``intervals`` (in any order, overlapping or touching),
    normalised."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def complement_intervals(intervals: Iterable[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """The integers of ``0..top`` in none of ``intervals`` (in any order, overlapping or
    touching, within ``0..top``), normalised; empty when they cover it all."""
    out: list[tuple[int, int]] = []
    at = 0
    for lo, hi in sorted(intervals):
        if lo > at:
            out.append((at, lo - 1))
        at = max(at, hi + 1)
    if at <= top:
        out.append((at, top))
    return out
