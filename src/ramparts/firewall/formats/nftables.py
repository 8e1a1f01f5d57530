"""nftables in and out: a RuleSet rendered as an ``nft -f`` script (one table of ours,
replaced in one transaction), and ``nft -j list ruleset`` JSON read back into a RuleSet.

Out (:func:`compile_nftables`, :func:`render_nftables`): one table (``inet ramparts`` by
default) with one base chain on the ``input``, ``forward`` or ``output`` hook whose policy is
the rule set's default (a ``reject`` default is a last ``reject`` rule over ``policy drop``).
Each rule becomes one nft rule per IP version it names (``ip saddr`` / ``ip6 saddr``), with
``comment "<id>"``; ports, port ranges and short address lists are anonymous sets, address
lists longer than ``set_threshold`` are named interval sets (``@s4_1``, ``@s6_1``), so a list
of thousands of addresses is one rule, never one rule per address. The script starts with
``table F T`` + ``delete table F T``, so ``nft -f`` replaces our table, and only ours, in one
atomic transaction. What nft cannot say the way the rule model means it is refused with the
rule's file and line (an interface name nft would read as a wildcard). Interfaces: ``iface``
is ``iifname`` on the input and forward hooks and ``oifname`` on output; ``out_iface`` (a
forwarded packet's output interface) is ``oifname`` on forward. A rule that can never match
in the chosen hook or family (``direction: out`` in ``input``, any direction in ``forward``,
an ``out_iface`` outside ``forward``, an IPv6-only rule in a table of family ``ip``) is left
out and named in a comment.

In (:func:`load_nftables`, :func:`parse_nftables`): one base chain of a listing (``select``:
``family/table/chain``, ``table/chain`` or a chain name; by default the only filter chain on
the input hook) becomes a first-match rule list with the chain's policy as the default.
Supported: ip/ip6 addresses, tcp/udp/sctp/th ports, ``meta l4proto``/``ip protocol``/
``ip6 nexthdr``, ``meta nfproto``, iifname/oifname (``iface`` is the input interface on
input and forward and the output interface on output; on forward ``oifname`` is
``out_iface``; the interface a hook does not have reads as the empty name in the kernel, so
``oifname "X"`` on input, or ``iifname "X"`` on output, never matches and its ``!=`` always
does), ``ct state``, tcp flags,
icmp/icmpv6 type and code;
prefixes, ranges, comparisons, anonymous sets and named sets (their elements from the
listing's ``set`` objects); accept, drop, reject (and its type), jump and goto to regular
chains, return. ``!=`` on addresses and ports becomes the complement; on anything else, and
a ``return`` or ``goto`` with conditions, is expanded exactly: the packets that skip the
rule get the rest of the chain (and of its callers) conjoined with the skipped condition,
ending in the policy, so nothing depends on a "continue" the rule model does not have. The
expansion is bounded (``max_rules``). counter, log and comments decide nothing and are
ignored. Everything else (limits, quotas, maps, concatenations, marks, iptables-nft ``xt``
matches, wildcard interface names) is refused, with the
JSON path of the expression (``nftables[12].rule.expr[2]``), the rule's handle, and the
line and column of the rule object in the file. JSON has no line numbers of its own; an
``nft -j`` dump is one line, so there the column is the one that locates it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, TypeVar

from ...config.loader import read_file
from ...errors import ConfigError
from ...net.addr import IPRange, IPSet
from ...net.packet import meet_tcp_flags
from ...net.ports import PortRange, complement_ports, intersect_ports
from ..model import CT_STATES, Action, Rule, RuleSet

__all__ = [
    "DEFAULT_MAX_RULES",
    "FAMILIES",
    "HOOKS",
    "ICMPV6_TYPES",
    "ICMP_TYPES",
    "SET_THRESHOLD",
    "NftProgram",
    "NftRule",
    "NftSet",
    "compile_nftables",
    "load_nftables",
    "parse_nftables",
    "render_nftables",
]

HOOKS = ("input", "forward", "output")
FAMILIES = ("inet", "ip", "ip6")
#: Address lists with more ranges than this (per IP version) become named sets.
SET_THRESHOLD = 4
#: The most first-match rules one imported chain may expand to (jumps, returns, negations).
DEFAULT_MAX_RULES = 20_000
_MAX_DEPTH = 16  # nft's own jump stack depth (NFT_JUMP_STACK_SIZE)

# -- names nft uses (``nft describe icmp type`` etc.) --------------------------------------

ICMP_TYPES: dict[str, int] = {
    "echo-reply": 0,
    "destination-unreachable": 3,
    "source-quench": 4,
    "redirect": 5,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
    "info-request": 15,
    "info-reply": 16,
    "address-mask-request": 17,
    "address-mask-reply": 18,
}
ICMPV6_TYPES: dict[str, int] = {
    "destination-unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo-reply": 129,
    "mld-listener-query": 130,
    "mld-listener-report": 131,
    "mld-listener-done": 132,
    "mld-listener-reduction": 132,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-redirect": 137,
    "router-renumbering": 138,
    "ind-neighbor-solicit": 141,
    "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
}
_ICMP_CODES: dict[str, int] = {
    "net-unreachable": 0,
    "host-unreachable": 1,
    "prot-unreachable": 2,
    "port-unreachable": 3,
    "frag-needed": 4,
    "net-prohibited": 9,
    "host-prohibited": 10,
    "admin-prohibited": 13,
}
_ICMPV6_CODES: dict[str, int] = {
    "no-route": 0,
    "admin-prohibited": 1,
    "addr-unreachable": 3,
    "port-unreachable": 4,
    "policy-fail": 5,
    "reject-route": 6,
}
_TCP_FLAGS: dict[str, int] = {
    "fin": 0x01,
    "syn": 0x02,
    "rst": 0x04,
    "psh": 0x08,
    "ack": 0x10,
    "urg": 0x20,
    "ecn": 0x40,
    "cwr": 0x80,
}
# IANA keywords as /etc/protocols spells them (nft prints l4proto with these names).
_PROTOCOLS: dict[str, int] = {
    "hopopt": 0,
    "icmp": 1,
    "igmp": 2,
    "ggp": 3,
    "ipencap": 4,
    "st": 5,
    "tcp": 6,
    "egp": 8,
    "igp": 9,
    "pup": 12,
    "udp": 17,
    "hmp": 20,
    "xns-idp": 22,
    "rdp": 27,
    "iso-tp4": 29,
    "dccp": 33,
    "xtp": 36,
    "ddp": 37,
    "idpr-cmtp": 38,
    "ipv6": 41,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "idrp": 45,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "skip": 57,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "rspf": 73,
    "vmtp": 81,
    "eigrp": 88,
    "ospf": 89,
    "ax.25": 93,
    "ipip": 94,
    "etherip": 97,
    "encap": 98,
    "pim": 103,
    "ipcomp": 108,
    "vrrp": 112,
    "l2tp": 115,
    "isis": 124,
    "sctp": 132,
    "fc": 133,
    "mobility-header": 135,
    "udplite": 136,
    "mpls-in-ip": 137,
    "manet": 138,
    "hip": 139,
    "shim6": 140,
    "wesp": 141,
    "rohc": 142,
    "ethernet": 143,
}
_PROTO_OUT = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "icmpv6"}
_PORT_PROTOS = {6: "tcp", 17: "udp", 132: "sctp"}
_STATE_ORDER = ("new", "established", "related", "invalid")
_V4_ALL = IPRange(4, 0, (1 << 32) - 1)
_V6_ALL = IPRange(6, 0, (1 << 128) - 1)
_ALL_RANGES = {4: _V4_ALL, 6: _V6_ALL}
_FAMILY_VERSIONS = {"inet": frozenset({4, 6}), "ip": frozenset({4}), "ip6": frozenset({6})}
_NFPROTO = {4: "ipv4", 6: "ipv6"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_IFNAMSIZ = 16

# reject_with -> (kind); kinds -> the nft reject per IP versions of the rule.
_REJECT_KIND = {
    "icmp-port-unreachable": "port",
    "icmpv6-port-unreachable": "port",
    "icmp-host-unreachable": "host",
    "icmp-net-unreachable": "net",
    "icmp-admin-prohibited": "admin",
    "icmpv6-admin-prohibited": "admin",
}
_REJECT_OUT = {
    "icmpx": {
        "port": "port-unreachable",
        "host": "host-unreachable",
        "net": "no-route",
        "admin": "admin-prohibited",
    },
    "icmp": {
        "port": "port-unreachable",
        "host": "host-unreachable",
        "net": "net-unreachable",
        "admin": "admin-prohibited",
    },
    "icmpv6": {
        "port": "port-unreachable",
        "host": "addr-unreachable",
        "net": "no-route",
        "admin": "admin-prohibited",
    },
}
# (nft reject type, its code name) -> reject_with (None: nft's plain reject).
_REJECT_IN: dict[tuple[str, str], str | None] = {
    ("icmpx", "port-unreachable"): None,
    ("icmpx", "host-unreachable"): "icmp-host-unreachable",
    ("icmpx", "no-route"): "icmp-net-unreachable",
    ("icmpx", "admin-prohibited"): "icmp-admin-prohibited",
    ("icmp", "port-unreachable"): "icmp-port-unreachable",
    ("icmp", "host-unreachable"): "icmp-host-unreachable",
    ("icmp", "net-unreachable"): "icmp-net-unreachable",
    ("icmp", "admin-prohibited"): "icmp-admin-prohibited",
    ("icmpv6", "port-unreachable"): "icmpv6-port-unreachable",
    ("icmpv6", "admin-prohibited"): "icmpv6-admin-prohibited",
    ("icmpv6", "addr-unreachable"): "icmp-host-unreachable",
    ("icmpv6", "no-route"): "icmp-net-unreachable",
}


# =========================================================================================
# Out: RuleSet -> nft script
# =========================================================================================


@dataclass(frozen=True, slots=True)
class NftSet:
    """A named interval set of addresses of one IP version."""

    name: str
    version: int
    elements: tuple[str, ...]

    def text(self) -> str:
        kind = "ipv4_addr" if self.version == 4 else "ipv6_addr"
        lines = [f"\tset {self.name} {{", f"\t\ttype {kind}", "\t\tflags interval"]
        lines.append("\t\telements = {")
        per_line = 4 if self.version == 4 else 2
        for i in range(0, len(self.elements), per_line):
            chunk = self.elements[i : i + per_line]
            lines.append("\t\t\t" + ", ".join(chunk) + ",")
        lines += ["\t\t}", "\t}"]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class NftRule:
    """One nft rule: its statement (without the comment), the 1-based rule of the rule set
    it comes from (None for the default's final reject) and its comment."""

    statement: str
    index: int | None
    comment: str

    def text(self) -> str:
        return f'{self.statement} comment "{self.comment}"'


@dataclass(frozen=True, slots=True)
class NftProgram:
    """A rule set compiled for one nft table and hook; :meth:`script` is the ``nft -f``
    text that replaces the table in one transaction."""

    family: str
    table: str
    hook: str
    policy: str
    default: Action
    sets: tuple[NftSet, ...]
    rules: tuple[NftRule, ...]
    notes: tuple[str, ...]  # rules left out (they never match in this hook or family)
    source: str
    rule_count: int  # rules in the rule set

    @property
    def chain(self) -> str:
        return self.hook

    @property
    def elements(self) -> int:
        return sum(len(s.elements) for s in self.sets)

    def script(self) -> str:
        head = f"{self.family} {self.table}"
        src = f' "{self.source}"' if self.source else ""
        lines = [
            f"# ramparts rule set{src}: {self.rule_count} rule(s), default "
            f"{self.default.value}; {len(self.rules)} nft rule(s), {len(self.sets)} set(s)",
            "# Replaces only this table, in one transaction: nft -f FILE",
            f"table {head}",
            f"delete table {head}",
            f"table {head} {{",
        ]
        for s in self.sets:
            lines += [s.text(), ""]
        lines.append(f"\tchain {self.chain} {{")
        lines.append(f"\t\ttype filter hook {self.hook} priority filter; policy {self.policy};")
        lines += [f"\t\t# {note}" for note in self.notes]
        lines += [f"\t\t{r.text()}" for r in self.rules]
        lines += ["\t}", "}"]
        return "\n".join(lines) + "\n"


class _SetPool:
    """Named sets by content, so one address list used twice is one set."""

    def __init__(self) -> None:
        self.sets: list[NftSet] = []
        self._by_key: dict[tuple[int, tuple[IPRange, ...]], NftSet] = {}

    def name_for(self, version: int, ranges: tuple[IPRange, ...]) -> str:
        key = (version, ranges)
        found = self._by_key.get(key)
        if found is None:
            n = sum(1 for s in self.sets if s.version == version) + 1
            found = NftSet(f"s{version}_{n}", version, tuple(str(r) for r in ranges))
            self.sets.append(found)
            self._by_key[key] = found
        return found.name


def render_nftables(
    ruleset: RuleSet,
    *,
    table: str = "ramparts",
    hook: str = "input",
    family: str = "inet",
    counters: bool = False,
    set_threshold: int = SET_THRESHOLD,
) -> str:
    """The ``nft -f`` script for ``ruleset`` (see :func:`compile_nftables`)."""
    return compile_nftables(
        ruleset,
        table=table,
        hook=hook,
        family=family,
        counters=counters,
        set_threshold=set_threshold,
    ).script()


def compile_nftables(
    ruleset: RuleSet,
    *,
    table: str = "ramparts",
    hook: str = "input",
    family: str = "inet",
    counters: bool = False,
    set_threshold: int = SET_THRESHOLD,
) -> NftProgram:
    """``ruleset`` as one nft table with one base chain on ``hook``. A rule nft cannot
    express as the model means it raises ConfigError naming the rule's file and line."""
    if hook not in HOOKS:
        raise ValueError(f"hook {hook!r}: one of {', '.join(HOOKS)}")
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: one of {', '.join(FAMILIES)}")
    if not _NAME.fullmatch(table):
        raise ValueError(f"table name {table!r}: letters, digits, _ and -, at most 64")
    if set_threshold < 0:
        raise ValueError("set_threshold must be 0 or more")
    pool = _SetPool()
    out: list[NftRule] = []
    notes: list[str] = []
    file = ruleset.name or None
    for i, rule in enumerate(ruleset.rules, 1):
        name = rule.id or f"rule-{i}"
        try:
            statements, note = _render_rule(rule, hook, family, pool, set_threshold)
            _check_comment(name)
        except ValueError as exc:
            raise ConfigError(
                f"rule {i} ({name}) cannot be written for nftables: {exc}",
                file=file,
                line=rule.line,
                field=f"rules.{i - 1}",
            ) from None
        if note:
            notes.append(f"rule {i} ({name}) left out: {note}")
        counter = "counter " if counters else ""
        for text, versions in statements:
            verdict = _verdict_text(rule, versions)
            out.append(NftRule(f"{text} {counter}{verdict}".strip(), i, name))
    policy = "accept" if ruleset.default is Action.ACCEPT else "drop"
    if ruleset.default is Action.REJECT:
        out.append(NftRule("counter reject" if counters else "reject", None, "default"))
    return NftProgram(
        family=family,
        table=table,
        hook=hook,
        policy=policy,
        default=ruleset.default,
        sets=tuple(pool.sets),
        rules=tuple(out),
        notes=tuple(notes),
        source=_printable(PurePath(ruleset.name).name) if ruleset.name else "",
        rule_count=len(ruleset.rules),
    )


def _printable(text: str) -> str:
    """``text`` safe inside a quoted comment line of the script."""
    return "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)


def _check_comment(name: str) -> None:
    if '"' in name or "\\" in name or not name.isprintable() or len(name.encode()) > 128:
        raise ValueError(
            f"the rule id {name!r} cannot be an nft comment (printable, no quote or \\, "
            "at most 128 bytes)"
        )


def _render_rule(
    rule: Rule, hook: str, family: str, pool: _SetPool, threshold: int
) -> tuple[list[tuple[str, frozenset[int]]], str]:
    """The statements (without verdict) of one rule, each with the IP versions it covers;
    or none and a note saying why the rule can never match here."""
    if rule.direction is not None and (
        # (a forwarded packet has no direction: a host's rule never matches in forward)
        hook == "forward" or (rule.direction == "in") != (hook == "input")
    ):
        return [], f"direction {rule.direction} never matches in hook {hook}"
    if rule.out_iface is not None and hook != "forward":
        _ifname(rule.out_iface)
        return [], (
            f"out_iface {rule.out_iface} (the interface a forwarded packet leaves by) never "
            f"matches in hook {hook}"
        )
    # nft's icmp type implies IPv4 and its icmpv6 type IPv6 (the importer reads them so).
    implied = None
    if rule.icmp_type is not None:
        implied = 4 if rule.proto == 1 else 6
    own = _rule_versions(rule, implied)
    versions = _FAMILY_VERSIONS[family] & own
    if not versions:
        only = "/".join(f"IPv{v}" for v in sorted(own))
        return [], f"it matches {only} only, which a table of family {family} never sees"
    common = _common_text(rule, hook)
    if rule.src is None and rule.dst is None:
        return [(common, versions)], ""
    out: list[tuple[str, frozenset[int]]] = []
    for v in sorted(versions):
        # In an inet table a rule for one IP version says so, unless an icmp type does.
        nfproto = family == "inet" and v != implied
        parts = _address_text(rule, v, pool, threshold, nfproto=nfproto)
        out.append((" ".join(p for p in (parts, common) if p), frozenset({v})))
    return out, ""


def _rule_versions(rule: Rule, implied: int | None) -> frozenset[int]:
    versions = frozenset({4, 6}) if implied is None else frozenset({implied})
    for addrs in (rule.src, rule.dst):
        if addrs is not None:
            versions &= addrs.versions
    return versions


def _address_text(rule: Rule, v: int, pool: _SetPool, threshold: int, *, nfproto: bool) -> str:
    kw = "ip" if v == 4 else "ip6"
    parts: list[str] = []
    for key, addrs in (("saddr", rule.src), ("daddr", rule.dst)):
        if addrs is None:
            continue
        ranges = tuple(r for r in addrs.ranges if r.version == v)
        if len(ranges) == 1 and ranges[0].is_all:
            continue
        if len(ranges) > threshold:
            parts.append(f"{kw} {key} @{pool.name_for(v, ranges)}")
        elif len(ranges) == 1:
            parts.append(f"{kw} {key} {ranges[0]}")
        else:
            parts.append(f"{kw} {key} {{ {', '.join(str(r) for r in ranges)} }}")
    if not parts and nfproto:
        parts.append(f"meta nfproto {_NFPROTO[v]}")
    return " ".join(parts)


def _common_text(rule: Rule, hook: str) -> str:
    """Everything but the addresses and the verdict."""
    parts: list[str] = []
    proto = rule.proto
    implied = False
    if proto in _PORT_PROTOS:
        kw = _PORT_PROTOS[proto]
        for key, ports in (("sport", rule.sport), ("dport", rule.dport)):
            if ports is None or (len(ports) == 1 and (ports[0].lo, ports[0].hi) == (0, 65535)):
                continue
            parts.append(f"{kw} {key} {_ports_text(ports)}")
            implied = True
    if rule.tcp_flags is not None:
        parts.append(_flags_text(*rule.tcp_flags))
        implied = True
    if rule.icmp_type is not None:
        kw = "icmp" if proto == 1 else "icmpv6"
        types = ICMP_TYPES if proto == 1 else ICMPV6_TYPES
        parts.append(f"{kw} type {_name_of(types, rule.icmp_type)}")
        if rule.icmp_code is not None:
            unreachable = (proto, rule.icmp_type) in ((1, 3), (58, 1))
            codes = (_ICMP_CODES if proto == 1 else _ICMPV6_CODES) if unreachable else {}
            parts.append(f"{kw} code {_name_of(codes, rule.icmp_code)}")
        implied = True
    if proto is not None and not implied:
        parts.insert(0, f"meta l4proto {_PROTO_OUT.get(proto, str(proto))}")
    if rule.iface is not None:
        kw = "oifname" if hook == "output" else "iifname"
        parts.append(f'{kw} "{_ifname(rule.iface)}"')
    if rule.out_iface is not None:  # only in hook forward (_render_rule)
        parts.append(f'oifname "{_ifname(rule.out_iface)}"')
    if rule.ct_state is not None:
        states = [s for s in _STATE_ORDER if s in rule.ct_state]
        parts.append("ct state " + ",".join(states))
    return " ".join(parts)


def _ifname(name: str) -> str:
    """``name`` as nft writes one interface (no wildcard), or ValueError."""
    if not name or '"' in name or "\\" in name or name.endswith("*") or len(name) >= _IFNAMSIZ:
        raise ValueError(
            f"interface name {name!r}: nft reads a trailing * as a wildcard, and a name "
            f"is not empty, has at most {_IFNAMSIZ - 1} characters and no quotes"
        )
    return name


def _ports_text(ports: tuple[PortRange, ...]) -> str:
    if len(ports) == 1:
        return str(ports[0])
    return "{ " + ", ".join(str(p) for p in ports) + " }"


def _flag_names(bits: int) -> list[str]:
    return [name for name, bit in _TCP_FLAGS.items() if bits & bit]


def _flags_text(mask: int, value: int) -> str:
    if mask & ~0xFF:
        raise ValueError(f"TCP flag mask {mask:#x} has bits beyond the 8 TCP flags")
    names = _flag_names(mask)
    m = names[0] if len(names) == 1 else "(" + " | ".join(names) + ")"
    if value == 0:
        v = "0x0"
    else:
        names = _flag_names(value)
        v = names[0] if len(names) == 1 else "(" + " | ".join(names) + ")"
    return f"tcp flags & {m} == {v}"


def _name_of(names: dict[str, int], value: int) -> str:
    for name, number in names.items():
        if number == value:
            return name
    return str(value)


def _verdict_text(rule: Rule, versions: frozenset[int]) -> str:
    if rule.action is Action.ACCEPT:
        return "accept"
    if rule.action is Action.DROP:
        return "drop"
    kind = rule.reject_with
    if kind is None:
        return "reject"
    if kind == "tcp-reset":
        return "reject with tcp reset"
    if versions == frozenset({4}):
        group = "icmp"
    elif versions == frozenset({6}):
        group = "icmpv6"
    else:
        group = "icmpx"
    return f"reject with {group} type {_REJECT_OUT[group][_REJECT_KIND[kind]]}"


# =========================================================================================
# In: nft -j list ruleset -> RuleSet
# =========================================================================================


class _Refused(Exception):
    """An expression the rule model cannot take; ``path`` is relative to the rule object."""

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class _Disjoint(Exception):
    """No packet can match both conditions."""


@dataclass(frozen=True, slots=True)
class _Match:
    """A conjunction of conditions on one packet (a field left None matches anything)."""

    versions: frozenset[int] = frozenset({4, 6})
    src: IPSet | None = None
    dst: IPSet | None = None
    proto: int | None = None
    sport: tuple[PortRange, ...] | None = None
    dport: tuple[PortRange, ...] | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: tuple[int, int] | None = None
    iface: str | None = None
    out_iface: str | None = None
    ct_state: frozenset[str] | None = None

    def conjoin(self, other: _Match) -> _Match | None:
        """Both at once, or None when no packet can match both."""
        try:
            return self._conjoin(other)
        except _Disjoint:
            return None

    def _conjoin(self, other: _Match) -> _Match:
        versions = self.versions & other.versions
        src = _and_addrs(self.src, other.src)
        dst = _and_addrs(self.dst, other.dst)
        for addrs in (src, dst):
            if addrs is not None:
                versions &= addrs.versions
        if not versions:
            raise _Disjoint
        states = self.ct_state
        if other.ct_state is not None:
            states = other.ct_state if states is None else states & other.ct_state
            if not states:
                raise _Disjoint
        return _Match(
            versions,
            _keep(src, versions),
            _keep(dst, versions),
            _same(self.proto, other.proto),
            _and_ports(self.sport, other.sport),
            _and_ports(self.dport, other.dport),
            _same(self.icmp_type, other.icmp_type),
            _same(self.icmp_code, other.icmp_code),
            _and_flags(self.tcp_flags, other.tcp_flags),
            _same(self.iface, other.iface),
            _same(self.out_iface, other.out_iface),
            states,
        )


_ANY = _Match()
T = TypeVar("T")


def _same(a: T | None, b: T | None) -> T | None:
    if a is None:
        return b
    if b is None or a == b:
        return a
    raise _Disjoint


def _and_addrs(a: IPSet | None, b: IPSet | None) -> IPSet | None:
    if a is None:
        return b
    if b is None:
        return a
    both = a.intersection(b)
    if not both:
        raise _Disjoint
    return both


def _keep(addrs: IPSet | None, versions: frozenset[int]) -> IPSet | None:
    return None if addrs is None else addrs.only(versions)


def _and_ports(
    a: tuple[PortRange, ...] | None, b: tuple[PortRange, ...] | None
) -> tuple[PortRange, ...] | None:
    if a is None:
        return b
    if b is None:
        return a
    both = intersect_ports(a, b)
    if not both:
        raise _Disjoint
    return both


def _and_flags(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    both = meet_tcp_flags(a, b)
    if both is None:
        raise _Disjoint
    return both


# -- the document: objects, positions, errors ---------------------------------------------


@dataclass(slots=True)
class _Chain:
    family: str
    table: str
    name: str
    index: int
    hook: str | None
    kind: str | None
    policy: str
    rules: list[int] = field(default_factory=list)  # indexes of the rule objects

    @property
    def path(self) -> str:
        return f"{self.family}/{self.table}/{self.name}"


class _Doc:
    """The parsed listing, its objects by kind, and the position of each in the text."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"not JSON: {exc.msg}", file=file, line=exc.lineno, column=exc.colno
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("nftables"), list):
            raise ConfigError(
                'not an nftables listing: expected {"nftables": [...]} '
                "(the output of nft -j list ruleset)",
                file=file,
                line=1,
            )
        self.items: list[Any] = data["nftables"]
        self.kinds: dict[int, str] = {}
        self.bodies: dict[int, dict[str, Any]] = {}
        self.chains: dict[tuple[str, str, str], _Chain] = {}
        self.sets: dict[tuple[str, str, str], int] = {}
        self._offsets: list[int] | None = None
        self._index()

    def where(self, index: int) -> tuple[int | None, int | None]:
        """Line and column of ``nftables[index]`` in the text."""
        if self._offsets is None:
            self._offsets = _item_offsets(self.text)
        if index >= len(self._offsets):
            return None, None
        at = self._offsets[index]
        line = self.text.count("\n", 0, at) + 1
        return line, at - (self.text.rfind("\n", 0, at) + 1) + 1

    def error(self, index: int, path: str, reason: str, handle: Any = None) -> ConfigError:
        line, column = self.where(index)
        kind = self.kinds.get(index, "")
        where = f"nftables[{index}]" + (f".{kind}" if kind else "") + path
        if handle is not None:
            reason = f"{reason} (rule handle {handle})"
        return ConfigError(reason, file=self.file, line=line, column=column, field=where)

    def _index(self) -> None:
        rules: list[int] = []
        for i, item in enumerate(self.items):
            if not isinstance(item, dict) or len(item) != 1:
                raise self.error(i, "", "an item is an object with one key (table, chain ...)")
            kind, body = next(iter(item.items()))
            if kind in ("add", "create") and isinstance(body, dict) and len(body) == 1:
                kind, body = next(iter(body.items()))
            elif kind in ("insert", "replace", "delete", "flush", "destroy", "reset", "list"):
                raise self.error(
                    i, "", f"{kind!r} is a command; this reads listings (nft -j list ruleset)"
                )
            self.kinds[i] = kind
            if kind == "metainfo":
                continue
            if not isinstance(body, dict):
                raise self.error(i, "", f"{kind}: expected an object")
            self.bodies[i] = body
            if kind == "chain":
                key = self._key(i, body, "name")
                hook, ctype = body.get("hook"), body.get("type")
                self.chains[key] = _Chain(
                    *key,
                    index=i,
                    hook=hook if isinstance(hook, str) else None,
                    kind=ctype if isinstance(ctype, str) else None,
                    policy=str(body.get("policy", "accept")),
                )
            elif kind in ("set", "map"):
                self.sets[self._key(i, body, "name")] = i
            elif kind == "rule":
                rules.append(i)
        for i in rules:
            key = self._key(i, self.bodies[i], "chain")
            if key not in self.chains:
                raise self.error(i, ".chain", f"the rule's chain {'/'.join(key)} is not listed")
            self.chains[key].rules.append(i)

    def _key(self, i: int, body: dict[str, Any], name: str) -> tuple[str, str, str]:
        try:
            return (str(body["family"]), str(body["table"]), str(body[name]))
        except KeyError as exc:
            raise self.error(i, "", f"missing {exc.args[0]!r}") from None


def _item_offsets(text: str) -> list[int]:
    """Character offsets of the items of the top-level ``nftables`` array."""
    found = re.search(r'"nftables"\s*:\s*\[', text)
    if found is None:
        return []
    decoder = json.JSONDecoder()
    at = found.end()
    out: list[int] = []
    n = len(text)
    while at < n:
        while at < n and text[at] in " \t\r\n,":
            at += 1
        if at >= n or text[at] == "]":
            break
        out.append(at)
        try:
            _, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            break
    return out


# -- entry points ---------------------------------------------------------------------------


def load_nftables(
    path: str | Path, select: str | None = None, *, max_rules: int = DEFAULT_MAX_RULES
) -> RuleSet:
    """The chain ``select`` of the ``nft -j list ruleset`` output in ``path`` as a RuleSet."""
    return read_file(
        path, lambda text, file: parse_nftables(text, file, select, max_rules=max_rules)
    )


def parse_nftables(
    text: str, file: str, select: str | None = None, *, max_rules: int = DEFAULT_MAX_RULES
) -> RuleSet:
    """An nftables JSON listing -> the RuleSet of one base chain (see the module)."""
    doc = _Doc(text, file)
    base = _select(doc, select)
    try:
        return _Importer(doc, base, max_rules).run()
    except RecursionError:
        raise ConfigError(
            f"chain {base.path}: jumps, returns and negations nest too deeply to expand",
            file=file,
            line=doc.where(base.index)[0],
        ) from None


def _select(doc: _Doc, select: str | None) -> _Chain:
    chains = list(doc.chains.values())
    base = [c for c in chains if c.hook is not None]
    if select is None:
        found = [c for c in base if c.hook == "input" and c.kind == "filter"]
        if len(found) != 1:
            names = ", ".join(c.path for c in (base or chains)) or "none"
            why = "no base chain has" if not found else f"{len(found)} base chains have"
            raise ConfigError(
                f"{why} hook input; name one with --select (chains: {names})", file=doc.file
            )
        chosen = found[0]
    else:
        parts = tuple(select.split("/"))
        if len(parts) == 3:
            matches = [c for c in chains if (c.family, c.table, c.name) == parts]
        elif len(parts) == 2:
            matches = [c for c in chains if (c.table, c.name) == parts]
        else:
            matches = [c for c in chains if c.name == select]
        if len(matches) != 1:
            names = ", ".join(c.path for c in (matches or base or chains)) or "none"
            why = "is ambiguous" if matches else "names no chain"
            raise ConfigError(f"--select {select!r} {why} (chains: {names})", file=doc.file)
        chosen = matches[0]
    problem = ""
    if chosen.hook is None:
        problem = "is a regular chain (no hook, no policy); select the base chain that jumps to it"
    elif chosen.kind != "filter" or chosen.hook not in HOOKS:
        problem = (
            f"is a {chosen.kind} chain on hook {chosen.hook}; the rule model is a packet "
            f"filter: filter chains on {', '.join(HOOKS)}"
        )
    elif chosen.family not in FAMILIES:
        problem = f"is of family {chosen.family}, not an IP family ({', '.join(FAMILIES)})"
    elif chosen.policy not in ("accept", "drop"):
        problem = f"has an unknown policy {chosen.policy!r}"
    if problem:
        line, column = doc.where(chosen.index)
        raise ConfigError(f"chain {chosen.path} {problem}", file=doc.file, line=line, column=column)
    return chosen


# -- one rule's expressions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: str  # final, jump, goto, return, none
    action: Action | None = None
    reject_with: str | None = None
    target: str = ""


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A rule: it applies to packets in any of ``alternatives`` and in none of
    ``negatives``; then ``verdict``."""

    alternatives: tuple[_Match, ...]
    negatives: tuple[_Match, ...]
    verdict: _Verdict


_IGNORED = frozenset({"counter", "log"})
_REFUSED_STATEMENTS = {
    "limit": "a rate limit decides by time, and the rule model has no rates",
    "quota": "a quota decides by byte count, and the rule model has none",
    "vmap": "a verdict map",
    "queue": "a queue verdict hands the packet to user space",
    "xt": "an iptables-nft (xt) extension: its parameters are not in the JSON listing "
    "(read the rules with iptables-save instead)",
    "mangle": "a statement that changes the packet or its marks",
    "set": "a statement that changes a set",
    "map": "a statement that changes a map",
    "notrack": "notrack",
    "dnat": "NAT",
    "snat": "NAT",
    "masquerade": "NAT",
    "redirect": "NAT",
    "fwd": "fwd",
    "dup": "dup",
    "meter": "a meter (per-key rate)",
    "ct count": "a connection count limit",
    "synproxy": "synproxy",
    "flow": "a flowtable offload",
    "tproxy": "tproxy",
}
_ADDRESS_FIELDS = {
    "ip saddr": (4, "src"),
    "ip daddr": (4, "dst"),
    "ip6 saddr": (6, "src"),
    "ip6 daddr": (6, "dst"),
}
_PORT_FIELDS = {f"{p} {k}": k for p in ("tcp", "udp", "sctp", "th") for k in ("sport", "dport")}
_V4, _V6 = frozenset({4}), frozenset({6})
# What looking at a payload field implies (nft adds these dependencies itself).
_PAYLOAD_DEPS: dict[str, _Match] = {
    "ip saddr": _Match(versions=_V4),
    "ip daddr": _Match(versions=_V4),
    "ip6 saddr": _Match(versions=_V6),
    "ip6 daddr": _Match(versions=_V6),
    "ip protocol": _Match(versions=_V4),
    "ip6 nexthdr": _Match(versions=_V6),
    "icmp type": _Match(versions=_V4, proto=1),
    "icmp code": _Match(versions=_V4, proto=1),
    "icmpv6 type": _Match(versions=_V6, proto=58),
    "icmpv6 code": _Match(versions=_V6, proto=58),
    "tcp flags": _Match(proto=6),
    "th sport": _ANY,
    "th dport": _ANY,
    **{f"{p} {k}": _Match(proto=n) for n, p in _PORT_PROTOS.items() for k in ("sport", "dport")},
}
_NUMBER_NAMES: dict[str, dict[str, int]] = {
    "meta l4proto": _PROTOCOLS,
    "ip protocol": _PROTOCOLS,
    "ip6 nexthdr": _PROTOCOLS,
    "icmp type": ICMP_TYPES,
    "icmpv6 type": ICMPV6_TYPES,
    "icmp code": _ICMP_CODES,
    "icmpv6 code": _ICMPV6_CODES,
}


# meta iifname/oifname (and iif/oif) by hook: the rule model's field. The interface a hook
# does not have (output on input, input on output) is the empty name to the kernel
# (nft_meta_store_ifname), which no rule names (nft refuses ""): ``==`` never matches, ``!=``
# always does.
_NO_IFACE = "an interface the hook does not have"
_IFACE_FIELDS: dict[tuple[str, str], str] = {
    ("input", "i"): "iface",
    ("input", "o"): _NO_IFACE,
    ("forward", "i"): "iface",
    ("forward", "o"): "out_iface",
    ("output", "i"): _NO_IFACE,
    ("output", "o"): "iface",
}


def _address_match(key: str, addrs: IPSet) -> _Match:
    return _Match(src=addrs) if key == "src" else _Match(dst=addrs)


def _port_match(key: str, ports: tuple[PortRange, ...]) -> _Match:
    return _Match(sport=ports) if key == "sport" else _Match(dport=ports)


def _number_match(name: str, value: int) -> _Match:
    if name.endswith(" type"):
        return _Match(icmp_type=value)
    if name.endswith(" code"):
        return _Match(icmp_code=value)
    return _Match(proto=value)


class _Importer:
    """Flattens one base chain (and the chains it jumps to) into first-match rules."""

    def __init__(self, doc: _Doc, base: _Chain, max_rules: int) -> None:
        self.doc = doc
        self.base = base
        self.max_rules = max_rules
        self.family_versions = _FAMILY_VERSIONS[base.family]
        self.out: list[tuple[_Match, _Verdict, int | None]] = []
        self._parsed: dict[int, _Parsed] = {}
        self._set_cache: dict[str, list[Any]] = {}

    # -- the walk ------------------------------------------------------------------------

    def run(self) -> RuleSet:
        default = Action.ACCEPT if self.base.policy == "accept" else Action.DROP
        rules: list[Rule] = []
        if self.base.family != "inet":
            other = 6 if self.base.family == "ip" else 4
            rules.append(
                Rule(
                    Action.ACCEPT,
                    id=f"{self.base.name}/ipv{other}",
                    src=IPSet([_ALL_RANGES[other]]),
                    comment=f"IPv{other} packets do not pass a table of family {self.base.family}",
                    line=self.doc.where(self.base.index)[0],
                )
            )

        def policy(h: _Match) -> None:
            self._emit(h, _Verdict("final", default), None)

        guard = _Match(versions=self.family_versions)
        self._chain(self.base, 0, guard, policy, (self.base.name,))
        seen: dict[str, int] = {}
        for match, verdict, index in self.out:
            rules.append(self._rule(match, verdict, index, seen))
        return RuleSet(tuple(rules), default, name=self.doc.file)

    def _chain(
        self,
        chain: _Chain,
        start: int,
        guard: _Match,
        cont: Callable[[_Match], None],
        stack: tuple[str, ...],
    ) -> bool:
        """Emit ``chain`` from its rule ``start`` on, for the packets in ``guard``. Packets
        no emitted rule decides fall off the chain, back to the caller's next rule;
        ``cont(h)`` emits the whole decision (the callers' remaining rules, then the
        policy) for packets ``h`` that leave the chain early (return, goto, a skipped
        negation). True when every packet in ``guard`` was decided (none falls off)."""
        for pos in range(start, len(chain.rules)):
            index = chain.rules[pos]
            parsed = self._parse(index)
            verdict = parsed.verdict

            def rest(h: _Match, pos: int = pos) -> None:
                if not self._chain(chain, pos + 1, h, cont, stack):
                    cont(h)

            for alt in parsed.alternatives:
                g = guard.conjoin(alt)
                if g is None:
                    continue
                skips = [n for n in (g.conjoin(neg) for neg in parsed.negatives) if n]
                if g in skips:
                    continue  # every packet here skips the rule: it is not there for them
                for n in skips:
                    rest(n)
                covered = g == guard
                decided = False
                if verdict.kind == "final":
                    self._emit(g, verdict, index)
                    decided = True
                elif verdict.kind in ("jump", "goto"):
                    target = self._target(chain, index, verdict.target, stack)
                    after = rest if verdict.kind == "jump" else cont
                    decided = self._chain(target, 0, g, after, (*stack, target.name))
                    if verdict.kind == "goto" and not decided and not covered:
                        cont(g)  # off the end of the target: back to our caller
                        decided = True
                elif verdict.kind == "return" and not covered:
                    cont(g)
                if covered and (decided or verdict.kind in ("goto", "return")):
                    # Every packet in guard was decided or left: the rest is dead.
                    return decided
        return False

    def _target(self, chain: _Chain, index: int, name: str, stack: tuple[str, ...]) -> _Chain:
        target = self.doc.chains.get((chain.family, chain.table, name))
        handle = self.doc.bodies[index].get("handle")
        if target is None:
            raise self.doc.error(index, "", f"jump to {name!r}: no such chain", handle)
        if target.hook is not None:
            raise self.doc.error(index, "", f"jump to {name!r}: a base chain", handle)
        if name in stack or len(stack) >= _MAX_DEPTH:
            path = " -> ".join((*stack, name))
            raise self.doc.error(index, "", f"jumps loop or nest too deep: {path}", handle)
        return target

    def _emit(self, match: _Match, verdict: _Verdict, index: int | None) -> None:
        if len(self.out) >= self.max_rules:
            raise ConfigError(
                f"chain {self.base.path} expands to more than {self.max_rules} rules "
                "(jumps, returns and negations are expanded exactly; simplify the chain)",
                file=self.doc.file,
                line=self.doc.where(self.base.index)[0],
            )
        self.out.append((match, verdict, index))

    def _rule(
        self, match: _Match, verdict: _Verdict, index: int | None, seen: dict[str, int]
    ) -> Rule:
        handle: Any = None
        if index is None:
            rid, comment = f"{self.base.name}/policy", "the chain's policy"
            line = self.doc.where(self.base.index)[0]
        else:
            body = self.doc.bodies[index]
            handle = body.get("handle")
            rid = f"{body.get('chain')}/{handle if handle is not None else f'@{index}'}"
            comment = str(body.get("comment", ""))
            line = self.doc.where(index)[0]
        rid = "_".join(rid.split())
        n = seen.get(rid, 0) + 1
        seen[rid] = n
        if n > 1:
            rid = f"{rid}~{n}"
        src = match.src
        restricted = match.versions != frozenset({4, 6})
        if self.base.family == "inet" and restricted and src is None and match.dst is None:
            src = IPSet([_ALL_RANGES[v] for v in sorted(match.versions)])
        assert verdict.action is not None
        try:
            return Rule(
                verdict.action,
                id=rid,
                src=src,
                dst=match.dst,
                proto=match.proto,
                sport=_full_ports(match.sport),
                dport=_full_ports(match.dport),
                icmp_type=match.icmp_type,
                icmp_code=match.icmp_code,
                tcp_flags=match.tcp_flags,
                iface=match.iface,
                out_iface=match.out_iface,
                ct_state=match.ct_state,
                reject_with=verdict.reject_with,
                comment=comment,
                line=line,
            )
        except ValueError as exc:
            if index is None:
                raise ConfigError(str(exc), file=self.doc.file) from None
            raise self.doc.error(index, "", str(exc), handle) from None

    # -- one rule ------------------------------------------------------------------------

    def _parse(self, index: int) -> _Parsed:
        cached = self._parsed.get(index)
        if cached is not None:
            return cached
        body = self.doc.bodies[index]
        handle = body.get("handle")
        exprs = body.get("expr")
        if not isinstance(exprs, list):
            raise self.doc.error(index, ".expr", "a rule needs an expr list", handle)
        alternatives: list[_Match] = [_ANY]
        negatives: list[_Match] = []
        verdict = _Verdict("none")
        for j, expr in enumerate(exprs):
            try:
                if verdict.kind != "none":
                    raise _Refused("a statement after the verdict")
                if not isinstance(expr, dict) or len(expr) != 1:
                    raise _Refused("an expression is an object with one key")
                kind, arg = next(iter(expr.items()))
                if kind == "match":
                    alts, negs = self._match(arg)
                    alternatives = _product(alternatives, alts)
                    negatives += negs
                    if len(alternatives) * (len(negatives) + 1) > 4096:
                        raise _Refused("too many combinations of set elements and negations")
                elif kind not in _IGNORED:
                    verdict = _verdict(kind, arg)
                    alternatives = _product(alternatives, [_reject_guard(kind, arg)])
            except _Refused as exc:
                raise self.doc.error(index, f".expr[{j}]{exc.path}", exc.reason, handle) from None
        parsed = _Parsed(tuple(alternatives), tuple(negatives), verdict)
        self._parsed[index] = parsed
        return parsed

    def _match(self, arg: Any) -> tuple[list[_Match], list[_Match]]:
        """(alternatives, negatives) of one match expression."""
        if not isinstance(arg, dict) or "left" not in arg or "right" not in arg:
            raise _Refused("a match has op, left and right", ".match")
        op, left, right = arg.get("op", "=="), arg["left"], arg["right"]
        name, dep = self._left(left)
        if name == "tcp flags":
            return _flags(op, left, self._elements(name, right, ".match.right"))
        if op in ("<", ">", "<=", ">="):
            return [_and(dep, m) for m in self._compare(name, op, right)], []
        if op not in ("==", "!=", "in", "!") or (op == "!" and name != "ct state"):
            raise _Refused(f"operator {op!r} on {name}", ".match.op")
        negate = op in ("!=", "!")
        items = self._elements(name, right, ".match.right")
        try:
            if name in _ADDRESS_FIELDS:
                version, key = _ADDRESS_FIELDS[name]
                addrs = IPSet(_address(version, x) for x in items)
                if negate:
                    addrs = addrs.complement(version)
                return ([_and(dep, _address_match(key, addrs))] if addrs else []), []
            if name in _PORT_FIELDS:
                ports = tuple(sorted(_port_range(x) for x in items))
                if negate:
                    ports = complement_ports(ports)
                return ([_and(dep, _port_match(_PORT_FIELDS[name], ports))] if ports else []), []
            if name == "meta nfproto":
                versions = frozenset(_nfproto(x) for x in items)
                if negate:
                    versions = self.family_versions - versions
                return ([_Match(versions=versions)] if versions else []), []
            if name == "ct state":
                states = _Match(ct_state=frozenset(_ct_state(x) for x in items))
                return ([_ANY], [states]) if negate else ([states], [])
            matches = [_and(dep, m) for x in items for m in self._scalar(name, x)]
        except _Refused as exc:
            exc.path = exc.path or ".match.right"
            raise
        if negate:
            return [dep], matches
        return matches, []

    def _left(self, left: Any) -> tuple[str, _Match]:
        """The field a match looks at, and what looking at it implies (its dependency)."""
        if not isinstance(left, dict) or len(left) != 1:
            raise _Refused("unsupported left-hand side", ".match.left")
        kind, body = next(iter(left.items()))
        hook = self.base.hook
        if kind == "payload" and isinstance(body, dict):
            name = f"{body.get('protocol')} {body.get('field')}"
            if name in _PAYLOAD_DEPS:
                return name, _PAYLOAD_DEPS[name]
            if "base" in body:
                raise _Refused("a raw payload match (@base,offset,length)", ".match.left")
            raise _Refused(f"payload {name}: not in the rule model", ".match.left")
        if kind == "meta" and isinstance(body, dict):
            key = str(body.get("key"))
            if key in ("l4proto", "nfproto", "protocol"):
                return ("meta nfproto" if key == "protocol" else f"meta {key}"), _ANY
            if key in ("iifname", "iif", "oifname", "oif"):
                return _IFACE_FIELDS[(str(hook), key[0])], _ANY
            raise _Refused(f"meta {key}: not in the rule model", ".match.left")
        if kind == "ct" and isinstance(body, dict):
            if body.get("key") == "state" and "dir" not in body:
                return "ct state", _ANY
            raise _Refused(f"ct {body.get('key')}: not in the rule model", ".match.left")
        if kind == "&" and isinstance(body, list) and len(body) == 2:
            inner = body[0]
            if isinstance(inner, dict) and inner.get("payload") == {
                "protocol": "tcp",
                "field": "flags",
            }:
                return "tcp flags", _Match(proto=6)
            raise _Refused("a bitwise and on anything but tcp flags", ".match.left")
        if kind == "concat":
            raise _Refused("a concatenation (several fields at once)", ".match.left")
        raise _Refused(f"left-hand side {kind!r}: not in the rule model", ".match.left")

    def _compare(self, name: str, op: str, right: Any) -> list[_Match]:
        try:
            if name in _PORT_FIELDS:
                lo, hi = _bounds(op, _port(right), 65535)
                return [_port_match(_PORT_FIELDS[name], (PortRange(lo, hi),))] if lo <= hi else []
            if name in _ADDRESS_FIELDS:
                version, key = _ADDRESS_FIELDS[name]
                r = _address(version, right)
                if r.lo != r.hi:
                    raise _Refused(f"{op} needs one address, not a prefix or range")
                lo, hi = _bounds(op, r.lo, _ALL_RANGES[version].hi)
                return [_address_match(key, IPSet([IPRange(version, lo, hi)]))] if lo <= hi else []
            if name in _NUMBER_NAMES:
                values = _numbers(name, right)
                if len(values) != 1:
                    raise _Refused(f"{op} needs one value")
                lo, hi = _bounds(op, values[0], 255)
                return [_number_match(name, v) for v in range(lo, hi + 1)]
        except _Refused as exc:
            exc.path = exc.path or ".match.right"
            raise
        raise _Refused(f"operator {op!r} on {name}", ".match.op")

    def _elements(self, name: str, right: Any, path: str) -> list[Any]:
        """The values of a right-hand side: one value, a list, an anonymous or named set."""
        if isinstance(right, dict) and "set" in right:
            values = right["set"]
            return [_unwrap(v) for v in (values if isinstance(values, list) else [values])]
        if isinstance(right, str) and right.startswith("@"):
            try:
                return self._named_set(right[1:])
            except _Refused as exc:
                exc.path = path
                raise
        if isinstance(right, list) and name in ("ct state", "tcp flags"):
            return [right] if name == "tcp flags" else right
        return [right]

    def _named_set(self, name: str) -> list[Any]:
        cached = self._set_cache.get(name)
        if cached is not None:
            return cached
        index = self.doc.sets.get((self.base.family, self.base.table, name))
        if index is None:
            raise _Refused(f"@{name}: no such set in table {self.base.table}")
        if self.doc.kinds[index] == "map":
            raise _Refused(f"@{name} is a map")
        body = self.doc.bodies[index]
        stype = body.get("type")
        if isinstance(stype, list):
            raise _Refused(f"@{name} is a set of concatenations ({' . '.join(stype)})")
        elems = body.get("elem", [])
        values = [_unwrap(e) for e in (elems if isinstance(elems, list) else [elems])]
        self._set_cache[name] = values
        return values

    def _scalar(self, name: str, x: Any) -> list[_Match]:
        if name in _NUMBER_NAMES:
            return [_number_match(name, v) for v in _numbers(name, x)]
        if name == "iface":
            return [_Match(iface=_iface(x))]
        if name == "out_iface":
            return [_Match(out_iface=_iface(x))]
        if name == _NO_IFACE:
            _iface(x)  # a name all the same (wildcards refused)
            return []  # the hook has no such interface: it reads as "", never a name
        raise _Refused(f"{name}: not in the rule model")


def _ct_state(x: Any) -> str:
    if x == "untracked":
        raise _Refused(
            "ct state untracked: a packet without connection tracking has no state a rule "
            "of the model can match"
        )
    if not isinstance(x, str) or x not in CT_STATES:
        raise _Refused(f"unknown ct state {x!r} (new, established, related, invalid)")
    return x


def _verdict(kind: str, arg: Any) -> _Verdict:
    if kind == "accept":
        return _Verdict("final", Action.ACCEPT)
    if kind == "drop":
        return _Verdict("final", Action.DROP)
    if kind == "reject":
        return _Verdict("final", Action.REJECT, _reject_with(arg))
    if kind in ("jump", "goto"):
        target = arg.get("target") if isinstance(arg, dict) else None
        if not isinstance(target, str):
            raise _Refused(f"{kind} without a target chain", f".{kind}")
        return _Verdict(kind, target=target)
    if kind == "return":
        return _Verdict("return")
    if kind == "continue":
        return _Verdict("none")
    reason = _REFUSED_STATEMENTS.get(kind)
    if reason is not None:
        raise _Refused(f"{kind} is not in the rule model: {reason}")
    raise _Refused(
        f"unsupported statement {kind!r} (supported: match, counter, log, accept, drop, "
        "reject, jump, goto, return)"
    )


def _reject_guard(kind: str, arg: Any) -> _Match:
    """What a reject implies: tcp reset only answers TCP, icmp/icmpv6 one IP version."""
    if kind != "reject" or not isinstance(arg, dict):
        return _ANY
    return {
        "tcp reset": _Match(proto=6),
        "icmp": _Match(versions=_V4),
        "icmpv6": _Match(versions=_V6),
    }.get(str(arg.get("type")), _ANY)


def _flags(op: str, left: Any, values: list[Any]) -> tuple[list[_Match], list[_Match]]:
    """tcp flags: ``& mask == value`` (and ``!=``), ``in`` (any of), ``!`` (none of),
    ``==`` / ``!=`` without a mask (exactly these flags)."""
    tcp = _Match(proto=6)
    try:
        bits = [_flag_bits(v) for v in values]
        if isinstance(left, dict) and "&" in left:
            mask = _flag_bits(left["&"][1])
            for v in bits:
                if v & ~mask:
                    raise _Refused(f"tcp flags value {v:#x} has flags outside the mask {mask:#x}")
            matches = [_Match(proto=6, tcp_flags=(mask, v)) for v in bits]
            if op == "==":
                return matches, []
            if op == "!=":
                return [tcp], matches
            raise _Refused(f"operator {op!r} on masked tcp flags", ".match.op")
        if op == "in":  # any of these flags set
            return [
                _Match(proto=6, tcp_flags=(b, b))
                for v in bits
                for b in _TCP_FLAGS.values()
                if v & b
            ], []
        if op == "!":  # none of these flags set
            return [_Match(proto=6, tcp_flags=(v, 0)) for v in bits], []
        exact = [_Match(proto=6, tcp_flags=(0xFF, v)) for v in bits]
        if op == "==":
            return exact, []
        if op == "!=":
            return [tcp], exact
    except _Refused as exc:
        exc.path = exc.path or ".match.right"
        raise
    raise _Refused(f"operator {op!r} on tcp flags", ".match.op")


def _and(a: _Match, b: _Match) -> _Match:
    both = a.conjoin(b)
    return both if both is not None else _Match(versions=frozenset())


def _product(a: list[_Match], b: list[_Match]) -> list[_Match]:
    out: list[_Match] = []
    for x in a:
        for y in b:
            both = x.conjoin(y)
            if both is not None and both not in out:
                out.append(both)
    return out


def _full_ports(ports: tuple[PortRange, ...] | None) -> tuple[PortRange, ...] | None:
    if ports is not None and len(ports) == 1 and (ports[0].lo, ports[0].hi) == (0, 65535):
        return None
    return ports


def _bounds(op: str, value: int, top: int) -> tuple[int, int]:
    return {
        "<": (0, value - 1),
        "<=": (0, value),
        ">": (value + 1, top),
        ">=": (value, top),
    }[op]


def _unwrap(v: Any) -> Any:
    if isinstance(v, dict) and "elem" in v and isinstance(v["elem"], dict):
        return v["elem"].get("val")
    return v


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise _Refused(f"a range is [low, high], not {value!r}")
    return value[0], value[1]


def _nfproto(x: Any) -> int:
    versions: dict[Any, int] = {"ipv4": 4, "ip": 4, "ipv6": 6, "ip6": 6, 2: 4, 10: 6}
    if isinstance(x, bool) or x not in versions:
        raise _Refused(f"meta nfproto {x!r}: ipv4 or ipv6")
    return versions[x]


def _numbers(name: str, x: Any) -> list[int]:
    """A protocol, ICMP type or code (a name, a number, or a range of them)."""
    names = _NUMBER_NAMES[name]
    if isinstance(x, dict) and "range" in x:
        a, b = _pair(x["range"])
        lo, hi = _numbers(name, a), _numbers(name, b)
        return list(range(lo[0], hi[0] + 1))
    if isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255:
        return [x]
    if isinstance(x, str):
        if x in names:
            return [names[x]]
        try:
            value = int(x, 0)
        except ValueError:
            pass
        else:
            if 0 <= value <= 255:
                return [value]
    raise _Refused(f"{name}: unknown value {x!r}")


def _address(version: int, x: Any) -> IPRange:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    first: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        if isinstance(x, dict) and "prefix" in x:
            p = x["prefix"]
            net = ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
            first, lo, hi = (
                net.network_address,
                int(net.network_address),
                int(net.broadcast_address),
            )
        elif isinstance(x, dict) and "range" in x:
            a, b = _pair(x["range"])
            first, lo, hi = cls(a), int(cls(a)), int(cls(b))
        elif isinstance(x, str):
            first = cls(x)
            lo = hi = int(first)
        else:
            raise ValueError(x)
    except (ValueError, KeyError, TypeError):
        raise _Refused(f"not an IPv{version} address, prefix or range: {x!r}") from None
    if first.version != version:
        raise _Refused(f"not an IPv{version} address: {x!r}")
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        raise _Refused(
            f"{x!r} is IPv4-mapped: the rule model judges such packets as IPv4 "
            "(match the IPv4 address with ip saddr/daddr)"
        )
    if lo > hi:
        raise _Refused(f"empty range {x!r}")
    return IPRange(version, lo, hi)


def _port(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int | str):
        raise _Refused(f"not a port: {x!r}")
    if isinstance(x, str) and not x.isdigit():
        raise _Refused(f"service name {x!r}: write the port number")
    port = int(x)
    if not 0 <= port <= 65535:
        raise _Refused(f"port out of range: {port}")
    return port


def _port_range(x: Any) -> PortRange:
    if isinstance(x, dict) and "range" in x:
        a, b = _pair(x["range"])
        lo, hi = _port(a), _port(b)
        if lo > hi:
            raise _Refused(f"empty port range {x!r}")
        return PortRange(lo, hi)
    p = _port(x)
    return PortRange(p, p)


def _iface(x: Any) -> str:
    if not isinstance(x, str) or not x:
        raise _Refused(f"an interface is named by text, not {x!r}")
    if x.endswith("*") and not x.endswith("\\*"):
        raise _Refused(f"interface {x!r} is a wildcard; the rule model names one interface")
    return x.replace("\\*", "*")


def _flag_bits(x: Any) -> int:
    if isinstance(x, list):
        bits = 0
        for v in x:
            bits |= _flag_bits(v)
        return bits
    if isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 0xFF:
        return x
    if isinstance(x, str):
        if x in _TCP_FLAGS:
            return _TCP_FLAGS[x]
        try:
            value = int(x, 0)
        except ValueError:
            pass
        else:
            if 0 <= value <= 0xFF:
                return value
    raise _Refused(f"not a TCP flag: {x!r}")


def _reject_with(arg: Any) -> str | None:
    if arg is None or arg == {}:
        return None
    if not isinstance(arg, dict):
        raise _Refused(f"reject: unexpected {arg!r}", ".reject")
    kind, code = arg.get("type"), arg.get("expr")
    if kind == "tcp reset":
        return "tcp-reset"
    if kind in ("icmpx", "icmp", "icmpv6") and code is None:
        code = "port-unreachable"
    key = (str(kind), str(code))
    if key not in _REJECT_IN:
        raise _Refused(
            f"reject with {kind} {code}: not a reject of the rule model (port-unreachable, "
            "host-unreachable, net-unreachable/no-route, admin-prohibited, tcp reset)",
            ".reject",
        )
    return _REJECT_IN[key]
