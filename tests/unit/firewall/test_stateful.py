"""The rule set with connection tracking: the classic "established, related; new outbound"
policy, flows created only by accepted packets, the full table, and scenario 2 (stateful
versus stateless)."""

from __future__ import annotations

from ramparts.clock import FakeClock
from ramparts.firewall.conntrack import ConnTracker, TcpState, flow_tuple
from ramparts.firewall.model import Action, Rule, RuleSet, Verdict, evaluate
from ramparts.firewall.stateful import TABLE_FULL, StatefulFirewall, StatelessFirewall
from ramparts.net import parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, PSH, RST, SYN, Packet

INSIDE, OUTSIDE = "192.0.2.10", "203.0.113.5"

CLASSIC = RuleSet.of(
    [
        Rule(Action.ACCEPT, id="est", ct_state=frozenset({"established", "related"})),
        Rule(Action.ACCEPT, id="new-out", direction="out", ct_state=frozenset({"new"})),
        Rule(Action.DROP, id="new-in", direction="in", ct_state=frozenset({"new"})),
    ]
)


def out(flags: int, sport: int = 51000, dport: int = 443) -> Packet:
    return Packet.make(INSIDE, OUTSIDE, "tcp", sport, dport, tcp_flags=flags, direction="out")


def back(flags: int, sport: int = 443, dport: int = 51000) -> Packet:
    return Packet.make(OUTSIDE, INSIDE, "tcp", sport, dport, tcp_flags=flags, direction="in")


def test_outbound_connection_and_all_its_replies_pass_the_classic_policy() -> None:
    clock = FakeClock()
    fw = StatefulFirewall(CLASSIC)
    exchange = [
        (out(SYN), "new", "firewall:new-out"),
        (back(SYN | ACK), "established", "firewall:est"),
        (out(ACK), "established", "firewall:est"),
        (out(PSH | ACK), "established", "firewall:est"),
        (back(PSH | ACK), "established", "firewall:est"),
        (back(FIN | ACK), "established", "firewall:est"),
        (out(FIN | ACK), "established", "firewall:est"),
        (back(ACK), "established", "firewall:est"),
    ]
    for packet, state, decided_by in exchange:
        clock.advance(0.01)
        d = fw.decide(packet, clock.now())
        assert (d.allowed, d.ct_state, d.decided_by) == (True, state, decided_by), packet
    flow = fw.conntrack.lookup(out(ACK), clock.now())
    assert flow is not None and flow.tcp_state is TcpState.TIME_WAIT


def test_unsolicited_inbound_syn_ack_is_invalid_and_dropped() -> None:
    fw = StatefulFirewall(CLASSIC)
    d = fw.decide(back(SYN | ACK), 0.0)
    assert d.ct_state == "invalid"
    assert d.action is Action.DROP and d.decided_by == "firewall:default"
    assert d.tracking is not None and d.tracking.reason == "SYN-ACK with no flow"
    assert len(fw.conntrack) == 0


def test_inbound_new_connection_is_dropped_and_leaves_no_flow() -> None:
    fw = StatefulFirewall(CLASSIC)
    d = fw.decide(back(SYN, sport=40000, dport=22), 0.0)
    assert (d.action, d.decided_by, d.ct_state) == (Action.DROP, "firewall:new-in", "new")
    assert len(fw.conntrack) == 0
    # so the inside host's answer, had it seen the SYN, would be invalid too
    answer = out(SYN | ACK, sport=22, dport=40000)
    assert fw.decide(answer, 0.1).ct_state == "invalid"


def test_a_dropped_syn_creates_no_flow_and_its_syn_ack_is_invalid() -> None:
    rules = RuleSet.of(
        [
            Rule(Action.DROP, id="no-telnet", proto=6, dport=parse_ports(23)),
            *CLASSIC.rules,
        ]
    )
    fw = StatefulFirewall(rules)
    d = fw.decide(out(SYN, dport=23), 0.0)
    assert (d.action, d.decided_by) == (Action.DROP, "firewall:no-telnet")
    assert len(fw.conntrack) == 0
    d = fw.decide(back(SYN | ACK, sport=23), 0.1)
    assert (d.ct_state, d.action) == ("invalid", Action.DROP)


def test_a_dropped_rst_does_not_tear_down_the_flow() -> None:
    no_inbound_rst = Rule(
        Action.DROP, id="no-rst-in", proto=6, tcp_flags=(RST, RST), direction="in"
    )
    fw = StatefulFirewall(RuleSet.of([no_inbound_rst, *CLASSIC.rules]))
    for p in (out(SYN), back(SYN | ACK), out(ACK)):
        assert fw.decide(p, 0.0).allowed
    d = fw.decide(back(RST | ACK), 1.0)  # e.g. spoofed
    assert d.decided_by == "firewall:no-rst-in"
    flow = fw.conntrack.lookup(out(ACK), 1.0)
    assert flow is not None and flow.tcp_state is TcpState.ESTABLISHED


def test_invalid_packets_the_rules_accept_still_create_nothing() -> None:
    fw = StatefulFirewall(RuleSet.of([], default=Action.ACCEPT))
    d = fw.decide(back(SYN | ACK), 0.0)
    assert d.allowed and d.ct_state == "invalid"
    assert len(fw.conntrack) == 0


def test_a_rejected_syn_creates_no_flow() -> None:
    reject = Rule(Action.REJECT, id="rej", proto=6, reject_with="tcp-reset")
    fw = StatefulFirewall(RuleSet.of([reject]))
    assert fw.decide(out(SYN), 0.0).action is Action.REJECT
    assert len(fw.conntrack) == 0


def test_icmp_error_about_a_flow_is_related_and_passes() -> None:
    fw = StatefulFirewall(CLASSIC)
    fw.decide(out(SYN), 0.0)
    too_big = Packet.make("198.51.100.1", INSIDE, "icmp", icmp_type=3, icmp_code=4, direction="in")
    d = fw.decide(too_big, 0.1, inner=flow_tuple(out(SYN)))
    assert (d.ct_state, d.decided_by) == ("related", "firewall:est")
    d = fw.decide(too_big, 0.1)  # quoting nothing
    assert (d.ct_state, d.allowed) == ("invalid", False)


def test_a_full_table_drops_new_connections_the_rules_accept_and_says_so() -> None:
    fw = StatefulFirewall(CLASSIC, ConnTracker(max_entries=1))
    for p in (out(SYN), back(SYN | ACK), out(ACK)):
        assert fw.decide(p, 0.0).allowed
    d = fw.decide(out(SYN, sport=51001), 1.0)
    assert d.refused and not d.allowed
    assert d.decided_by == TABLE_FULL == "conntrack:table-full"
    assert d.rule_verdict.decided_by == "firewall:new-out"  # what the rules said
    assert d.verdict == Verdict(Action.DROP, None, None)
    assert fw.check(out(SYN, sport=51002), 1.0) == Verdict(Action.DROP, None, None)
    # the established connection goes on
    assert fw.decide(back(PSH | ACK), 1.0).decided_by == "firewall:est"
    # a packet the rules drop anyway is charged to its rule, not to the table
    d = fw.decide(back(SYN, sport=4000, dport=22), 1.0)
    assert (d.refused, d.decided_by) == (False, "firewall:new-in")
    stats = fw.conntrack.stats(1.0)
    assert (stats.entries, stats.refused_full) == (1, 2)


def test_check_returns_the_rules_verdict_for_tracked_packets() -> None:
    fw = StatefulFirewall(CLASSIC)
    v = fw.check(out(SYN), 0.0)
    assert v.action is Action.ACCEPT and v.index == 2


def test_a_custom_evaluator_is_used_with_the_tracked_state() -> None:
    seen: list[str | None] = []

    def spy(rs: RuleSet, p: Packet) -> Verdict:
        seen.append(p.ct_state)
        return evaluate(rs, p)

    fw = StatefulFirewall(CLASSIC, evaluator=spy)
    fw.decide(out(SYN), 0.0)
    fw.decide(back(SYN | ACK), 0.0)
    assert seen == ["new", "established"]


# -- scenario 2: stateful versus stateless -----------------------------------------------

SERVER, CLIENT = "192.0.2.80", "198.51.100.7"


def to_server(flags: int) -> Packet:
    return Packet.make(CLIENT, SERVER, "tcp", 51000, 443, tcp_flags=flags)


def from_server(flags: int, dport: int = 51000) -> Packet:
    return Packet.make(SERVER, CLIENT, "tcp", 443, dport, tcp_flags=flags)


HTTPS_IN = Rule(
    Action.ACCEPT, id="https-in", proto=6, dst=parse_ipset(SERVER), dport=parse_ports(443)
)


def test_stateless_filter_without_a_reply_rule_drops_the_syn_ack_so_clients_time_out() -> None:
    fw = StatelessFirewall(RuleSet.of([HTTPS_IN]))
    assert fw.decide(to_server(SYN), 0.0).decided_by == "firewall:https-in"
    d = fw.decide(from_server(SYN | ACK), 0.0)
    # dropped, not rejected: no RST reaches the client, which waits and times out
    assert (d.action, d.decided_by) == (Action.DROP, "firewall:default")
    assert d.ct_state is None and d.tracking is None


def test_stateful_filter_lets_the_replies_of_an_allowed_connection_through() -> None:
    rules = RuleSet.of(
        [
            Rule(Action.ACCEPT, id="est", ct_state=frozenset({"established", "related"})),
            Rule(
                Action.ACCEPT,
                id="https-new",
                proto=6,
                dst=parse_ipset(SERVER),
                dport=parse_ports(443),
                ct_state=frozenset({"new"}),
            ),
        ]
    )
    fw = StatefulFirewall(rules)
    handshake = [to_server(SYN), from_server(SYN | ACK), to_server(ACK), from_server(PSH | ACK)]
    assert [fw.decide(p, 0.0).decided_by for p in handshake] == [
        "firewall:https-new",
        "firewall:est",
        "firewall:est",
        "firewall:est",
    ]
    # and a SYN-ACK to a client that sent no SYN is invalid
    d = fw.decide(from_server(SYN | ACK, dport=52000), 0.0)
    assert (d.ct_state, d.action) == ("invalid", Action.DROP)


def test_a_stateless_reply_rule_also_lets_unsolicited_syn_acks_out() -> None:
    replies = Rule(
        Action.ACCEPT,
        id="https-replies",
        proto=6,
        src=parse_ipset(SERVER),
        sport=parse_ports(443),
        dport=parse_ports("1024-65535"),
    )
    fw = StatelessFirewall(RuleSet.of([HTTPS_IN, replies]))
    assert fw.decide(from_server(SYN | ACK), 0.0).allowed
    assert fw.decide(from_server(SYN | ACK, dport=52000), 0.0).allowed  # no SYN was ever seen
    # ... and rules on connection state never match without tracking
    state_rule = Rule(Action.ACCEPT, ct_state=frozenset({"new", "established"}))
    assert not StatelessFirewall(RuleSet.of([state_rule])).decide(to_server(SYN), 0.0).allowed
    assert StatelessFirewall(RuleSet.of([])).check(to_server(SYN), 0.0).action is Action.DROP
