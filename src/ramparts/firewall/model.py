"""The rule model and the reference semantics: an ordered rule set in which the first
matching rule decides and a default policy (deny unless said otherwise) decides the rest.

``evaluate`` is the linear reference every faster form (the compiled classifier, the
kernel via nftables) is checked against; keep it obviously correct, not fast.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..net.addr import IPSet
from ..net.packet import Packet
from ..net.ports import PortRange
from ..net.proto import protocol_name

__all__ = ["CT_STATES", "Action", "Rule", "RuleSet", "Verdict", "evaluate"]

CT_STATES = frozenset({"new", "established", "related", "invalid"})
REJECT_WITH = frozenset(
    {
        "tcp-reset",
        "icmp-port-unreachable",
        "icmp-host-unreachable",
        "icmp-net-unreachable",
        "icmp-admin-prohibited",
        "icmpv6-port-unreachable",
        "icmpv6-admin-prohibited",
    }
)


class Action(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"

    @classmethod
    def parse(cls, text: str) -> Action:
        t = text.strip().lower()
        aliases = {"allow": "accept", "permit": "accept", "deny": "drop", "block": "drop"}
        t = aliases.get(t, t)
        try:
            return cls(t)
        except ValueError:
            raise ValueError(f"unknown action {text!r} (accept/allow, drop/deny, reject)") from None

    @property
    def allows(self) -> bool:
        return self is Action.ACCEPT


def _in_ports(port: int, ranges: tuple[PortRange, ...]) -> bool:
    return any(r.lo <= port <= r.hi for r in ranges)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; a field left as None matches anything."""

    action: Action
    id: str = ""
    src: IPSet | None = None
    dst: IPSet | None = None
    proto: int | None = None
    sport: tuple[PortRange, ...] | None = None
    dport: tuple[PortRange, ...] | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    tcp_flags: tuple[int, int] | None = None  # (mask, value): (flags & mask) == value
    direction: str | None = None
    # the interface the packet arrives on (direction in, or a forwarded packet), or for
    # direction out the one it leaves by
    iface: str | None = None
    # the interface a forwarded packet leaves by (nftables oifname, iptables -o in FORWARD)
    out_iface: str | None = None
    ct_state: frozenset[str] | None = None
    reject_with: str | None = None
    comment: str = ""
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.sport is not None or self.dport is not None) and self.proto not in (6, 17, 132):
            raise ValueError("ports need protocol tcp, udp or sctp")
        if (self.icmp_type is not None or self.icmp_code is not None) and self.proto not in (
            1,
            58,
        ):
            raise ValueError("an ICMP type or code needs protocol icmp or icmpv6")
        if self.icmp_code is not None and self.icmp_type is None:
            raise ValueError("an ICMP code needs an ICMP type")
        for name, v in (("ICMP type", self.icmp_type), ("ICMP code", self.icmp_code)):
            if v is not None and not 0 <= v <= 255:
                raise ValueError(f"{name} out of range: {v}")
        if self.proto is not None and not 0 <= self.proto <= 255:
            raise ValueError(f"protocol number out of range: {self.proto}")
        if self.tcp_flags is not None:
            if self.proto != 6:
                raise ValueError("TCP flags need protocol tcp")
            mask, value = self.tcp_flags
            if value & ~mask:
                raise ValueError("TCP flags: the value has flags outside the mask")
        if self.sport == () or self.dport == ():
            raise ValueError("an empty port list matches nothing")
        if self.direction not in (None, "in", "out"):
            raise ValueError(f"direction is in or out, not {self.direction!r}")
        if self.out_iface is not None and self.direction is not None:
            raise ValueError(
                "out_iface is the output interface of a forwarded packet; a packet the host "
                "sends is direction out with iface"
            )
        if self.ct_state is not None and not self.ct_state <= CT_STATES:
            bad = ", ".join(sorted(self.ct_state - CT_STATES))
            raise ValueError(f"unknown connection state {bad} (new, established, ...)")
        if self.reject_with is not None:
            if self.action is not Action.REJECT:
                raise ValueError("reject_with needs action reject")
            if self.reject_with not in REJECT_WITH:
                raise ValueError(f"unknown reject type {self.reject_with!r}")
            if self.reject_with == "tcp-reset" and self.proto != 6:
                raise ValueError("reject with tcp-reset needs protocol tcp")
        if (
            self.src is not None
            and self.dst is not None
            and not (self.src.versions & self.dst.versions)
        ):
            raise ValueError("source and destination have no IP version in common")

    def matches(self, p: Packet) -> bool:
        if self.proto is not None and p.proto != self.proto:
            return False
        if self.src is not None and not self.src.contains(p.version, p.src):
            return False
        if self.dst is not None and not self.dst.contains(p.version, p.dst):
            return False
        if self.sport is not None and not _in_ports(p.sport, self.sport):
            return False
        if self.dport is not None and not _in_ports(p.dport, self.dport):
            return False
        if self.icmp_type is not None and p.icmp_type != self.icmp_type:
            return False
        if self.icmp_code is not None and p.icmp_code != self.icmp_code:
            return False
        if self.tcp_flags is not None and (p.tcp_flags & self.tcp_flags[0]) != self.tcp_flags[1]:
            return False
        if self.direction is not None and p.direction != self.direction:
            return False
        if self.iface is not None and p.iface != self.iface:
            return False
        if self.out_iface is not None and p.out_iface != self.out_iface:
            return False
        return self.ct_state is None or p.ct_state in self.ct_state

    def describe(self) -> str:
        """A one-line summary for tables and traces."""
        parts = [self.action.value]
        if self.reject_with:
            parts.append(f"with {self.reject_with}")
        parts.append(protocol_name(self.proto))
        parts.append(f"from {self.src or 'any'}")
        if self.sport:
            parts.append(f"port {','.join(map(str, self.sport))}")
        parts.append(f"to {self.dst or 'any'}")
        if self.dport:
            parts.append(f"port {','.join(map(str, self.dport))}")
        if self.icmp_type is not None:
            parts.append(f"type {self.icmp_type}")
            if self.icmp_code is not None:
                parts.append(f"code {self.icmp_code}")
        if self.tcp_flags is not None:
            parts.append(f"flags {self.tcp_flags[1]:#04x}/{self.tcp_flags[0]:#04x}")
        if self.ct_state:
            parts.append("state " + ",".join(sorted(self.ct_state)))
        if self.direction:
            parts.append(self.direction)
        if self.iface:
            parts.append(f"on {self.iface}")
        if self.out_iface:
            parts.append(f"out via {self.out_iface}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What decided: the rule (with its 1-based position) or, if none matched, the default."""

    action: Action
    rule: Rule | None
    index: int | None

    @property
    def by_default(self) -> bool:
        return self.rule is None

    @property
    def decided_by(self) -> str:
        if self.rule is None or self.index is None:
            return "firewall:default"
        return f"firewall:{self.rule.id or f'rule-{self.index}'}"


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Rules in priority order and the default policy."""

    rules: tuple[Rule, ...]
    default: Action = Action.DROP
    name: str = ""

    @classmethod
    def of(cls, rules: Sequence[Rule], default: Action = Action.DROP, name: str = "") -> RuleSet:
        return cls(tuple(rules), default, name)


def evaluate(ruleset: RuleSet, packet: Packet) -> Verdict:
    """The reference: the first rule that matches decides; otherwise the default."""
    for i, rule in enumerate(ruleset.rules, 1):
        if rule.matches(packet):
            return Verdict(rule.action, rule, i)
    return Verdict(ruleset.default, None, None)
