"""IP addresses as integers: inclusive ranges (a prefix is one) and sets of ranges, per
IP version. Integers make matching a comparison and let the classifier cut on them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from .intervals import complement_intervals

__all__ = ["IPRange", "IPSet", "parse_ip", "parse_ipset", "parse_prefix"]

_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}


@dataclass(frozen=True, slots=True, order=True)
class IPRange:
    """Addresses ``lo`` to ``hi`` (inclusive) of one IP version."""

    version: int
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.version not in (4, 6) or not 0 <= self.lo <= self.hi <= _MAX[self.version]:
            raise ValueError(f"invalid IPv{self.version} range {self.lo}-{self.hi}")

    def contains(self, version: int, addr: int) -> bool:
        return version == self.version and self.lo <= addr <= self.hi

    @property
    def is_all(self) -> bool:
        return self.lo == 0 and self.hi == _MAX[self.version]

    def __str__(self) -> str:
        return _range_text(self)


def _range_text(r: IPRange) -> str:
    cls = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
    size = r.hi - r.lo + 1
    bits = 32 if r.version == 4 else 128
    if size & (size - 1) == 0 and r.lo % size == 0:
        plen = bits - (size.bit_length() - 1)
        return str(cls(r.lo)) if plen == bits else f"{cls(r.lo)}/{plen}"
    return f"{cls(r.lo)}-{cls(r.hi)}"


def parse_ip(text: str) -> tuple[int, int]:
    """(version, integer) of an address; an IPv4-mapped IPv6 address counts as IPv4."""
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.version, int(addr)


def parse_prefix(text: str) -> IPRange:
    """A range from ``10.0.0.0/8``, ``2001:db8::/32``, ``192.0.2.7`` or
    ``192.0.2.10-192.0.2.20``. Host bits set in a prefix are an error (as in nftables)."""
    text = text.strip()
    if "-" in text and "/" not in text:
        a, _, b = text.partition("-")
        va, lo = parse_ip(a)
        vb, hi = parse_ip(b)
        if va != vb or lo > hi:
            raise ValueError(f"not an address range: {text!r}")
        return IPRange(va, lo, hi)
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"not an address or prefix: {text!r} ({exc})") from None
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            # ::ffff:a.b.c.d/n is the IPv4 prefix a.b.c.d/(n-96): packets from IPv4-mapped
            # peers are judged as IPv4 (parse_ip), so their rules must be IPv4 too.
            v4 = ipaddress.IPv4Network((int(mapped), net.prefixlen - 96))
            return IPRange(4, int(v4.network_address), int(v4.broadcast_address))
    return IPRange(net.version, int(net.network_address), int(net.broadcast_address))


class IPSet:
    """A set of addresses: merged, sorted ranges per version."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: Iterable[IPRange]) -> None:
        merged: list[IPRange] = []
        for r in sorted(ranges):
            last = merged[-1] if merged else None
            if last is not None and last.version == r.version and r.lo <= last.hi + 1:
                if r.hi > last.hi:
                    merged[-1] = IPRange(r.version, last.lo, r.hi)
            else:
                merged.append(r)
        self.ranges: tuple[IPRange, ...] = tuple(merged)

    def contains(self, version: int, addr: int) -> bool:
        return any(r.version == version and r.lo <= addr <= r.hi for r in self.ranges)

    @property
    def versions(self) -> frozenset[int]:
        return frozenset(r.version for r in self.ranges)

    def intersection(self, other: IPSet) -> IPSet:
        """The addresses in both (empty when none), in one walk over both range lists."""
        a, b = self.ranges, other.ranges
        out: list[IPRange] = []
        i = j = 0
        while i < len(a) and j < len(b):
            x, y = a[i], b[j]
            if (x.version, x.hi) < (y.version, y.lo):
                i += 1
            elif (y.version, y.hi) < (x.version, x.lo):
                j += 1
            else:
                out.append(IPRange(x.version, max(x.lo, y.lo), min(x.hi, y.hi)))
                if (x.version, x.hi) < (y.version, y.hi):
                    i += 1
                else:
                    j += 1
        return IPSet(out)

    def complement(self, version: int) -> IPSet:
        """The addresses of IP ``version`` not in this set (empty when it has them all)."""
        mine = ((r.lo, r.hi) for r in self.ranges if r.version == version)
        return IPSet(
            IPRange(version, lo, hi) for lo, hi in complement_intervals(mine, _MAX[version])
        )

    def only(self, versions: frozenset[int]) -> IPSet:
        """This set without the addresses of the IP versions not in ``versions`` (the set
        itself when there are none)."""
        kept = [r for r in self.ranges if r.version in versions]
        return self if len(kept) == len(self.ranges) else IPSet(kept)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPSet) and other.ranges == self.ranges

    def __hash__(self) -> int:
        return hash(self.ranges)

    def __len__(self) -> int:
        return len(self.ranges)

    def __str__(self) -> str:
        return ", ".join(str(r) for r in self.ranges)

    def __repr__(self) -> str:
        return f"IPSet({self})"


def parse_ipset(value: str | Iterable[str]) -> IPSet:
    """An IPSet from one prefix/range or a list of them (comma-separated text too)."""
    items = [v for v in value.split(",")] if isinstance(value, str) else list(value)
    ranges = [parse_prefix(v) for v in items if v.strip()]
    if not ranges:
        raise ValueError("empty address set")
    return IPSet(ranges)
