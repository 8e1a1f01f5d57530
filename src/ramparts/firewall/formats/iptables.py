"""iptables-save in, iptables-restore out.

In (:func:`load_iptables`, :func:`parse_iptables`): the ``*filter`` table of an
``iptables-save`` or ``ip6tables-save`` dump (or a hand-written ``iptables-restore`` file)
becomes one first-match RuleSet. ``select`` names the built-in chain to take (INPUT by
default, FORWARD, OUTPUT); the chains it jumps to are inlined with the jump's conditions
conjoined, RETURN and falling off a user chain go back to the caller, falling off the
built-in chain (or RETURN in it) applies its policy, which is the RuleSet's default.
Interfaces: INPUT's -i is direction in on that iface, OUTPUT's -o direction out on that
iface; FORWARD's -i is the rule's iface and -o its out_iface (no direction), together too.
Negated addresses, ports, TCP flags and connection states become their complement; other
negations (``! -i lo``, ``! -p tcp``), and RETURN or goto with conditions whose
complement the model cannot say, are expanded exactly: the packets that skip the rule get
the rest of the chain and of its callers, conjoined with the skipped condition, ending in
the policy. A file holds one IP version (its header, its name, its addresses tell which):
every rule is for that version, and a first rule lets the other version's packets through,
as iptables does (ip6tables filters them). Tokens are read as iptables-restore reads them
(double quotes, backslash escapes inside them). Each flattened rule is named
``<chain>/<n>`` after the rule that decides (``~2``, ``~3`` when one rule is emitted more
than once) and keeps its source line.
LOG, NFLOG and ULOG rules and rules without a target decide nothing and are skipped;
everything the model cannot say is refused with file, line and column, lazily: only when
the rule can decide a packet of the selected chain.

Out (:func:`render_iptables_restore`, :func:`render_ip6tables_restore`): a complete
``*filter`` ... ``COMMIT`` file for one chain and one IP version, the default as the
chain's policy (a reject default is a last REJECT rule over policy DROP), each rule
commented with its id, several ports as multiport (at most 15 a match, split beyond),
connection states as conntrack; iface and out_iface as -i and -o in FORWARD. A rule that
never matches in that chain or version (an out_iface in INPUT or OUTPUT, a direction in
FORWARD) is left out and named in a comment at the top; what iptables cannot say is
refused.

The format, the mapping of every option and the decisions are in
docs/firewall-formats-iptables.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from ...errors import ConfigError
from ...net.addr import IPRange, IPSet, parse_ip
from ...net.packet import ACK, FIN, PSH, RST, SYN, URG, meet_tcp_flags
from ...net.ports import PortRange, complement_ports, intersect_ports, merge_ports
from ..model import CT_STATES, Action, Rule, RuleSet

__all__ = [
    "BUILTIN_CHAINS",
    "DEFAULT_MAX_RULES",
    "load_iptables",
    "parse_iptables",
    "render_ip6tables_restore",
    "render_iptables_restore",
]

BUILTIN_CHAINS = ("INPUT", "FORWARD", "OUTPUT")
DEFAULT_MAX_RULES = 20_000  # the most rules one chain may flatten into
_WINDOW = 64  # how many of the last emitted rules a copy is checked against
_MAX_DEPTH = 64  # nested expansions (negations, RETURNs) before we give up
_TOP = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
_TABLES = ("filter", "nat", "mangle", "raw", "security")
# The chains of the other tables a packet of each filter chain passes (netfilter hooks).
_HOOKS = {
    "INPUT": frozenset({"PREROUTING", "INPUT"}),
    "FORWARD": frozenset({"PREROUTING", "FORWARD", "POSTROUTING"}),
    "OUTPUT": frozenset({"OUTPUT", "POSTROUTING"}),
}
_IFNAMSIZ = 16
_MULTIPORT_SLOTS = 15  # xt_multiport: 15 ports, a range takes two

# Protocol names iptables reads: its own table, then /etc/protocols (netbase). 0 and "all"
# mean any protocol to iptables.
_PROTOCOLS: dict[str, int] = {
    "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8, "igp": 9,
    "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33,
    "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44,
    "idrp": 45, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "skip": 57, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88,
    "ospf": 89, "ax.25": 93, "ipip": 94, "etherip": 97, "encap": 98, "pim": 103,
    "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133,
    "mh": 135, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "manet": 138,
    "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}  # fmt: skip
_PROTOCOL_OUT = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}

# ``iptables -p icmp -h`` / ``ip6tables -p ipv6-icmp -h``: name -> (type, code or None).
_ICMP_TYPES: dict[str, tuple[int, int | None]] = {
    "echo-reply": (0, None), "pong": (0, None), "destination-unreachable": (3, None),
    "network-unreachable": (3, 0), "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2), "port-unreachable": (3, 3),
    "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "tos-network-unreachable": (3, 11),
    "tos-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15),
    "source-quench": (4, None), "redirect": (5, None), "network-redirect": (5, 0),
    "host-redirect": (5, 1), "tos-network-redirect": (5, 2), "tos-host-redirect": (5, 3),
    "echo-request": (8, None), "ping": (8, None), "router-advertisement": (9, None),
    "router-solicitation": (10, None), "time-exceeded": (11, None),
    "ttl-exceeded": (11, None), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "parameter-problem": (12, None),
    "ip-header-bad": (12, 0), "required-option-missing": (12, 1),
    "timestamp-request": (13, None), "timestamp-reply": (14, None),
    "address-mask-request": (17, None), "address-mask-reply": (18, None),
}  # fmt: skip
_ICMPV6_TYPES: dict[str, tuple[int, int | None]] = {
    "destination-unreachable": (1, None), "no-route": (1, 0),
    "communication-prohibited": (1, 1), "beyond-scope": (1, 2),
    "address-unreachable": (1, 3), "port-unreachable": (1, 4), "failed-policy": (1, 5),
    "reject-route": (1, 6), "packet-too-big": (2, None), "time-exceeded": (3, None),
    "ttl-exceeded": (3, None), "ttl-zero-during-transit": (3, 0),
    "ttl-zero-during-reassembly": (3, 1), "parameter-problem": (4, None),
    "bad-header": (4, 0), "unknown-header-type": (4, 1), "unknown-option": (4, 2),
    "echo-request": (128, None), "ping": (128, None), "echo-reply": (129, None),
    "pong": (129, None), "router-solicitation": (133, None),
    "router-advertisement": (134, None), "neighbour-solicitation": (135, None),
    "neighbor-solicitation": (135, None), "neighbour-advertisement": (136, None),
    "neighbor-advertisement": (136, None), "redirect": (137, None),
}  # fmt: skip

# REJECT --reject-with, per IP version: iptables name -> the model's name ("" = refused).
_REJECT_IN = {
    4: {
        "icmp-net-unreachable": "icmp-net-unreachable",
        "net-unreach": "icmp-net-unreachable",
        "icmp-host-unreachable": "icmp-host-unreachable",
        "host-unreach": "icmp-host-unreachable",
        "icmp-port-unreachable": "icmp-port-unreachable",
        "port-unreach": "icmp-port-unreachable",
        "icmp-admin-prohibited": "icmp-admin-prohibited",
        "admin-prohib": "icmp-admin-prohibited",
        "tcp-reset": "tcp-reset",
        "tcp-rst": "tcp-reset",
        "icmp-proto-unreachable": "",
        "proto-unreach": "",
        "icmp-net-prohibited": "",
        "net-prohib": "",
        "icmp-host-prohibited": "",
        "host-prohib": "",
    },
    6: {
        "icmp6-port-unreachable": "icmpv6-port-unreachable",
        "port-unreach": "icmpv6-port-unreachable",
        "icmp6-adm-prohibited": "icmpv6-admin-prohibited",
        "adm-prohibited": "icmpv6-admin-prohibited",
        "tcp-reset": "tcp-reset",  # ip6tables has no tcp-rst
        "icmp6-no-route": "",
        "no-route": "",
        "icmp6-addr-unreachable": "",
        "addr-unreach": "",
        "icmp6-policy-fail": "",
        "policy-fail": "",
        "icmp6-reject-route": "",
        "reject-route": "",
    },
}
_REJECT_DEFAULT = {4: "icmp-port-unreachable", 6: "icmpv6-port-unreachable"}
# The model's reject types -> iptables' and ip6tables' names (the ICMP counterpart of the
# other version where a rule of both versions names one version's type).
_REJECT_OUT = {
    4: {
        "tcp-reset": "tcp-reset",
        "icmp-port-unreachable": "icmp-port-unreachable",
        "icmp-host-unreachable": "icmp-host-unreachable",
        "icmp-net-unreachable": "icmp-net-unreachable",
        "icmp-admin-prohibited": "icmp-admin-prohibited",
        "icmpv6-port-unreachable": "icmp-port-unreachable",
        "icmpv6-admin-prohibited": "icmp-admin-prohibited",
    },
    6: {
        "tcp-reset": "tcp-reset",
        "icmpv6-port-unreachable": "icmp6-port-unreachable",
        "icmpv6-admin-prohibited": "icmp6-adm-prohibited",
        "icmp-port-unreachable": "icmp6-port-unreachable",
        "icmp-admin-prohibited": "icmp6-adm-prohibited",
        "icmp-host-unreachable": "icmp6-addr-unreachable",
        "icmp-net-unreachable": "icmp6-no-route",
    },
}

_CT_IN = {"NEW": "new", "ESTABLISHED": "established", "RELATED": "related", "INVALID": "invalid"}
_CT_OUT = ("INVALID", "NEW", "RELATED", "ESTABLISHED")  # the order iptables-save prints
_CT_REFUSED = frozenset({"UNTRACKED", "SNAT", "DNAT"})
_TCP_FLAGS = (("FIN", FIN), ("SYN", SYN), ("RST", RST), ("PSH", PSH), ("ACK", ACK), ("URG", URG))
_ALL_FLAGS = FIN | SYN | RST | PSH | ACK | URG
_SYN = (FIN | SYN | RST | ACK, SYN)

# Targets that log or count and let the packet go on: they decide nothing.
_PASS_TARGETS = frozenset({"LOG", "NFLOG", "ULOG"})
# Target extensions iptables knows; the rule model has none of them.
_OTHER_TARGETS: dict[str, str] = {
    "NFQUEUE": "hands the packet to a user-space program, which decides",
    "QUEUE": "hands the packet to a user-space program, which decides",
    "MARK": "sets a packet mark",
    "CONNMARK": "sets a connection mark",
    "CT": "changes connection tracking",
    "NOTRACK": "changes connection tracking",
    "TCPMSS": "rewrites the TCP MSS",
    "SET": "changes an ipset",
    "SYNPROXY": "answers the TCP handshake itself",
    "TEE": "copies the packet",
    "AUDIT": "audits the packet",
    "CLASSIFY": "sets a traffic class",
    "DSCP": "rewrites the packet",
    "TOS": "rewrites the packet",
    "TTL": "rewrites the packet",
    "HL": "rewrites the packet",
    "ECN": "rewrites the packet",
    "CHECKSUM": "rewrites the packet",
    "TCPOPTSTRIP": "rewrites the packet",
    "SECMARK": "sets a security mark",
    "CONNSECMARK": "sets a security mark",
    "IDLETIMER": "starts a timer",
    "LED": "drives a LED",
    "RATEEST": "estimates a rate",
    "HMARK": "sets a packet mark",
    "TRACE": "traces the packet",
    "DNAT": "translates addresses (a nat target)",
    "SNAT": "translates addresses (a nat target)",
    "MASQUERADE": "translates addresses (a nat target)",
    "REDIRECT": "translates addresses (a nat target)",
    "NETMAP": "translates addresses (a nat target)",
    "TPROXY": "redirects to a local socket",
}
# Why a match module cannot be said in the rule model (any other module: it is not in it).
_MODULE_REASONS: dict[str, str] = {
    "limit": "a rate limit decides by timing",
    "hashlimit": "a rate limit decides by timing",
    "recent": "it decides by each address's history: ufw's limit",
    "connlimit": "it decides by the number of connections",
    "addrtype": "the address type depends on the host's own addresses",
    "set": "an ipset's members are not in the file",
    "mark": "packet marks",
    "connmark": "connection marks",
    "owner": "the owner of the local socket",
    "physdev": "bridge ports",
    "pkttype": "link-layer packet types",
    "mac": "MAC addresses",
    "length": "packet lengths",
    "ttl": "the TTL",
    "hl": "the hop limit",
    "tos": "the TOS field",
    "dscp": "the DSCP field",
    "string": "packet contents",
    "u32": "packet contents",
    "bpf": "packet contents",
    "time": "the time of day",
    "statistic": "chance",
    "policy": "IPsec policies",
    "rpfilter": "the routing table",
    "socket": "local sockets",
    "helper": "conntrack helpers",
    "ipv6header": "IPv6 extension headers",
    "frag": "IPv6 fragment headers",
    "rt": "IPv6 routing headers",
}


class _Nothing:
    """The result of a meet that no packet satisfies."""


_NOTHING = _Nothing()
_V = TypeVar("_V", int, str)


# -- the cube: one conjunction of field constraints ---------------------------------------


@dataclass(frozen=True, slots=True)
class _Cube:
    """The packets that satisfy every field given; None matches anything. ``in_iface`` and
    ``out_iface`` are iptables' -i and -o; the empty name is "the packet has none" (INPUT
    packets have no output interface, OUTPUT packets no input interface; a FORWARD packet
    has both, the rule's iface and out_iface)."""

    src: IPSet | None = None
    dst: IPSet | None = None
    proto: int | None = None
    sport: tuple[PortRange, ...] | None = None
    dport: tuple[PortRange, ...] | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: tuple[int, int] | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    ct_state: frozenset[str] | None = None

    def meet(self, other: _Cube) -> _Cube | None:
        """The packets in both, or None when there are none."""
        src = _meet_ips(self.src, other.src)
        dst = _meet_ips(self.dst, other.dst)
        sport = _meet_ports(self.sport, other.sport)
        dport = _meet_ports(self.dport, other.dport)
        flags = _meet_flags(self.tcp_flags, other.tcp_flags)
        proto = _meet_eq(self.proto, other.proto)
        icmp_type = _meet_eq(self.icmp_type, other.icmp_type)
        icmp_code = _meet_eq(self.icmp_code, other.icmp_code)
        in_iface = _meet_eq(self.in_iface, other.in_iface)
        out_iface = _meet_eq(self.out_iface, other.out_iface)
        states = _meet_states(self.ct_state, other.ct_state)
        if (
            isinstance(src, _Nothing)
            or isinstance(dst, _Nothing)
            or isinstance(sport, _Nothing)
            or isinstance(dport, _Nothing)
            or isinstance(flags, _Nothing)
            or isinstance(proto, _Nothing)
            or isinstance(icmp_type, _Nothing)
            or isinstance(icmp_code, _Nothing)
            or isinstance(in_iface, _Nothing)
            or isinstance(out_iface, _Nothing)
            or isinstance(states, _Nothing)
        ):
            return None
        if src is not None and dst is not None and not src.versions & dst.versions:
            return None
        return _Cube(
            src, dst, proto, sport, dport, icmp_type, icmp_code, flags, in_iface, out_iface, states
        )


def _meet_eq(a: _V | None, b: _V | None) -> _V | _Nothing | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    return _NOTHING


def _meet_ips(a: IPSet | None, b: IPSet | None) -> IPSet | _Nothing | None:
    if a is None:
        return b
    if b is None:
        return a
    return a.intersection(b) or _NOTHING


def _meet_ports(
    a: tuple[PortRange, ...] | None, b: tuple[PortRange, ...] | None
) -> tuple[PortRange, ...] | _Nothing | None:
    if a is None:
        return b
    if b is None:
        return a
    return intersect_ports(a, b) or _NOTHING


def _meet_flags(
    a: tuple[int, int] | None, b: tuple[int, int] | None
) -> tuple[int, int] | _Nothing | None:
    if a is None:
        return b
    if b is None:
        return a
    both = meet_tcp_flags(a, b)
    return _NOTHING if both is None else both


def _meet_states(
    a: frozenset[str] | None, b: frozenset[str] | None
) -> frozenset[str] | _Nothing | None:
    if a is None:
        return b
    if b is None:
        return a
    return (a & b) or _NOTHING


def _parts(q: _Cube) -> list[_Cube]:
    """``q`` as one single-field cube per field it constrains, in a fixed order."""
    parts = [
        _Cube(src=q.src),
        _Cube(dst=q.dst),
        _Cube(proto=q.proto),
        _Cube(sport=q.sport),
        _Cube(dport=q.dport),
        _Cube(icmp_type=q.icmp_type),
        _Cube(icmp_code=q.icmp_code),
        _Cube(tcp_flags=q.tcp_flags),
        _Cube(in_iface=q.in_iface),
        _Cube(out_iface=q.out_iface),
        _Cube(ct_state=q.ct_state),
    ]
    return [p for p in parts if p != _Cube()]


def _outside(at: _Cube, part: _Cube, version: int) -> list[_Cube] | None:
    """The packets of ``at`` outside the single-field cube ``part``, as disjoint cubes;
    None when the model cannot say it (``not eth0`` has no interface to name)."""
    out: list[_Cube] = []
    if part.src is not None or part.dst is not None:
        outer = part.src if part.src is not None else part.dst
        assert outer is not None
        rest = outer.complement(version)
        if not rest:
            return []
        piece = at.meet(_Cube(src=rest) if part.src is not None else _Cube(dst=rest))
        return [piece] if piece is not None else []
    if part.sport is not None or part.dport is not None:
        ports = part.sport if part.sport is not None else part.dport
        assert ports is not None
        other = complement_ports(ports)
        if not other:
            return []
        piece = at.meet(_Cube(sport=other) if part.sport is not None else _Cube(dport=other))
        return [piece] if piece is not None else []
    if part.tcp_flags is not None:
        mask, value = part.tcp_flags
        done_mask = done_value = 0
        for _, bit in _TCP_FLAGS:
            if mask & bit:
                piece = at.meet(_Cube(tcp_flags=(done_mask | bit, done_value | (bit & ~value))))
                if piece is not None:
                    out.append(piece)
                done_mask |= bit
                done_value |= value & bit
        return out
    if part.ct_state is not None:
        rest_states = (at.ct_state or CT_STATES) - part.ct_state
        return [replace(at, ct_state=rest_states)] if rest_states else []
    for have, want in (
        (at.proto, part.proto),
        (at.icmp_type, part.icmp_type),
        (at.icmp_code, part.icmp_code),
        (at.in_iface, part.in_iface),
        (at.out_iface, part.out_iface),
    ):
        if want is not None:
            if have is None:
                return None
            return [] if have == want else [at]
    raise AssertionError("a part constrains one field")


def _within_ips(a: IPSet | None, b: IPSet | None) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return all(
        any(y.version == x.version and y.lo <= x.lo and x.hi <= y.hi for y in b.ranges)
        for x in a.ranges
    )


def _within_ports(a: tuple[PortRange, ...] | None, b: tuple[PortRange, ...] | None) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return all(any(y.lo <= x.lo and x.hi <= y.hi for y in b) for x in a)


def _within(a: _Cube, b: _Cube) -> bool:
    """Whether every packet of ``a`` is in ``b``."""
    for mine, theirs in (
        (a.proto, b.proto),
        (a.in_iface, b.in_iface),
        (a.out_iface, b.out_iface),
        (a.icmp_type, b.icmp_type),
        (a.icmp_code, b.icmp_code),
    ):
        if theirs is not None and mine != theirs:
            return False
    if b.ct_state is not None and (a.ct_state is None or not a.ct_state <= b.ct_state):
        return False
    if b.tcp_flags is not None:
        if a.tcp_flags is None:
            return False
        (am, av), (bm, bv) = a.tcp_flags, b.tcp_flags
        if bm & ~am or av & bm != bv:
            return False
    return (
        _within_ips(a.src, b.src)
        and _within_ips(a.dst, b.dst)
        and _within_ports(a.sport, b.sport)
        and _within_ports(a.dport, b.dport)
    )


def _minus(c: _Cube, q: _Cube, version: int) -> list[_Cube] | None:
    """``c`` without ``q`` as disjoint cubes, or None when the model cannot say it."""
    if c.meet(q) is None:
        return [c]
    out: list[_Cube] = []
    at: _Cube | None = c
    for part in _parts(q):
        assert at is not None
        rest = _outside(at, part, version)
        if rest is None:
            return None
        out += rest
        at = at.meet(part)
    return out


def _minus_all(c: _Cube, qs: Sequence[_Cube], version: int) -> list[_Cube] | None:
    """``c`` without every cube of ``qs``, or None when the model cannot say it."""
    current = [c]
    for q in qs:
        nxt: list[_Cube] = []
        for x in current:
            rest = _minus(x, q, version)
            if rest is None:
                return None
            nxt += rest
        current = nxt
    return current


# -- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    column: int  # 1-based


def _tokenize(raw: str, file: str, line: int) -> list[_Token]:
    """Split one line as iptables-restore does: whitespace separates; a double quote opens
    a quoted part (inside it a backslash takes the next character as it is) and the
    closing quote ends the token; a quote after other characters joins them."""
    tokens: list[_Token] = []
    buf: list[str] = []
    start: int | None = None
    quoted = escaped = False
    for i, ch in enumerate(raw):
        if quoted:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
                tokens.append(_Token("".join(buf), (start or i) + 1))
                buf, start = [], None
            else:
                buf.append(ch)
            continue
        if ch == '"':
            quoted = True
            start = i if start is None else start
        elif ch in " \t\r\n\v\f":
            if start is not None:
                tokens.append(_Token("".join(buf), start + 1))
                buf, start = [], None
        else:
            start = i if start is None else start
            buf.append(ch)
    if quoted:
        raise ConfigError(
            "a double quote is not closed", file=file, line=line, column=(start or 0) + 1
        )
    if start is not None:
        tokens.append(_Token("".join(buf), start + 1))
    return tokens


# -- the parsed file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Literal:
    """One match of a rule as written (``-s 10.0.0.0/8``, ``! -i lo``): the packets it
    matches as disjoint cubes, whether it is negated, and, when the model cannot say it,
    why not (refused only if the rule can decide a packet)."""

    cubes: tuple[_Cube, ...]
    negated: bool
    text: str
    column: int
    unsupported: str = ""


@dataclass(frozen=True, slots=True)
class _Target:
    kind: str  # accept drop reject return jump goto pass unsupported
    column: int = 0
    chain: str = ""
    reject_with: str = ""  # as written; "" for the default
    reason: str = ""


@dataclass(slots=True)
class _IptRule:
    chain: str
    line: int
    literals: list[_Literal]
    target: _Target
    comment: str = ""
    version: int | None = None  # -4 / -6: only for that IP version
    number: int = 0  # its position in the chain, from 1


@dataclass(slots=True)
class _Chain:
    name: str
    line: int
    policy: Action | None = None  # built-in chains
    policy_line: int | None = None
    rules: list[_IptRule] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Evidence:
    """Something that shows the file's IP version (an address, an ICMPv6 match)."""

    version: int
    line: int
    column: int
    what: str


@dataclass(frozen=True, slots=True)
class _Deciding:
    """A rule of another table that can drop a packet before or after the filter table."""

    table: str
    chain: str
    target: str
    line: int
    column: int


@dataclass(slots=True)
class _Document:
    file: str
    chains: dict[str, _Chain] = field(default_factory=dict)  # the filter table
    filter_line: int | None = None
    header_version: int | None = None
    evidence: list[_Evidence] = field(default_factory=list)
    deciding: list[_Deciding] = field(default_factory=list)  # in raw, mangle, security

    def error(self, reason: str, line: int | None, column: int | None = None) -> ConfigError:
        return ConfigError(reason, file=self.file, line=line, column=column)

    def version(self, hint: int | None) -> int:
        """4 or 6: from the header iptables-save writes, else ``hint`` (the file's name:
        rules.v6), else from what the rules show (IPv4 if nothing does); a rule that
        shows the other version is refused."""
        version = self.header_version or hint
        source = (
            f"the file was written by {'ip6tables' if version == 6 else 'iptables'}-save"
            if self.header_version
            else f"the file's name says IPv{version}"
        )
        first: _Evidence | None = None
        for ev in self.evidence:
            if version is None:
                version, first = ev.version, ev
            elif ev.version != version:
                why = (
                    f"line {first.line} ({first.what}) shows IPv{first.version}"
                    if first is not None
                    else source
                )
                raise self.error(
                    f"{ev.what} is IPv{ev.version}, but {why}: "
                    "one file holds one IP version (iptables or ip6tables)",
                    ev.line,
                    ev.column,
                )
        return version or 4


_HEADER = re.compile(r"#\s*Generated by (?:ramparts for )?(ip6?)tables", re.IGNORECASE)
_COUNTERS = re.compile(r"\[\d+:\d+\]")
_CHAIN_NAME = re.compile(r"[^\s!\-][^\s]{0,28}")


class _Reader:
    """Lines -> a _Document: tables, chains, rules with their literals and targets."""

    def __init__(self, file: str) -> None:
        self.doc = _Document(file)
        self.table: str | None = None
        self.table_line = 0
        self.seen_tables: dict[str, int] = {}

    def read(self, text: str) -> _Document:
        for n, raw in enumerate(text.splitlines(), 1):
            if n == 1:
                raw = raw.removeprefix("\ufeff")
            stripped = raw.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                found = _HEADER.match(stripped)
                if found and self.doc.header_version is None:
                    self.doc.header_version = 6 if found.group(1).lower() == "ip6" else 4
                continue
            if stripped.startswith("*"):
                self._open(stripped[1:].strip(), n, raw.index("*") + 2)
            elif stripped == "COMMIT":
                if self.table is None:
                    raise self.doc.error("COMMIT outside a table", n, 1)
                self.table = None
            elif self.table is None:
                raise self.doc.error(
                    "a line outside a table: an iptables-save file is '*filter', chains, "
                    "rules, then 'COMMIT'",
                    n,
                    1,
                )
            elif stripped.startswith(":"):
                self._declare(_tokenize(raw, self.doc.file, n), n)
            else:
                self._command(_tokenize(raw, self.doc.file, n), n)
        if self.table is not None:
            raise self.doc.error(
                f"the table *{self.table} has no COMMIT (iptables-restore would load nothing)",
                self.table_line,
            )
        if self.doc.filter_line is None:
            raise self.doc.error("no *filter table in the file", 1)
        for chain in self.doc.chains.values():
            for k, rule in enumerate(chain.rules, 1):
                rule.number = k
        return self.doc

    def _open(self, name: str, line: int, column: int) -> None:
        if self.table is not None:
            raise self.doc.error(
                f"*{name} opens a table before *{self.table} (line {self.table_line}) is committed",
                line,
                column,
            )
        if name not in _TABLES:
            raise self.doc.error(
                f"unknown table *{name} (iptables has {', '.join(_TABLES)})", line, column
            )
        if name in self.seen_tables:
            raise self.doc.error(
                f"*{name} appears twice (first at line {self.seen_tables[name]})", line, column
            )
        self.seen_tables[name] = line
        self.table, self.table_line = name, line
        if name == "filter":
            self.doc.filter_line = line

    def _declare(self, tokens: list[_Token], line: int) -> None:
        name = tokens[0].text[1:]
        if len(tokens) < 2 or len(tokens) > 3 or not name:
            raise self.doc.error("a chain line is ':NAME POLICY [packets:bytes]'", line, 1)
        if len(tokens) == 3 and not _COUNTERS.fullmatch(tokens[2].text):
            raise self.doc.error("counters are written [packets:bytes]", line, tokens[2].column)
        policy = tokens[1]
        if self.table != "filter":
            return
        if name in self.doc.chains:
            first = self.doc.chains[name].line
            raise self.doc.error(f"chain {name} is declared twice (first at line {first})", line, 2)
        if name in BUILTIN_CHAINS:
            chain = _Chain(name, line)
            chain.policy = self._policy(policy, name, line)
            chain.policy_line = line
        else:
            if policy.text != "-":
                raise self.doc.error(
                    f"a user chain has no policy: write '-', not {policy.text!r}",
                    line,
                    policy.column,
                )
            self._check_chain_name(name, line, 2)
            chain = _Chain(name, line)
        self.doc.chains[name] = chain

    def _policy(self, token: _Token, chain: str, line: int) -> Action:
        if token.text not in ("ACCEPT", "DROP"):
            raise self.doc.error(
                f"the policy of {chain} is ACCEPT or DROP, not {token.text!r}", line, token.column
            )
        return Action.ACCEPT if token.text == "ACCEPT" else Action.DROP

    def _check_chain_name(self, name: str, line: int, column: int) -> None:
        if not _CHAIN_NAME.fullmatch(name):
            raise self.doc.error(f"not a chain name: {name!r}", line, column)

    def _command(self, tokens: list[_Token], line: int) -> None:
        if tokens and _COUNTERS.fullmatch(tokens[0].text):
            tokens = tokens[1:]
        if not tokens:
            raise self.doc.error("counters without a rule", line, 1)
        cmd = tokens[0]
        args = tokens[1:]
        if cmd.text in ("-N", "--new-chain"):
            self._new_chain(cmd, args, line)
        elif cmd.text in ("-P", "--policy"):
            self._set_policy(cmd, args, line)
        elif cmd.text in ("-A", "--append", "-I", "--insert"):
            self._rule(cmd, args, line)
        else:
            raise self.doc.error(
                f"{cmd.text}: only -A, -I, -N and -P lines (and ':' chain lines) are read "
                "from a saved rule set",
                line,
                cmd.column,
            )

    def _new_chain(self, cmd: _Token, args: list[_Token], line: int) -> None:
        if len(args) != 1:
            raise self.doc.error(f"{cmd.text} takes one chain name", line, cmd.column)
        name = args[0].text
        if self.table != "filter":
            return
        if name in self.doc.chains:
            raise self.doc.error(f"chain {name} already exists", line, args[0].column)
        self._check_chain_name(name, line, args[0].column)
        self.doc.chains[name] = _Chain(name, line)

    def _set_policy(self, cmd: _Token, args: list[_Token], line: int) -> None:
        if len(args) != 2:
            raise self.doc.error(f"{cmd.text} takes a chain and a policy", line, cmd.column)
        if self.table != "filter":
            return
        name = args[0].text
        if name not in BUILTIN_CHAINS:
            raise self.doc.error(
                f"only a built-in chain has a policy, not {name}", line, args[0].column
            )
        chain = self.doc.chains.setdefault(name, _Chain(name, line))
        chain.policy = self._policy(args[1], name, line)
        chain.policy_line = line

    def _rule(self, cmd: _Token, args: list[_Token], line: int) -> None:
        if not args:
            raise self.doc.error(f"{cmd.text} needs a chain", line, cmd.column)
        name = args[0].text
        rest = args[1:]
        position: int | None = None
        if cmd.text in ("-I", "--insert"):
            position = 1
            if rest and rest[0].text.isdigit():
                position = int(rest[0].text)
                rest = rest[1:]
        if self.table != "filter":
            self._other_rule(name, rest, line)
            return
        chain = self.doc.chains.get(name)
        if chain is None and name in BUILTIN_CHAINS:  # built-in chains need no ':' line
            chain = self.doc.chains[name] = _Chain(name, line)
        if chain is None:
            raise self.doc.error(
                f"chain {name} is not declared (a ':{name} - [0:0]' line or -N {name})",
                line,
                args[0].column,
            )
        rule = _RuleReader(self.doc, name, line).read(rest)
        if position is None:
            chain.rules.append(rule)
        elif not 1 <= position <= len(chain.rules) + 1:
            raise self.doc.error(
                f"cannot insert at {position}: chain {name} has {len(chain.rules)} rule(s)",
                line,
                cmd.column,
            )
        else:
            chain.rules.insert(position - 1, rule)

    def _other_rule(self, chain: str, tokens: list[_Token], line: int) -> None:
        """A rule of nat, mangle, raw or security: only a DROP or REJECT there matters."""
        assert self.table is not None
        for i, tok in enumerate(tokens[:-1]):
            if tok.text in ("-j", "--jump") and tokens[i + 1].text in ("DROP", "REJECT"):
                target = tokens[i + 1]
                self.doc.deciding.append(
                    _Deciding(self.table, chain, target.text, line, target.column)
                )


# -- one rule -----------------------------------------------------------------------------

# The options of the match modules the model can say, and how many values each takes.
_MODULE_OPTIONS: dict[str, dict[str, int]] = {
    "tcp": {
        "--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1,
        "--tcp-flags": 2, "--syn": 0, "--tcp-option": 1,
    },
    "udp": {"--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1},
    "sctp": {
        "--sport": 1, "--source-port": 1, "--dport": 1, "--destination-port": 1,
        "--chunk-types": 2,
    },
    "multiport": {
        "--sports": 1, "--source-ports": 1, "--dports": 1, "--destination-ports": 1,
        "--ports": 1,
    },
    "icmp": {"--icmp-type": 1},
    "icmp6": {"--icmpv6-type": 1},
    "conntrack": {
        "--ctstate": 1, "--ctproto": 1, "--ctorigsrc": 1, "--ctorigdst": 1,
        "--ctreplsrc": 1, "--ctrepldst": 1, "--ctorigsrcport": 1, "--ctorigdstport": 1,
        "--ctreplsrcport": 1, "--ctrepldstport": 1, "--ctstatus": 1, "--ctexpire": 1,
        "--ctdir": 1,
    },
    "state": {"--state": 1},
    "comment": {"--comment": 1},
    "iprange": {"--src-range": 1, "--dst-range": 1},
}  # fmt: skip
_PROTO_MODULE = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmp6"}
_MODULE_PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmp6": 58}
_MULTIPORT_PROTOS = frozenset({6, 17, 132, 136, 33})
_NO_INVERT = frozenset({"--comment"})


@dataclass(slots=True)
class _Module:
    name: str
    column: int
    known: bool
    seen: set[str] = field(default_factory=set)
    literal: int = -1  # a module the model cannot say: the index of its refused literal


class _RuleReader:
    """The tokens after ``-A CHAIN`` -> an _IptRule (literals, target, comment)."""

    def __init__(self, doc: _Document, chain: str, line: int) -> None:
        self.doc = doc
        self.chain = chain
        self.line = line
        self.literals: list[_Literal] = []
        self.modules: list[_Module] = []
        self.target: _Target | None = None
        self.comments: list[str] = []
        self.version: int | None = None
        self.proto: int | None = None
        self.proto_negated = False
        self.seen: set[str] = set()
        self.evidence: list[_Evidence] = []

    def error(self, reason: str, column: int) -> ConfigError:
        return self.doc.error(reason, self.line, column)

    def read(self, tokens: list[_Token]) -> _IptRule:
        i = 0
        negate: _Token | None = None
        while i < len(tokens):
            tok = tokens[i]
            if tok.text == "!":
                if negate is not None:
                    raise self.error("'!' twice", tok.column)
                negate = tok
                i += 1
                continue
            i = self._option(tokens, i, negate)
            negate = None
        if negate is not None:
            raise self.error("'!' at the end of the rule negates nothing", negate.column)
        self._check_modules()
        if self.version is None:
            self.doc.evidence.extend(self.evidence)
        return _IptRule(
            self.chain,
            self.line,
            self.literals,
            self.target or _Target("pass"),
            "; ".join(self.comments),
            self.version,
        )

    def _values(self, tokens: list[_Token], i: int, count: int) -> list[_Token]:
        values = tokens[i + 1 : i + 1 + count]
        if len(values) < count or any(v.text == "!" for v in values):
            raise self.error(f"{tokens[i].text} needs {count} value(s)", tokens[i].column)
        return values

    def _once(self, key: str, tok: _Token) -> None:
        if key in self.seen:
            raise self.error(f"{tok.text} is given twice", tok.column)
        self.seen.add(key)

    def _option(self, tokens: list[_Token], i: int, negate: _Token | None) -> int:
        tok = tokens[i]
        opt = tok.text
        if opt in ("-s", "--source", "--src", "-d", "--destination", "--dst"):
            (value,) = self._values(tokens, i, 1)
            is_src = opt in ("-s", "--source", "--src")
            self._once("src" if is_src else "dst", tok)
            self._addresses(tok, value, negate, is_src)
            return i + 2
        if opt in ("-p", "--protocol"):
            (value,) = self._values(tokens, i, 1)
            self._once("proto", tok)
            self._protocol(tok, value, negate)
            return i + 2
        if opt in ("-i", "--in-interface", "-o", "--out-interface"):
            (value,) = self._values(tokens, i, 1)
            inbound = opt in ("-i", "--in-interface")
            self._once("in" if inbound else "out", tok)
            self._interface(tok, value, negate, inbound)
            return i + 2
        if opt in ("-f", "--fragment"):
            self._literal((), negate, "-f", tok, "it has no IP fragments")
            return i + 1
        if opt in ("-m", "--match"):
            self._refuse_negation(negate, tok)
            (value,) = self._values(tokens, i, 1)
            name = value.text.lower()
            module = _Module(name, tok.column, name in _MODULE_OPTIONS)
            if not module.known:
                module.literal = len(self.literals)
                reason = _MODULE_REASONS.get(name, f"it has no field for -m {name}")
                self._literal((), None, f"-m {value.text}", tok, reason)
            self.modules.append(module)
            return i + 2
        if opt in ("-j", "--jump", "-g", "--goto"):
            self._refuse_negation(negate, tok)
            (value,) = self._values(tokens, i, 1)
            if self.target is not None:
                raise self.error("a rule has one target (-j or -g)", tok.column)
            self.target = self._target(value, goto=opt in ("-g", "--goto"))
            return i + 2
        if opt in ("-c", "--set-counters"):
            self._values(tokens, i, 2)
            return i + 3
        if opt in ("-4", "--ipv4", "-6", "--ipv6"):
            self._refuse_negation(negate, tok)
            self.version = 4 if opt in ("-4", "--ipv4") else 6
            return i + 1
        if opt.startswith("--"):
            return self._module_option(tokens, i, negate)
        raise self.error(f"unknown option {opt!r}", tok.column)

    def _refuse_negation(self, negate: _Token | None, tok: _Token) -> None:
        if negate is not None:
            raise self.error(f"{tok.text} cannot be negated", negate.column)

    def _literal(
        self,
        cubes: Sequence[_Cube],
        negate: _Token | None,
        text: str,
        tok: _Token,
        unsupported: str = "",
    ) -> None:
        column = negate.column if negate is not None else tok.column
        written = f"! {text}" if negate is not None else text
        self.literals.append(
            _Literal(tuple(cubes), negate is not None, written, column, unsupported)
        )

    # general matches

    def _addresses(self, tok: _Token, value: _Token, negate: _Token | None, src: bool) -> None:
        items = [v for v in value.text.split(",") if v]
        if not items:
            raise self.error(f"{tok.text} needs an address", value.column)
        if negate is not None and len(items) > 1:
            raise self.error(
                "'!' is not allowed with several addresses (iptables refuses it too)",
                negate.column,
            )
        ranges: list[IPRange] = []
        for item in items:
            try:
                r = _address(item)
            except ValueError as exc:
                raise self.error(str(exc), value.column) from None
            ranges.append(r)
            self.evidence.append(_Evidence(r.version, self.line, value.column, f"address {item}"))
        s = IPSet(ranges)
        cube = _Cube(src=s) if src else _Cube(dst=s)
        self._literal([cube], negate, f"{tok.text} {value.text}", tok)

    def _protocol(self, tok: _Token, value: _Token, negate: _Token | None) -> None:
        text = value.text.lower()
        if text in ("all", "0", "ip"):
            if negate is not None:
                raise self.error(f"'! -p {value.text}' matches no packet", negate.column)
            return
        if text.isdigit():
            number = int(text)
            if number > 255:
                raise self.error(f"protocol number out of range: {text}", value.column)
        elif text in _PROTOCOLS:
            number = _PROTOCOLS[text]
        else:
            raise self.error(f"unknown protocol {value.text!r}", value.column)
        self.proto, self.proto_negated = number, negate is not None
        self._literal([_Cube(proto=number)], negate, f"-p {value.text}", tok)

    def _interface(self, tok: _Token, value: _Token, negate: _Token | None, inbound: bool) -> None:
        name = value.text
        if not name or len(name) >= _IFNAMSIZ or any(c.isspace() for c in name) or "/" in name:
            raise self.error(f"not an interface name: {name!r}", value.column)
        if name == "+":
            if negate is not None:
                raise self.error(f"'! {tok.text} +' matches no packet", negate.column)
            return
        text = f"{tok.text} {name}"
        if name.endswith("+"):
            self._literal((), negate, text, tok, f"{name} is a name prefix; it has whole names")
            return
        cube = _Cube(in_iface=name) if inbound else _Cube(out_iface=name)
        self._literal([cube], negate, text, tok)

    # targets

    def _target(self, value: _Token, goto: bool) -> _Target:
        name = value.text
        col = value.column
        if name in self.doc.chains and name not in BUILTIN_CHAINS:
            return _Target("goto" if goto else "jump", col, chain=name)
        if goto:
            raise self.error(f"-g goes to a user chain; {name} is not one", col)
        simple = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return", "REJECT": "reject"}
        if name in simple:
            return _Target(simple[name], col)
        if name in _PASS_TARGETS:
            return _Target("pass", col)
        if name in _OTHER_TARGETS:
            return _Target("unsupported", col, reason=f"-j {name} {_OTHER_TARGETS[name]}")
        raise self.error(f"no chain or target named {name!r}", col)

    # module options

    def _module_option(self, tokens: list[_Token], i: int, negate: _Token | None) -> int:
        tok = tokens[i]
        opt = tok.text
        if self.target is not None and self.target.kind == "reject" and opt == "--reject-with":
            self._refuse_negation(negate, tok)
            (value,) = self._values(tokens, i, 1)
            if self.target.reject_with:
                raise self.error("--reject-with is given twice", tok.column)
            if value.text not in _REJECT_IN[4] and value.text not in _REJECT_IN[6]:
                raise self.error(f"unknown reject type {value.text!r}", value.column)
            self.target = replace(self.target, reject_with=value.text)
            self._reject_evidence(value)
            return i + 2
        if (
            self.target is not None
            and self.target.kind in ("pass", "unsupported")
            and not any(opt in _MODULE_OPTIONS.get(m.name, {}) for m in self.modules)
        ):
            return self._skip_values(tokens, i)  # an option of LOG (or another target)
        for module in reversed(self.modules):
            if module.known and opt in _MODULE_OPTIONS[module.name]:
                return self._known_option(tokens, i, negate, module)
        implicit = _PROTO_MODULE.get(self.proto or -1)
        if implicit is not None and opt in _MODULE_OPTIONS[implicit]:
            module = _Module(implicit, tok.column, True)
            self.modules.append(module)
            return self._known_option(tokens, i, negate, module)
        unknown = [m for m in self.modules if not m.known]
        if unknown:
            # An option of a module the model cannot say (-m limit --limit 3/min ...).
            module = unknown[-1]
            end = self._skip_values(tokens, i)
            words = " ".join(t.text for t in tokens[i:end])
            lit = self.literals[module.literal]
            text = f"{lit.text} ! {words}" if negate is not None else f"{lit.text} {words}"
            self.literals[module.literal] = replace(lit, text=text)
            return end
        raise self.error(f"unknown option {opt!r}", tok.column)

    def _skip_values(self, tokens: list[_Token], i: int) -> int:
        """Past an option of a module or target we do not read, and its values."""
        j = i + 1
        while j < len(tokens) and not tokens[j].text.startswith("-") and tokens[j].text != "!":
            j += 1
        return j

    def _reject_evidence(self, value: _Token) -> None:
        for version, names in _REJECT_IN.items():
            if value.text in names and value.text not in _REJECT_IN[10 - version]:
                what = f"--reject-with {value.text}"
                self.evidence.append(_Evidence(version, self.line, value.column, what))

    def _known_option(
        self, tokens: list[_Token], i: int, negate: _Token | None, module: _Module
    ) -> int:
        tok = tokens[i]
        opt = tok.text
        count = _MODULE_OPTIONS[module.name][opt]
        values = self._values(tokens, i, count)
        canonical = _CANONICAL.get(opt, opt)
        if canonical in module.seen:
            raise self.error(f"{opt} is given twice in one -m {module.name}", tok.column)
        module.seen.add(canonical)
        if negate is not None and opt in _NO_INVERT:
            raise self.error(f"{opt} cannot be negated", negate.column)
        text = " ".join([opt, *(v.text for v in values)])
        try:
            self._module_value(module, canonical, values, negate, tok, text)
        except ValueError as exc:
            raise self.error(str(exc), values[0].column if values else tok.column) from None
        return i + 1 + count

    def _module_value(
        self,
        module: _Module,
        opt: str,
        values: list[_Token],
        negate: _Token | None,
        tok: _Token,
        text: str,
    ) -> None:
        name = module.name
        value = values[0].text if values else ""
        if opt in ("--sport", "--dport"):
            one: tuple[PortRange, ...] = (_port_range(value),)
            cube = _Cube(sport=one) if opt == "--sport" else _Cube(dport=one)
            self._literal([cube], negate, text, tok)
        elif opt in ("--sports", "--dports", "--ports"):
            ports = _port_list(value)
            if opt == "--sports":
                cubes = [_Cube(sport=ports)]
            elif opt == "--dports":
                cubes = [_Cube(dport=ports)]
            else:  # either port: the source, or else (disjointly) the destination
                other = complement_ports(ports)
                cubes = [_Cube(sport=ports)]
                if other:
                    cubes.append(_Cube(sport=other, dport=ports))
            self._literal(cubes, negate, text, tok)
        elif opt == "--tcp-flags":
            mask, comp = _flag_list(value), _flag_list(values[1].text)
            if mask == 0:
                raise ValueError("--tcp-flags examines no flag")
            flag_cubes = [_Cube(tcp_flags=(mask, comp))] if not comp & ~mask else []
            self._literal(flag_cubes, negate, text, tok)
        elif opt == "--syn":
            self._literal([_Cube(tcp_flags=_SYN)], negate, text, tok)
        elif opt in ("--icmp-type", "--icmpv6-type"):
            self._icmp(name, value, negate, tok, text, values[0])
        elif opt in ("--ctstate", "--state"):
            self._states(value, negate, tok, text)
        elif opt == "--comment":
            self.comments.append(value)
        elif opt in ("--src-range", "--dst-range"):
            r = _address_range(value)
            self.evidence.append(_Evidence(r.version, self.line, values[0].column, text))
            cube = _Cube(src=IPSet([r])) if opt == "--src-range" else _Cube(dst=IPSet([r]))
            self._literal([cube], negate, text, tok)
        else:
            self._literal((), negate, text, tok, f"it has no field for {opt} of -m {name}")

    def _icmp(
        self, module: str, value: str, negate: _Token | None, tok: _Token, text: str, at: _Token
    ) -> None:
        version = 4 if module == "icmp" else 6
        self.evidence.append(_Evidence(version, self.line, at.column, f"-m {module}"))
        names = _ICMP_TYPES if version == 4 else _ICMPV6_TYPES
        if value.lower() in names:
            kind, code = names[value.lower()]
        elif version == 4 and value.lower() == "any":
            kind, code = 255, None
        else:
            head, slash, tail = value.partition("/")
            if not head.isdigit() or (slash and not tail.isdigit()):
                raise ValueError(f"unknown ICMP{'v6' if version == 6 else ''} type {value!r}")
            kind, code = int(head), (int(tail) if slash else None)
            if kind > 255 or (code is not None and code > 255):
                raise ValueError(f"ICMP type or code out of range: {value!r}")
        proto = 1 if version == 4 else 58
        if version == 4 and kind == 255:  # iptables' "any"
            if negate is not None:
                raise ValueError(f"'! {text}' matches no packet")
            return
        self._literal([_Cube(proto=proto, icmp_type=kind, icmp_code=code)], negate, text, tok)

    def _states(self, value: str, negate: _Token | None, tok: _Token, text: str) -> None:
        words = [w.strip().upper() for w in value.split(",")]
        refused = [w for w in words if w in _CT_REFUSED]
        unknown = [w for w in words if w not in _CT_IN and w not in _CT_REFUSED]
        if unknown or not words:
            raise ValueError(f"unknown connection state {unknown[0] if unknown else value!r}")
        if refused:
            self._literal(
                (),
                negate,
                text,
                tok,
                f"it has the states new, established, related and invalid, not {refused[0]}",
            )
            return
        self._literal([_Cube(ct_state=frozenset(_CT_IN[w] for w in words))], negate, text, tok)

    def _check_modules(self) -> None:
        """The protocol each module needs, as iptables checks it."""
        for module in self.modules:
            need = _MODULE_PROTO.get(module.name)
            if module.name == "multiport":
                if self.proto not in _MULTIPORT_PROTOS or self.proto_negated:
                    raise self.error(
                        "-m multiport needs -p tcp, udp, udplite, dccp or sctp", module.column
                    )
            elif need is not None and (self.proto != need or self.proto_negated):
                raise self.error(
                    f"-m {module.name} needs -p {_PROTOCOL_OUT[need]} (iptables refuses it too)",
                    module.column,
                )


_CANONICAL = {
    "--source-port": "--sport",
    "--destination-port": "--dport",
    "--source-ports": "--sports",
    "--destination-ports": "--dports",
}


def _address(text: str) -> IPRange:
    """``10.0.0.0/8``, ``10.0.0.0/255.0.0.0``, ``2001:db8::/32`` or an address; host bits
    are masked, as iptables masks them."""
    addr, slash, mask = text.partition("/")
    try:
        version, value = parse_ip(addr)
    except ValueError:
        raise ValueError(
            f"not an address: {addr!r} (iptables resolves host names when it loads; "
            "iptables-save writes addresses)"
        ) from None
    mapped = version == 4 and ":" in addr  # ::ffff:a.b.c.d is judged as IPv4
    bits = 128 if ":" in addr else 32
    if not slash:
        plen = bits
    elif mask.isdigit():
        plen = int(mask)
    else:
        try:
            mversion, mvalue = parse_ip(mask)
        except ValueError:
            raise ValueError(f"not a mask: {mask!r}") from None
        width = 32 if mversion == 4 else 128
        inverted = ~mvalue & ((1 << width) - 1)
        if inverted & (inverted + 1):
            raise ValueError(f"the mask {mask} is not contiguous; the rule model has prefixes")
        plen = width - inverted.bit_length()
    if plen > bits:
        raise ValueError(f"prefix length /{plen} is longer than the address")
    if mapped:
        if plen < 96:
            raise ValueError(f"{text} reaches beyond the IPv4-mapped addresses")
        plen -= 96
        bits = 32
    size = 1 << (bits - plen)
    lo = value & ~(size - 1)
    return IPRange(version, lo, lo + size - 1)


def _address_range(text: str) -> IPRange:
    a, dash, b = text.partition("-")
    if not dash:
        raise ValueError(f"an address range is FIRST-LAST, not {text!r}")
    try:
        va, lo = parse_ip(a)
        vb, hi = parse_ip(b)
    except ValueError:
        raise ValueError(f"not an address range: {text!r}") from None
    if va != vb or lo > hi:
        raise ValueError(f"not an address range: {text!r}")
    return IPRange(va, lo, hi)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(
            f"not a port number: {text!r} (iptables looks service names up in "
            "/etc/services; write the number)"
        )
    value = int(text)
    if value > 65535:
        raise ValueError(f"port out of range: {text}")
    return value


def _port_range(text: str) -> PortRange:
    """``22``, ``1024:65535``, ``:1023`` (from 0) or ``1024:`` (to 65535)."""
    lo, colon, hi = text.partition(":")
    if not colon:
        p = _port(text)
        return PortRange(p, p)
    first = _port(lo) if lo else 0
    last = _port(hi) if hi else 65535
    if first > last:
        raise ValueError(f"invalid port range {text!r} (min > max)")
    return PortRange(first, last)


def _port_list(text: str) -> tuple[PortRange, ...]:
    items = text.split(",")
    ranges = [_port_range(item) for item in items]
    slots = sum(1 if r.lo == r.hi else 2 for r in ranges)
    if slots > _MULTIPORT_SLOTS:
        raise ValueError(f"too many ports: multiport takes {_MULTIPORT_SLOTS} (a range counts two)")
    return merge_ports(ranges)


def _flag_list(text: str) -> int:
    names = dict(_TCP_FLAGS)
    bits = 0
    for word in text.upper().split(","):
        if word == "ALL":
            bits |= _ALL_FLAGS
        elif word == "NONE":
            continue
        elif word in names:
            bits |= names[word]
        else:
            raise ValueError(f"unknown TCP flag {word!r} (FIN SYN RST PSH ACK URG ALL NONE)")
    return bits


# -- flattening ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where a RETURN goes: rule ``resume`` of ``chain``."""

    chain: str
    resume: int


class _Flattener:
    """One built-in chain of a parsed filter table -> first-match rules."""

    def __init__(self, doc: _Document, builtin: str, version: int, max_rules: int) -> None:
        self.doc = doc
        self.max_rules = max_rules
        self.builtin = builtin
        self.version = version
        chain = doc.chains.get(builtin)
        if chain is None or chain.policy is None:
            raise doc.error(
                f"the {builtin} chain has no policy here (a ':{builtin} ACCEPT [0:0]' or "
                f"':{builtin} DROP [0:0]' line)",
                doc.filter_line,
            )
        self.policy = chain.policy
        self.policy_line = chain.policy_line
        self.rules: list[Rule] = []
        self._ids: dict[str, int] = {}
        self._decides: dict[str, bool] = {}
        self._depth = 0
        self._decided: list[_Cube] = []  # the packets of each rule emitted so far
        # INPUT packets have no output interface, OUTPUT packets no input interface.
        self.top = {
            "INPUT": _Cube(out_iface=""),
            "OUTPUT": _Cube(in_iface=""),
            "FORWARD": _Cube(),
        }[builtin]

    def run(self) -> RuleSet:
        self._check_loops()
        other = 10 - self.version
        self._add(
            Rule(
                Action.ACCEPT,
                id=f"{self.builtin}/not-ipv{other}",
                src=IPSet([IPRange(other, 0, _TOP[other])]),
                comment=f"IPv{other} packets do not pass "
                f"{'iptables' if self.version == 4 else 'ip6tables'}",
                line=self.doc.filter_line,
            )
        )
        self._chain(self.builtin, 0, self.top, ())
        return RuleSet(tuple(self.rules), self.policy, name=self.doc.file)

    # the walk

    def _chain(self, name: str, start: int, ctx: _Cube, stack: tuple[_Frame, ...]) -> bool:
        """Emit the rules for the packets of ``ctx`` that enter chain ``name`` at rule
        ``start``; ``stack`` says where RETURN goes (empty: to the policy). The packets
        no emitted rule decides fall off the chain. True if every packet of ctx is decided."""
        rules = self.doc.chains[name].rules
        for i in range(start, len(rules)):
            rule = rules[i]
            target = rule.target
            if target.kind == "pass" or rule.version not in (None, self.version):
                continue
            if target.kind == "jump" and not self._chain_decides(target.chain):
                continue
            cubes = self._match(name, i, rule, ctx, stack)
            if not cubes:
                continue
            whole = cubes == [ctx]
            if target.kind == "unsupported":
                raise self.doc.error(
                    f"{target.reason}; the rule model cannot say it", rule.line, target.column
                )
            if target.kind in ("accept", "drop", "reject"):
                for cube in cubes:
                    self._emit(cube, rule)
                if whole:
                    return True
            elif target.kind == "jump":
                frame = _Frame(name, i + 1)
                done = [self._chain(target.chain, 0, c, (*stack, frame)) for c in cubes]
                if whole and all(done):
                    return True
            elif target.kind == "goto":
                done = [self._chain(target.chain, 0, c, stack) for c in cubes]
                if whole and all(done):
                    return True
                # What falls off the chain gone to returns to our caller.
                left = [c for c, d in zip(cubes, done, strict=True) if not d]
                if left and self._return(name, i, rule, left, ctx, stack):
                    return not stack
            elif self._return(name, i, rule, cubes, ctx, stack):  # RETURN
                return not stack
        return False

    def _return(
        self,
        name: str,
        i: int,
        rule: _IptRule,
        cubes: list[_Cube],
        ctx: _Cube,
        stack: tuple[_Frame, ...],
    ) -> bool:
        """The packets of ``cubes`` return from chain ``name`` at rule ``i``. True when the
        rest of the chain is done with (all of ctx returned, or the rest was emitted for
        the packets that stay); False to go on with rule i + 1."""
        if not stack:  # RETURN from the built-in chain (or a chain it went to): the policy
            for cube in cubes:
                self._emit(cube, rule, policy=True)
            return cubes == [ctx]
        if cubes == [ctx]:
            return True
        stay = _minus_all(ctx, cubes, self.version)
        if stay is not None:
            for cube in stay:
                self._chain(name, i + 1, cube, stack)
            return True
        frame = stack[-1]
        for cube in cubes:
            if not self._covered(cube):
                self._full(frame.chain, frame.resume, cube, stack[:-1], rule)
        return False

    def _full(
        self, name: str, start: int, ctx: _Cube, stack: tuple[_Frame, ...], cause: _IptRule
    ) -> None:
        """Decide every packet of ``ctx`` here: chain ``name`` from rule ``start``, then
        the callers on ``stack``, then the policy."""
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise self.doc.error(
                f"the expansion of negations and RETURNs nests deeper than {_MAX_DEPTH}",
                cause.line,
            )
        while not self._chain(name, start, ctx, stack):
            if not stack:
                self._emit(ctx, None, policy=True)
                break
            name, start, stack = stack[-1].chain, stack[-1].resume, stack[:-1]
        self._depth -= 1

    def _match(
        self, name: str, i: int, rule: _IptRule, ctx: _Cube, stack: tuple[_Frame, ...]
    ) -> list[_Cube]:
        """The packets of ``ctx`` the rule matches, as disjoint cubes. A negation the model
        cannot say (``! -i lo``) is expanded: the packets it excludes skip the rule, so
        they are decided here by the rest of the chain and its callers."""
        cubes = [ctx]
        for lit in rule.literals:
            if lit.negated or lit.unsupported:
                continue
            cubes = [m for x in cubes for q in lit.cubes if (m := x.meet(q)) is not None]
            if not cubes:
                return []
        for lit in rule.literals:
            if lit.unsupported:
                raise self.doc.error(
                    f"{lit.text}: the rule model cannot say it ({lit.unsupported})",
                    rule.line,
                    lit.column,
                )
        for lit in rule.literals:
            if not lit.negated:
                continue
            kept: list[_Cube] = []
            for x in cubes:
                rest = _minus_all(x, lit.cubes, self.version)
                if rest is None:
                    for q in lit.cubes:
                        skip = x.meet(q)
                        if skip is not None and not self._covered(skip):
                            self._full(name, i + 1, skip, stack, rule)
                    kept.append(x)
                else:
                    kept += rest
            cubes = kept
        return cubes

    def _chain_decides(self, name: str) -> bool:
        """Whether a jump to ``name`` can change any verdict (a chain of LOG and RETURN
        rules cannot)."""
        if name not in self._decides:
            self._decides[name] = False  # no loops (checked), so this is never read early
            self._decides[name] = any(
                r.target.kind in ("accept", "drop", "reject", "unsupported")
                or (r.target.kind in ("jump", "goto") and self._chain_decides(r.target.chain))
                for r in self.doc.chains[name].rules
                if r.version in (None, self.version)
            )
        return self._decides[name]

    def _check_loops(self) -> None:
        state: dict[str, int] = {}  # 1: on the path, 2: done

        def visit(name: str) -> None:
            state[name] = 1
            for rule in self.doc.chains[name].rules:
                if rule.target.kind not in ("jump", "goto"):
                    continue
                nxt = rule.target.chain
                if state.get(nxt) == 1:
                    raise self.doc.error(
                        f"jumping to {nxt} makes a loop ({nxt} reaches {name}); "
                        "iptables refuses loops",
                        rule.line,
                        rule.target.column,
                    )
                if nxt not in state:
                    visit(nxt)
            state[name] = 2

        for builtin in BUILTIN_CHAINS:
            if builtin in self.doc.chains:
                visit(builtin)

    # emitting

    def _emit(self, cube: _Cube, rule: _IptRule | None, policy: bool = False) -> None:
        if rule is None:
            base, line, column, comment = f"{self.builtin}/policy", self.policy_line, None, ""
        else:
            base, line, column = f"{rule.chain}/{rule.number}", rule.line, rule.target.column
            comment = rule.comment
        if policy:
            action, reject_with = self.policy, None
            if rule is not None:
                comment = f"{rule.comment}; " if rule.comment else ""
                comment += f"back to the {self.builtin} policy"
        else:
            assert rule is not None
            action = {"accept": Action.ACCEPT, "drop": Action.DROP}.get(
                rule.target.kind, Action.REJECT
            )
            reject_with = self._reject_with(rule) if action is Action.REJECT else None
        direction, iface, out_iface = self._interfaces(cube)
        n = self._ids.get(base, 0) + 1
        if (n > 1 or rule is None) and self._covered(cube):
            return  # a copy made by an expansion that no packet reaches
        self._ids[base] = n
        src = cube.src
        if src is None and cube.dst is None:  # the rule is for this IP version's packets only
            src = IPSet([IPRange(self.version, 0, _TOP[self.version])])
        try:
            made = Rule(
                action,
                id=base if n == 1 else f"{base}~{n}",
                src=src,
                dst=cube.dst,
                proto=cube.proto,
                sport=cube.sport,
                dport=cube.dport,
                icmp_type=cube.icmp_type,
                icmp_code=cube.icmp_code,
                tcp_flags=cube.tcp_flags,
                direction=direction,
                iface=iface,
                out_iface=out_iface,
                ct_state=cube.ct_state,
                reject_with=reject_with,
                comment=comment,
                line=line,
            )
        except ValueError as exc:
            raise self.doc.error(str(exc), line, column) from None
        self._add(made, rule)
        self._decided.append(cube)

    def _interfaces(self, cube: _Cube) -> tuple[str | None, str | None, str | None]:
        """(direction, iface, out_iface) of the rule for ``cube``: INPUT's -i is direction
        in on iface, OUTPUT's -o direction out on iface (their other interface is always
        none, so never named); FORWARD's -i is iface and its -o out_iface, no direction
        (a forwarded packet has none)."""
        in_iface, out_iface = cube.in_iface or None, cube.out_iface or None
        if self.builtin == "FORWARD":
            return None, in_iface, out_iface
        if self.builtin == "INPUT":
            assert out_iface is None  # INPUT's top cube has no output interface
            return ("in" if in_iface else None), in_iface, None
        assert in_iface is None
        return ("out" if out_iface else None), out_iface, None

    def _covered(self, cube: _Cube) -> bool:
        """Whether one of the last rules emitted decides every packet of ``cube`` (then
        an expansion for it would only add rules that never match). Only a pruning of
        copies: looking at a window keeps it linear, and missing one costs nothing."""
        return any(_within(cube, d) for d in self._decided[-_WINDOW:])

    def _add(self, rule: Rule, source: _IptRule | None = None) -> None:
        if len(self.rules) >= self.max_rules:
            raise self.doc.error(
                f"the {self.builtin} chain flattens into more than {self.max_rules} rules (jumps, "
                "RETURNs and negations are expanded exactly); simplify the chains",
                source.line if source is not None else self.doc.filter_line,
            )
        self.rules.append(rule)

    def _reject_with(self, rule: _IptRule) -> str:
        written = rule.target.reject_with
        if not written:
            return _REJECT_DEFAULT[self.version]
        names = _REJECT_IN[self.version]
        tool = "iptables" if self.version == 4 else "ip6tables"
        if written not in names:
            raise self.doc.error(
                f"--reject-with {written}: not a reject type of {tool}",
                rule.line,
                rule.target.column,
            )
        if not names[written]:
            raise self.doc.error(
                f"--reject-with {written} is not in the rule model (it has "
                f"{', '.join(sorted(set(v for v in names.values() if v)))})",
                rule.line,
                rule.target.column,
            )
        return names[written]


def _builtin(select: str | None, file: str) -> str:
    if select is None:
        return "INPUT"
    chosen = select.strip()
    if chosen.lower().startswith("filter:"):
        chosen = chosen[len("filter:") :]
    if chosen.upper() in BUILTIN_CHAINS:
        return chosen.upper()
    raise ConfigError(
        f"--select names a built-in chain of the filter table: INPUT, FORWARD or OUTPUT "
        f"(not {select!r}; a user chain is taken with the built-in chain that jumps to it)",
        file=file,
    )


def _check_other_tables(doc: _Document, builtin: str) -> None:
    """A DROP or REJECT in raw, mangle or security, on the way of the selected chain's
    packets, decides before or after the filter table: the model holds one table."""
    hooks = _HOOKS["INPUT"] | _HOOKS["FORWARD"] | _HOOKS["OUTPUT"]
    for d in doc.deciding:
        if d.chain in _HOOKS[builtin] or d.chain not in hooks:  # a user chain: maybe
            raise doc.error(
                f"-j {d.target} in the {d.table} table ({d.chain}): it decides outside the "
                "filter table, which is all the rule model holds",
                d.line,
                d.column,
            )


def parse_iptables(
    text: str,
    file: str,
    select: str | None = None,
    *,
    version: int | None = None,
    max_rules: int = DEFAULT_MAX_RULES,
) -> RuleSet:
    """The rule set of built-in chain ``select`` (INPUT if None; FORWARD, OUTPUT) of the
    filter table in iptables-save text; refused if it flattens into more than
    ``max_rules`` rules. ``version`` (4 or 6) is the IP version when the text has no
    iptables-save header saying it."""
    builtin = _builtin(select, file)
    doc = _Reader(file).read(text)
    version = doc.version(version)
    _check_other_tables(doc, builtin)
    return _Flattener(doc, builtin, version, max_rules).run()


def load_iptables(
    path: str | Path, select: str | None = None, *, max_rules: int = DEFAULT_MAX_RULES
) -> RuleSet:
    """The rule set of built-in chain ``select`` in an iptables-save file (see
    :func:`parse_iptables`)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=str(p)) from None
    name = p.name.lower()
    hint = 6 if name.endswith(".v6") or "ip6tables" in name else None
    hint = 4 if hint is None and name.endswith(".v4") else hint
    return parse_iptables(text, str(p), select, version=hint, max_rules=max_rules)


# -- rendering ----------------------------------------------------------------------------

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_COMMENT_BYTES = 255


def _quote(text: str) -> str:
    """A value as iptables-save writes it: bare if plain, else double-quoted with ``"``,
    ``\\`` and ``'`` escaped."""
    if _SAFE.fullmatch(text):
        return text
    return '"' + re.sub(r"([\"\\'])", r"\\\1", text) + '"'


def _comment_text(rule: Rule, index: int) -> str:
    name = rule.id or f"rule-{index}"
    text = f"{name}: {rule.comment}" if rule.comment else name
    text = "".join(" " if not ch.isprintable() else ch for ch in text)
    data = text.encode()
    if len(data) > _COMMENT_BYTES:  # xt_comment holds 255 bytes
        text = data[:_COMMENT_BYTES].decode("utf-8", "ignore")
    return text


def _prefix_text(r: IPRange) -> str | None:
    size = r.hi - r.lo + 1
    if size & (size - 1) or r.lo % size:
        return None
    bits = 32 if r.version == 4 else 128
    plen = bits - (size.bit_length() - 1)
    base = str(IPRange(r.version, r.lo, r.lo))
    return f"{base}/{plen}"


def _address_choices(
    s: IPSet | None, version: int, flag: str, range_option: str
) -> list[tuple[list[str], list[str]]]:
    """The ways to say ``s`` in one rule each: (head options, -m iprange options)."""
    if s is None:
        return [([], [])]
    ranges = [r for r in s.ranges if r.version == version]
    if len(ranges) == 1 and ranges[0].is_all:
        return [([], [])]
    if len(ranges) > 1:
        rest = IPSet(ranges).complement(version)
        if len(rest.ranges) == 1:
            prefix = _prefix_text(rest.ranges[0])
            if prefix is not None:
                return [(["!", flag, prefix], [])]
    out: list[tuple[list[str], list[str]]] = []
    for r in ranges:
        prefix = _prefix_text(r)
        if prefix is not None:
            out.append(([flag, prefix], []))
        else:
            lo, hi = str(IPRange(r.version, r.lo, r.lo)), str(IPRange(r.version, r.hi, r.hi))
            out.append(([], [range_option, f"{lo}-{hi}"]))
    return out


def _port_text(r: PortRange) -> str:
    return str(r.lo) if r.lo == r.hi else f"{r.lo}:{r.hi}"


def _port_chunks(ports: tuple[PortRange, ...] | None) -> list[tuple[PortRange, ...] | None]:
    if ports is None:
        return [None]
    chunks: list[tuple[PortRange, ...]] = []
    current: list[PortRange] = []
    used = 0
    for r in ports:
        cost = 1 if r.lo == r.hi else 2
        if used + cost > _MULTIPORT_SLOTS:
            chunks.append(tuple(current))
            current, used = [], 0
        current.append(r)
        used += cost
    chunks.append(tuple(current))
    return list(chunks)


def _flags_text(bits: int) -> str:
    names = [name for name, bit in _TCP_FLAGS if bits & bit]
    return ",".join(names) if names else "NONE"


class _Refused(Exception):
    """A rule iptables cannot say."""


def _iface_options(rule: Rule, chain: str) -> list[str]:
    """-i/-o for the rule in ``chain`` (one it can match in, see :func:`_never_reason`):
    in FORWARD iface is -i and out_iface -o; in INPUT iface is -i, in OUTPUT -o."""
    if chain == "FORWARD":
        named = [("-i", rule.iface), ("-o", rule.out_iface)]
    else:
        named = [("-i" if chain == "INPUT" else "-o", rule.iface)]
    out: list[str] = []
    for option, name in named:
        if name is None:
            continue
        if (
            len(name) >= _IFNAMSIZ
            or name.endswith("+")
            or not name
            or any(not c.isprintable() or c.isspace() or c in "\"'\\/" for c in name)
        ):
            raise _Refused(f"interface name {name!r} cannot be said in iptables")
        out += [option, name]
    return out


def _never_reason(rule: Rule, version: int, chain: str) -> str:
    """Why the rule never matches in this chain and IP version ("" if it can)."""
    for s in (rule.src, rule.dst):
        if s is not None and version not in s.versions:
            return f"it names IPv{10 - version} addresses only"
    if rule.icmp_type is not None and rule.proto == (58 if version == 4 else 1):
        return f"{'ICMPv6' if version == 4 else 'ICMP'} types are IPv{10 - version}'s"
    if chain == "FORWARD" and rule.direction is not None:
        return f"direction {rule.direction} never matches in FORWARD (a forwarded packet has none)"
    if chain != "FORWARD" and rule.out_iface is not None:
        return f"out_iface (a forwarded packet's output interface) never matches in {chain}"
    if (
        chain != "FORWARD"
        and rule.direction is not None
        and (rule.direction == "in") != (chain == "INPUT")
    ):
        return f"direction {rule.direction} never matches in {chain}"
    return ""


def _rule_lines(rule: Rule, index: int, chain: str, version: int) -> list[str]:
    iface = _iface_options(rule, chain)
    if rule.proto == 0:
        raise _Refused("iptables reads protocol 0 as any protocol")
    if version == 4 and rule.icmp_type == 255:
        raise _Refused("iptables reads ICMP type 255 as any type")
    head_proto: list[str] = []
    if rule.proto is not None:
        head_proto = ["-p", _PROTOCOL_OUT.get(rule.proto, str(rule.proto))]
    tail: list[str] = []
    if rule.icmp_type is not None:
        kind = f"{rule.icmp_type}" + (f"/{rule.icmp_code}" if rule.icmp_code is not None else "")
        module, option = ("icmp", "--icmp-type") if version == 4 else ("icmp6", "--icmpv6-type")
        tail += ["-m", module, option, kind]
    if rule.ct_state is not None:
        states = [s for s in _CT_OUT if _CT_IN[s] in rule.ct_state]
        tail += ["-m", "conntrack", "--ctstate", ",".join(states)]
    tail += ["-m", "comment", "--comment", _quote(_comment_text(rule, index))]
    if rule.action is Action.REJECT:
        kind = rule.reject_with or _REJECT_DEFAULT[version]
        tail += ["-j", "REJECT", "--reject-with", _REJECT_OUT[version][kind]]
    else:
        tail += ["-j", rule.action.name]
    lines: list[str] = []
    srcs = _address_choices(rule.src, version, "-s", "--src-range")
    dsts = _address_choices(rule.dst, version, "-d", "--dst-range")
    for s_head, s_range in srcs:
        for d_head, d_range in dsts:
            ranged = ["-m", "iprange", *s_range, *d_range] if s_range or d_range else []
            for sports in _port_chunks(rule.sport):
                for dports in _port_chunks(rule.dport):
                    ports = _port_options(rule, sports, dports)
                    words = [*s_head, *d_head, *iface, *head_proto, *ranged, *ports, *tail]
                    lines.append(" ".join(["-A", chain, *words]))
    return lines


def _port_options(
    rule: Rule, sports: tuple[PortRange, ...] | None, dports: tuple[PortRange, ...] | None
) -> list[str]:
    """The protocol match (single ports, TCP flags) and multiport matches of one line."""
    assert rule.proto is not None or (sports is None and dports is None)
    single: list[str] = []
    multi: list[str] = []
    for option, ports in (("sport", sports), ("dport", dports)):
        if ports is None:
            continue
        if len(ports) == 1:
            single += [f"--{option}", _port_text(ports[0])]
        else:
            multi += ["-m", "multiport", f"--{option}s", ",".join(map(_port_text, ports))]
    if rule.tcp_flags is not None:
        mask, value = rule.tcp_flags
        single += ["--tcp-flags", _flags_text(mask), _flags_text(value)]
    if single:
        assert rule.proto is not None
        single = ["-m", _PROTO_MODULE[rule.proto], *single]
    return single + multi


def render_iptables_restore(ruleset: RuleSet, chain: str = "INPUT", version: int = 4) -> str:
    """``ruleset`` as an iptables-restore file (``version`` 6: ip6tables-restore) that
    replaces the filter table: ``chain`` holds the rules with the default as its policy,
    the other built-in chains accept. Rules that never match in ``chain`` or this IP
    version are left out and named in a comment; what iptables cannot say is refused
    (ConfigError naming the rule)."""
    if chain not in BUILTIN_CHAINS:
        raise ValueError(f"chain is one of {', '.join(BUILTIN_CHAINS)}, not {chain!r}")
    if version not in (4, 6):
        raise ValueError(f"IP version is 4 or 6, not {version!r}")
    tool = "iptables" if version == 4 else "ip6tables"
    body: list[str] = []
    notes: list[str] = []
    for index, rule in enumerate(ruleset.rules, 1):
        name = rule.id or f"rule-{index}"
        why = _never_reason(rule, version, chain)
        if why:
            notes.append(f"# left out {name}: {why}")
            continue
        try:
            body += _rule_lines(rule, index, chain, version)
        except _Refused as exc:
            raise ConfigError(
                f"rule {name} ({rule.describe()}): {exc}",
                file=ruleset.name or None,
                line=rule.line,
            ) from None
    policy = "ACCEPT" if ruleset.default is Action.ACCEPT else "DROP"
    if ruleset.default is Action.REJECT:
        kind = _REJECT_OUT[version][_REJECT_DEFAULT[version]]
        body.append(f"-A {chain} -m comment --comment default -j REJECT --reject-with {kind}")
    other = "ip6tables" if version == 4 else "iptables"
    head = [
        f"# Generated by ramparts for {tool}-restore: the {chain} chain of "
        f"{ruleset.name or 'a rule set'}",
        f"# IPv{version} only: the IPv{10 - version} rules go to the {other}-restore file",
    ]
    chains = [
        f":{c} {policy if c == chain else 'ACCEPT'} [0:0]" for c in ("INPUT", "FORWARD", "OUTPUT")
    ]
    return "\n".join([*head, *notes, "*filter", *chains, *body, "COMMIT", ""])


def render_ip6tables_restore(ruleset: RuleSet, chain: str = "INPUT") -> str:
    """``ruleset`` as an ip6tables-restore file (see :func:`render_iptables_restore`)."""
    return render_iptables_restore(ruleset, chain, version=6)
