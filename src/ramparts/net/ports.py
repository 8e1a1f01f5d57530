"""Port ranges: ``80``, ``1024-65535``, ``8000:8080`` (iptables style)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .intervals import complement_intervals, merge_intervals

__all__ = ["PortRange", "complement_ports", "intersect_ports", "merge_ports", "parse_ports"]

_MAX_PORT = 65535


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi <= _MAX_PORT:
            raise ValueError(f"invalid port range {self.lo}-{self.hi}")

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _one(text: str) -> PortRange:
    text = text.strip()
    for sep in ("-", ":"):
        if sep in text:
            a, _, b = text.partition(sep)
            if not _digits(a.strip()) or not _digits(b.strip()):
                break
            return PortRange(int(a), int(b))
    if not _digits(text):
        raise ValueError(f"not a port or port range: {text!r}")
    return PortRange(int(text), int(text))


def parse_ports(value: int | str | Iterable[int | str]) -> tuple[PortRange, ...]:
    """Sorted, merged port ranges from a port, ``lo-hi``, or a list (commas allowed)."""
    if isinstance(value, bool):
        raise ValueError("a port is a number")
    if isinstance(value, int):
        items: list[str] = [str(value)]
    elif isinstance(value, str):
        items = value.split(",")
    else:
        items = [str(v) for v in value]
    ranges = [_one(x) for x in items if str(x).strip()]
    if not ranges:
        raise ValueError("empty port list")
    return merge_ports(ranges)


# A port list is a tuple of ranges; *normalised* means sorted, disjoint and not adjacent
# (what parse_ports and merge_ports return), so equal sets of ports are equal tuples.


def merge_ports(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """The same ports as ``ranges`` (in any order, overlapping or touching), normalised."""
    return tuple(PortRange(lo, hi) for lo, hi in merge_intervals((r.lo, r.hi) for r in ranges))


def intersect_ports(a: Sequence[PortRange], b: Sequence[PortRange]) -> tuple[PortRange, ...]:
    """The ports in both lists: the overlap of each range of ``a`` with each of ``b``,
    sorted; empty when they share none. Normalised lists give a normalised result; other
    lists give the same ports, unmerged (an importer may keep a listing's elements apart)."""
    return tuple(
        sorted(
            PortRange(max(x.lo, y.lo), min(x.hi, y.hi))
            for x in a
            for y in b
            if x.lo <= y.hi and y.lo <= x.hi
        )
    )


def complement_ports(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """The ports of 0-65535 in none of ``ranges`` (in any order), normalised; empty when
    ``ranges`` cover them all."""
    return tuple(
        PortRange(lo, hi)
        for lo, hi in complement_intervals(((r.lo, r.hi) for r in ranges), _MAX_PORT)
    )
