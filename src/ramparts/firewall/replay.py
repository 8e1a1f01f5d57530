"""``ramparts fw replay``: run a packet capture through the stateful firewall.

What it owns: reading pcap/pcapng with dpkt (Ethernet with VLAN tags, Linux cooked SLL and
SLL2, raw IP, BSD loopback), turning each IPv4/IPv6 TCP/UDP/ICMP packet into a
:class:`~ramparts.net.packet.Packet`, deciding it with :class:`StatefulFirewall` at its
capture timestamp (the clock of the whole replay), and the report: hits per rule (and for
the default policy and the full table), totals, the dropped packets, the tracker's counters.

This is a shell around pure code: it opens a file and draws a progress bar, nothing else.

Choices worth knowing:

* Direction: a capture does not say which side is inside, so ``Packet.direction`` stays
  None and rules with a direction never match, unless ``inside`` (the protected addresses)
  is given: then a packet from inside to elsewhere is ``out``, from elsewhere to inside
  ``in`` (both or neither: None). The CLI passes no ``inside`` yet.
* Non-first IP fragments carry no ports; the kernel reassembles before conntrack, we do
  not, so they are counted as skipped (and so are non-IP frames and truncated headers).
* An ICMP error's quoted header is parsed by hand (it is often cut after 8 bytes of
  transport header, too short for dpkt) and handed to the tracker, so errors about a tracked
  flow are ``related``.
* dpkt's pcapng reader takes the link type of the first interface for every packet.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import dpkt  # type: ignore[import-untyped]

from ..errors import RampartsError
from ..net.addr import IPSet
from ..net.packet import Packet
from ..net.proto import protocol_name
from .conntrack import ConnTracker, ConnTrackStats, FlowTuple
from .model import Action, RuleSet
from .stateful import TABLE_FULL, Decision, StatefulFirewall

__all__ = [
    "DroppedPacket",
    "ProgressBar",
    "ReplayError",
    "ReplayReport",
    "quoted_tuple",
    "replay_pcap",
]

# Link types (www.tcpdump.org/linktypes.html).
_EN10MB, _NULL, _LOOP, _RAW, _RAW_BSD12, _RAW_BSD14 = 1, 0, 108, 101, 12, 14
_SLL, _SLL2, _IPV4, _IPV6 = 113, 276, 228, 229

_ICMP_QUERY_TYPES = {1: frozenset({0, 8, 13, 14, 15, 16, 17, 18}), 58: frozenset({128, 129})}
_ICMP_ERROR_TYPES = {1: frozenset({3, 4, 5, 11, 12}), 58: frozenset({1, 2, 3, 4})}
_PORT_PROTOS = frozenset({6, 17, 132, 136})  # tcp, udp, sctp, udplite
_IPV6_EXT = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options


class ReplayError(RampartsError):
    """A capture that cannot be replayed (missing, not pcap/pcapng, unknown link type)."""


@dataclass(frozen=True, slots=True)
class DroppedPacket:
    """A packet that did not pass: when, what, and who decided."""

    time: float  # capture timestamp
    packet: Packet  # as the rules saw it (ct_state set)
    action: Action  # drop or reject
    decided_by: str
    index: int | None  # 1-based rule position, None for the default or the full table
    reason: str  # what the tracker said ("SYN-ACK with no flow" ...)

    @property
    def five_tuple(self) -> str:
        p = self.packet
        proto = protocol_name(p.proto)
        src, dst = _addr(p.version, p.src), _addr(p.version, p.dst)
        if p.proto in _PORT_PROTOS:
            if p.version == 6:
                return f"{proto} [{src}]:{p.sport} -> [{dst}]:{p.dport}"
            return f"{proto} {src}:{p.sport} -> {dst}:{p.dport}"
        return f"{proto} {src} -> {dst}"

    @property
    def flags(self) -> str:
        p = self.packet
        if p.proto == 6:
            return _tcp_flags(p.tcp_flags)
        if p.icmp_type is not None:
            return f"type {p.icmp_type}/{p.icmp_code or 0}"
        return ""


@dataclass(slots=True)
class ReplayReport:
    capture: str
    ruleset: RuleSet
    frames: int = 0  # records in the capture
    evaluated: int = 0  # IP packets decided
    accepted: int = 0
    dropped: int = 0
    rejected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # non-ip, fragment, truncated
    rule_hits: list[int] = field(default_factory=list)  # per rule, in order
    default_hits: int = 0
    table_full_hits: int = 0
    ct_states: Counter[str] = field(default_factory=Counter)
    dropped_packets: list[DroppedPacket] = field(default_factory=list)  # the first max_dropped
    first_time: float | None = None
    last_time: float | None = None
    conntrack: ConnTrackStats | None = None

    @property
    def blocked(self) -> int:
        return self.dropped + self.rejected

    def hits(self) -> list[tuple[str, Action, int]]:
        """(label, action, hits) per rule in order, then the default and the full table."""
        rows = []
        for i, (rule, n) in enumerate(zip(self.ruleset.rules, self.rule_hits, strict=True), 1):
            rows.append((rule.id or f"rule-{i}", rule.action, n))
        rows.append(("default", self.ruleset.default, self.default_hits))
        rows.append((TABLE_FULL, Action.DROP, self.table_full_hits))
        return rows

    def render(self, max_dropped: int = 50) -> str:
        out: list[str] = []
        span = (self.last_time or 0.0) - (self.first_time or 0.0)
        out.append(f"capture {self.capture}: {self.frames} frame(s), {span:.6f} s")
        if self.first_time is not None:
            start = datetime.datetime.fromtimestamp(self.first_time, datetime.UTC)
            out.append(f"  starts {start.isoformat(timespec='microseconds')}")
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        out.append(
            f"evaluated {self.evaluated}: accepted {self.accepted}, dropped {self.dropped}, "
            f"rejected {self.rejected}; skipped: {skipped}"
        )
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.ct_states.items())) or "none"
        out.append(f"connection states: {states}")
        out.append("")
        out.append(_table(self._hit_rows(), ["#", "rule", "action", "hits", "%", "match"]))
        if self.conntrack is not None:
            s = self.conntrack
            out.append("")
            out.append(
                f"conntrack: {s.entries} entries (max {s.max_entries}), inserted {s.inserted}, "
                f"refused (table full) {s.refused_full}, early-dropped {s.early_dropped}, "
                f"invalid {s.invalid}, expired {s.expired}, removed {s.removed}"
            )
        out.append("")
        if not self.blocked:
            out.append("no packet dropped")
            return "\n".join(out)
        out.append(f"dropped or rejected packets: {self.blocked}")
        rows = []
        base = self.first_time or 0.0
        for d in self.dropped_packets[:max_dropped]:
            rows.append(
                [
                    f"+{d.time - base:.6f}",
                    d.five_tuple,
                    d.flags,
                    d.packet.ct_state or "untracked",
                    d.action.value,
                    d.decided_by,
                    d.reason,
                ]
            )
        out.append(_table(rows, ["time", "packet", "flags", "state", "action", "by", "why"]))
        if self.blocked > min(len(self.dropped_packets), max_dropped):
            out.append(f"... and {self.blocked - min(len(self.dropped_packets), max_dropped)} more")
        return "\n".join(out)

    def _hit_rows(self) -> list[list[str]]:
        total = self.evaluated or 1
        rows = []
        for i, rule in enumerate(self.ruleset.rules, 1):
            n = self.rule_hits[i - 1]
            label = rule.id or f"rule-{i}"
            rows.append(
                [
                    str(i),
                    label,
                    rule.action.value,
                    str(n),
                    f"{100 * n / total:.1f}",
                    rule.describe(),
                ]
            )
        n = self.default_hits
        rows.append(
            ["-", "default", self.ruleset.default.value, str(n), f"{100 * n / total:.1f}", ""]
        )
        n = self.table_full_hits
        rows.append(["-", TABLE_FULL, "drop", str(n), f"{100 * n / total:.1f}", ""])
        return rows


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


# -- progress ---------------------------------------------------------------------------


class ProgressBar:
    """A one-line bar on a terminal, redrawn only when it changes: bytes of the capture
    read, and packets. Draws nothing when the stream is not a terminal (a log, a pipe)."""

    def __init__(self, total: int, stream: TextIO, *, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.enabled = _isatty(stream)
        self._last = -1
        self._drawn = False

    def update(self, done: int, packets: int) -> None:
        if not self.enabled:
            return
        percent = min(100, 100 * done // self.total)
        if percent == self._last:
            return
        self._last = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\rreplay [{bar}] {percent:3d}%  {packets} packets")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- replay -----------------------------------------------------------------------------


def replay_pcap(
    ruleset: RuleSet,
    path: str | os.PathLike[str],
    progress: bool = True,
    *,
    conntrack: ConnTracker | None = None,
    inside: IPSet | None = None,
    max_dropped: int = 10_000,
    stream: TextIO | None = None,
) -> ReplayReport:
    """Run the capture at ``path`` through ``StatefulFirewall(ruleset, conntrack)``.

    ``progress``: draw a progress bar on ``stream`` (stderr) when it is a terminal.
    ``inside``: the protected addresses, to give packets a direction (see the module).
    ``max_dropped``: how many dropped packets the report keeps (all are counted)."""
    fw = StatefulFirewall(ruleset, conntrack if conntrack is not None else ConnTracker())
    report = ReplayReport(str(path), ruleset, rule_hits=[0] * len(ruleset.rules))
    try:
        f = open(path, "rb")  # noqa: SIM115 -- closed below; the reader needs the handle
    except OSError as exc:
        raise ReplayError(f"{path}: {exc.strerror or exc}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        try:
            reader = dpkt.pcap.UniversalReader(f)
        except (ValueError, dpkt.UnpackError) as exc:
            raise ReplayError(f"{path}: not a pcap or pcapng capture ({exc})") from None
        linktype = int(reader.datalink())
        decode = _LINK_DECODERS.get(linktype)
        if decode is None:
            raise ReplayError(f"{path}: link type {linktype} is not supported")
        bar = ProgressBar(size, stream or sys.stderr) if progress else None
        try:
            for ts, frame in _frames(reader, path):
                report.frames += 1
                now = float(ts)
                if report.first_time is None:
                    report.first_time = now
                report.last_time = now
                _one(fw, report, decode, now, frame, inside, max_dropped)
                if bar is not None:
                    bar.update(f.tell(), report.frames)
        finally:
            if bar is not None:
                bar.close()
    report.conntrack = fw.conntrack.stats(report.last_time or 0.0)
    return report


def _frames(reader: Any, path: str | os.PathLike[str]) -> Iterator[tuple[float, bytes]]:
    try:
        yield from reader
    except (ValueError, struct.error, dpkt.UnpackError) as exc:
        raise ReplayError(f"{path}: damaged capture ({exc})") from None


def _one(
    fw: StatefulFirewall,
    report: ReplayReport,
    decode: _Decoder,
    ts: float,
    frame: bytes,
    inside: IPSet | None,
    max_dropped: int,
) -> None:
    try:
        net = decode(frame)
    except (dpkt.UnpackError, struct.error, IndexError, ValueError):
        report.skipped["truncated"] += 1
        return
    parsed = _packet(net)
    if isinstance(parsed, str):
        report.skipped[parsed] += 1
        return
    packet, icmp_id, inner = parsed
    if inside is not None:
        packet = _with_direction(packet, inside)
    d = fw.decide(packet, ts, icmp_id=icmp_id, inner=inner)
    _count(report, d, ts, max_dropped)


def _count(report: ReplayReport, d: Decision, ts: float, max_dropped: int) -> None:
    report.evaluated += 1
    report.ct_states[d.ct_state or "untracked"] += 1
    if d.refused:
        report.table_full_hits += 1
    elif d.verdict.index is None:
        report.default_hits += 1
    else:
        report.rule_hits[d.verdict.index - 1] += 1
    action = d.action
    if action is Action.ACCEPT:
        report.accepted += 1
        return
    if action is Action.REJECT:
        report.rejected += 1
    else:
        report.dropped += 1
    if len(report.dropped_packets) < max_dropped:
        reason = d.tracking.reason if d.tracking is not None else ""
        index = None if d.refused else d.verdict.index
        report.dropped_packets.append(
            DroppedPacket(ts, d.packet, action, d.decided_by, index, reason)
        )


def _with_direction(p: Packet, inside: IPSet) -> Packet:
    src_in = inside.contains(p.version, p.src)
    dst_in = inside.contains(p.version, p.dst)
    if src_in == dst_in:
        return p
    return replace(p, direction="out" if src_in else "in")


# -- decoding ---------------------------------------------------------------------------

_Decoder = Callable[[bytes], Any]  # a frame -> dpkt IP/IP6 (or anything else: skipped)
_Parsed = tuple[Packet, int | None, FlowTuple | None]  # packet, ICMP id, quoted tuple


def _raw_ip(frame: bytes) -> Any:
    version = frame[0] >> 4 if frame else 0
    if version == 4:
        return dpkt.ip.IP(frame)
    if version == 6:
        return dpkt.ip6.IP6(frame)
    return None


def _ip_payload(data: Any, ethertype: int | None) -> Any:
    """dpkt leaves an IP payload it could not parse as bytes: parse it again, so a cut
    header raises (and counts as truncated) instead of passing for a non-IP frame."""
    if isinstance(data, bytes) and ethertype in (0x0800, 0x86DD):
        return _raw_ip(data)
    return data


def _ethernet(frame: bytes) -> Any:
    eth = dpkt.ethernet.Ethernet(frame)  # VLAN tags (and MPLS) are unwrapped by dpkt
    return _ip_payload(eth.data, getattr(eth, "_next_type", None) or eth.type)


def _sll(frame: bytes) -> Any:
    sll = dpkt.sll.SLL(frame)
    return _ip_payload(sll.data, sll.ethtype)


def _sll2(frame: bytes) -> Any:
    sll = dpkt.sll2.SLL2(frame)
    return _ip_payload(sll.data, sll.ethtype)


def _loopback(frame: bytes) -> Any:
    return _raw_ip(frame[4:])  # a 4-byte address family in host or network order


_LINK_DECODERS: dict[int, _Decoder] = {
    _EN10MB: _ethernet,
    _SLL: _sll,
    _SLL2: _sll2,
    _RAW: _raw_ip,
    _RAW_BSD12: _raw_ip,
    _RAW_BSD14: _raw_ip,
    _IPV4: _raw_ip,
    _IPV6: _raw_ip,
    _NULL: _loopback,
    _LOOP: _loopback,
}


def _packet(net: Any) -> _Parsed | str:
    """A Packet (and its ICMP id and quoted tuple) from a dpkt IP/IP6, or why not."""
    if isinstance(net, dpkt.ip.IP):
        if net.offset:
            return "fragment"
        version, src, dst, proto = 4, net.src, net.dst, net.p
    elif isinstance(net, dpkt.ip6.IP6):
        frag = net.extension_hdrs.get(44)
        if frag is not None and frag.frag_off:
            return "fragment"
        version, src, dst, proto = 6, net.src, net.dst, net.p
    else:
        return "non-ip"
    s, d = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    l4 = net.data
    if proto in (6, 17):
        return _ports(version, s, d, proto, l4)
    if proto in (1, 58):
        return _icmp(version, s, d, proto, l4)
    if proto in _PORT_PROTOS:
        raw = _bytes(l4)
        if len(raw) < 4:
            return "truncated"
        sport, dport = struct.unpack_from("!HH", raw)
        return Packet(version, s, d, proto, sport, dport), None, None
    return Packet(version, s, d, proto), None, None


def _ports(version: int, s: int, d: int, proto: int, l4: Any) -> _Parsed | str:
    if proto == 6:
        if isinstance(l4, dpkt.tcp.TCP):
            return Packet(version, s, d, 6, l4.sport, l4.dport, tcp_flags=l4.flags), None, None
        raw = _bytes(l4)
        if len(raw) < 14:
            return "truncated"
        sport, dport = struct.unpack_from("!HH", raw)
        return Packet(version, s, d, 6, sport, dport, tcp_flags=raw[13]), None, None
    if isinstance(l4, dpkt.udp.UDP):
        return Packet(version, s, d, 17, l4.sport, l4.dport), None, None
    raw = _bytes(l4)
    if len(raw) < 4:
        return "truncated"
    sport, dport = struct.unpack_from("!HH", raw)
    return Packet(version, s, d, 17, sport, dport), None, None


def _icmp(version: int, s: int, d: int, proto: int, l4: Any) -> _Parsed | str:
    raw = _bytes(l4)
    if len(raw) < 4:
        return "truncated"
    icmp_type, icmp_code = raw[0], raw[1]
    packet = Packet(version, s, d, proto, icmp_type=icmp_type, icmp_code=icmp_code)
    icmp_id: int | None = None
    inner: FlowTuple | None = None
    if icmp_type in _ICMP_QUERY_TYPES[proto] and len(raw) >= 6:
        icmp_id = int.from_bytes(raw[4:6], "big")
    elif icmp_type in _ICMP_ERROR_TYPES[proto]:
        inner = quoted_tuple(raw[8:])
    return packet, icmp_id, inner


def _bytes(obj: Any) -> bytes:
    return obj if isinstance(obj, bytes) else bytes(obj)


def quoted_tuple(raw: bytes) -> FlowTuple | None:
    """The flow tuple of the IP packet an ICMP error quotes (often cut short: 8 bytes of
    its transport header are enough), or None if too little of it is there."""
    if not raw:
        return None
    version = raw[0] >> 4
    if version == 4:
        if len(raw) < 20:
            return None
        ihl = (raw[0] & 0x0F) * 4
        proto, src, dst, rest = raw[9], raw[12:16], raw[16:20], raw[ihl:]
    elif version == 6:
        if len(raw) < 40:
            return None
        proto, src, dst, rest = raw[6], raw[8:24], raw[24:40], raw[40:]
        while proto in _IPV6_EXT and len(rest) >= 8:
            proto, rest = rest[0], rest[(rest[1] + 1) * 8 :]
        if proto == 44 and len(rest) >= 8:  # fragment header
            proto, rest = rest[0], rest[8:]
    else:
        return None
    s, d = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    if proto in _PORT_PROTOS:
        if len(rest) < 4:
            return None
        a, b = struct.unpack_from("!HH", rest)
        return FlowTuple(version, proto, s, d, a, b)
    if proto in (1, 58):
        if len(rest) < 6:
            return None
        return FlowTuple(version, proto, s, d, int.from_bytes(rest[4:6], "big"), rest[0])
    return FlowTuple(version, proto, s, d)


def _addr(version: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def _tcp_flags(flags: int) -> str:
    return "".join(c for i, c in enumerate("FSRPAUEC") if flags & (1 << i)) or "none"
