"""The cloud trace (cloud/trace.py): scenario 3 (the reply dropped by a stateless ACL is a
timeout, and the trace names the missing rule), stateful security groups both ways,
same-subnet traffic, refusals only when nothing listens, partial ephemeral coverage,
explicit denies, ICMP, IPv6, and bad arguments."""

from __future__ import annotations

import textwrap

import pytest

from ramparts.firewall.cloud import Topology, load_topology, parse_topology, trace
from ramparts.firewall.cloud.trace import EPHEMERAL_LINUX, TraceResult
from ramparts.net import PortRange

from ....support import ROOT

EXAMPLES = ROOT / "examples" / "cloud"
DATA_TIER = ROOT / "tests" / "data" / "firewall" / "cloud" / "data-tier.yaml"


def topo(text: str) -> Topology:
    return parse_topology(textwrap.dedent(text).lstrip("\n"), "t.yaml")


def verdicts(r: TraceResult) -> list[tuple[str, str, str | None]]:
    return [(h.path, h.verdict, h.rule) for h in r.hops]


# -- scenario 3 --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web-tier", "web-tier-aws", "web-tier-terraform"])
def test_https_from_the_internet_works(name: str) -> None:
    r = trace(load_topology(EXAMPLES / f"{name}.yaml"), "198.51.100.7", "web-1", "tcp", 443)
    assert r.ok and r.outcome == "connected"
    assert [h.verdict for h in r.hops] == ["allow", "allow", "listening", "state", "allow"]
    assert r.hops[0].rule == "rule 110" and r.hops[4].rule == "rule 120"
    assert r.client_ports == EPHEMERAL_LINUX
    assert "the reply path passes every client port 1024-65535" in r.notes


def test_scenario_3_broken_times_out_on_the_reply_path() -> None:
    t = load_topology(EXAMPLES / "web-tier-broken.yaml")
    r = trace(t, "198.51.100.7", "web-1", "tcp", 443)
    assert not r.ok and r.outcome == "timeout"
    assert r.summary == (
        "dropped by the subnet's ACL on the reply path, no outbound rule for the ephemeral port"
    )
    # the request got in and the server answered: the reply is what the ACL drops
    assert verdicts(r) == [
        ("request", "allow", "rule 110"),
        ("request", "allow", "web-sg rule 1"),
        ("request", "listening", None),
        ("reply", "state", None),
        ("reply", "drop", "rule 200"),
    ]
    assert r.stopped_at == 5
    assert r.fault is not None
    assert "no outbound rule of public-nacl allows tcp to 198.51.100.7 port 32768-60999 " in (
        r.fault
    )
    assert "(the client's ephemeral port)" in r.fault
    assert "web-tier-broken.yaml:44" in r.fault  # rule 200, where it is written
    assert r.fix is not None and "numbered below 200" in r.fix and "1024-65535" in r.fix
    assert "TIMEOUT: dropped by the subnet's ACL on the reply path" in r.render()


def test_without_any_deny_rule_the_implicit_deny_is_named() -> None:
    t = topo(
        """
        security_groups:
          web: {ingress: [{proto: tcp, ports: 443, cidr: 0.0.0.0/0}]}
        network_acls:
          pub:
            ingress: [{rule: 100, action: allow, proto: tcp, ports: 443, cidr: 0.0.0.0/0}]
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: pub}
        instances:
          web-1: {address: 10.0.1.10, security_groups: [web]}
        """
    )
    r = trace(t, "198.51.100.7", "web-1", "tcp", 443)
    assert r.outcome == "timeout" and r.hops[-1].rule == "the implicit deny (*)"
    assert r.fault is not None and r.fault.endswith("the implicit deny (*) drops it")
    assert r.fix is not None and "numbered below" not in r.fix


def test_stateful_groups_both_ways() -> None:
    """An outbound call: the group's egress allows it, its inbound rules do not matter to
    the reply (web-sg allows nothing from 93.184.216.34); the ACL needs inbound 120."""
    t = load_topology(EXAMPLES / "web-tier.yaml")
    r = trace(t, "web-1", "93.184.216.34", "tcp", 443)
    assert r.ok
    assert verdicts(r) == [
        ("request", "allow", "web-sg rule 1"),
        ("request", "allow", "rule 110"),
        ("request", "assumed", None),
        ("reply", "allow", "rule 120"),
        ("reply", "state", None),
    ]


def test_group_reference_and_the_default_acl() -> None:
    t = load_topology(EXAMPLES / "web-tier.yaml")
    ok = trace(t, "web-1", "db-1", "tcp", 5432)
    assert ok.ok
    assert ok.hops[3].rule == "db-sg rule 1"
    assert "members of web-sg" in (ok.hops[3].rule_text or "")
    assert ok.hops[2].what.startswith("subnet private-a network ACL the VPC's default ACL")
    no = trace(t, "198.51.100.7", "db-1", "tcp", 5432)
    assert no.outcome == "timeout"
    assert no.hops[-1].verdict == "drop" and no.hops[-1].rule == "the default deny"
    assert no.summary.startswith("dropped by the security groups of db-1 (inbound)")
    assert no.fix == "add an inbound rule to db-sg: allow tcp port 5432 from 198.51.100.7"


def test_the_request_dropped_by_the_acl() -> None:
    t = load_topology(EXAMPLES / "web-tier.yaml")
    r = trace(t, "203.0.113.9", "web-1", "tcp", 22)
    assert r.outcome == "timeout" and r.stopped_at == 1
    assert r.summary == (
        "dropped by the subnet's ACL on the request path, no inbound rule for tcp port 22"
    )
    # the client's port never mattered: no note about ephemeral ranges
    assert not r.notes


def test_same_subnet_does_not_cross_the_acl() -> None:
    t = topo(
        """
        security_groups:
          app:
            ingress: [{proto: tcp, ports: 8080, self: true}]
            egress: [{proto: all, cidr: 0.0.0.0/0}]
        network_acls:
          shut: {}
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: shut}
        instances:
          app-1: {address: 10.0.1.5, security_groups: [app]}
          app-2: {address: 10.0.1.6, security_groups: [app]}
        """
    )
    r = trace(t, "app-1", "app-2", "tcp", 8080)
    assert r.ok
    assert [h.what.split()[0] for h in r.hops] == ["app-1", "app-2", "app-2", "app-2", "app-1"]
    # but from outside the subnet the ACL (no entries: everything denied) drops it
    assert trace(t, "10.0.2.5", "app-2", "tcp", 8080).outcome == "timeout"


def test_several_groups_are_a_union() -> None:
    t = topo(
        """
        security_groups:
          http: {ingress: [{proto: tcp, ports: 80, cidr: 0.0.0.0/0}]}
          https: {ingress: [{proto: tcp, ports: 443, cidr: 0.0.0.0/0}]}
        subnets:
          a: {cidr: 10.0.1.0/24}
        instances:
          web-1: {address: 10.0.1.10, security_groups: [http, https]}
        """
    )
    assert trace(t, "198.51.100.7", "web-1", "tcp", 80).hops[1].rule == "http rule 1"
    assert trace(t, "198.51.100.7", "web-1", "tcp", 443).hops[1].rule == "https rule 1"
    r = trace(t, "198.51.100.7", "web-1", "tcp", 22)
    assert r.outcome == "timeout"
    assert (
        r.hops[-1].detail == "no inbound rule of http, https allows tcp port 22 from 198.51.100.7"
    )


def test_nothing_listening_is_a_refusal_if_the_reset_gets_back() -> None:
    t = topo(
        """
        security_groups:
          web: {ingress: [{proto: tcp, ports: 8000-8100, cidr: 0.0.0.0/0}]}
        network_acls:
          pub:
            ingress: [{rule: 100, action: allow, proto: tcp, ports: 8000-8100, cidr: 0.0.0.0/0}]
            egress: [{rule: 100, action: allow, proto: tcp, ports: 1024-65535, cidr: 0.0.0.0/0}]
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: pub}
        instances:
          web-1: {address: 10.0.1.10, security_groups: [web], listening: [8080]}
        """
    )
    assert trace(t, "198.51.100.7", "web-1", "tcp", 8080).outcome == "connected"
    r = trace(t, "198.51.100.7", "web-1", "tcp", 8081)
    assert r.outcome == "refused"
    assert r.hops[2].verdict == "closed"
    assert r.summary == "nothing listens on web-1 tcp/8081: a reset (connection refused)"
    # the reset is judged by the ACL like any reply: with a client port it drops, the
    # client sees a timeout, not a refusal
    r = trace(t, "198.51.100.7", "web-1", "tcp", 8081, sport=1000)
    assert r.outcome == "timeout" and r.hops[-1].rule == "the implicit deny (*)"


def test_udp_to_a_closed_port_answers_icmp_judged_by_the_rules() -> None:
    text = """
        security_groups:
          dns:
            ingress: [{proto: udp, ports: 53, cidr: 0.0.0.0/0}]
            egress: [{proto: all, cidr: 0.0.0.0/0}]
        network_acls:
          pub:
            ingress: [{rule: 100, action: allow, proto: udp, ports: 53, cidr: 0.0.0.0/0}]
            egress:
              - {rule: 100, action: allow, proto: udp, ports: 1024-65535, cidr: 0.0.0.0/0}
              - {rule: 110, action: allow, proto: icmp, icmp_type: 3, cidr: 0.0.0.0/0}
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: pub}
        instances:
          ns-1: {address: 10.0.1.53, security_groups: [dns], listening: [tcp/53]}
        """
    t = topo(text)
    r = trace(t, "198.51.100.7", "ns-1", "udp", 53)
    assert r.outcome == "refused"
    assert r.summary == "nothing listens on ns-1 udp/53: ICMP port unreachable"
    # the ICMP error leaves by the group's egress rule (not by state) and ACL rule 110
    assert r.hops[3].path == "reply" and r.hops[3].verdict == "allow"
    assert r.hops[3].rule == "dns rule 1"
    assert "icmp type 3 code 3" in r.hops[3].packet
    assert r.hops[4].rule == "rule 110"
    # without the ICMP rule the error is dropped: the client only sees a timeout
    t = topo(
        text.replace("- {rule: 110, action: allow, proto: icmp, icmp_type: 3, cidr: 0.0.0.0/0}", "")
    )
    assert trace(t, "198.51.100.7", "ns-1", "udp", 53).outcome == "timeout"


def test_partial_ephemeral_coverage_is_intermittent() -> None:
    t = topo(
        """
        security_groups:
          web: {ingress: [{proto: tcp, ports: 443, cidr: 0.0.0.0/0}]}
        network_acls:
          pub:
            ingress: [{rule: 100, action: allow, proto: tcp, ports: 443, cidr: 0.0.0.0/0}]
            egress:
              - {rule: 100, action: allow, proto: tcp, ports: 49152-65535, cidr: 0.0.0.0/0}
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: pub}
        instances:
          web-1: {address: 10.0.1.10, security_groups: [web]}
        """
    )
    r = trace(t, "198.51.100.7", "web-1", "tcp", 443)
    assert r.outcome == "intermittent" and not r.ok
    hop = r.hops[-1]
    assert hop.verdict == "partial"
    assert hop.passed_ports == (PortRange(49152, 60999),)
    assert hop.dropped_ports == (PortRange(32768, 49151),)
    assert r.summary == (
        "works for client ports 49152-60999; times out for 32768-49151 (the reply is dropped)"
    )
    assert any("drops client ports 1024-49151" in n for n in r.notes)
    # a Windows client (49152-65535) is fine; a Linux one on 40000 is not
    assert trace(t, "198.51.100.7", "web-1", "tcp", 443, sport=50000).ok
    assert trace(t, "198.51.100.7", "web-1", "tcp", 443, sport=40000).outcome == "timeout"


def test_an_explicit_deny_is_named() -> None:
    t = topo(
        """
        security_groups:
          web: {ingress: [{proto: tcp, ports: 443, cidr: 0.0.0.0/0}]}
        network_acls:
          pub:
            ingress:
              - {rule: 90, action: deny, proto: all, cidr: 198.51.100.0/24}
              - {rule: 100, action: allow, proto: tcp, ports: 443, cidr: 0.0.0.0/0}
            egress:
              - {rule: 100, action: allow, proto: tcp, ports: 1024-65535, cidr: 0.0.0.0/0}
        subnets:
          a: {cidr: 10.0.1.0/24, nacl: pub}
        instances:
          web-1: {address: 10.0.1.10, security_groups: [web]}
        """
    )
    r = trace(t, "198.51.100.7", "web-1", "tcp", 443)
    assert r.outcome == "timeout" and r.hops[0].rule == "rule 90"
    assert r.summary == "dropped by the subnet's ACL on the request path: inbound rule 90 denies it"
    assert r.fault is not None and r.fault.startswith(
        "rule 90 of pub (deny all traffic from 198.51.100.0/24"
    )
    assert trace(t, "203.0.113.7", "web-1", "tcp", 443).ok


def test_icmp_echo_and_its_reply() -> None:
    t = load_topology(DATA_TIER)
    r = trace(t, "vpn-1", "app-1", "icmp")
    # app-servers allows echo requests from the VPC; the private ACL allows type 8 in and
    # type 0 (echo reply) out; the reply passes by state at the groups
    assert r.ok, r.render()
    assert [h.verdict for h in r.hops] == [
        "allow",
        "allow",
        "allow",
        "allow",
        "assumed",
        "state",
        "allow",
        "allow",
        "state",
    ]
    assert "icmp type 0 code 0" in r.hops[5].packet


def test_ipv6() -> None:
    t = load_topology(DATA_TIER)
    r = trace(t, "2001:db8:ffff::1", "alb-1", "tcp", 443)
    assert r.ok and r.source.version == 6 and r.dest.address == "2001:db8:1234:1::10"
    assert r.hops[1].rule == "alb-public (sg-01a2b3c4d5e6f7a80) rule 2"


def test_prefix_list_resolved_by_the_topology() -> None:
    t = load_topology(DATA_TIER)
    # app-servers allows 443 to the S3 prefix list; the private ACL has no IPv4 rule out
    # to the internet, so the request stops there
    r = trace(t, "app-2", "52.217.10.10", "tcp", 443)
    assert r.hops[0].verdict == "allow" and "prefix list pl-63a5400a" in (r.hops[0].rule_text or "")
    assert r.hops[1].verdict == "drop" and r.hops[1].rule == "rule 200"
    r = trace(t, "app-2", "8.8.8.8", "tcp", 443)
    assert r.outcome == "timeout" and r.hops[0].verdict == "drop"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("web-9", "web-1", "tcp", 443), "neither an instance of the topology"),
        (("198.51.100.7", "10.0.1.99", "tcp", 443), "is in subnet public-a but no instance"),
        (("198.51.100.7", "203.0.113.1", "tcp", 443), "neither end is in the topology"),
        (("2001:db8::1", "web-1", "tcp", 443), "have no IP version in common"),
        (("198.51.100.7", "web-1", "tcp", None), "a tcp trace needs --port"),
        (("198.51.100.7", "web-1", "icmp", 8), "icmp has no ports"),
        (("198.51.100.7", "web-1", "any", 80), "trace one protocol"),
        (("10.0.1.10", "web-1", "tcp", 443), "the same address"),
    ],
)
def test_bad_arguments(args: tuple[str, str, str, int | None], message: str) -> None:
    t = load_topology(EXAMPLES / "web-tier.yaml")
    with pytest.raises(ValueError, match=message):
        trace(t, *args)


def test_json_form() -> None:
    t = load_topology(EXAMPLES / "web-tier-broken.yaml")
    data = trace(t, "198.51.100.7", "web-1", "tcp", 443).to_json()
    assert data["outcome"] == "timeout" and data["ok"] is False and data["stopped_at"] == 5
    assert data["hops"][4]["rule"] == "rule 200" and data["hops"][4]["path"] == "reply"
    assert data["hops"][4]["dropped_ports"] == ["32768-60999"]
    assert data["client_ports"] == "32768-60999"
