"""Port ranges: ``80``, ``1024-65535``, ``8000:8080`` (iptables style)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PortRange", "parse_ports"]


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi <= 65535:
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
    ranges = sorted(_one(x) for x in items if str(x).strip())
    if not ranges:
        raise ValueError("empty port list")
    merged: list[PortRange] = []
    for r in ranges:
        if merged and r.lo <= merged[-1].hi + 1:
            if r.hi > merged[-1].hi:
                merged[-1] = PortRange(merged[-1].lo, r.hi)
        else:
            merged.append(r)
    return tuple(merged)
