"""AWS JSON in (formats/aws.py): golden files of realistic describe-security-groups and
describe-network-acls outputs, AWS's reading of protocols and ports checked packet by
packet, --select for lint and diff, and every refusal located by its line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ramparts.errors import ConfigError
from ramparts.firewall.cloud import Direction, acl_ruleset
from ramparts.firewall.formats import detect_format, load_rules
from ramparts.firewall.formats.aws import parse_aws, parse_json, read_aws
from ramparts.firewall.model import Action, evaluate
from ramparts.net import Packet

from ....support import ROOT
from .cloud_golden import check_golden, rendered

DATA = ROOT / "tests" / "data" / "firewall" / "aws"
EXAMPLES = ROOT / "examples" / "cloud" / "aws"


@pytest.mark.parametrize("name", ["security-groups", "network-acls"])
def test_golden(name: str) -> None:
    source = DATA / f"{name}.json"
    got = rendered(source, "aws", read_aws(source))
    check_golden(DATA / f"{name}.expected.json", got)


@pytest.mark.parametrize("name", ["security-groups", "network-acls"])
def test_golden_example(name: str) -> None:
    source = EXAMPLES / f"{name}.json"
    got = rendered(source, "aws", read_aws(source))
    check_golden(DATA / f"example-{name}.expected.json", got)


def test_detected_by_content() -> None:
    assert detect_format(DATA / "security-groups.json") == "aws"
    assert detect_format(DATA / "network-acls.json") == "aws"


# -- AWS semantics, packet by packet ------------------------------------------------------


def verdict(source: Path, select: str, packet: Packet) -> tuple[Action, str | None]:
    v = evaluate(load_rules(source, None, select), packet)
    return v.action, None if v.rule is None else v.rule.id


def test_security_group_ports_and_peers() -> None:
    sgs = DATA / "security-groups.json"
    alb = "alb-public:ingress"
    assert verdict(sgs, alb, Packet.make("203.0.113.5", "10.20.1.9", "tcp", 40000, 443)) == (
        Action.ACCEPT,
        "1",
    )
    assert verdict(sgs, alb, Packet.make("2001:db8::5", "2001:db8:1::9", "tcp", 40000, 443)) == (
        Action.ACCEPT,
        "2",
    )
    # allow-only: what no rule allows is dropped by the default
    assert verdict(sgs, alb, Packet.make("203.0.113.5", "10.20.1.9", "tcp", 40000, 8443)) == (
        Action.DROP,
        None,
    )
    assert verdict(sgs, alb, Packet.make("203.0.113.5", "10.20.1.9", "udp", 40000, 443)) == (
        Action.DROP,
        None,
    )


def test_a_protocol_number_other_than_tcp_udp_icmp_allows_all_its_traffic() -> None:
    # IpProtocol "50" (ESP) has no ports: AWS allows all of it, whatever ports are given
    sgs = DATA / "security-groups.json"
    esp = Packet.make("198.51.100.20", "10.20.1.9", 50)
    assert verdict(sgs, "vpn-endpoint:ingress", esp) == (Action.ACCEPT, "1")
    other = Packet.make("198.51.100.20", "10.20.1.9", 47)
    assert verdict(sgs, "vpn-endpoint:ingress", other) == (Action.DROP, None)


def test_icmp_ports_are_type_and_code() -> None:
    policies = read_aws(DATA / "security-groups.json")
    app = next(g for g in policies.security_groups if g.name == "app-servers")
    ping = app.ingress[1]
    assert (ping.traffic.proto, ping.traffic.icmp_type, ping.traffic.icmp_code) == (1, 8, None)
    any_v6 = app.ingress[2]
    assert (any_v6.traffic.proto, any_v6.traffic.icmp_type) == (58, None)


def test_acl_first_match_lowest_number_and_implicit_deny() -> None:
    acls = read_aws(DATA / "network-acls.json")
    private = next(a for a in acls.network_acls if a.key == "acl-0aa9bb8cc7dd6ee5f")
    # listed 100, 110, ... 90 in the file: evaluated lowest number first
    assert [e.number for e in private.ingress] == [90, 100, 110, 120, 130, 140]
    # the implicit 32767/32768 entries are the rule set's default, not rules
    assert all(e.number < 32767 for e in (*private.ingress, *private.egress))
    rs = acl_ruleset(private, Direction.INGRESS)
    bad = Packet.make("10.20.99.7", "10.20.11.5", "tcp", 40000, 5432)
    assert evaluate(rs, bad).rule is not None and evaluate(rs, bad).rule.id == "90"
    assert evaluate(rs, bad).action is Action.DROP
    good = Packet.make("10.20.1.7", "10.20.11.5", "tcp", 40000, 5432)
    assert evaluate(rs, good).action is Action.ACCEPT
    assert evaluate(rs, Packet.make("10.20.1.7", "10.20.11.5", "udp", 40000, 5432)).by_default
    # IcmpTypeCode Type 8, Code -1: every code of echo request, nothing else
    ping = Packet.make("10.20.3.3", "10.20.11.5", "icmp", icmp_type=8, icmp_code=0)
    assert evaluate(rs, ping).action is Action.ACCEPT
    unreachable = Packet.make("10.20.3.3", "10.20.11.5", "icmp", icmp_type=3, icmp_code=1)
    assert evaluate(rs, unreachable).by_default


def test_default_acl_has_its_ipv6_twin() -> None:
    acls = read_aws(DATA / "network-acls.json")
    default = next(a for a in acls.network_acls if a.is_default)
    assert [(e.number, str(e.cidr)) for e in default.ingress] == [(100, "0.0.0.0/0"), (101, "::/0")]
    assert default.subnets == ("subnet-0a9b8c7d6e5f4a3b2",)


def test_the_example_equals_the_inline_web_tier() -> None:
    """examples/cloud/aws holds the web tier of examples/cloud/web-tier.yaml: the same
    public ACL, and groups with the same rules (in the order AWS lists them)."""
    from ramparts.firewall.cloud import load_topology, security_group_ruleset

    inline = load_topology(ROOT / "examples" / "cloud" / "web-tier.yaml")
    aws = load_topology(ROOT / "examples" / "cloud" / "web-tier-aws.yaml")
    for d in Direction:
        a = acl_ruleset(inline.subnets[0].acl, d)
        b = acl_ruleset(aws.subnets[0].acl, d)
        assert [r.describe() for r in a.rules] == [r.describe() for r in b.rules]
        for ia, ib in zip(inline.instances, aws.instances, strict=True):
            ra = security_group_ruleset(ia.groups[0], d, inline)
            rb = security_group_ruleset(ib.groups[0], d, aws)
            assert sorted(r.describe() for r in ra.rules) == sorted(r.describe() for r in rb.rules)


# -- --select ----------------------------------------------------------------------------


def test_select_by_id_name_or_name_tag() -> None:
    sgs = DATA / "security-groups.json"
    by_id = load_rules(sgs, "aws", "sg-01a2b3c4d5e6f7a80:ingress")
    assert load_rules(sgs, "aws", "alb-public:ingress") == by_id
    assert load_rules(sgs, "aws", "alb:inbound") == by_id
    acl = load_rules(DATA / "network-acls.json", "aws", "private-data:egress")
    assert [r.id for r in acl.rules] == ["100", "110", "120", "130", "200"]


@pytest.mark.parametrize(
    ("select", "message"),
    [
        (None, "choose a rule set with --select"),
        ("alb-public", "names no direction"),
        ("alb-public:sideways", "a direction is ingress or egress"),
        ("nope:ingress", "no security group or network ACL 'nope'"),
        ("default:ingress", "a security group's members are only known in a topology"),
    ],
)
def test_select_errors(select: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_rules(DATA / "security-groups.json", "aws", select)


def test_select_refuses_an_ambiguous_name(tmp_path: Path) -> None:
    # the same group name in two VPCs is common; the candidates are listed by id
    doc = {
        "SecurityGroups": [
            {"GroupId": f"sg-0{n}", "GroupName": "web", "IpPermissions": [], "VpcId": f"vpc-{n}"}
            for n in (1, 2)
        ]
    }
    path = tmp_path / "sgs.json"
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(ConfigError, match=r"'web' is ambiguous: it names sg-01 .*, sg-02"):
        load_rules(path, None, "web:ingress")


# -- refusals, with their line -----------------------------------------------------------


def aws_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_aws(textwrap.dedent(text).strip() + "\n", "in.json")
    assert info.value.file == "in.json"
    return info.value


def group(permission: str) -> str:
    return (
        '{"SecurityGroups": [{\n  "GroupId": "sg-1",\n  "GroupName": "g",\n'
        '  "IpPermissions": [\n' + permission + "\n  ]\n}]}"
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            group(
                '{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,\n"IpRanges": [\n'
                '{"CidrIp": "10.0.0.1/8"}]}'
            ),
            7,
            "has host bits set",
        ),
        (
            group(
                '{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,\n"IpRanges": [\n'
                '{"CidrIp": "2001:db8::/32"}]}'
            ),
            7,
            "is not an IPv4 CIDR block",
        ),
        (group('{"IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}'), 5, "needs a port"),
        (
            group(
                '{"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80,\n'
                '"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}'
            ),
            5,
            "invalid port range 90-80",
        ),
        (
            group(
                '{"IpProtocol": "icmp", "FromPort": -1, "ToPort": 3,\n'
                '"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}'
            ),
            5,
            "all ICMP types",
        ),
        (group('{"IpProtocol": "gre", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}'), 5, "protocol"),
        (group('{"IpProtocol": "-1", "IpRanges": []}'), 5, "names no peer"),
        (
            group('{"IpProtocol": "-1",\n"IpRanges": [{"CidrIp": "0.0.0.0/0", "Foo": 1}]}'),
            6,
            "unknown field 'Foo'",
        ),
        ('{"SecurityGroups": [{"GroupName": "g"}]}', 1, "GroupId is missing"),
        ('{"SecurityGroups": [], "NextToken": "abc"}', 1, "one page of a paginated output"),
        ('{"Reservations": []}', 1, "unknown field 'Reservations'"),
        ("[1, 2]", 1, "expected the AWS CLI's JSON object"),
        ('{"SecurityGroups": [\n{"GroupId": "sg-1",\n"GroupId": "sg-2"}]}', 3, "duplicate key"),
        ('{"SecurityGroups": [\n{"GroupId": "sg-1",\n}]}', 3, "expected a quoted key"),
        ('{"SecurityGroups": [\n{"GroupId": "sg-1"}, {"GroupId": "sg-1"}]}', 2, "appears twice"),
    ],
)
def test_security_group_refusals(text: str, line: int, message: str) -> None:
    err = aws_error(text)
    assert message in err.reason
    assert err.line == line


def acl(entries: str) -> str:
    return '{"NetworkAcls": [{\n  "NetworkAclId": "acl-1",\n  "Entries": [\n' + entries + "\n]}]}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            acl(
                '{"CidrBlock": "0.0.0.0/0", "Egress": false, "Protocol": "6",\n'
                '"RuleAction": "allow", "RuleNumber": 100}'
            ),
            4,
            "needs a port range",
        ),
        (
            acl(
                '{"CidrBlock": "0.0.0.0/0", "Egress": false, "Protocol": "1",\n'
                '"RuleAction": "allow", "RuleNumber": 100}'
            ),
            4,
            "needs an ICMP type and code",
        ),
        (
            acl(
                '{"CidrBlock": "0.0.0.0/0", "Egress": false, "Protocol": "-1",\n'
                '"RuleAction": "allow", "RuleNumber": 32767}'
            ),
            5,
            "a rule number is 1-32766",
        ),
        (
            acl(
                '{"CidrBlock": "0.0.0.0/0", "Egress": false, "Protocol": "-1",\n'
                '"RuleAction": "reject", "RuleNumber": 100}'
            ),
            5,
            "RuleAction is allow or deny",
        ),
        (
            acl('{"Egress": false, "Protocol": "-1", "RuleAction": "deny", "RuleNumber": 100}'),
            4,
            "exactly one of CidrBlock and Ipv6CidrBlock",
        ),
        (
            acl(
                '{"CidrBlock": "0.0.0.0/0", "Egress": true, "Protocol": "-1",\n'
                '"RuleAction": "deny", "RuleNumber": 100},\n'
                '{"CidrBlock": "10.0.0.0/8", "Egress": true, "Protocol": "-1",\n'
                '"RuleAction": "allow", "RuleNumber": 100}'
            ),
            6,
            "outbound rule number 100 is used twice",
        ),
    ],
)
def test_acl_refusals(text: str, line: int, message: str) -> None:
    err = aws_error(text)
    assert message in err.reason
    assert err.line == line


def test_a_bare_file_and_junk_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="the file is empty"):
        read_aws(empty)
    with pytest.raises(ConfigError, match="text after the end"):
        parse_aws('{"SecurityGroups": []} x', "in.json")


# -- the JSON reader ---------------------------------------------------------------------


def test_json_keeps_the_line_and_column_of_every_value() -> None:
    text = '{\n  "a": [\n    1,\n    {"b": "x\\"y"}\n  ],\n  "c": -2.5e3\n}\n'
    data, lines = parse_json(text, "t.json")
    assert data == json.loads(text)
    assert lines.positions[("a",)] == (2, 3)
    assert lines.positions[("a", 0)] == (3, 5)
    assert lines.positions[("a", 1, "b")] == (4, 6)
    assert lines.positions[("c",)] == (6, 3)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [('{\n  "a": tru\n}', 2, 8), ('{"a": "x\ny"}', 1, 7), ('{"a": 1,\n "b" 2}', 2, 6)],
)
def test_json_syntax_errors_are_located(text: str, line: int, column: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_json(text, "t.json")
    assert (info.value.line, info.value.column) == (line, column)
