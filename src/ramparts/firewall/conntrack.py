"""Connection tracking modelled on netfilter's nf_conntrack, sans-IO: every call takes
``now`` (seconds on any monotonic scale, e.g. a capture's timestamps).

What it owns: the flow table, each flow's original and reply tuple, the TCP state machine,
the UDP/ICMP/generic timers, and the classification of each packet as ``new``,
``established``, ``related`` or ``invalid`` (or untracked, ``None``), the values
:class:`~ramparts.firewall.model.Rule` matches with ``ct_state``.

Semantics follow the Linux kernel (net/netfilter/nf_conntrack_proto_{tcp,udp,icmp,icmpv6,
generic}.c, Documentation/networking/nf_conntrack-sysctl.rst):

* A flow is stored under its original tuple and its reply tuple (the original with source
  and destination swapped; for ICMP the reply type of the request), so a reply finds the
  flow of the packet it answers and is told apart by its direction.
* ``new``: the packet opens a flow, or belongs to one that has not yet seen a reply, in its
  original direction (a retransmitted SYN, a second DNS query). ``established``: a reply, or
  any packet of a flow that has seen one. ``related``: an ICMP error quoting a tracked flow.
  ``invalid``: anything that fits no flow: a SYN-ACK, ACK, FIN or RST with no flow, a
  transition the TCP table refuses (ACK from the client in SYN_SENT), a TCP flag
  combination the kernel refuses (no flags, FIN without ACK, SYN with FIN ...), an echo
  reply with no request, an ICMP error that quotes nothing we know.
* TCP uses the kernel's state table (below) and its default timeouts. Sequence numbers and
  windows are not tracked (a Packet carries none), so the kernel's window checks, its
  RETRANS/UNACK timers and its RFC 5961 RST checks do not apply. ``tcp_loose`` mirrors
  ``nf_conntrack_tcp_loose``; it defaults to *off* here (the kernel's default is on): an ACK
  with no flow is invalid, as a firewall that "saw no SYN" should say.
* UDP: 30 s until a reply; a flow that has seen a reply and is still active more than 2 s
  after it began is a stream: 120 s and assured (kernel >= 5.0 semantics).
* ICMP/ICMPv6 echo (and the other query/response pairs): 30 s. ICMPv6 neighbour discovery
  and MLD are untracked (``ct_state`` None), as in the kernel. Errors are ``related`` when
  the caller passes the quoted header as ``inner`` and it belongs to a live flow.
* Other protocols (SCTP, GRE, ESP ...): one flow per address pair, protocol and ports
  (0 when the protocol has none), 600 s, like ``nf_conntrack_proto_generic``.

Two phases, so a firewall can consult its rules between them: :meth:`ConnTracker.classify`
says what a packet is without changing any flow; :meth:`ConnTracker.commit` applies it (a
packet the rules dropped is simply never committed: it creates and changes nothing).
:meth:`ConnTracker.track` does both. Expired flows are collected lazily, from a heap of
deadlines, on every call.

The table has a size limit (``max_entries``). When it is full and a packet would create a
flow, expired flows are collected first; if it is still full the new flow is *refused*
(outcome ``REFUSED``, counted in ``refused_full``) and no existing flow is touched: a flood
of new flows cannot silently cut established connections. ``early_drop=True`` opts into
netfilter's behaviour instead: evict the oldest flow that is not yet assured (a half-open
TCP handshake, an unreplied UDP flow), counted in ``early_dropped``; assured flows are never
evicted. The default refuses because the issue asks that existing flows never be lost; a
host facing SYN floods may prefer early_drop, so the choice is the operator's.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..net.packet import ACK, FIN, RST, SYN, URG, Packet

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "Classification",
    "ConnTrackStats",
    "ConnTracker",
    "Flow",
    "FlowTuple",
    "Outcome",
    "TcpState",
    "Timeouts",
    "flow_tuple",
    "reply_tuple",
]

#: The largest hash size the kernel picks by itself, and a common nf_conntrack_max.
DEFAULT_MAX_ENTRIES = 262_144

_TCP, _UDP, _ICMP, _ICMPV6 = 6, 17, 1, 58


class TcpState(enum.IntEnum):
    """netfilter's TCP conntrack states (enum tcp_conntrack), in the kernel's order."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9


class Outcome(enum.Enum):
    """What a packet is to the tracker; ``REFUSED`` only comes back from a commit."""

    NEW = "new"
    ESTABLISHED = "established"
    RELATED = "related"
    INVALID = "invalid"
    UNTRACKED = "untracked"
    REFUSED = "refused"  # would open a flow, but the table is full

    @property
    def ct_state(self) -> str | None:
        """The value rules match (``Rule.ct_state``); None for untracked packets."""
        if self is Outcome.UNTRACKED:
            return None
        if self is Outcome.REFUSED:
            return "new"
        return str(self.value)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds a flow lives after its last packet, per state. The defaults are the
    kernel's (nf_conntrack_proto_tcp.c ``tcp_timeouts``, nf_conntrack-sysctl.rst)."""

    tcp_syn_sent: float = 120.0  # 2 MINS
    tcp_syn_recv: float = 60.0  # 60 SECS
    tcp_established: float = 432_000.0  # 5 DAYS
    tcp_fin_wait: float = 120.0  # 2 MINS
    tcp_close_wait: float = 60.0  # 60 SECS
    tcp_last_ack: float = 30.0  # 30 SECS
    tcp_time_wait: float = 120.0  # 2 MINS
    tcp_close: float = 10.0  # 10 SECS
    tcp_syn_sent2: float = 120.0  # 2 MINS
    udp_unreplied: float = 30.0  # nf_conntrack_udp_timeout
    udp_stream: float = 120.0  # nf_conntrack_udp_timeout_stream (180 before Linux 5.0)
    udp_stream_after: float = 2.0  # "still active after two seconds? extend timeout"
    icmp: float = 30.0  # nf_conntrack_icmp_timeout, nf_conntrack_icmpv6_timeout
    generic: float = 600.0  # nf_conntrack_generic_timeout

    def tcp(self, state: TcpState) -> float:
        value: float = getattr(self, _TCP_TIMEOUT_FIELDS[state])
        return value


# Timeouts field per TcpState (NONE never has a timer of its own).
_TCP_TIMEOUT_FIELDS = (
    "tcp_close",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_established",
    "tcp_fin_wait",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_time_wait",
    "tcp_close",
    "tcp_syn_sent2",
)


# -- the TCP state table ----------------------------------------------------------------
#
# tcp_conntracks[direction][flag class][old state] from nf_conntrack_proto_tcp.c (Linux 6.x):
# IV = invalid, IG = ignored (may be valid or not: let it through, change nothing).

_SYN_SET, _SYNACK_SET, _FIN_SET, _ACK_SET, _RST_SET, _NONE_SET = range(6)
_FLAG_CLASS_NAMES = ("SYN", "SYN-ACK", "FIN", "ACK", "RST", "no flags")
_IV, _IG = -1, -2

_TCP_TABLE_TEXT = (
    # ORIGINAL  NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
    """
    syn         SS  SS  IG  IG  IG  IG  IG  SS  SS  S2
    synack      IV  IV  SR  IV  IV  IV  IV  IV  IV  SR
    fin         IV  IV  FW  FW  LA  LA  LA  TW  CL  IV
    ack         ES  IV  ES  ES  CW  CW  TW  TW  CL  IV
    rst         IV  CL  CL  CL  CL  CL  CL  CL  CL  CL
    none        IV  IV  IV  IV  IV  IV  IV  IV  IV  IV
    """,
    # REPLY     NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
    """
    syn         IV  S2  IV  IV  IV  IV  IV  SS  IV  S2
    synack      IV  SR  IG  IG  IG  IG  IG  IG  IG  SR
    fin         IV  IV  FW  FW  LA  LA  LA  TW  CL  IV
    ack         IV  IG  SR  ES  CW  CW  TW  TW  CL  IG
    rst         IV  CL  CL  CL  CL  CL  CL  CL  CL  CL
    none        IV  IV  IV  IV  IV  IV  IV  IV  IV  IV
    """,
)
_ABBREV = {
    "NO": TcpState.NONE,
    "SS": TcpState.SYN_SENT,
    "SR": TcpState.SYN_RECV,
    "ES": TcpState.ESTABLISHED,
    "FW": TcpState.FIN_WAIT,
    "CW": TcpState.CLOSE_WAIT,
    "LA": TcpState.LAST_ACK,
    "TW": TcpState.TIME_WAIT,
    "CL": TcpState.CLOSE,
    "S2": TcpState.SYN_SENT2,
}


def _cell(c: str) -> int:
    return {"IV": _IV, "IG": _IG}[c] if c in ("IV", "IG") else int(_ABBREV[c])


_TCP_TABLE: tuple[tuple[tuple[int, ...], ...], ...] = tuple(
    tuple(tuple(_cell(c) for c in line.split()[1:]) for line in text.strip().splitlines())
    for text in _TCP_TABLE_TEXT
)

# tcp_valid_flags (nf_conntrack_proto_tcp.c), after masking out PSH, ECE and CWR.
_FLAG_MASK = FIN | SYN | RST | ACK | URG
_VALID_TCP_FLAGS = frozenset(
    {
        SYN,
        SYN | URG,
        SYN | ACK,
        RST,
        RST | ACK,
        FIN | ACK,
        FIN | ACK | URG,
        ACK,
        ACK | URG,
    }
)


def _flag_class(flags: int) -> int:
    """get_conntrack_index(): RST wins, then SYN (with or without ACK), FIN, ACK."""
    if flags & RST:
        return _RST_SET
    if flags & SYN:
        return _SYNACK_SET if flags & ACK else _SYN_SET
    if flags & FIN:
        return _FIN_SET
    if flags & ACK:
        return _ACK_SET
    return _NONE_SET


# -- ICMP -------------------------------------------------------------------------------

# Query types and their answers (invmap in nf_conntrack_proto_icmp{,v6}.c).
_ICMP_INVERSE: dict[int, dict[int, int]] = {
    _ICMP: {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17},
    _ICMPV6: {128: 129, 129: 128, 139: 140, 140: 139},
}
_ICMP_QUERIES: dict[int, frozenset[int]] = {
    _ICMP: frozenset({8, 13, 15, 17}),
    _ICMPV6: frozenset({128, 139}),
}
_ICMP_ERRORS: dict[int, frozenset[int]] = {
    _ICMP: frozenset({3, 4, 5, 11, 12}),  # unreachable, quench, redirect, time exceeded, param
    _ICMPV6: frozenset({1, 2, 3, 4}),  # unreachable, too big, time exceeded, param problem
}
# MLD and neighbour discovery: never tracked (noct_valid_new in nf_conntrack_proto_icmpv6.c).
_ICMPV6_UNTRACKED = frozenset({130, 131, 132, 133, 134, 135, 136, 143})


# -- tuples and flows -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """One direction of a flow. For TCP, UDP and other port protocols ``a`` and ``b`` are
    the source and destination ports; for ICMP queries ``a`` is the identifier and ``b``
    the ICMP type (netfilter's ``src.u.icmp.id`` and ``dst.u.icmp.type``)."""

    version: int
    proto: int
    src: int
    dst: int
    a: int = 0
    b: int = 0

    def __str__(self) -> str:
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        src, dst = cls(self.src), cls(self.dst)
        if self.proto in _ICMP_INVERSE:
            return f"proto {self.proto} {src} -> {dst} type {self.b} id {self.a}"
        if self.version == 6:
            return f"proto {self.proto} [{src}]:{self.a} -> [{dst}]:{self.b}"
        return f"proto {self.proto} {src}:{self.a} -> {dst}:{self.b}"


def flow_tuple(packet: Packet, icmp_id: int | None = None) -> FlowTuple | None:
    """The tuple of a packet, or None for an ICMP packet that forms no flow (errors,
    unknown types). ``icmp_id`` is the echo identifier (a Packet does not carry it)."""
    if packet.proto in _ICMP_INVERSE:
        if packet.icmp_type is None or packet.icmp_type not in _ICMP_INVERSE[packet.proto]:
            return None
        return FlowTuple(
            packet.version, packet.proto, packet.src, packet.dst, icmp_id or 0, packet.icmp_type
        )
    return FlowTuple(
        packet.version, packet.proto, packet.src, packet.dst, packet.sport, packet.dport
    )


def reply_tuple(t: FlowTuple) -> FlowTuple:
    """The tuple a reply to ``t`` carries (nf_ct_invert_tuple)."""
    inverse = _ICMP_INVERSE.get(t.proto)
    if inverse is not None:
        return FlowTuple(t.version, t.proto, t.dst, t.src, t.a, inverse.get(t.b, t.b))
    return FlowTuple(t.version, t.proto, t.dst, t.src, t.b, t.a)


@dataclass(slots=True, eq=False)
class Flow:
    """A tracked flow. Read it; only the tracker changes it."""

    id: int
    original: FlowTuple
    reply: FlowTuple
    created: float
    last_seen: float
    expires: float
    tcp_state: TcpState | None = None
    seen_reply: bool = False
    assured: bool = False
    packets_original: int = 0
    packets_reply: int = 0
    last_class: int = _NONE_SET  # TCP flag class of the last packet (for resync)
    last_reply: bool = False  # direction of that packet
    stream_after: float = 0.0  # UDP: a replied flow active after this is a stream

    @property
    def proto(self) -> int:
        return self.original.proto

    @property
    def state_name(self) -> str:
        """``ESTABLISHED`` etc. for TCP; ``UNREPLIED``/``REPLIED``/``ASSURED`` otherwise."""
        if self.tcp_state is not None:
            return self.tcp_state.name
        if self.assured:
            return "ASSURED"
        return "REPLIED" if self.seen_reply else "UNREPLIED"


@dataclass(frozen=True, slots=True)
class Classification:
    """What :meth:`ConnTracker.classify` found; hand it to :meth:`ConnTracker.commit`
    (at once: a classification is only valid until the table next changes).

    ``tcp_state`` is the TCP state the flow will be in after a commit; ``reason`` says why
    a packet is what it is (shown for invalid packets in traces and replay reports)."""

    outcome: Outcome
    reason: str
    tuple: FlowTuple | None = None
    flow: Flow | None = None  # the flow the packet belongs (or, if related, refers) to
    reply: bool = False  # the packet travels in the flow's reply direction
    tcp_state: TcpState | None = None
    creates: bool = False  # a commit inserts a new flow for ``tuple``
    replaces: Flow | None = None  # a commit first removes this flow (TCP reopen)
    ignored: bool = False  # netfilter's "ignore": passes, changes no state or timer
    tcp_class: int = _NONE_SET  # TCP: the packet's flag class (SYN, SYN-ACK, FIN, ACK, RST)
    generation: int = 0

    @property
    def ct_state(self) -> str | None:
        return self.outcome.ct_state


@dataclass(frozen=True, slots=True)
class ConnTrackStats:
    entries: int
    max_entries: int
    inserted: int  # flows created
    refused_full: int  # new flows refused because the table was full
    early_dropped: int  # non-assured flows evicted to make room (early_drop=True only)
    invalid: int  # packets classified invalid
    expired: int  # flows removed by their timeout
    removed: int  # flows removed by the protocol (RST before any reply, TCP reopen)

    def as_dict(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "max_entries": self.max_entries,
            "inserted": self.inserted,
            "refused_full": self.refused_full,
            "early_dropped": self.early_dropped,
            "invalid": self.invalid,
            "expired": self.expired,
            "removed": self.removed,
        }


# -- the tracker ------------------------------------------------------------------------


class ConnTracker:
    """The connection table. Not thread-safe; one per worker, like the rest of the core."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        timeouts: Timeouts | None = None,
        tcp_loose: bool = False,
        early_drop: bool = False,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.timeouts = timeouts or Timeouts()
        self.tcp_loose = tcp_loose
        self.early_drop = early_drop
        self._by_tuple: dict[FlowTuple, Flow] = {}
        self._flows: dict[int, Flow] = {}  # by id, oldest first
        self._deadlines: list[tuple[float, int]] = []  # (expires, flow id), lazily pruned
        self._next_id = 1
        self._generation = 0
        self._inserted = 0
        self._refused_full = 0
        self._early_dropped = 0
        self._invalid = 0
        self._expired = 0
        self._removed = 0

    # -- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._flows)

    def flows(self, now: float) -> Iterator[Flow]:
        """The live flows, oldest first."""
        self.expire(now)
        return iter(list(self._flows.values()))

    def lookup(self, packet: Packet, now: float, *, icmp_id: int | None = None) -> Flow | None:
        """The live flow a packet belongs to (either direction), if any."""
        self.expire(now)
        t = flow_tuple(packet, icmp_id)
        return None if t is None else self._by_tuple.get(t)

    def stats(self, now: float) -> ConnTrackStats:
        self.expire(now)
        return ConnTrackStats(
            entries=len(self._flows),
            max_entries=self.max_entries,
            inserted=self._inserted,
            refused_full=self._refused_full,
            early_dropped=self._early_dropped,
            invalid=self._invalid,
            expired=self._expired,
            removed=self._removed,
        )

    # -- expiry -------------------------------------------------------------------------

    def expire(self, now: float) -> int:
        """Remove the flows whose timeout has passed (``expires <= now``); how many."""
        removed = 0
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            expires, fid = heapq.heappop(heap)
            flow = self._flows.get(fid)
            if flow is not None and flow.expires == expires:
                self._unlink(flow)
                removed += 1
        if removed:
            self._expired += removed
        if len(heap) > 4 * len(self._flows) + 1024:  # stale deadlines of refreshed flows
            self._deadlines = [(f.expires, f.id) for f in self._flows.values()]
            heapq.heapify(self._deadlines)
        return removed

    def _set_timer(self, flow: Flow, now: float, timeout: float) -> None:
        flow.expires = now + timeout
        heapq.heappush(self._deadlines, (flow.expires, flow.id))

    def _unlink(self, flow: Flow) -> None:
        del self._flows[flow.id]
        for t in (flow.original, flow.reply):
            if self._by_tuple.get(t) is flow:
                del self._by_tuple[t]
        self._generation += 1

    # -- classify -----------------------------------------------------------------------

    def classify(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Classification:
        """What ``packet`` is, changing no flow (expired flows are collected first).

        ``icmp_id`` is an ICMP query's identifier; ``inner`` the tuple of the packet an ICMP
        error quotes (as the quoted packet travelled). Each call counts as one packet seen:
        an invalid one is counted in ``stats().invalid``."""
        self.expire(now)
        c = self._classify(packet, icmp_id, inner)
        if c.outcome is Outcome.INVALID:
            self._invalid += 1
        return c

    def _classify(self, p: Packet, icmp_id: int | None, inner: FlowTuple | None) -> Classification:
        gen = self._generation
        if p.proto in _ICMP_INVERSE:
            early = self._classify_icmp_special(p, inner, gen)
            if early is not None:
                return early
        t = flow_tuple(p, icmp_id)
        if t is None:  # ICMP of a type that forms no flow
            return Classification(Outcome.INVALID, f"ICMP type {p.icmp_type} is not tracked")
        flow = self._by_tuple.get(t)
        reply = flow is not None and t == flow.reply and t != flow.original
        if p.proto == _TCP:
            return self._classify_tcp(p, t, flow, reply, gen)
        if flow is None:
            if p.proto in _ICMP_INVERSE and t.b not in _ICMP_QUERIES[p.proto]:
                return Classification(
                    Outcome.INVALID, f"ICMP type {t.b} answers no request", t, generation=gen
                )
            return Classification(Outcome.NEW, "new flow", t, creates=True, generation=gen)
        outcome = Outcome.ESTABLISHED if reply or flow.seen_reply else Outcome.NEW
        reason = (
            "reply" if reply else ("flow has seen a reply" if flow.seen_reply else "no reply yet")
        )
        return Classification(outcome, reason, t, flow, reply, generation=gen)

    def _classify_icmp_special(
        self, p: Packet, inner: FlowTuple | None, gen: int
    ) -> Classification | None:
        """ICMP errors (related or invalid), untracked ICMPv6, a missing type; else None."""
        if p.icmp_type is None:
            return Classification(Outcome.INVALID, "ICMP packet without a type")
        if p.icmp_type in _ICMP_ERRORS[p.proto]:
            if inner is None:
                return Classification(Outcome.INVALID, "ICMP error without its quoted header")
            flow = self._by_tuple.get(inner)  # either direction: both tuples are keys
            if flow is None:
                return Classification(Outcome.INVALID, f"ICMP error quotes no flow ({inner})")
            return Classification(
                Outcome.RELATED, f"ICMP error about {flow.original}", inner, flow, generation=gen
            )
        if p.proto == _ICMPV6 and p.icmp_type in _ICMPV6_UNTRACKED:
            return Classification(Outcome.UNTRACKED, "neighbour discovery / MLD: untracked")
        return None

    def _classify_tcp(
        self, p: Packet, t: FlowTuple, flow: Flow | None, reply: bool, gen: int
    ) -> Classification:
        flags = p.tcp_flags & _FLAG_MASK
        if flags not in _VALID_TCP_FLAGS:
            reason = f"invalid TCP flag combination {_flags_text(p.tcp_flags)}"
            return Classification(Outcome.INVALID, reason, t, flow, reply)
        klass = _flag_class(flags)
        what = _FLAG_CLASS_NAMES[klass]
        if flow is None:
            new = _TCP_TABLE[0][klass][TcpState.NONE]
            if new == TcpState.SYN_SENT:
                reason = "new flow (SYN)"
            elif new == TcpState.ESTABLISHED and self.tcp_loose:
                reason = "new flow picked up mid-stream (tcp_loose)"
            else:
                return Classification(Outcome.INVALID, f"{what} with no flow", t, tcp_class=klass)
            return Classification(
                Outcome.NEW,
                reason,
                t,
                tcp_state=TcpState(new),
                creates=True,
                tcp_class=klass,
                generation=gen,
            )

        old = flow.tcp_state if flow.tcp_state is not None else TcpState.NONE
        new = _TCP_TABLE[1 if reply else 0][klass][old]
        side = "reply" if reply else "original"
        settled = Outcome.ESTABLISHED if reply or flow.seen_reply else Outcome.NEW
        if new == _IV:
            reason = f"{what} in {old.name} ({side} direction)"
            return Classification(Outcome.INVALID, reason, t, flow, reply, tcp_class=klass)
        if new == _IG:
            if klass == _SYNACK_SET and flow.last_class == _SYN_SET and flow.last_reply != reply:
                # A SYN-ACK answering a SYN we ignored: both ends are in sync, we are not
                # (the kernel also compares sequence numbers). Start over from SYN_RECV.
                reason, state, ignored = f"{what} answers an ignored SYN: resync", 2, False
            else:
                reason, state, ignored = f"{what} in {old.name} ignored", int(old), True
            return Classification(
                settled,
                reason,
                t,
                flow,
                reply,
                TcpState(state),
                ignored=ignored,
                tcp_class=klass,
                generation=gen,
            )
        state = TcpState(new)
        if state == TcpState.SYN_SENT and old in (TcpState.TIME_WAIT, TcpState.CLOSE):
            # A new connection on the ports of a closed one: forget the old flow, start a
            # new one with this packet's sender as the originator.
            return Classification(
                Outcome.NEW,
                f"new flow (SYN) replacing one in {old.name}",
                t,
                tcp_state=TcpState.SYN_SENT,
                creates=True,
                replaces=flow,
                tcp_class=klass,
                generation=gen,
            )
        return Classification(
            settled,
            f"{what}: {old.name} -> {state.name}",
            t,
            flow,
            reply,
            state,
            tcp_class=klass,
            generation=gen,
        )

    # -- commit -------------------------------------------------------------------------

    def commit(self, c: Classification, now: float) -> Classification:
        """Apply a classification: create or update the flow, refresh its timer. Returns
        ``c``, or a copy with outcome ``REFUSED`` when a new flow found the table full.
        Invalid, related and untracked packets change nothing."""
        if c.outcome in (Outcome.INVALID, Outcome.UNTRACKED, Outcome.RELATED, Outcome.REFUSED):
            return c
        if c.generation != self._generation:
            raise RuntimeError("stale classification: the table changed since classify()")
        if c.creates:
            return self._create(c, now)
        flow = c.flow
        assert flow is not None and c.tuple is not None
        seen_reply_before = flow.seen_reply
        if c.reply:
            flow.packets_reply += 1
            flow.seen_reply = True
        else:
            flow.packets_original += 1
        flow.last_seen = now
        self._generation += 1
        if flow.proto == _TCP:
            self._update_tcp(flow, c, now, seen_reply_before)
        elif flow.proto == _UDP:
            if seen_reply_before and now > flow.stream_after:
                flow.assured = True
                self._set_timer(flow, now, self.timeouts.udp_stream)
            else:
                self._set_timer(flow, now, self.timeouts.udp_unreplied)
        elif flow.proto in _ICMP_INVERSE:
            self._set_timer(flow, now, self.timeouts.icmp)
        else:
            self._set_timer(flow, now, self.timeouts.generic)
        return c

    def _update_tcp(
        self, flow: Flow, c: Classification, now: float, seen_reply_before: bool
    ) -> None:
        assert c.tuple is not None and c.tcp_state is not None
        klass = c.tcp_class
        flow.last_class = klass
        flow.last_reply = c.reply
        if c.ignored:
            return  # no state change, no timer refresh
        old = flow.tcp_state
        flow.tcp_state = c.tcp_state
        if klass == _RST_SET and not seen_reply_before:
            # "If only reply is a RST, we can consider ourselves not to have an
            # established connection": the kernel deletes such a flow at once.
            self._unlink(flow)
            self._removed += 1
            return
        if old in (TcpState.SYN_RECV, TcpState.ESTABLISHED) and (
            c.tcp_state == TcpState.ESTABLISHED
        ):
            flow.assured = True
        timeout = self.timeouts.tcp_close if klass == _RST_SET else self.timeouts.tcp(c.tcp_state)
        self._set_timer(flow, now, timeout)

    def _create(self, c: Classification, now: float) -> Classification:
        assert c.tuple is not None
        if c.replaces is not None and c.replaces.id in self._flows:
            self._unlink(c.replaces)
            self._removed += 1
        if len(self._flows) >= self.max_entries and not self._make_room():
            self._refused_full += 1
            return replace(c, outcome=Outcome.REFUSED, reason="conntrack table full")
        t = c.tuple
        flow = Flow(
            id=self._next_id,
            original=t,
            reply=reply_tuple(t),
            created=now,
            last_seen=now,
            expires=now,
            tcp_state=c.tcp_state,
            packets_original=1,
            stream_after=now + self.timeouts.udp_stream_after,
        )
        self._next_id += 1
        self._flows[flow.id] = flow
        self._by_tuple[flow.original] = flow
        self._by_tuple.setdefault(flow.reply, flow)
        self._inserted += 1
        self._generation += 1
        if t.proto == _TCP:
            assert c.tcp_state is not None
            flow.last_class = c.tcp_class
            timeout = self.timeouts.tcp(c.tcp_state)
        elif t.proto == _UDP:
            timeout = self.timeouts.udp_unreplied
        elif t.proto in _ICMP_INVERSE:
            timeout = self.timeouts.icmp
        else:
            timeout = self.timeouts.generic
        self._set_timer(flow, now, timeout)
        return c

    def _make_room(self) -> bool:
        """Room for one more flow: expired flows were collected already; with early_drop,
        evict the oldest flow that is not assured."""
        if not self.early_drop:
            return False
        for flow in self._flows.values():
            if not flow.assured:
                self._unlink(flow)
                self._early_dropped += 1
                return True
        return False

    # -- both at once -------------------------------------------------------------------

    def track(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Classification:
        """Classify and commit: what a tracker in front of no rules (accept all) does."""
        return self.commit(self.classify(packet, now, icmp_id=icmp_id, inner=inner), now)


def _flags_text(flags: int) -> str:
    letters = "FSRPAUEC"
    text = "".join(letters[i] for i in range(8) if flags & (1 << i))
    return text or "none"
