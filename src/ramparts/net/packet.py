"""A packet as the firewall sees it: the 5-tuple plus what rules may also look at."""

from __future__ import annotations

from dataclasses import dataclass

from .addr import parse_ip
from .proto import parse_protocol

__all__ = ["Packet", "meet_tcp_flags"]

# TCP flag bits (as on the wire).
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def meet_tcp_flags(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    """Both TCP flag conditions at once, each ``(mask, value)`` meaning
    ``flags & mask == value``; None when they disagree on a bit both examine."""
    common = a[0] & b[0]
    if a[1] & common != b[1] & common:
        return None
    return (a[0] | b[0], a[1] | b[1])


@dataclass(frozen=True, slots=True)
class Packet:
    version: int
    src: int
    dst: int
    proto: int
    sport: int = 0
    dport: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: int = 0
    direction: str | None = None  # "in" or "out"
    iface: str | None = None  # arrived on (in, forwarded), or leaves by (out)
    out_iface: str | None = None  # a forwarded packet leaves by
    ct_state: str | None = None  # new, established, related, invalid (set by conntrack)

    @classmethod
    def make(
        cls,
        src: str,
        dst: str,
        proto: str | int = "tcp",
        sport: int = 0,
        dport: int = 0,
        **extra: object,
    ) -> Packet:
        """A packet from text addresses (tests, the CLI)."""
        vs, s = parse_ip(src)
        vd, d = parse_ip(dst)
        if vs != vd:
            raise ValueError("source and destination are of different IP versions")
        p = parse_protocol(proto)
        if p is None:
            raise ValueError("a packet has a concrete protocol")
        for name, port in (("source port", sport), ("destination port", dport)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{name} out of range: {port}")
        return cls(vs, s, d, p, sport, dport, **extra)  # type: ignore[arg-type]
