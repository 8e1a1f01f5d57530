"""The cloud firewall model, AWS semantics: security groups (stateful, allow-only, several
on one instance are a union), network ACLs (stateless, numbered entries, lowest number
first, an implicit final deny), and their conversion to the project's RuleSet
(firewall/model.py) so that lint, diff and ``evaluate`` work on them.

Every value is frozen and carries the file and line it came from, so a trace or a finding
can name the rule at fault wherever it was written (inline YAML, AWS JSON, Terraform).
The readers live in cloud/topology.py, formats/aws.py and formats/terraform.py; the
protocol and port rules of AWS (``-1``, ICMP type/code in the port fields, protocols
whose ports are ignored) are applied here, once, by ``sg_traffic`` and ``acl_traffic``.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Protocol

from ...errors import ConfigError
from ...net.addr import IPRange, IPSet
from ...net.ports import PortRange
from ...net.proto import protocol_name
from ..model import Action, Rule, RuleSet

__all__ = [
    "ACL_RULE_MAX",
    "ALL_PORTS",
    "AclEntry",
    "Direction",
    "NetworkAcl",
    "Origin",
    "PeerResolver",
    "Policies",
    "SecurityGroup",
    "SgRule",
    "Traffic",
    "acl_ruleset",
    "acl_traffic",
    "default_acl",
    "is_implicit_deny",
    "parse_direction",
    "security_group_ruleset",
    "sg_traffic",
]

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
ALL_PORTS = PortRange(0, 65535)
# Rule numbers a user may give a network ACL entry; 32767 (IPv4) and 32768 (IPv6) are
# the implicit "*" deny entries AWS lists last.
ACL_RULE_MAX = 32766
_IMPLICIT_DENY = {32767: 4, 32768: 6}
_ANY = {4: IPRange(4, 0, (1 << 32) - 1), 6: IPRange(6, 0, (1 << 128) - 1)}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition was written: a file and, when known, a line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    @property
    def short(self) -> str:
        """The file's name (no folder) and line: stable across checkouts, for golden files."""
        name = PurePath(self.file).name
        return f"{name}:{self.line}" if self.line is not None else name

    def error(self, reason: str, field: str | None = None) -> ConfigError:
        return ConfigError(reason, file=self.file, line=self.line, field=field)


class Direction(enum.Enum):
    INGRESS = "ingress"
    EGRESS = "egress"

    @property
    def word(self) -> str:
        """``inbound`` or ``outbound``, as the AWS console says."""
        return "inbound" if self is Direction.INGRESS else "outbound"


def parse_direction(text: str) -> Direction:
    """``ingress``/``in``/``inbound`` or ``egress``/``out``/``outbound``."""
    t = text.strip().lower()
    if t in ("ingress", "in", "inbound"):
        return Direction.INGRESS
    if t in ("egress", "out", "outbound"):
        return Direction.EGRESS
    raise ValueError(f"a direction is ingress or egress, not {text!r}")


# -- what a rule matches besides its peer ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traffic:
    """Protocol (None: all), destination ports (None: all) and ICMP type/code (None: all).

    Build it with ``sg_traffic`` or ``acl_traffic``, which apply AWS's reading of the
    port fields; the constructor only checks that the parts fit together."""

    proto: int | None = None
    ports: PortRange | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    def __post_init__(self) -> None:
        if self.ports is not None and self.proto not in (TCP, UDP):
            raise ValueError("only tcp and udp rules have ports")
        if (self.icmp_type is not None or self.icmp_code is not None) and self.proto not in (
            ICMP,
            ICMPV6,
        ):
            raise ValueError("only icmp and icmpv6 rules have a type and code")
        if self.icmp_code is not None and self.icmp_type is None:
            raise ValueError("an ICMP code needs an ICMP type")

    def covers_port(self, proto: int, port: int) -> bool:
        """Whether this matches ``proto`` traffic to ``port`` (tcp/udp)."""
        if self.proto is None:
            return True
        if self.proto != proto:
            return False
        return self.ports is None or self.ports.lo <= port <= self.ports.hi

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"proto": protocol_name(self.proto)}
        if self.ports is not None:
            out["ports"] = str(self.ports)
        if self.icmp_type is not None:
            out["icmp_type"] = self.icmp_type
        if self.icmp_code is not None:
            out["icmp_code"] = self.icmp_code
        return out

    def describe(self) -> str:
        if self.proto is None:
            return "all traffic"
        name = protocol_name(self.proto)
        if self.proto in (TCP, UDP):
            if self.ports is None:
                return f"{name} all ports"
            return f"{name} {'port' if self.ports.lo == self.ports.hi else 'ports'} {self.ports}"
        if self.proto in (ICMP, ICMPV6):
            if self.icmp_type is None:
                return f"{name} all types"
            code = "" if self.icmp_code is None else f" code {self.icmp_code}"
            return f"{name} type {self.icmp_type}{code}"
        return f"protocol {name}"


def _port_range(lo: int | None, hi: int | None, what: str) -> PortRange | None:
    if lo is None or hi is None:
        raise ValueError(f"{what} needs a port range (from and to)")
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535) or lo > hi:
        raise ValueError(f"{what}: invalid port range {lo}-{hi} (0-65535, from <= to)")
    r = PortRange(lo, hi)
    return None if r == ALL_PORTS else r


def _icmp(kind: int | None, code: int | None, what: str) -> tuple[int | None, int | None]:
    if kind is None or kind == -1:
        if code not in (None, -1):
            raise ValueError(f"{what}: all ICMP types (-1) needs all codes (-1), not {code}")
        return None, None
    if not 0 <= kind <= 255:
        raise ValueError(f"{what}: ICMP type {kind} out of range (0-255 or -1)")
    if code is None or code == -1:
        return kind, None
    if not 0 <= code <= 255:
        raise ValueError(f"{what}: ICMP code {code} out of range (0-255 or -1)")
    return kind, code


def sg_traffic(proto: int | None, from_port: int | None, to_port: int | None) -> Traffic:
    """A security group rule's traffic, read as AWS does: protocol None (``-1``) is all
    traffic and ignores ports; tcp/udp need FromPort-ToPort; for icmp/icmpv6 FromPort is
    the type and ToPort the code (-1: all; icmpv6 may leave both out); any other protocol
    number allows all its traffic whatever ports are given."""
    if proto in (TCP, UDP):
        return Traffic(proto, _port_range(from_port, to_port, protocol_name(proto)))
    if proto in (ICMP, ICMPV6):
        if proto == ICMP and (from_port is None or to_port is None):
            raise ValueError("an icmp rule needs FromPort (type) and ToPort (code); -1 is all")
        kind, code = _icmp(from_port, to_port, protocol_name(proto))
        return Traffic(proto, icmp_type=kind, icmp_code=code)
    return Traffic(proto)


def acl_traffic(
    proto: int | None,
    ports: tuple[int | None, int | None] | None,
    icmp: tuple[int | None, int | None] | None,
) -> Traffic:
    """A network ACL entry's traffic, read as AWS does: ``-1`` or a protocol other than
    tcp, udp, icmp and icmpv6 matches all its traffic; tcp/udp need a port range; icmp and
    icmpv6 take IcmpTypeCode (-1: all)."""
    if proto in (TCP, UDP):
        lo, hi = ports if ports is not None else (None, None)
        return Traffic(proto, _port_range(lo, hi, protocol_name(proto)))
    if proto in (ICMP, ICMPV6):
        if icmp is None:
            raise ValueError(f"an {protocol_name(proto)} entry needs an ICMP type and code")
        kind, code = _icmp(icmp[0], icmp[1], protocol_name(proto))
        return Traffic(proto, icmp_type=kind, icmp_code=code)
    return Traffic(proto)


def _host(r: IPRange) -> str:
    return f"{r}/{32 if r.version == 4 else 128}"


# -- security groups ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SgRule:
    """One allow rule of a security group, with exactly one peer: a CIDR block, the
    members of a security group (``group``: its id, name or Terraform address as written)
    or a managed prefix list. (AWS's IpPermissions list several peers in one permission;
    readers give each its own SgRule, as describe-security-group-rules does.)"""

    direction: Direction
    traffic: Traffic
    origin: Origin
    cidr: IPRange | None = None
    group: str | None = None
    prefix_list: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        peers = [p for p in (self.cidr, self.group, self.prefix_list) if p is not None]
        if len(peers) != 1:
            raise ValueError(
                "a security group rule has exactly one peer (cidr, group, prefix list)"
            )

    def peer_text(self) -> str:
        if self.cidr is not None:
            return str(self.cidr)
        if self.group is not None:
            return f"members of {self.group}"
        return f"prefix list {self.prefix_list}"

    def describe(self) -> str:
        way = "from" if self.direction is Direction.INGRESS else "to"
        text = f"allow {self.traffic.describe()} {way} {self.peer_text()}"
        return f'{text} "{self.description}"' if self.description else text

    def to_json(self) -> dict[str, object]:
        out = self.traffic.to_json()
        if self.cidr is not None:
            out["cidr"] = str(self.cidr) if self.cidr.hi > self.cidr.lo else _host(self.cidr)
        if self.group is not None:
            out["group"] = self.group
        if self.prefix_list is not None:
            out["prefix_list"] = self.prefix_list
        if self.description:
            out["description"] = self.description
        out["at"] = self.origin.short
        return out


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    """A security group: allow rules per direction; whatever no rule allows is denied.

    ``key`` is unique in a topology (a GroupId, a Terraform address such as
    ``aws_security_group.web``, or the key of an inline definition); ``aliases`` are the
    other names it may be referred to by (GroupName, the Name tag, Terraform's label)."""

    key: str
    name: str
    ingress: tuple[SgRule, ...]
    egress: tuple[SgRule, ...]
    origin: Origin
    description: str = ""
    vpc_id: str | None = None
    aliases: tuple[str, ...] = ()

    def rules(self, direction: Direction) -> tuple[SgRule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "aliases": list(self.aliases),
            "description": self.description,
            "vpc_id": self.vpc_id,
            "at": self.origin.short,
            "ingress": [r.to_json() for r in self.ingress],
            "egress": [r.to_json() for r in self.egress],
        }

    @property
    def label(self) -> str:
        return self.key if self.name in ("", self.key) else f"{self.name} ({self.key})"


class PeerResolver(Protocol):
    """What turns the peers of a security group rule that are not addresses into
    addresses: the members of a group, the entries of a prefix list (a topology)."""

    def group_members(self, ref: str, origin: Origin) -> IPSet: ...

    def prefix_list(self, ref: str, origin: Origin) -> IPSet: ...


def _peer_addresses(rule: SgRule, peers: PeerResolver | None) -> IPSet:
    if rule.cidr is not None:
        return IPSet([rule.cidr])
    if peers is None:
        what = "a security group's members" if rule.group else "a prefix list's entries"
        raise rule.origin.error(
            f"this rule allows {rule.peer_text()}: {what} are only known in a topology "
            "(ramparts cloud trace/lint TOPOLOGY), so a rule set cannot express it"
        )
    if rule.group is not None:
        return peers.group_members(rule.group, rule.origin)
    assert rule.prefix_list is not None
    return peers.prefix_list(rule.prefix_list, rule.origin)


def _rule(
    action: Action,
    rule_id: str,
    direction: Direction,
    peer: IPSet,
    traffic: Traffic,
    origin: Origin,
    comment: str = "",
) -> Rule:
    """The Rule for one cloud rule: the peer is the source of inbound traffic and the
    destination of outbound traffic; the ports are always the destination port."""
    inbound = direction is Direction.INGRESS
    try:
        return Rule(
            action,
            id=rule_id,
            src=peer if inbound else None,
            dst=None if inbound else peer,
            proto=traffic.proto,
            dport=None if traffic.ports is None else (traffic.ports,),
            icmp_type=traffic.icmp_type,
            icmp_code=traffic.icmp_code,
            comment=comment,
            line=origin.line,
        )
    except ValueError as exc:
        raise origin.error(str(exc)) from None


def security_group_ruleset(
    group: SecurityGroup, direction: Direction, peers: PeerResolver | None = None
) -> RuleSet:
    """One direction of a security group as a RuleSet: its allow rules (order does not
    matter: they only allow) and default drop. Rule ``i`` is ``group.rules(direction)[i]``.

    The rule set judges what *starts* a connection. A security group is stateful: the
    replies of a connection it allowed (in either direction) pass whatever the rules of
    the other direction say, so this rule set must not be used to judge replies; the
    trace (cloud/trace.py) lets them pass by state. A rule whose peer is a group or a
    prefix list needs ``peers`` (a topology) to become addresses; without it the rule is
    refused at its line."""
    rules = [
        _rule(
            Action.ACCEPT,
            str(i),
            direction,
            _peer_addresses(r, peers),
            r.traffic,
            r.origin,
            r.description,
        )
        for i, r in enumerate(group.rules(direction), 1)
    ]
    return RuleSet(
        tuple(rules), Action.DROP, name=f"security group {group.label} {direction.value}"
    )


# -- network ACLs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One numbered entry of a network ACL; the port range is the packet's destination
    port in both directions."""

    number: int
    direction: Direction
    action: Action
    traffic: Traffic
    cidr: IPRange
    origin: Origin

    def __post_init__(self) -> None:
        if not 1 <= self.number <= ACL_RULE_MAX:
            raise ValueError(f"a rule number is 1-{ACL_RULE_MAX}, not {self.number}")
        if self.action not in (Action.ACCEPT, Action.DROP):
            raise ValueError("a network ACL entry allows or denies")

    @property
    def catch_all(self) -> bool:
        """Whether it matches every packet of its IP version (``-1`` to/from a /0)."""
        return self.traffic == Traffic() and self.cidr.is_all

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "rule": self.number,
            "action": "allow" if self.action is Action.ACCEPT else "deny",
        }
        out.update(self.traffic.to_json())
        out["cidr"] = str(self.cidr) if self.cidr.hi > self.cidr.lo else _host(self.cidr)
        out["at"] = self.origin.short
        return out

    def describe(self) -> str:
        verb = "allow" if self.action is Action.ACCEPT else "deny"
        way = "from" if self.direction is Direction.INGRESS else "to"
        return f"{verb} {self.traffic.describe()} {way} {self.cidr}"


def _sorted_entries(entries: Iterable[AclEntry], direction: Direction) -> tuple[AclEntry, ...]:
    chosen = sorted((e for e in entries if e.direction is direction), key=lambda e: e.number)
    for a, b in itertools.pairwise(chosen):
        if a.number == b.number:
            raise b.origin.error(
                f"{direction.word} rule number {b.number} is used twice (also at {a.origin})"
            )
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class NetworkAcl:
    """A network ACL: per direction, entries evaluated lowest number first; the first that
    matches decides; none matching is the implicit deny ``*``. ``subnets`` are the subnet
    ids (or Terraform addresses) it is associated with in its source."""

    key: str
    name: str
    ingress: tuple[AclEntry, ...]
    egress: tuple[AclEntry, ...]
    origin: Origin
    is_default: bool = False
    vpc_id: str | None = None
    subnets: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    builtin: bool = field(default=False, compare=False)

    @classmethod
    def of(
        cls,
        key: str,
        name: str,
        entries: Sequence[AclEntry],
        origin: Origin,
        *,
        is_default: bool = False,
        vpc_id: str | None = None,
        subnets: Sequence[str] = (),
        aliases: Sequence[str] = (),
        builtin: bool = False,
    ) -> NetworkAcl:
        """An ACL from entries of both directions, sorted and checked for duplicate numbers."""
        return cls(
            key,
            name,
            _sorted_entries(entries, Direction.INGRESS),
            _sorted_entries(entries, Direction.EGRESS),
            origin,
            is_default=is_default,
            vpc_id=vpc_id,
            subnets=tuple(subnets),
            aliases=tuple(aliases),
            builtin=builtin,
        )

    def entries(self, direction: Direction) -> tuple[AclEntry, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "aliases": list(self.aliases),
            "is_default": self.is_default,
            "vpc_id": self.vpc_id,
            "subnets": list(self.subnets),
            "at": self.origin.short,
            "ingress": [e.to_json() for e in self.ingress],
            "egress": [e.to_json() for e in self.egress],
        }

    @property
    def label(self) -> str:
        return self.key if self.name in ("", self.key) else f"{self.name} ({self.key})"


def is_implicit_deny(number: int, action: Action, traffic: Traffic, cidr: IPRange) -> bool:
    """Whether an entry listed by AWS is the implicit ``*`` deny (32767 IPv4, 32768 IPv6)."""
    version = _IMPLICIT_DENY.get(number)
    return (
        version is not None
        and action is Action.DROP
        and traffic == Traffic()
        and cidr == _ANY[version]
    )


def default_acl(origin: Origin) -> NetworkAcl:
    """The VPC's default network ACL as AWS creates it: rule 100 allows all IPv4 and rule
    101 all IPv6 traffic, in and out. A subnet with no other ACL is associated with it."""
    entries = [
        AclEntry(n, d, Action.ACCEPT, Traffic(), _ANY[v], origin)
        for d in Direction
        for n, v in ((100, 4), (101, 6))
    ]
    return NetworkAcl.of(
        "default", "the VPC's default ACL", entries, origin, is_default=True, builtin=True
    )


def acl_ruleset(acl: NetworkAcl, direction: Direction) -> RuleSet:
    """One direction of a network ACL as a RuleSet: its entries in rule-number order (the
    first match decides, as in ``evaluate``) and default drop (the implicit ``*`` entry).
    Rule ``i`` is ``acl.entries(direction)[i]``; its id is the rule number.

    The ACL is stateless: a reply is judged by the other direction's rules like any packet,
    so a connection needs rules both ways (the reply to the client's ephemeral port)."""
    rules = [
        _rule(e.action, str(e.number), direction, IPSet([e.cidr]), e.traffic, e.origin)
        for e in acl.entries(direction)
    ]
    return RuleSet(tuple(rules), Action.DROP, name=f"network ACL {acl.label} {direction.value}")


# -- a file's worth of policies, and choosing one for lint/diff ---------------------------


@dataclass(frozen=True, slots=True)
class Policies:
    """The security groups and network ACLs read from one source (a file or directory)."""

    file: str
    security_groups: tuple[SecurityGroup, ...] = ()
    network_acls: tuple[NetworkAcl, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The whole model as plain data (golden files, ``--format json``)."""
        return {
            "security_groups": [g.to_json() for g in self.security_groups],
            "network_acls": [a.to_json() for a in self.network_acls],
        }

    def ruleset(self, select: str | None) -> RuleSet:
        """The rule set named by ``select``: ``GROUP-OR-ACL:DIRECTION`` where the group is
        its id, name, Name tag or Terraform address/label, the ACL its id, Name tag or
        Terraform address/label, and the direction ``ingress`` or ``egress``."""
        policies: list[SecurityGroup | NetworkAcl] = [*self.security_groups, *self.network_acls]
        choices = [f"{p.key}:{d.value}" for p in policies for d in Direction]
        if not choices:
            raise ConfigError("the file holds no security group and no network ACL", file=self.file)
        if select is None:
            raise ConfigError(
                "choose a rule set with --select GROUP-OR-ACL:DIRECTION, one of: "
                + _listing(choices),
                file=self.file,
            )
        name, colon, way = select.rpartition(":")
        if not colon:
            raise ConfigError(
                f"--select {select!r} names no direction: write {select}:ingress or "
                f"{select}:egress",
                file=self.file,
            )
        try:
            direction = parse_direction(way)
        except ValueError as exc:
            raise ConfigError(f"--select {select!r}: {exc}", file=self.file) from None
        found = [p for p in policies if name == p.key] or [
            p for p in policies if name in p.aliases or name == p.name
        ]
        if not found:
            raise ConfigError(
                f"no security group or network ACL {name!r} here; choose one of: "
                + _listing(choices),
                file=self.file,
            )
        if len(found) > 1:
            keys = ", ".join(f"{p.key} ({p.origin})" for p in found)
            raise ConfigError(
                f"{name!r} is ambiguous: it names {keys}; select by id", file=self.file
            )
        chosen = found[0]
        if isinstance(chosen, SecurityGroup):
            return security_group_ruleset(chosen, direction)
        return acl_ruleset(chosen, direction)


def _listing(items: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items) - limit} more)" if len(items) > limit else "")
