"""The cloud trace: one connection A -> B:port followed through every AWS filter it meets,
and its reply B -> A back, with each hop's verdict and the rule that decided.

The request crosses the security groups of A (outbound), the ACL of A's subnet
(outbound), the ACL of B's subnet (inbound) and the security groups of B (inbound); the
reply crosses B's groups, B's subnet ACL (outbound), A's subnet ACL (inbound) and A's
groups. Security groups are stateful: the reply of a connection they allowed passes by
state. Network ACLs are stateless: the reply is judged by the other direction's rules
like any packet, to the client's ephemeral port. Traffic between two instances of one
subnet does not cross its ACL (ACLs filter at the subnet boundary). A side that is not in
the topology (a client on the internet) has no filter of its own here.

What the client sees: a drop anywhere is a *timeout* (security groups and ACLs never
answer a dropped packet); a *refusal* only when the request reaches B, nothing listens
(the topology lists B's ports), and B's reset (TCP) or ICMP port unreachable (UDP)
makes it back. The client's port is ``--sport`` when given, else the whole of Linux's
default ephemeral range 32768-60999: the trace then says whether the ACLs pass every
client port, none, or only some.

Pure code: a Topology in, a TraceResult out.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...net.addr import IPRange, parse_ip
from ...net.packet import Packet
from ...net.ports import PortRange
from ...net.proto import parse_protocol, protocol_name
from ..model import Action, RuleSet, Verdict, evaluate
from .model import (
    AclEntry,
    Direction,
    NetworkAcl,
    acl_ruleset,
    security_group_ruleset,
)
from .topology import Instance, Subnet, Topology

__all__ = [
    "EPHEMERAL_AWS",
    "EPHEMERAL_LINUX",
    "EPHEMERAL_WINDOWS",
    "Endpoint",
    "Hop",
    "TraceResult",
    "judge_ports",
    "trace",
]

# Linux's net.ipv4.ip_local_port_range default; Windows' dynamic range (RFC 6335); the
# range AWS tells ACL authors to open, which also covers NAT gateways and load balancers.
EPHEMERAL_LINUX = PortRange(32768, 60999)
EPHEMERAL_WINDOWS = PortRange(49152, 65535)
EPHEMERAL_AWS = PortRange(1024, 65535)

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
_ECHO = {4: (8, 0), 6: (128, 129)}  # request type, reply type
_UNREACHABLE = {4: (3, 3), 6: (1, 4)}  # ICMP port unreachable: type, code


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of the connection: an address and, if the topology has it, the instance."""

    name: str
    version: int
    addr: int
    instance: Instance | None = None

    @property
    def address(self) -> str:
        return str(IPRange(self.version, self.addr, self.addr))

    @property
    def subnet(self) -> Subnet | None:
        return None if self.instance is None else self.instance.subnet

    @property
    def label(self) -> str:
        return self.address if self.name == self.address else f"{self.name} ({self.address})"


@dataclass(frozen=True, slots=True)
class Hop:
    """One filter on the way: what it is, the packet it saw, its verdict and why.

    ``verdict`` is ``allow``, ``drop``, ``partial`` (a reply passes for some client ports
    only), ``state`` (a security group passes a reply by connection state), or at B:
    ``listening``, ``closed``, ``assumed`` (the topology does not say what B listens on)."""

    path: str
    what: str
    packet: str
    verdict: str
    rule: str | None = None
    rule_text: str | None = None
    origin: str | None = None
    detail: str = ""
    passed_ports: tuple[PortRange, ...] = ()
    dropped_ports: tuple[PortRange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "what": self.what,
            "packet": self.packet,
            "verdict": self.verdict,
            "rule": self.rule,
            "rule_text": self.rule_text,
            "origin": self.origin,
            "detail": self.detail,
        }
        if self.passed_ports or self.dropped_ports:
            out["passed_ports"] = [str(p) for p in self.passed_ports]
            out["dropped_ports"] = [str(p) for p in self.dropped_ports]
        return out

    def render(self, n: int) -> str:
        verdict = "ALLOW by connection state" if self.verdict == "state" else self.verdict.upper()
        head = f"{n:>3}. {self.what}: {verdict}"
        if self.rule:
            head += f" by {self.rule}"
        if self.rule_text:
            head += f" ({self.rule_text})"
        if self.origin:
            head += f" at {self.origin}"
        return head + (f"\n       {self.detail}" if self.detail else "")


@dataclass(frozen=True, slots=True)
class TraceResult:
    """The trace of one connection. ``outcome`` is what the client sees: ``connected``,
    ``refused``, ``timeout``, or ``intermittent`` (it depends on the client's port)."""

    source: Endpoint
    dest: Endpoint
    proto: int
    port: int | None
    client_ports: PortRange | None
    hops: tuple[Hop, ...]
    outcome: str
    summary: str
    fault: str | None = None
    fix: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.outcome == "connected"

    @property
    def stopped_at(self) -> int | None:
        """The 1-based hop that dropped the connection, if one did."""
        return next((i for i, h in enumerate(self.hops, 1) if h.verdict == "drop"), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": {"name": self.source.name, "address": self.source.address},
            "to": {"name": self.dest.name, "address": self.dest.address},
            "proto": protocol_name(self.proto),
            "port": self.port,
            "client_ports": None if self.client_ports is None else str(self.client_ports),
            "outcome": self.outcome,
            "ok": self.ok,
            "stopped_at": self.stopped_at,
            "summary": self.summary,
            "fault": self.fault,
            "fix": self.fix,
            "hops": [h.to_json() for h in self.hops],
            "notes": list(self.notes),
        }

    def render(self) -> str:
        service = f" port {self.port}" if self.port is not None else ""
        lines = [
            f"trace {protocol_name(self.proto)} {self.source.label} -> {self.dest.label}{service}"
        ]
        if self.client_ports is not None:
            lines.append(f"client port: {self.client_ports}")
        path = ""
        for n, hop in enumerate(self.hops, 1):
            if hop.path != path:
                path = hop.path
                lines.append(f"{path}: {hop.packet}")
            lines.append(hop.render(n))
        lines.append("")
        lines.append(f"{self.outcome.upper()}: {self.summary}")
        if self.fault:
            lines.append(f"  {self.fault}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- evaluating over a range of destination ports ----------------------------------------


def judge_ports(
    ruleset: RuleSet, packet: Packet, ports: Sequence[PortRange]
) -> list[tuple[PortRange, Verdict]]:
    """The verdicts of ``packet`` with its destination port anywhere in ``ports``: the
    ranges cut where a rule's port range starts or ends (the verdict is constant
    between two cuts, so one packet per piece is exact), adjacent pieces with the same
    deciding rule merged."""
    cuts: set[int] = set()
    for r in ruleset.rules:
        for pr in r.dport or ():
            cuts.update((pr.lo, pr.hi + 1))
    out: list[tuple[PortRange, Verdict]] = []
    for want in ports:
        edges = sorted({want.lo, want.hi + 1} | {c for c in cuts if want.lo < c <= want.hi})
        for lo, nxt in itertools.pairwise(edges):
            v = evaluate(ruleset, _with_dport(packet, lo))
            last = out[-1] if out else None
            if (
                last is not None
                and last[0].hi + 1 == lo
                and (last[1].action, last[1].index) == (v.action, v.index)
            ):
                out[-1] = (PortRange(last[0].lo, nxt - 1), last[1])
            else:
                out.append((PortRange(lo, nxt - 1), v))
    return out


def _with_dport(p: Packet, port: int) -> Packet:
    return Packet(
        p.version, p.src, p.dst, p.proto, p.sport, port, p.icmp_type, p.icmp_code, p.tcp_flags
    )


def _ports_text(ranges: Sequence[PortRange]) -> str:
    return ", ".join(map(str, ranges))


def _subtract(ranges: Sequence[PortRange], cut: PortRange) -> list[PortRange]:
    out: list[PortRange] = []
    for r in ranges:
        if r.hi < cut.lo or r.lo > cut.hi:
            out.append(r)
            continue
        if r.lo < cut.lo:
            out.append(PortRange(r.lo, cut.lo - 1))
        if r.hi > cut.hi:
            out.append(PortRange(cut.hi + 1, r.hi))
    return out


# -- endpoints ---------------------------------------------------------------------------


def _endpoint_candidates(
    topology: Topology, text: str
) -> tuple[Instance | None, list[tuple[int, int]]]:
    inst = topology.instance(text)
    if inst is not None:
        return inst, list(inst.addresses)
    try:
        version, addr = parse_ip(text)
    except ValueError:
        names = ", ".join(i.name for i in topology.instances)
        raise ValueError(
            f"{text!r} is neither an instance of the topology ({names}) nor an IP address"
        ) from None
    found = topology.instance_at(version, addr)
    if found is None:
        subnet = topology.subnet_at(version, addr)
        if subnet is not None:
            raise ValueError(
                f"{text} is in subnet {subnet.name} but no instance of the topology has it"
            )
    return found, [(version, addr)]


def _endpoints(topology: Topology, src: str, dst: str) -> tuple[Endpoint, Endpoint]:
    a_inst, a_addrs = _endpoint_candidates(topology, src)
    b_inst, b_addrs = _endpoint_candidates(topology, dst)
    for version in (4, 6):
        a = next((x for v, x in a_addrs if v == version), None)
        b = next((x for v, x in b_addrs if v == version), None)
        if a is not None and b is not None:
            ea = Endpoint(a_inst.name if a_inst else src, version, a, a_inst)
            eb = Endpoint(b_inst.name if b_inst else dst, version, b, b_inst)
            if ea.instance is None and eb.instance is None:
                raise ValueError("neither end is in the topology: nothing filters this connection")
            if (ea.version, ea.addr) == (eb.version, eb.addr):
                raise ValueError("the source and the destination are the same address")
            return ea, eb
    raise ValueError(f"{src} and {dst} have no IP version in common")


# -- the trace ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    """The trace being built (mutable while ``trace`` runs)."""

    topology: Topology
    a: Endpoint
    b: Endpoint
    proto: int
    hops: list[Hop] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fault: str | None = None
    fix: str | None = None
    summary: str = ""

    @property
    def crosses(self) -> bool:
        """Whether the traffic crosses a subnet boundary (and so the ACLs)."""
        return self.a.subnet is None or self.b.subnet is None or self.a.subnet != self.b.subnet


def trace(
    topology: Topology,
    src: str,
    dst: str,
    proto: str | int = "tcp",
    port: int | None = None,
    sport: int | None = None,
) -> TraceResult:
    """Follow a connection from ``src`` to ``dst`` (instance names or addresses) and its
    reply. ``port`` is the service port (tcp/udp); ``sport`` the client's port (default:
    the whole Linux ephemeral range). Bad arguments raise ValueError."""
    number = parse_protocol(proto)
    if number is None:
        raise ValueError("trace one protocol: tcp, udp, icmp, icmpv6 or a number")
    a, b = _endpoints(topology, src, dst)
    if number in (TCP, UDP):
        if port is None or not 1 <= port <= 65535:
            raise ValueError(f"a {protocol_name(number)} trace needs --port (1-65535)")
        if sport is not None and not 1 <= sport <= 65535:
            raise ValueError("--sport is a port 1-65535")
    elif port is not None or sport is not None:
        raise ValueError(f"{protocol_name(number)} has no ports: drop --port and --sport")
    if number == ICMP and a.version == 6:
        raise ValueError("IPv6 endpoints: trace icmpv6")
    if number == ICMPV6 and a.version == 4:
        raise ValueError("IPv4 endpoints: trace icmp")
    run = _Run(topology, a, b, number)
    client = (
        None
        if number not in (TCP, UDP)
        else (PortRange(sport, sport) if sport is not None else EPHEMERAL_LINUX)
    )
    outcome = _follow(run, port, client)
    if client is not None and sport is None and any(h.path == "reply" for h in run.hops):
        run.notes.append(
            f"the client's port is taken as {EPHEMERAL_LINUX}, Linux's default ephemeral "
            f"range; clients differ (Windows {EPHEMERAL_WINDOWS}, NAT gateways and load "
            f"balancers {EPHEMERAL_AWS}; AWS advises ACLs to allow {EPHEMERAL_AWS}); "
            "--sport traces one port"
        )
        if outcome in ("connected", "refused", "intermittent"):
            _other_clients(run, port)
    return TraceResult(
        a,
        b,
        number,
        port,
        client,
        tuple(run.hops),
        outcome,
        run.summary,
        run.fault,
        run.fix,
        tuple(run.notes),
    )


def _follow(run: _Run, port: int | None, client: PortRange | None) -> str:
    a, b, proto = run.a, run.b, run.proto
    kind = _ECHO[a.version][0] if proto in (ICMP, ICMPV6) else None
    request = Packet(
        a.version,
        a.addr,
        b.addr,
        proto,
        client.lo if client else 0,
        port or 0,
        kind,
        0 if kind is not None else None,
    )
    shown = _show(request, client, None)
    # The request: what starts the connection is judged by every filter's rules.
    for where, direction in _path(run, a, b):
        if isinstance(where, Instance):
            passed = _sg(run, "request", shown, where, direction, request)
        else:
            passed = _acl_fixed(run, "request", shown, where, direction, request)
        if not passed:
            return "timeout"
    closed = _at_destination(run, shown, port)
    # The reply: the security groups pass it by state (an ICMP error is judged by their
    # rules), the ACLs judge it by their rules, over the client ports still alive.
    reply = _reply(run, request, closed)
    shown_back = _show(reply, None, client)
    error = reply.proto in (ICMP, ICMPV6) and closed
    live = [client] if client is not None and reply.proto in (TCP, UDP) else None
    for where, direction in _path(run, b, a):
        if isinstance(where, Instance):
            if not error:
                _state(run, "reply", shown_back, where, direction)
                continue
            passed = _sg(run, "reply", shown_back, where, direction, reply)
        elif live is None:
            passed = _acl_fixed(run, "reply", shown_back, where, direction, reply)
        else:
            live = _acl_ports(run, shown_back, where, direction, reply, live)
            passed = bool(live)
        if not passed:
            if proto == TCP:
                answer = "reset" if closed else "SYN-ACK"
                run.notes.append(
                    f"the client's SYN reaches {b.name} and is answered; the {answer} is "
                    f"dropped on its way back, so the client retries the SYN and times out "
                    f"(a capture on {b.name} shows the {answer} leaving)"
                )
            return "timeout"
    partial = live is not None and client is not None and live != [client]
    if partial:
        assert live is not None and client is not None
        dropped = _ports_text(_complement(live, client))
        run.summary = (
            f"{'refused' if closed else 'works'} for client ports {_ports_text(live)}; "
            f"times out for {dropped} (the reply is dropped)"
        )
        return "intermittent"
    if closed:
        what = "a reset (connection refused)" if proto == TCP else "ICMP port unreachable"
        run.summary = f"nothing listens on {b.name} {protocol_name(proto)}/{port}: {what}"
        return "refused"
    run.summary = (
        "the connection is established and its replies come back"
        if proto == TCP
        else "the request gets through and the answer comes back"
    )
    return "connected"


def _path(run: _Run, src: Endpoint, dst: Endpoint) -> list[tuple[Instance | Subnet, Direction]]:
    """The filters a packet from ``src`` to ``dst`` meets, in order."""
    out: list[tuple[Instance | Subnet, Direction]] = []
    if src.instance is not None:
        out.append((src.instance, Direction.EGRESS))
    if run.crosses and src.subnet is not None:
        out.append((src.subnet, Direction.EGRESS))
    if run.crosses and dst.subnet is not None:
        out.append((dst.subnet, Direction.INGRESS))
    if dst.instance is not None:
        out.append((dst.instance, Direction.INGRESS))
    return out


def _complement(live: Sequence[PortRange], whole: PortRange) -> list[PortRange]:
    rest = [whole]
    for r in live:
        rest = _subtract(rest, r)
    return rest


def _show(p: Packet, sport: PortRange | None, dport: PortRange | None) -> str:
    """A packet as text; a port range stands for the client's port when not given."""
    src = str(IPRange(p.version, p.src, p.src))
    dst = str(IPRange(p.version, p.dst, p.dst))
    name = protocol_name(p.proto)
    if p.proto in (TCP, UDP):
        return f"{src}:{sport or p.sport} -> {dst}:{dport or p.dport} {name}"
    if p.proto in (ICMP, ICMPV6):
        return f"{src} -> {dst} {name} type {p.icmp_type} code {p.icmp_code}"
    return f"{src} -> {dst} protocol {name}"


def _reply(run: _Run, request: Packet, closed: bool) -> Packet:
    a, b, proto = run.a, run.b, run.proto
    if closed and proto == UDP:
        kind, code = _UNREACHABLE[a.version]
        icmp = ICMP if a.version == 4 else ICMPV6
        return Packet(a.version, b.addr, a.addr, icmp, 0, 0, kind, code)
    if proto in (ICMP, ICMPV6):
        return Packet(a.version, b.addr, a.addr, proto, 0, 0, _ECHO[a.version][1], 0)
    return Packet(a.version, b.addr, a.addr, proto, request.dport, request.sport)


def _at_destination(run: _Run, shown: str, port: int | None) -> bool:
    """Record what B does with the request; True if nothing listens (B answers with a
    reset or an ICMP error)."""
    b, proto = run.b, run.proto
    if b.instance is None:
        run.hops.append(
            Hop(
                "request",
                f"{b.address} (outside the topology)",
                shown,
                "assumed",
                detail="the remote host is assumed to answer",
            )
        )
        return False
    if proto not in (TCP, UDP):
        run.hops.append(
            Hop(
                "request", f"{b.name}", shown, "assumed", detail="the instance is assumed to answer"
            )
        )
        return False
    listens = b.instance.listens(proto, port or 0)
    service = f"{b.name} {protocol_name(proto)}/{port}"
    if listens is None:
        run.hops.append(
            Hop(
                "request",
                service,
                shown,
                "assumed",
                detail="the topology does not list this instance's ports",
            )
        )
        run.notes.append(
            f"{b.name} is assumed to listen on {protocol_name(proto)}/{port} "
            "(add `listening:` to the instance to check it)"
        )
        return False
    if listens:
        run.hops.append(Hop("request", service, shown, "listening"))
        return False
    answer = "a TCP reset" if proto == TCP else "ICMP port unreachable"
    run.hops.append(
        Hop(
            "request",
            service,
            shown,
            "closed",
            detail=f"nothing listens there: {b.name} answers with {answer}",
        )
    )
    return True


def _state(run: _Run, path: str, shown: str, inst: Instance, direction: Direction) -> None:
    groups = ", ".join(g.label for g in inst.groups)
    run.hops.append(
        Hop(
            path,
            f"{inst.name} security groups {groups}, {direction.word}",
            shown,
            "state",
            detail="the reply of a connection the groups allowed passes whatever the "
            f"{direction.word} rules say (security groups are stateful)",
        )
    )


def _sg(
    run: _Run, path: str, shown: str, inst: Instance, direction: Direction, packet: Packet
) -> bool:
    """Judge ``packet`` by the union of ``inst``'s groups; record the hop."""
    names = ", ".join(g.label for g in inst.groups)
    what = f"{inst.name} security groups {names}, {direction.word}"
    for g in inst.groups:
        v = evaluate(security_group_ruleset(g, direction, run.topology), packet)
        if v.action is Action.ACCEPT and v.index is not None:
            rule = g.rules(direction)[v.index - 1]
            run.hops.append(
                Hop(
                    path,
                    what,
                    shown,
                    "allow",
                    f"{g.label} rule {v.index}",
                    rule.describe(),
                    str(rule.origin),
                )
            )
            return True
    peer = _addr_text(packet, direction)
    way = "to" if direction is Direction.EGRESS else "from"
    wanted = _wanted(packet)
    missing = f"no {direction.word} rule of {names} allows {wanted} {way} {peer}"
    run.hops.append(Hop(path, what, shown, "drop", "the default deny", detail=missing))
    side = "reply" if path == "reply" else "request"
    run.summary = (
        f"dropped by the security groups of {inst.name} ({direction.word}) on the {side} "
        f"path: no {direction.word} rule allows {wanted}"
    )
    run.fault = f"{missing} (security groups only allow; what no rule allows is dropped silently)"
    group = inst.groups[0].label
    run.fix = f"add an {direction.word} rule to {group}: allow {wanted} {way} {peer}"
    return False


def _wanted(p: Packet) -> str:
    if p.proto in (TCP, UDP):
        return f"{protocol_name(p.proto)} port {p.dport}"
    if p.proto in (ICMP, ICMPV6):
        return f"{protocol_name(p.proto)} type {p.icmp_type} code {p.icmp_code}"
    return f"protocol {protocol_name(p.proto)}"


def _acl_what(subnet: Subnet, direction: Direction) -> str:
    return f"subnet {subnet.name} network ACL {subnet.acl.label}, {direction.word}"


def _acl_fixed(
    run: _Run, path: str, shown: str, subnet: Subnet, direction: Direction, packet: Packet
) -> bool:
    """Judge one packet (fixed ports) by ``subnet``'s ACL; record the hop."""
    acl = subnet.acl
    v = evaluate(acl_ruleset(acl, direction), packet)
    entry = _entry(acl, direction, v)
    what = _acl_what(subnet, direction)
    if v.action is Action.ACCEPT:
        assert entry is not None
        run.hops.append(
            Hop(
                path,
                what,
                shown,
                "allow",
                f"rule {entry.number}",
                entry.describe(),
                _where(acl, entry),
            )
        )
        return True
    _acl_drop(run, path, shown, subnet, direction, packet, entry, None)
    return False


def _acl_ports(
    run: _Run,
    shown: str,
    subnet: Subnet,
    direction: Direction,
    packet: Packet,
    live: list[PortRange],
) -> list[PortRange]:
    """Judge the reply over the client ports still alive; record the hop; return the
    ports that pass."""
    acl = subnet.acl
    pieces = judge_ports(acl_ruleset(acl, direction), packet, live)
    passed = [r for r, v in pieces if v.action is Action.ACCEPT]
    dropped = [(r, v) for r, v in pieces if v.action is not Action.ACCEPT]
    what = _acl_what(subnet, direction)
    if not dropped:
        rules = sorted({v.index for _, v in pieces if v.index is not None})
        entries = [acl.entries(direction)[i - 1] for i in rules]
        run.hops.append(
            Hop(
                "reply",
                what,
                shown,
                "allow",
                ", ".join(f"rule {e.number}" for e in entries),
                "; ".join(e.describe() for e in entries),
                ", ".join(_where(acl, e) or "" for e in entries) or None,
                passed_ports=tuple(passed),
            )
        )
        return passed
    if not passed:
        entry = _entry(acl, direction, dropped[0][1])
        _acl_drop(run, "reply", shown, subnet, direction, packet, entry, live)
        return []
    entry = _entry(acl, direction, dropped[0][1])
    lost = [r for r, _ in dropped]
    run.hops.append(
        Hop(
            "reply",
            what,
            shown,
            "partial",
            f"rule {entry.number}" if entry else "the implicit deny (*)",
            entry.describe() if entry else None,
            _where(acl, entry) if entry else None,
            detail=f"passes client ports {_ports_text(passed)}; drops {_ports_text(lost)}",
            passed_ports=tuple(passed),
            dropped_ports=tuple(lost),
        )
    )
    _acl_missing(run, "reply", subnet, direction, packet, entry, lost)
    return passed


def _entry(acl: NetworkAcl, direction: Direction, v: Verdict) -> AclEntry | None:
    return None if v.index is None else acl.entries(direction)[v.index - 1]


def _where(acl: NetworkAcl, entry: AclEntry | None) -> str | None:
    if entry is None or acl.builtin:
        return None
    return str(entry.origin)


def _acl_drop(
    run: _Run,
    path: str,
    shown: str,
    subnet: Subnet,
    direction: Direction,
    packet: Packet,
    entry: AclEntry | None,
    ports: Sequence[PortRange] | None,
) -> None:
    acl = subnet.acl
    what = _acl_what(subnet, direction)
    rule = f"rule {entry.number}" if entry else "the implicit deny (*)"
    run.hops.append(
        Hop(
            path,
            what,
            shown,
            "drop",
            rule,
            entry.describe() if entry else None,
            _where(acl, entry),
            dropped_ports=tuple(ports or ()),
        )
    )
    _acl_missing(run, path, subnet, direction, packet, entry, ports)


def _acl_missing(
    run: _Run,
    path: str,
    subnet: Subnet,
    direction: Direction,
    packet: Packet,
    entry: AclEntry | None,
    ports: Sequence[PortRange] | None,
) -> None:
    """Explain a drop (or a partial one) by an ACL: the rule that is missing, or the deny
    rule that is in the way, and the fix."""
    acl = subnet.acl
    word = direction.word
    peer_addr = _addr_text(packet, direction)
    way = "to" if direction is Direction.EGRESS else "from"
    reply = path == "reply"
    if packet.proto in (TCP, UDP):
        port_text = _ports_text(ports) if ports else str(packet.dport)
        name = protocol_name(packet.proto)
        if direction is Direction.EGRESS:
            wanted = f"{name} to {peer_addr} port {port_text}"
        else:
            wanted = f"{name} from {peer_addr} to port {port_text}"
        role = " (the client's ephemeral port)" if reply else " (the service port)"
    else:
        wanted = f"{_wanted(packet)} {way} {peer_addr}"
        role = ""
    catch_all = entry is None or entry.catch_all
    if catch_all:
        subject = "the ephemeral port" if reply and packet.proto in (TCP, UDP) else _wanted(packet)
        run.summary = (
            f"dropped by the subnet's ACL on the {path} path, no {word} rule for {subject}"
        )
        stopper = (
            "the implicit deny (*) drops it"
            if entry is None
            else f"rule {entry.number} ({entry.describe()}, {entry.origin}) drops it"
        )
        run.fault = f"no {word} rule of {acl.label} allows {wanted}{role}; {stopper}"
        below = f" numbered below {entry.number}" if entry is not None else ""
        if reply and packet.proto in (TCP, UDP):
            peer = "0.0.0.0/0" if packet.version == 4 else "::/0"
            run.fix = (
                f"add an {word} rule to {acl.label}{below}: allow "
                f"{protocol_name(packet.proto)} {way} {peer} ports {EPHEMERAL_AWS} "
                "(AWS's advice: it covers every client's ephemeral range)"
            )
        else:
            run.fix = f"add an {word} rule to {acl.label}{below}: allow {wanted}"
        return
    assert entry is not None
    run.summary = (
        f"dropped by the subnet's ACL on the {path} path: {word} rule {entry.number} denies it"
    )
    run.fault = (
        f"rule {entry.number} of {acl.label} ({entry.describe()}, {entry.origin}) denies "
        f"{wanted}{role}"
    )
    run.fix = (
        f"narrow rule {entry.number}, or add an allow rule numbered below {entry.number} "
        "(the lowest matching number decides)"
    )


def _addr_text(packet: Packet, direction: Direction) -> str:
    addr = packet.dst if direction is Direction.EGRESS else packet.src
    return str(IPRange(packet.version, addr, addr))


def _other_clients(run: _Run, port: int | None) -> None:
    """With no --sport: say which client ports outside Linux's range the ACLs drop on
    the reply path (NAT gateways and Windows clients use them)."""
    if not run.crosses or run.proto not in (TCP, UDP):
        return
    a, b = run.a, run.b
    reply = Packet(a.version, b.addr, a.addr, run.proto, port or 0, EPHEMERAL_AWS.lo)
    live = [EPHEMERAL_AWS]
    for subnet, direction in ((b.subnet, Direction.EGRESS), (a.subnet, Direction.INGRESS)):
        if subnet is None or not live:
            continue
        pieces = judge_ports(acl_ruleset(subnet.acl, direction), reply, live)
        live = [r for r, v in pieces if v.action is Action.ACCEPT]
    lost = _complement(live, EPHEMERAL_AWS)
    if lost:
        run.notes.append(
            f"the reply path drops client ports {_ports_text(lost)}: clients that use them time out"
        )
    else:
        run.notes.append(f"the reply path passes every client port {EPHEMERAL_AWS}")
