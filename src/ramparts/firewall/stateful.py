"""The rule set with connection tracking in front of it (and, for comparison, without).

What it owns: the order of one packet's decision. :class:`StatefulFirewall` asks the
tracker what the packet is (new, established, related, invalid), sets ``packet.ct_state``,
lets the rule set decide (first match, default policy), and only when the verdict accepts
does the tracker create or advance the flow. So a dropped SYN leaves no flow behind, and a
dropped (say, spoofed) RST or FIN cannot tear down a live one. The kernel differs here: its
conntrack runs before the filter table and advances a flow's TCP state even for a packet
the filter later drops; only new, unconfirmed entries vanish with a dropped packet.

When a packet the rules accept would open a flow and the table is full, the packet is
dropped and the decision names ``conntrack:table-full`` instead of a rule (the kernel's
"nf_conntrack: table full, dropping packet"). Here the rules run first, so a packet they
drop anyway is charged to its rule, not to the full table.

:class:`StatelessFirewall` evaluates the rules alone (``ct_state`` stays None, so rules that
match on it never match): the packet filter of scenario 2, which must allow replies
explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ..net.packet import Packet
from .conntrack import Classification, ConnTracker, FlowTuple, Outcome
from .model import Action, RuleSet, Verdict, evaluate

__all__ = [
    "TABLE_FULL",
    "Decision",
    "Evaluator",
    "Firewall",
    "StatefulFirewall",
    "StatelessFirewall",
]

#: ``decided_by`` of a packet dropped because the connection table was full.
TABLE_FULL = "conntrack:table-full"

Evaluator = Callable[[RuleSet, Packet], Verdict]


@dataclass(frozen=True, slots=True)
class Decision:
    """One packet's fate: the rules' verdict, the packet as they saw it (``ct_state`` set)
    and, when tracking, what the tracker made of it."""

    rule_verdict: Verdict
    packet: Packet
    tracking: Classification | None = None

    @property
    def refused(self) -> bool:
        """The rules accepted, but the full connection table refused the new flow."""
        return self.tracking is not None and self.tracking.outcome is Outcome.REFUSED

    @property
    def verdict(self) -> Verdict:
        """The verdict that applies: the rules', or a DROP by no rule when refused."""
        if self.refused:
            return Verdict(Action.DROP, None, None)
        return self.rule_verdict

    @property
    def action(self) -> Action:
        return self.verdict.action

    @property
    def allowed(self) -> bool:
        return self.action is Action.ACCEPT

    @property
    def decided_by(self) -> str:
        return TABLE_FULL if self.refused else self.rule_verdict.decided_by

    @property
    def ct_state(self) -> str | None:
        return self.packet.ct_state


class Firewall(Protocol):
    def decide(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Decision: ...

    def check(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Verdict: ...


class StatefulFirewall:
    """Rules plus connection tracking. ``evaluator`` is the first-match function (the
    reference :func:`~ramparts.firewall.model.evaluate` unless a compiled one is given)."""

    def __init__(
        self,
        ruleset: RuleSet,
        conntrack: ConnTracker | None = None,
        *,
        evaluator: Evaluator = evaluate,
    ) -> None:
        self.ruleset = ruleset
        self.conntrack = conntrack if conntrack is not None else ConnTracker()
        self._evaluate = evaluator

    def decide(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Decision:
        """Classify, evaluate with ``ct_state`` set, and commit only if accepted.
        ``icmp_id`` and ``inner``: see :meth:`ConnTracker.classify`."""
        c = self.conntrack.classify(packet, now, icmp_id=icmp_id, inner=inner)
        seen = replace(packet, ct_state=c.ct_state)
        verdict = self._evaluate(self.ruleset, seen)
        if verdict.action is Action.ACCEPT:
            c = self.conntrack.commit(c, now)
        return Decision(verdict, seen, c)

    def check(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Verdict:
        """The verdict alone. A refusal by the full table is a DROP with no rule; use
        :meth:`decide` to tell it from the default policy."""
        return self.decide(packet, now, icmp_id=icmp_id, inner=inner).verdict


class StatelessFirewall:
    """Rules alone: every packet judged on its own header, as a classic packet filter (or
    a cloud network ACL) does. Same interface as :class:`StatefulFirewall`."""

    def __init__(self, ruleset: RuleSet, *, evaluator: Evaluator = evaluate) -> None:
        self.ruleset = ruleset
        self._evaluate = evaluator

    def decide(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Decision:
        return Decision(self._evaluate(self.ruleset, packet), packet)

    def check(
        self,
        packet: Packet,
        now: float,
        *,
        icmp_id: int | None = None,
        inner: FlowTuple | None = None,
    ) -> Verdict:
        return self.decide(packet, now, icmp_id=icmp_id, inner=inner).verdict
