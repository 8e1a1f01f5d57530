"""Shared cases for the iptables tests (unit and kernel): the golden files, a YAML writer
for the expected rule sets, packet samplers and universes, and the random rule sets of
the render -> load round trip."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable

from hypothesis import strategies as st

from ramparts.firewall.files import TCP_FLAGS
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import IPSet, Packet, parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, SYN
from ramparts.net.proto import protocol_name

from ....support import ROOT

DATA = ROOT / "tests" / "data" / "firewall" / "iptables"

# -- golden files ---------------------------------------------------------------------------

FLAG_NAMES = {bit: name for name, bit in TCP_FLAGS.items()}
STATES = ("new", "established", "related", "invalid")


def _flags(bits: int) -> str:
    names = [FLAG_NAMES[b] for b in sorted(FLAG_NAMES) if bits & b]
    return ",".join(names) if names else "none"


def golden_yaml(rs: RuleSet, title: str) -> str:
    """A rule set in the project's YAML rule format (docs/firewall-rules.md)."""
    out = [f"# {title}", f"default: {rs.default.value}", "rules:"]
    for r in rs.rules:
        out.append(f"  - id: {json.dumps(r.id)}")
        out.append(f"    action: {r.action.value}")
        if r.proto is not None:
            out.append(f"    proto: {protocol_name(r.proto)}")
        for key, s in (("src", r.src), ("dst", r.dst)):
            if s is not None:
                out.append(f"    {key}: {json.dumps([str(x) for x in s.ranges])}")
        for key, ports in (("sport", r.sport), ("dport", r.dport)):
            if ports is not None:
                out.append(f"    {key}: {json.dumps([str(x) for x in ports])}")
        if r.icmp_type is not None:
            out.append(f"    icmp_type: {r.icmp_type}")
        if r.icmp_code is not None:
            out.append(f"    icmp_code: {r.icmp_code}")
        if r.tcp_flags is not None:
            out.append(f"    tcp_flags: {_flags(r.tcp_flags[0])}/{_flags(r.tcp_flags[1])}")
        if r.direction is not None:
            out.append(f"    direction: {r.direction}")
        if r.iface is not None:
            out.append(f"    iface: {json.dumps(r.iface)}")
        if r.out_iface is not None:
            out.append(f"    out_iface: {json.dumps(r.out_iface)}")
        if r.ct_state is not None:
            out.append(f"    state: {json.dumps([s for s in STATES if s in r.ct_state])}")
        if r.reject_with is not None:
            out.append(f"    reject_with: {r.reject_with}")
        if r.comment:
            out.append(f"    comment: {json.dumps(r.comment)}")
    return "\n".join(out) + "\n"


def source_line(text: str, rule_id: str) -> int:
    """The line of ``text`` a flattened rule names: ``chain/n`` is the chain's nth rule,
    ``chain/policy`` its policy line, ``chain/not-ipv6`` the *filter line."""
    chain, _, what = rule_id.split("~")[0].rpartition("/")
    lines = text.splitlines()
    if what == "policy":
        return next(i for i, ln in enumerate(lines, 1) if ln.startswith(f":{chain} "))
    if what.startswith("not-ipv"):
        return lines.index("*filter") + 1
    found = [i for i, ln in enumerate(lines, 1) if ln.startswith(f"-A {chain} ")]
    return found[int(what) - 1]


def direction_of(chain: str) -> str | None:
    """The direction of the packets a built-in chain sees (a forwarded packet has none)."""
    return {"INPUT": "in", "OUTPUT": "out", "FORWARD": None}[chain]


def sample_packets(
    rulesets: Iterable[RuleSet], version: int, direction: str | None, count: int, seed: int
) -> list[Packet]:
    """Packets whose fields sit on and next to every boundary the rules draw (addresses,
    ports, ICMP types, interfaces), with random flags and states; a few of the other IP
    version. Direction None: forwarded packets, with an output interface too. Seeded, so
    a failure repeats."""
    rng = random.Random(seed)
    addrs: dict[int, set[int]] = {4: {0, 0x0A000001, 0xC0000201}, 6: {0, 1, 0x20010DB8 << 96}}
    ports = {0, 22, 53, 80, 443, 1024, 65535}
    icmp = {0, 3, 8, 11, 128, 135}
    ifaces = {"eth0", "lo"}
    for rs in rulesets:
        for r in rs.rules:
            for s in (r.src, r.dst):
                for rng_ in s.ranges if s is not None else ():
                    top = (1 << (32 if rng_.version == 4 else 128)) - 1
                    for a in (rng_.lo - 1, rng_.lo, rng_.hi, rng_.hi + 1):
                        if 0 <= a <= top:
                            addrs[rng_.version].add(a)
            for pr in (r.sport or ()) + (r.dport or ()):
                ports |= {max(pr.lo - 1, 0), pr.lo, pr.hi, min(pr.hi + 1, 65535)}
            if r.icmp_type is not None:
                icmp.add(r.icmp_type)
            ifaces |= {name for name in (r.iface, r.out_iface) if name is not None}
    packets = []
    for n in range(count):
        v = version if n % 20 else 10 - version
        pool = sorted(addrs[v])
        proto = rng.choice([6, 6, 6, 17, 17, 1 if v == 4 else 58, 1 if v == 4 else 58, 47])
        extra: dict[str, object] = {}
        sport = dport = 0
        if proto in (6, 17):
            sport, dport = rng.choice(sorted(ports)), rng.choice(sorted(ports))
        if proto == 6:
            extra["tcp_flags"] = rng.choice([SYN, ACK, SYN | ACK, FIN | ACK, 0, 0x3F, FIN | SYN])
        if proto in (1, 58):
            extra["icmp_type"] = rng.choice(sorted(icmp))
            extra["icmp_code"] = rng.choice([0, 4])
        if direction is None:
            extra["out_iface"] = rng.choice(sorted(ifaces))
        packets.append(
            Packet(
                v,
                rng.choice(pool),
                rng.choice(pool),
                proto,
                sport,
                dport,
                direction=direction,
                iface=rng.choice(sorted(ifaces)),
                ct_state=rng.choice(STATES),
                **extra,  # type: ignore[arg-type]
            )
        )
    return packets


def decision(rs: RuleSet, p: Packet) -> tuple[str, str | None]:
    v = evaluate(rs, p)
    if v.action is not Action.REJECT:
        return v.action.name, None
    assert v.rule is not None
    return "REJECT", v.rule.reject_with


GOLDEN = [
    ("ufw-webserver.rules", "INPUT", 4),
    ("ufw-webserver.rules", "OUTPUT", 4),
    ("gateway.rules", "INPUT", 4),
    ("webserver6.rules", "INPUT", 6),
    ("docker.rules", "INPUT", 4),
    ("docker.rules", "FORWARD", 4),
    ("router.rules", "FORWARD", 4),
    ("router.rules", "INPUT", 4),
]


# -- random rule sets for render -> load ------------------------------------------------

# Sets whose complement is one prefix (10.0.0.0/8, 2001:db8::/32) are written '! -s P'.
NOT_10 = ("0.0.0.0-9.255.255.255", "11.0.0.0-255.255.255.255")
NOT_DB8 = ("::-2001:db7" + ":ffff" * 6, "2001:db9::-ffff" + ":ffff" * 7)
ADDRS = [None, "10.0.0.0/24", "10.0.0.2", "10.0.0.1-10.0.0.5", "2001:db8::/64", NOT_10,
         NOT_DB8, ("10.0.0.0/30", "192.0.2.0/25"), ("10.0.0.7", "2001:db8:1::/48")]  # fmt: skip
PORTS = [None, "22", "80-443", [22, 80, 8080], [*range(2, 40, 2)], [2, "30-38", 81]]
REJECTS = [None, "icmp-port-unreachable", "icmp-admin-prohibited", "icmpv6-port-unreachable",
           "icmpv6-admin-prohibited"]  # fmt: skip


@st.composite
def model_rules(draw: st.DrawFn, forward: bool = False) -> Rule:
    """A random rule; ``forward``: mostly without a direction, with an output interface
    (a rule with a direction never matches a forwarded packet)."""
    action = draw(st.sampled_from(list(Action)))
    proto = draw(st.sampled_from([None, 6, 17, 1, 58, 47]))
    src, dst = draw(st.sampled_from(ADDRS)), draw(st.sampled_from(ADDRS))
    kw: dict[str, object] = {
        "src": parse_ipset(src) if src else None,
        "dst": parse_ipset(dst) if dst else None,
        "direction": draw(st.sampled_from([None, None, None, "in"] if forward
                                          else [None, None, "in", "out"])),
        "iface": draw(st.sampled_from([None, None, "eth0", "lo"])),
        "ct_state": draw(st.sampled_from([None, None, frozenset({"new"}),
                                          frozenset({"established", "related"})])),
    }  # fmt: skip
    if proto in (6, 17):
        kw["sport"] = parse_ports(s) if (s := draw(st.sampled_from(PORTS))) else None
        kw["dport"] = parse_ports(d) if (d := draw(st.sampled_from(PORTS))) else None
    if proto == 6:
        kw["tcp_flags"] = draw(st.sampled_from([None, (SYN | ACK, SYN), (0x3F, ACK)]))
    if proto in (1, 58):
        kind = draw(st.sampled_from([None, 8, 128, 3]))
        kw["icmp_type"] = kind
        if kind == 3:
            kw["icmp_code"] = 4
    if action is Action.REJECT:
        types = REJECTS + (["tcp-reset"] if proto == 6 else [])
        kw["reject_with"] = draw(st.sampled_from(types))
    if kw["direction"] is None:
        kw["out_iface"] = draw(st.sampled_from([None, "eth1", "lo"] if forward else [None] * 5
                                               + ["eth1"]))  # fmt: skip
    src, dst = kw["src"], kw["dst"]
    if isinstance(src, IPSet) and isinstance(dst, IPSet) and not src.versions & dst.versions:
        kw["dst"] = None
    return Rule(action, proto=proto, **kw)  # type: ignore[arg-type]


def round_trip_universe(version: int, direction: str | None) -> list[Packet]:
    """Packets of the values the random rules tell apart; direction None: forwarded ones,
    in by eth0 or lo, out by eth1 or lo."""
    if version == 4:
        srcs, dsts, icmp = (
            ["10.0.0.2", "10.0.0.7", "192.0.2.5"],
            ["10.0.0.2", "192.0.2.200"],
            "icmp",
        )
    else:
        srcs, dsts = (
            ["2001:db8::5", "2001:db8:1::5", "2001:dbf::1"],
            ["2001:db8::2", "2001:db8:2::1"],
        )
        icmp = "icmpv6"
    shapes: list[tuple[str, int, int, dict[str, int]]] = []
    for sport in (2, 1000):
        for dport in (2, 3, 22, 30, 32, 81, 8080):
            for flags in (SYN, ACK):
                shapes.append(("tcp", sport, dport, {"tcp_flags": flags}))
            shapes.append(("udp", sport, dport, {}))
    shapes += [(icmp, 0, 0, {"icmp_type": t, "icmp_code": 4}) for t in (8, 128, 3)]
    shapes.append(("47", 0, 0, {}))
    outs: tuple[str | None, ...] = ("eth1", "lo") if direction is None else (None,)
    out = []
    for src in srcs:
        for dst in dsts:
            for proto, sport, dport, extra in shapes:
                for iface in ("eth0", "lo"):
                    for out_iface in outs:
                        for state in ("new", "established", None):
                            out.append(Packet.make(
                                src, dst, proto, sport, dport, direction=direction, iface=iface,
                                out_iface=out_iface, ct_state=state, **extra))  # fmt: skip
    return out


RT_UNIVERSE = {(v, d): round_trip_universe(v, d) for v in (4, 6) for d in ("in", "out", None)}
KINDS = {"icmp-port-unreachable": "port", "icmpv6-port-unreachable": "port",
         "icmp-admin-prohibited": "admin", "icmpv6-admin-prohibited": "admin",
         "tcp-reset": "tcp-reset", None: "port"}  # fmt: skip


def reject_kind(rs: RuleSet, p: Packet) -> tuple[Action, str | None]:
    """The verdict and, for a reject, its kind (the ICMP version follows the packet's)."""
    v = evaluate(rs, p)
    if v.action is not Action.REJECT:
        return v.action, None
    return v.action, KINDS[v.rule.reject_with if v.rule else None]
