"""The rule model and the reference first-match: every field's matching (IPv4, IPv6,
IPv4-mapped), the combinations a rule refuses, first match and the default policy, and
what a verdict says decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ramparts.firewall.model import CT_STATES, Action, Rule, RuleSet, Verdict, evaluate
from ramparts.net import Packet, parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, PSH, RST, SYN


def pkt(
    src: str = "192.0.2.1",
    dst: str = "198.51.100.1",
    proto: str | int = "tcp",
    sport: int = 40000,
    dport: int = 80,
    **extra: Any,
) -> Packet:
    return Packet.make(src, dst, proto, sport, dport, **extra)


# -- matching, field by field ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A rule (as keyword arguments) with packets it must and must not match."""

    id: str
    rule: dict[str, Any]
    hits: list[Packet]
    misses: list[Packet] = field(default_factory=list)


CASES = [
    Case("any-rule", {}, [pkt(), pkt(proto="udp"), pkt("2001:db8::1", "2001:db8::2")]),
    Case("proto", {"proto": 17}, [pkt(proto="udp")], [pkt(proto="tcp"), pkt(proto="icmp")]),
    Case("proto-number", {"proto": 47}, [pkt(proto=47)], [pkt(proto=6)]),
    Case(
        "src-prefix",
        {"src": parse_ipset("10.0.0.0/8")},
        [pkt("10.0.0.0"), pkt("10.255.255.255")],
        [pkt("9.255.255.255"), pkt("11.0.0.0")],
    ),
    Case(
        "src-range",
        {"src": parse_ipset("192.0.2.10-192.0.2.20")},
        [pkt("192.0.2.10"), pkt("192.0.2.20")],
        [pkt("192.0.2.9"), pkt("192.0.2.21")],
    ),
    Case(
        "src-list",
        {"src": parse_ipset(["192.0.2.7", "203.0.113.0/24"])},
        [pkt("192.0.2.7"), pkt("203.0.113.200")],
        [pkt("192.0.2.8"), pkt("203.0.114.0")],
    ),
    Case(
        "dst-host",
        {"dst": parse_ipset("198.51.100.7")},
        [pkt(dst="198.51.100.7")],
        [pkt(dst="198.51.100.6"), pkt(dst="198.51.100.8"), pkt("198.51.100.7", "192.0.2.1")],
    ),
    Case(
        "sport-range",
        {"proto": 6, "sport": parse_ports("1024-65535")},
        [pkt(sport=1024), pkt(sport=65535)],
        [pkt(sport=1023), pkt(sport=0), pkt(proto="udp", sport=2000)],
    ),
    Case(
        "dport-list",
        {"proto": 6, "dport": parse_ports([80, 443, "8000-8080"])},
        [pkt(dport=80), pkt(dport=443), pkt(dport=8000), pkt(dport=8080)],
        [pkt(dport=81), pkt(dport=444), pkt(dport=7999), pkt(dport=8081)],
    ),
    Case(
        "udp-ports",
        {"proto": 17, "dport": parse_ports(53)},
        [pkt(proto="udp", dport=53)],
        [pkt(proto="tcp", dport=53), pkt(proto="udp", dport=54)],
    ),
    Case(
        "icmp-type",
        {"proto": 1, "icmp_type": 8},
        [pkt(proto="icmp", icmp_type=8), pkt(proto="icmp", icmp_type=8, icmp_code=5)],
        [pkt(proto="icmp", icmp_type=0), pkt(proto="icmp")],
    ),
    Case(
        "icmp-code",
        {"proto": 1, "icmp_type": 3, "icmp_code": 3},
        [pkt(proto="icmp", icmp_type=3, icmp_code=3)],
        [pkt(proto="icmp", icmp_type=3, icmp_code=1), pkt(proto="icmp", icmp_type=3)],
    ),
    Case(
        "icmpv6-type",
        {"proto": 58, "icmp_type": 128},
        [pkt("2001:db8::1", "2001:db8::2", "icmpv6", icmp_type=128)],
        [
            pkt("2001:db8::1", "2001:db8::2", "icmpv6", icmp_type=129),
            pkt("192.0.2.1", "192.0.2.2", "icmp", icmp_type=128),
        ],
    ),
    Case(
        "tcp-flags-syn",  # iptables --syn: SYN,RST,ACK,FIN/SYN
        {"proto": 6, "tcp_flags": (SYN | RST | ACK | FIN, SYN)},
        [pkt(tcp_flags=SYN), pkt(tcp_flags=SYN | PSH)],
        [pkt(tcp_flags=SYN | ACK), pkt(tcp_flags=ACK), pkt(tcp_flags=0), pkt(tcp_flags=SYN | FIN)],
    ),
    Case(
        "tcp-flags-none-set",
        {"proto": 6, "tcp_flags": (0x3F, 0)},
        [pkt(tcp_flags=0)],
        [pkt(tcp_flags=FIN), pkt(tcp_flags=PSH)],
    ),
    Case(
        "direction",
        {"direction": "in"},
        [pkt(direction="in")],
        [pkt(direction="out"), pkt()],
    ),
    Case(
        "iface",
        {"iface": "eth0"},
        [pkt(iface="eth0")],
        [pkt(iface="eth1"), pkt(iface="eth0.1"), pkt()],
    ),
    Case(
        "ct-state",
        {"ct_state": frozenset({"established", "related"})},
        [pkt(ct_state="established"), pkt(ct_state="related")],
        [pkt(ct_state="new"), pkt(ct_state="invalid"), pkt()],
    ),
    Case(
        "ipv6-src",
        {"src": parse_ipset("2001:db8::/32")},
        [pkt("2001:db8::1", "2001:db9::1"), pkt("2001:db8:ffff:ffff::1", "::1")],
        [pkt("2001:db9::1", "2001:db8::1"), pkt("2001:db7:ffff::1", "::1")],
    ),
    Case(
        "ipv6-host-dst",
        {"dst": parse_ipset("2001:db8::80")},
        [pkt("::1", "2001:db8::80")],
        [pkt("::1", "2001:db8::81"), pkt("::1", "2001:db8::7f")],
    ),
    Case(
        "ipv4-all-is-not-ipv6",
        {"src": parse_ipset("0.0.0.0/0")},
        [pkt("0.0.0.0"), pkt("255.255.255.255")],
        [pkt("2001:db8::1", "2001:db8::2"), pkt("::", "::1")],
    ),
    Case(
        "ipv6-all-is-not-ipv4",
        {"src": parse_ipset("::/0")},
        [pkt("::", "::1"), pkt("ffff::1", "::1")],
        [pkt("0.0.0.0"), pkt("192.0.2.1")],
    ),
    Case(
        "mixed-versions",
        {"src": parse_ipset(["10.0.0.0/8", "2001:db8::/32"])},
        [pkt("10.1.2.3"), pkt("2001:db8::1", "2001:db8::2")],
        [pkt("11.1.2.3"), pkt("2001:db9::1", "2001:db8::2")],
    ),
    Case(
        "ipv4-mapped-packet-meets-an-ipv4-rule",
        {"src": parse_ipset("10.0.0.5"), "dst": parse_ipset("192.168.1.0/24")},
        [pkt("::ffff:10.0.0.5", "::ffff:192.168.1.1")],
        [pkt("::ffff:10.0.0.6", "::ffff:192.168.1.1")],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matching(case: Case) -> None:
    rule = Rule(Action.ACCEPT, **case.rule)
    for p in case.hits:
        assert rule.matches(p), p
    for p in case.misses:
        assert not rule.matches(p), p


ALL_FIELDS: dict[str, Any] = {
    "proto": 6,
    "src": parse_ipset("10.0.0.0/8"),
    "dst": parse_ipset("192.0.2.1"),
    "sport": parse_ports("1024-65535"),
    "dport": parse_ports(22),
    "tcp_flags": (SYN | ACK, SYN),
    "direction": "in",
    "iface": "eth0",
    "ct_state": frozenset({"new"}),
}
ALL_FIELDS_HIT: dict[str, Any] = {
    "src": "10.0.0.1",
    "dst": "192.0.2.1",
    "proto": "tcp",
    "sport": 5000,
    "dport": 22,
    "tcp_flags": SYN,
    "direction": "in",
    "iface": "eth0",
    "ct_state": "new",
}


@pytest.mark.parametrize(
    "change",
    [
        {"src": "11.0.0.1"},
        {"dst": "192.0.2.2"},
        {"proto": "udp"},
        {"sport": 1000},
        {"dport": 23},
        {"tcp_flags": SYN | ACK},
        {"direction": "out"},
        {"iface": "eth1"},
        {"ct_state": "established"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_field_of_a_rule_must_match(change: dict[str, Any]) -> None:
    rule = Rule(Action.ACCEPT, **ALL_FIELDS)
    assert rule.matches(pkt(**ALL_FIELDS_HIT))
    assert not rule.matches(pkt(**{**ALL_FIELDS_HIT, **change}))


def test_ipv4_mapped_packets_are_judged_as_ipv4() -> None:
    p = pkt("::ffff:203.0.113.9", "::ffff:192.0.2.1")
    assert p.version == 4
    assert p == pkt("203.0.113.9", "192.0.2.1")
    assert Rule(Action.DROP, src=parse_ipset("203.0.113.0/24")).matches(p)
    assert not Rule(Action.DROP, src=parse_ipset("::/0")).matches(p)


def test_a_rule_written_ipv4_mapped_matches_the_mapped_packet() -> None:
    rule = Rule(Action.DROP, src=parse_ipset("::ffff:10.0.0.5"))
    assert rule.matches(pkt("::ffff:10.0.0.5", "::ffff:192.0.2.1"))


def test_ct_state_never_matches_a_packet_without_state() -> None:
    """A stateless evaluation has no connection state: a state rule cannot decide it."""
    for state in CT_STATES:
        rule = Rule(Action.ACCEPT, ct_state=frozenset({state}))
        assert rule.matches(pkt(ct_state=state))
        assert not rule.matches(pkt())
    assert {"new", "established", "related", "invalid"} == CT_STATES


# -- invalid rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"dport": parse_ports(80)}, "ports need protocol tcp, udp or sctp"),
        ({"proto": 1, "sport": parse_ports(80)}, "ports need protocol"),
        ({"proto": 58, "dport": parse_ports(80)}, "ports need protocol"),
        ({"icmp_type": 8}, "an ICMP type or code needs protocol icmp or icmpv6"),
        ({"proto": 6, "icmp_type": 8}, "an ICMP type or code needs protocol"),
        ({"proto": 17, "icmp_code": 0}, "an ICMP type or code needs protocol"),
        ({"proto": 1, "icmp_code": 0}, "an ICMP code needs an ICMP type"),
        ({"tcp_flags": (SYN, SYN)}, "TCP flags need protocol tcp"),
        ({"proto": 17, "tcp_flags": (SYN, SYN)}, "TCP flags need protocol tcp"),
        ({"direction": "inbound"}, "direction is in or out"),
        ({"ct_state": frozenset({"new", "estab"})}, "unknown connection state estab"),
        ({"reject_with": "tcp-reset", "proto": 6}, "reject_with needs action reject"),
        (
            {"src": parse_ipset("10.0.0.0/8"), "dst": parse_ipset("2001:db8::/32")},
            "source and destination have no IP version in common",
        ),
    ],
)
def test_invalid_rules_are_refused(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Rule(Action.ACCEPT, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"reject_with": "go-away"}, "unknown reject type 'go-away'"),
        ({"reject_with": "tcp-reset"}, "tcp-reset needs protocol tcp"),
        ({"reject_with": "tcp-reset", "proto": 17}, "tcp-reset needs protocol tcp"),
    ],
)
def test_invalid_rejects_are_refused(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        Rule(Action.REJECT, **kwargs)


def test_valid_combinations() -> None:
    Rule(Action.REJECT, proto=6, reject_with="tcp-reset")
    Rule(Action.REJECT, proto=17, reject_with="icmp-port-unreachable")
    Rule(Action.ACCEPT, proto=132, dport=parse_ports(9))
    Rule(Action.ACCEPT, proto=58, icmp_type=128, icmp_code=0)
    mixed = parse_ipset(["10.0.0.0/8", "2001:db8::/32"])
    Rule(Action.ACCEPT, src=mixed, dst=parse_ipset("2001:db8::1"))
    assert Rule(Action.ACCEPT, line=3) == Rule(Action.ACCEPT, line=9)  # line is not identity


# -- actions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("accept", Action.ACCEPT),
        ("allow", Action.ACCEPT),
        ("permit", Action.ACCEPT),
        (" ACCEPT ", Action.ACCEPT),
        ("drop", Action.DROP),
        ("deny", Action.DROP),
        ("block", Action.DROP),
        ("reject", Action.REJECT),
        ("Reject", Action.REJECT),
    ],
)
def test_action_parse(text: str, action: Action) -> None:
    assert Action.parse(text) is action


@pytest.mark.parametrize("text", ["", "pass", "rejectt", "drop all"])
def test_action_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        Action.parse(text)


def test_only_accept_allows() -> None:
    assert [a.allows for a in Action] == [True, False, False]


# -- evaluate: first match, the default, and what decided --------------------------------


WEB = Rule(Action.ACCEPT, id="web", proto=6, dport=parse_ports([80, 443]))
BAD = Rule(Action.DROP, src=parse_ipset("185.220.101.9"))
SSH = Rule(Action.REJECT, proto=6, dport=parse_ports(22), reject_with="tcp-reset")


def test_first_match_decides_even_over_a_more_specific_rule_below() -> None:
    rs = RuleSet.of([WEB, BAD])
    v = evaluate(rs, pkt("185.220.101.9", dport=443))
    assert v == Verdict(Action.ACCEPT, WEB, 1)
    assert v.rule is WEB
    flipped = evaluate(RuleSet.of([BAD, WEB]), pkt("185.220.101.9", dport=443))
    assert (flipped.action, flipped.rule, flipped.index) == (Action.DROP, BAD, 1)


def test_index_is_one_based_and_names_the_first_matching_rule() -> None:
    rs = RuleSet.of([BAD, SSH, WEB, Rule(Action.ACCEPT)])
    v = evaluate(rs, pkt(dport=22))
    assert (v.action, v.index, v.rule) == (Action.REJECT, 2, SSH)
    v = evaluate(rs, pkt(dport=80))
    assert (v.action, v.index) == (Action.ACCEPT, 3)
    v = evaluate(rs, pkt(proto="udp", dport=53))
    assert (v.action, v.index) == (Action.ACCEPT, 4)


@pytest.mark.parametrize("default", list(Action))
def test_default_decides_when_nothing_matches(default: Action) -> None:
    rs = RuleSet.of([WEB, SSH], default=default)
    v = evaluate(rs, pkt(dport=8080))
    assert v == Verdict(default, None, None)
    assert v.by_default


def test_default_is_drop() -> None:
    assert RuleSet.of([]).default is Action.DROP
    assert RuleSet(()).default is Action.DROP
    assert evaluate(RuleSet.of([]), pkt()).action is Action.DROP


def test_decided_by() -> None:
    rs = RuleSet.of([BAD, SSH, WEB])
    by_id = evaluate(rs, pkt(dport=443))
    assert (by_id.decided_by, by_id.by_default) == ("firewall:web", False)
    by_number = evaluate(rs, pkt("185.220.101.9"))
    assert by_number.decided_by == "firewall:rule-1"
    assert evaluate(rs, pkt(dport=22)).decided_by == "firewall:rule-2"
    default = evaluate(rs, pkt(dport=8080))
    assert (default.decided_by, default.by_default) == ("firewall:default", True)


def test_describe() -> None:
    assert WEB.describe() == "accept tcp from any to any port 80,443"
    assert BAD.describe() == "drop any from 185.220.101.9 to any"
    assert SSH.describe() == "reject with tcp-reset tcp from any to any port 22"
    full = Rule(
        Action.ACCEPT,
        proto=17,
        src=parse_ipset("10.0.0.0/8"),
        sport=parse_ports("1024-65535"),
        dst=parse_ipset(["2001:db8::/32", "192.0.2.1"]),
        dport=parse_ports(53),
        ct_state=frozenset({"new", "established"}),
        direction="out",
        iface="eth0",
    )
    assert full.describe() == (
        "accept udp from 10.0.0.0/8 port 1024-65535 to 192.0.2.1, 2001:db8::/32 port 53 "
        "state established,new out on eth0"
    )
