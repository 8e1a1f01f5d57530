"""A direct interpreter of iptables-save text, for tests: it walks the chains packet by
packet as netfilter does (jumps, goto, RETURN, falling off, the policy) and tests each
option on the packet itself. It shares no code with formats/iptables.py (its own
tokenizer, addresses via ``ipaddress``, its own option table), knows only the options the
test files use and fails on any other a packet reaches, so it never ignores a match. The
flattened rule sets of the importer are checked against it, packet by packet.

A packet of the INPUT chain has ``iface`` as its input interface and no output interface;
of the OUTPUT chain, the reverse; a packet of the FORWARD chain has both, ``iface`` in and
``out_iface`` out. The table of one IP version lets the other version's
packets through (ACCEPT), as the importer's first rule says.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from ramparts.net.packet import Packet

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}
PROTOCOLS |= {"gre": 47, "esp": 50, "ah": 51}
FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ALL": 63, "NONE": 0}
REJECT = {
    "icmp-port-unreachable": "icmp-port-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable",
    "icmp-net-unreachable": "icmp-net-unreachable",
    "icmp-admin-prohibited": "icmp-admin-prohibited",
    "icmp6-port-unreachable": "icmpv6-port-unreachable",
    "icmp6-adm-prohibited": "icmpv6-admin-prohibited",
    "tcp-reset": "tcp-reset",
}
# option -> number of values; options that only load or annotate are listed as skipped.
ARITY = {
    "-s": 1, "-d": 1, "-p": 1, "-i": 1, "-o": 1, "--sport": 1, "--dport": 1,
    "--sports": 1, "--dports": 1, "--ports": 1, "--icmp-type": 1, "--icmpv6-type": 1,
    "--ctstate": 1, "--state": 1, "--tcp-flags": 2, "--syn": 0, "--src-range": 1,
    "--dst-range": 1,
}  # fmt: skip
SKIPPED = {"-m": 1, "--comment": 1, "--log-prefix": 1, "--log-level": 1, "--limit": 1}
SKIPPED |= {"--limit-burst": 1}


@dataclass
class OracleRule:
    tests: list[tuple[bool, str, list[str]]]  # (negated, option, values)
    target: str | None
    goto: bool = False
    reject_with: str | None = None


@dataclass
class OracleChain:
    policy: str | None
    rules: list[OracleRule] = field(default_factory=list)


class Oracle:
    """The filter table of one iptables-save text, interpreted."""

    def __init__(self, text: str, version: int = 4) -> None:
        self.version = version
        self.chains: dict[str, OracleChain] = {}
        table = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                table = line[1:]
            elif line == "COMMIT" or table != "filter":
                continue
            elif line.startswith(":"):
                name, policy = line[1:].split()[:2]
                self.chains[name] = OracleChain(None if policy == "-" else policy)
            else:
                words = shlex.split(line)
                assert words[0] == "-A", line
                self.chains[words[1]].rules.append(self._rule(words[2:]))

    def _rule(self, words: list[str]) -> OracleRule:
        rule = OracleRule([], None)
        i, negated = 0, False
        while i < len(words):
            w = words[i]
            if w == "!":
                negated = True
                i += 1
                continue
            if w in ("-j", "-g"):
                rule.target, rule.goto = words[i + 1], w == "-g"
                i += 2
            elif w == "--reject-with":
                rule.reject_with = words[i + 1]
                i += 2
            elif w in ARITY:
                rule.tests.append((negated, w, words[i + 1 : i + 1 + ARITY[w]]))
                i += 1 + ARITY[w]
            elif w in SKIPPED:
                i += 1 + SKIPPED[w]
            else:  # not known: fails the test only if a packet ever reaches it
                j = i + 1
                while j < len(words) and not words[j].startswith("-") and words[j] != "!":
                    j += 1
                rule.tests.append((negated, "?", words[i:j]))
                i = j
            negated = False
        return rule

    def decide(self, chain: str, p: Packet) -> tuple[str, str | None]:
        """(ACCEPT/DROP/REJECT, the reject type in the model's words or None)."""
        if p.version != self.version:
            return "ACCEPT", None
        policy = self.chains[chain].policy
        assert policy is not None
        stack: list[tuple[str, int]] = []
        name, i = chain, 0
        for _ in range(100_000):
            rules = self.chains[name].rules
            if i >= len(rules):
                if not stack:
                    return policy, None
                name, i = stack.pop()
                continue
            rule = rules[i]
            i += 1
            if rule.target in (None, "LOG") or not self._matches(rule, p, chain):
                continue
            if rule.target in ("ACCEPT", "DROP"):
                return rule.target, None
            if rule.target == "REJECT":
                default = "icmp-port-unreachable" if self.version == 4 else "icmp6-port-unreachable"
                return "REJECT", REJECT[rule.reject_with or default]
            if rule.target == "RETURN":
                if not stack:
                    return policy, None
                name, i = stack.pop()
                continue
            if not rule.goto:
                stack.append((name, i))
            name, i = rule.target, 0
        raise AssertionError("the walk does not end")

    def _matches(self, rule: OracleRule, p: Packet, chain: str) -> bool:
        return all(self._test(opt, values, p, chain) != neg for neg, opt, values in rule.tests)

    def _test(self, opt: str, values: list[str], p: Packet, chain: str) -> bool:
        v = values[0] if values else ""
        if opt in ("-s", "-d"):
            net = ipaddress.ip_network(v, strict=False)
            addr = p.src if opt == "-s" else p.dst
            return net.version == p.version and int(net.network_address) <= addr <= int(
                net.broadcast_address
            )
        if opt in ("--src-range", "--dst-range"):
            lo, hi = (ipaddress.ip_address(x) for x in v.split("-"))
            addr = p.src if opt == "--src-range" else p.dst
            return lo.version == p.version and int(lo) <= addr <= int(hi)
        if opt == "-p":
            return v == "all" or p.proto == (int(v) if v.isdigit() else PROTOCOLS[v])
        if opt in ("-i", "-o"):
            return _interface(chain, opt, p) == v
        if opt in ("--sport", "--dport"):
            return _in_ports(p.sport if opt == "--sport" else p.dport, v)
        if opt in ("--sports", "--dports"):
            port = p.sport if opt == "--sports" else p.dport
            return any(_in_ports(port, item) for item in v.split(","))
        if opt == "--ports":
            return any(_in_ports(p.sport, x) or _in_ports(p.dport, x) for x in v.split(","))
        if opt in ("--icmp-type", "--icmpv6-type"):
            if v == "any":
                return True
            kind, _, code = v.partition("/")
            return p.icmp_type == int(kind) and (not code or p.icmp_code == int(code))
        if opt in ("--ctstate", "--state"):
            return p.ct_state is not None and p.ct_state.upper() in v.split(",")
        if opt == "--tcp-flags":
            mask = sum(FLAGS[f] for f in values[0].split(","))
            comp = sum(FLAGS[f] for f in values[1].split(","))
            return p.tcp_flags & mask == comp
        if opt == "--syn":
            return p.tcp_flags & 0x17 == 0x02
        raise AssertionError(f"the oracle does not know {' '.join(values)}")


def _interface(chain: str, opt: str, p: Packet) -> str | None:
    """The packet's input (-i) or output (-o) interface in ``chain``; None if it has none."""
    if chain == "FORWARD":
        return p.iface if opt == "-i" else p.out_iface
    return p.iface if (opt == "-i") == (chain == "INPUT") else None


def _in_ports(port: int, spec: str) -> bool:
    lo, colon, hi = spec.partition(":")
    if not colon:
        return port == int(spec)
    return int(lo or 0) <= port <= int(hi or 65535)
