"""Checks of a topology (cloud/lint.py): admin and database ports open to the world (SSH
"temporarily" open in scenario 3), ACLs that let requests through but drop their
replies (all, some, or only the ports outside Linux's range), and security group rules
the subnet's ACL makes useless."""

from __future__ import annotations

import textwrap

from ramparts.firewall.cloud import Topology, load_topology, parse_topology
from ramparts.firewall.cloud.lint import Finding, lint

from ....support import ROOT

EXAMPLES = ROOT / "examples" / "cloud"
DATA_TIER = ROOT / "tests" / "data" / "firewall" / "cloud" / "data-tier.yaml"


def topo(text: str) -> Topology:
    return parse_topology(textwrap.dedent(text).lstrip("\n"), "t.yaml")


def codes(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.severity, f.code, f.where) for f in findings]


def test_the_web_tier_ssh_rule_is_blocked_by_the_acl() -> None:
    """Scenario 3 as written: the group allows SSH from the corporate range, the ACL has
    no inbound rule for it (the "group allows but traffic fails" of scenario 7)."""
    found = lint(load_topology(EXAMPLES / "web-tier.yaml"))
    assert codes(found) == [("medium", "group-rule-blocked", f"{EXAMPLES}/web-tier.yaml:19")]
    assert "tcp 22 from 203.0.113.0/24 to web-1" in found[0].message


def test_ssh_open_to_the_world_is_flagged() -> None:
    found = lint(load_topology(EXAMPLES / "web-tier-ssh-open.yaml"))
    first = found[0]
    assert (first.severity, first.code) == ("high", "world-open-admin")
    assert first.where == f"{EXAMPLES}/web-tier-ssh-open.yaml:15"
    assert "opens tcp port 22 (SSH) to 0.0.0.0/0 (used by web-1)" in first.message
    assert "one ACL change from exposure" in first.message
    assert first.fix is not None and "Session Manager" in first.fix


def test_the_broken_acl_drops_every_reply() -> None:
    found = lint(load_topology(EXAMPLES / "web-tier-broken.yaml"))
    high = [f for f in found if f.severity == "high"]
    assert [f.code for f in high] == ["acl-reply-dropped", "acl-reply-dropped"]
    assert "inbound rule 100 (allow tcp port 80 from 0.0.0.0/0)" in high[0].message
    assert "inbound rule 110 (allow tcp port 443 from 0.0.0.0/0)" in high[1].message
    assert "clients time out" in high[1].message
    assert high[1].fix is not None and "allow tcp to 0.0.0.0/0 ports 1024-65535" in high[1].fix


def test_a_three_tier_vpc_from_aws_json() -> None:
    found = lint(load_topology(DATA_TIER))
    assert [(f.severity, f.code) for f in found] == [
        ("high", "acl-reply-dropped"),  # DNS to the forwarder: no inbound udp for the answer
        ("high", "acl-reply-dropped"),  # HTTPS out over IPv6: no inbound IPv6 tcp rule
        ("high", "world-open-admin"),  # the VPN endpoint's "temporary" SSH rule
        ("medium", "group-rule-blocked"),  # statsd allowed by the group, not by the ACL
        ("info", "group-no-members"),  # a group of another account
    ]
    assert "to app-1, app-2" in found[3].message
    # the default ACL lets SSH in: no "one ACL change" remark
    assert found[2].message.endswith("(used by vpn-1)")


ACL = """
security_groups:
  web: {ingress: [{proto: tcp, ports: 443, cidr: 0.0.0.0/0}]}
network_acls:
  pub:
    ingress: [{rule: 100, action: allow, proto: tcp, ports: 443, cidr: 0.0.0.0/0}]
    egress: [{rule: 100, action: allow, proto: tcp, ports: PORTS, cidr: 0.0.0.0/0}]
subnets:
  a: {cidr: 10.0.1.0/24, nacl: pub}
instances:
  web-1: {address: 10.0.1.10, security_groups: [web]}
"""


def test_reply_coverage_levels() -> None:
    def one(ports: str) -> list[tuple[str, str]]:
        return [(f.severity, f.code) for f in lint(topo(ACL.replace("PORTS", ports)))]

    assert one("1024-65535") == []
    assert one("32768-65535") == [("low", "acl-reply-narrow")]
    assert one("49152-65535") == [("medium", "acl-reply-partial")]
    assert one("0-1023") == [("high", "acl-reply-dropped")]


def test_replies_to_some_addresses_only() -> None:
    text = ACL.replace(
        "egress: [{rule: 100, action: allow, proto: tcp, ports: PORTS, cidr: 0.0.0.0/0}]",
        "egress:\n"
        "      - {rule: 90, action: deny, proto: all, cidr: 198.51.100.0/24}\n"
        "      - {rule: 100, action: allow, proto: tcp, ports: 1024-65535, cidr: 0.0.0.0/0}",
    )
    found = lint(topo(text))
    assert [(f.severity, f.code) for f in found] == [("medium", "acl-reply-partial")]
    assert "every address: none" in found[0].message


def test_all_traffic_from_the_world() -> None:
    text = """
    security_groups:
      open: {ingress: [{proto: all, cidr: "::/0"}]}
    subnets:
      a: {cidr: 10.0.1.0/24}
    instances:
      i-1: {address: 10.0.1.10, security_groups: [open]}
    """
    found = lint(topo(text))
    assert [(f.severity, f.code) for f in found] == [("high", "world-open-all")]
    assert "allows all traffic from ::/0 (used by i-1)" in found[0].message


def test_a_wide_range_names_the_sensitive_ports_it_holds() -> None:
    text = """
    security_groups:
      db: {ingress: [{proto: tcp, ports: 3000-3400, cidr: 0.0.0.0/0}]}
    subnets:
      a: {cidr: 10.0.1.0/24}
    instances:
      i-1: {address: 10.0.1.10, security_groups: [db]}
    """
    (f,) = lint(topo(text))
    assert "opens tcp ports 3000-3400 (with 3306 (MySQL), 3389 (RDP)) to 0.0.0.0/0" in f.message
