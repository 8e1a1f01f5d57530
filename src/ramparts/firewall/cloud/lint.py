"""Checks of a whole topology, the findings a cloud reviewer (AWS Trusted Advisor, tfsec)
would raise: admin and database ports open to the world, ACLs that let a request in but
drop its reply (stateless: the reply needs a rule to the client's ephemeral port), and
security group rules that the subnet's ACL makes useless.

Each check is exact over the rules it reads: address and port ranges are cut where a
rule starts or ends, and every piece is evaluated with the reference ``evaluate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...net.addr import IPRange
from ...net.packet import Packet
from ...net.ports import PortRange
from ...net.proto import protocol_name
from ..model import Action, RuleSet
from .model import AclEntry, Direction, NetworkAcl, SecurityGroup, acl_ruleset
from .topology import Instance, Topology
from .trace import EPHEMERAL_AWS, EPHEMERAL_LINUX, judge_ports

__all__ = ["SENSITIVE_PORTS", "SEVERITIES", "Finding", "lint"]

SEVERITIES = ("high", "medium", "low", "info")

# TCP ports that must not be open to the whole internet: remote administration, file
# sharing and databases (the ports AWS Trusted Advisor and tfsec check, and a few more).
SENSITIVE_PORTS: dict[int, str] = {
    20: "FTP data",
    21: "FTP",
    22: "SSH",
    23: "Telnet",
    445: "SMB",
    1433: "SQL Server",
    1521: "Oracle",
    2375: "Docker API",
    3306: "MySQL",
    3389: "RDP",
    5432: "PostgreSQL",
    5900: "VNC",
    5985: "WinRM",
    5986: "WinRM over TLS",
    6379: "Redis",
    9200: "Elasticsearch",
    11211: "Memcached",
    27017: "MongoDB",
}

# An ACL entry for at most this many ports is taken for a service (80, 443, 8000-8100),
# not for a range of ephemeral ports such as 1024-65535.
_SERVICE_SPAN = 1000


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    code: str
    where: str
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "where": self.where,
            "message": self.message,
            "fix": self.fix,
        }

    def render(self) -> str:
        text = f"{self.where}: {self.severity.upper()} {self.code}: {self.message}"
        return text + (f"\n  fix: {self.fix}" if self.fix else "")


def lint(topology: Topology) -> list[Finding]:
    """Every finding of the topology, most severe first, then by place."""
    found: list[Finding] = []
    for g in topology.security_groups:
        found += _world_open(topology, g)
    guarded = {s.acl.key: s.acl for s in topology.subnets}
    for acl in guarded.values():
        found += _reply_paths(acl)
    for inst in topology.instances:
        found += _blocked_by_acl(topology, inst)
    found += [Finding("info", "group-no-members", str(o), text) for o, text in topology.notes]
    return sorted(found, key=lambda f: (SEVERITIES.index(f.severity), f.where, f.message))


# -- security groups open to the world ---------------------------------------------------


def _users(topology: Topology, group: SecurityGroup) -> str:
    names = [i.name for i in topology.instances if any(g.key == group.key for g in i.groups)]
    return f" (used by {', '.join(names)})" if names else " (no instance here uses it)"


def _world_open(topology: Topology, group: SecurityGroup) -> list[Finding]:
    out: list[Finding] = []
    for n, rule in enumerate(group.ingress, 1):
        if rule.cidr is None or not rule.cidr.is_all:
            continue
        t = rule.traffic
        subject = f"{group.label} inbound rule {n}"
        users = _users(topology, group)
        if t.proto is None:
            out.append(
                Finding(
                    "high",
                    "world-open-all",
                    str(rule.origin),
                    f"{subject} allows all traffic from {rule.cidr}{users}",
                    "allow only the ports the service needs, from the sources that need them",
                )
            )
            continue
        if t.proto != 6:
            continue
        ports = [
            (p, name)
            for p, name in SENSITIVE_PORTS.items()
            if t.ports is None or t.ports.lo <= p <= t.ports.hi
        ]
        if not ports:
            continue
        listed = ", ".join(f"{p} ({name})" for p, name in ports)
        if t.ports is not None and t.ports.lo == t.ports.hi:
            what = f"tcp port {listed}"
        else:
            span = "all tcp ports" if t.ports is None else f"tcp ports {t.ports}"
            what = f"{span} (with {listed})"
        shut = _shut_by_acls(topology, group, rule.cidr, [p for p, _ in ports])
        out.append(
            Finding(
                "high",
                "world-open-admin",
                str(rule.origin),
                f"{subject} opens {what} to {rule.cidr}{users}{shut}",
                "allow admin and database ports only from the addresses that need them (an "
                "admin range, a bastion's or the application's security group), or reach "
                "instances through AWS Systems Manager Session Manager",
            )
        )
    return out


def _shut_by_acls(topology: Topology, group: SecurityGroup, cidr: IPRange, ports: list[int]) -> str:
    """A remark when every subnet ACL in front of the group's instances drops all of
    ``ports`` from everywhere in ``cidr`` (the exposure is then one ACL change away)."""
    subnets = {
        i.subnet.name: i.subnet
        for i in topology.instances
        if any(g.key == group.key for g in i.groups)
    }
    if not subnets:
        return ""
    for subnet in subnets.values():
        rules = acl_ruleset(subnet.acl, Direction.INGRESS)
        for port in ports:
            _, never = _passed(rules, cidr, True, 6, EPHEMERAL_LINUX.lo, PortRange(port, port))
            if not never:
                return ""
    names = ", ".join(sorted(subnets))
    return f"; the ACL of subnet {names} drops it today, so it is one ACL change from exposure"


# -- address pieces ----------------------------------------------------------------------


def _address_pieces(cidr: IPRange, rules: RuleSet, inbound: bool) -> Iterator[int]:
    """One address per piece of ``cidr`` on which every rule's address match (source
    for inbound rules, destination for outbound) is constant."""
    cuts = {cidr.lo, cidr.hi + 1}
    for r in rules.rules:
        addrs = r.src if inbound else r.dst
        for a in addrs.ranges if addrs is not None else ():
            if a.version == cidr.version:
                cuts.update(c for c in (a.lo, a.hi + 1) if cidr.lo < c <= cidr.hi)
    edges = sorted(cuts)
    for lo, _ in itertools.pairwise(edges):
        yield lo


def _packet(version: int, peer: int, inbound: bool, proto: int, sport: int, dport: int) -> Packet:
    """A packet between the subnet and ``peer``; the subnet side's address does not
    matter to an ACL (an inbound entry matches the source, an outbound the destination)."""
    if inbound:
        return Packet(version, peer, 0, proto, sport, dport)
    return Packet(version, 0, peer, proto, sport, dport)


def _passed(
    rules: RuleSet, cidr: IPRange, inbound: bool, proto: int, sport: int, ports: PortRange
) -> tuple[list[PortRange], list[PortRange]]:
    """The ports of ``ports`` that pass for every address of ``cidr``, and those that
    pass for none."""
    every: set[tuple[int, int]] | None = None
    some: set[tuple[int, int]] = set()
    for addr in _address_pieces(cidr, rules, inbound):
        pkt = _packet(cidr.version, addr, inbound, proto, sport, ports.lo)
        ok = {(r.lo, r.hi) for r, v in judge_ports(rules, pkt, [ports]) if v.action.allows}
        some |= ok
        every = ok if every is None else _intersect(every, ok)
    all_ok = sorted(PortRange(lo, hi) for lo, hi in (every or set()))
    none_ok = _complement(sorted(PortRange(lo, hi) for lo, hi in some), ports)
    return all_ok, none_ok


def _intersect(a: set[tuple[int, int]], b: set[tuple[int, int]]) -> set[tuple[int, int]]:
    out = set()
    for lo1, hi1 in a:
        for lo2, hi2 in b:
            lo, hi = max(lo1, lo2), min(hi1, hi2)
            if lo <= hi:
                out.add((lo, hi))
    return out


def _complement(ranges: Sequence[PortRange], whole: PortRange) -> list[PortRange]:
    out: list[PortRange] = []
    at = whole.lo
    for r in ranges:
        if r.lo > at:
            out.append(PortRange(at, min(r.lo - 1, whole.hi)))
        at = max(at, r.hi + 1)
    if at <= whole.hi:
        out.append(PortRange(at, whole.hi))
    return out


def _covers(ranges: Sequence[PortRange], want: PortRange) -> bool:
    return not _complement(ranges, want) if ranges else False


def _text(ranges: Sequence[PortRange]) -> str:
    return ", ".join(map(str, ranges))


# -- ACLs that drop the replies of what they let in ---------------------------------------


def _reply_paths(acl: NetworkAcl) -> list[Finding]:
    out: list[Finding] = []
    for direction in Direction:
        back = Direction.EGRESS if direction is Direction.INGRESS else Direction.INGRESS
        replies = acl_ruleset(acl, back)
        for e in acl.entries(direction):
            if not _is_service(e):
                continue
            finding = _reply_finding(acl, e, back, replies)
            if finding is not None:
                out.append(finding)
    return out


def _is_service(e: AclEntry) -> bool:
    t = e.traffic
    return (
        e.action is Action.ACCEPT
        and t.proto in (6, 17)
        and t.ports is not None
        and t.ports.hi - t.ports.lo < _SERVICE_SPAN
    )


def _reply_finding(
    acl: NetworkAcl, e: AclEntry, back: Direction, replies: RuleSet
) -> Finding | None:
    assert e.traffic.proto is not None and e.traffic.ports is not None
    proto = e.traffic.proto
    inbound_reply = back is Direction.INGRESS
    every, never = _passed(replies, e.cidr, inbound_reply, proto, e.traffic.ports.lo, EPHEMERAL_AWS)
    name = protocol_name(proto)
    who = "clients" if e.direction is Direction.INGRESS else "the servers it reaches"
    subject = (
        f"{acl.label} {e.direction.word} rule {e.number} ({e.describe()}) lets requests "
        f"{'in' if e.direction is Direction.INGRESS else 'out'}, but"
    )
    way = "to" if back is Direction.EGRESS else "from"
    fix = (
        f"add an {back.word} rule: allow {name} {way} {e.cidr} ports {EPHEMERAL_AWS} "
        "(the ephemeral ports; a lower number than any deny that covers them)"
    )
    if _covers(every, EPHEMERAL_AWS):
        return None
    if _covers(never, EPHEMERAL_LINUX):
        return Finding(
            "high",
            "acl-reply-dropped",
            str(e.origin),
            f"{subject} no {back.word} rule passes the replies ({name} {way} {e.cidr}, "
            f"ephemeral ports {EPHEMERAL_LINUX}): {who} time out",
            fix,
        )
    if not _covers(every, EPHEMERAL_LINUX):
        return Finding(
            "medium",
            "acl-reply-partial",
            str(e.origin),
            f"{subject} its {back.word} rules pass the replies only for some ephemeral "
            f"ports or addresses (every address: {_text(every) or 'none'}): some "
            f"connections time out",
            fix,
        )
    return Finding(
        "low",
        "acl-reply-narrow",
        str(e.origin),
        f"{subject} the replies pass only to ports {_text(every)}: clients using ephemeral "
        f"ports outside it (NAT gateways and load balancers use {EPHEMERAL_AWS}) time out",
        fix,
    )


# -- security group rules the ACL makes useless -------------------------------------------


def _blocked_by_acl(topology: Topology, inst: Instance) -> list[Finding]:
    """Inbound rules of ``inst``'s groups whose traffic from outside the subnet the subnet's
    ACL drops entirely: the group allows, the connection still fails."""
    out: list[Finding] = []
    acl = inst.subnet.acl
    rules = acl_ruleset(acl, Direction.INGRESS)
    for g in inst.groups:
        for n, r in enumerate(g.ingress, 1):
            t = r.traffic
            if r.cidr is None or t.proto not in (6, 17) or t.ports is None:
                continue
            if t.ports.hi - t.ports.lo >= _SERVICE_SPAN:
                continue
            if all(inst.subnet.contains(r.cidr.version, a) for a in (r.cidr.lo, r.cidr.hi)):
                continue  # traffic from inside the subnet does not cross its ACL
            assert t.proto is not None
            _, never = _passed(rules, r.cidr, True, t.proto, EPHEMERAL_LINUX.lo, t.ports)
            if not _covers(never, t.ports):
                continue
            what = f"{protocol_name(t.proto)} {t.ports} from {r.cidr}"
            users = [
                i.name
                for i in topology.instances
                if i.subnet.name == inst.subnet.name and any(x.key == g.key for x in i.groups)
            ]
            if users[0] != inst.name:
                continue  # reported once per subnet, for all its instances
            out.append(
                Finding(
                    "medium",
                    "group-rule-blocked",
                    str(r.origin),
                    f"{g.label} inbound rule {n} allows {what} to {', '.join(users)}, but the "
                    f"ACL {acl.label} of subnet {inst.subnet.name} drops it: the connection "
                    "times out",
                    f"add an inbound rule to {acl.label} allowing {what} (and an outbound "
                    "rule for the replies), or remove the group rule",
                )
            )
    return out
