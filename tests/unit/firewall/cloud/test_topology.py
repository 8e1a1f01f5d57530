"""The topology file (cloud/topology.py): the examples load with every reference
resolved (inline, AWS JSON, Terraform), subnets get the right ACL (named, associated in
the source, the default one), and every broken file is one ConfigError at its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ramparts.errors import ConfigError
from ramparts.firewall.cloud import Topology, load_topology, parse_topology
from ramparts.net import parse_ip

from ....support import ROOT

EXAMPLES = ROOT / "examples" / "cloud"
HEAD = """
security_groups:
  web:
    ingress:
      - {proto: tcp, ports: 443, cidr: 0.0.0.0/0}
network_acls:
  pub:
    ingress:
      - {rule: 100, action: allow, proto: all, cidr: 0.0.0.0/0}
subnets:
  a:
    cidr: 10.0.1.0/24
    nacl: pub
"""
TAIL = """
instances:
  web-1:
    address: 10.0.1.10
    security_groups: [web]
"""


def topo(text: str, file: str = "t.yaml") -> Topology:
    return parse_topology(textwrap.dedent(text).lstrip("\n"), file)


def topo_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        topo(text)
    assert info.value.file == "t.yaml"
    return info.value


@pytest.mark.parametrize(
    "name", ["web-tier", "web-tier-broken", "web-tier-aws", "web-tier-terraform"]
)
def test_examples_load(name: str) -> None:
    t = load_topology(EXAMPLES / f"{name}.yaml")
    assert [s.name for s in t.subnets] == ["public-a", "private-a"]
    web = t.instance("web-1")
    assert web is not None and web.subnet.name == "public-a"
    assert [g.name for g in web.groups] == ["web-sg"]
    assert web.listens(6, 443) is True and web.listens(6, 8080) is False
    db = t.instance("db-1")
    assert db is not None
    # the database group admits members of the web group: web-1's address
    ref = db.groups[0].ingress[0]
    assert ref.group is not None
    assert t.group_members(ref.group, ref.origin).contains(*parse_ip("10.0.1.10"))
    assert not t.group_members(ref.group, ref.origin).contains(*parse_ip("10.0.1.11"))


def test_the_acl_of_a_subnet() -> None:
    inline = load_topology(EXAMPLES / "web-tier.yaml")
    assert inline.subnets[0].acl.key == "public-nacl"
    # no nacl and nothing associated: the VPC's default ACL, which allows all
    default = inline.subnets[1].acl
    assert default.builtin and default.is_default
    assert [(e.number, e.action.value) for e in default.ingress] == [
        (100, "accept"),
        (101, "accept"),
    ]
    aws = load_topology(EXAMPLES / "web-tier-aws.yaml")
    assert [s.acl.key for s in aws.subnets] == ["acl-0123456789abcdef0", "acl-0d1e2f3a4b5c6d7e8"]
    tf = load_topology(EXAMPLES / "web-tier-terraform.yaml")
    # public-a by subnet_ids; private-a has no association: the managed default ACL
    assert [s.acl.key for s in tf.subnets] == [
        "aws_network_acl.public",
        "aws_default_network_acl.default",
    ]


def test_instance_subnet_from_its_address() -> None:
    t = topo(HEAD + TAIL)
    assert t.instances[0].subnet.name == "a"


def test_prefix_lists_and_self() -> None:
    t = topo(
        """
        prefix_lists:
          pl-0a1b2c3d: [203.0.113.0/25, 203.0.113.128/25]
        security_groups:
          app:
            ingress:
              - {proto: tcp, ports: 8080, self: true}
            egress:
              - {proto: tcp, ports: 443, prefix_lists: pl-0a1b2c3d}
        subnets:
          a: {cidr: 10.0.1.0/24}
        instances:
          app-1: {address: 10.0.1.5, security_groups: [app]}
          app-2: {address: 10.0.1.6, security_groups: [app]}
        """
    )
    g = t.security_groups[0]
    members = t.group_members(g.ingress[0].group or "", g.origin)
    assert str(members) == "10.0.1.5-10.0.1.6"
    assert str(t.prefix_list("pl-0a1b2c3d", g.origin)) == "203.0.113.0/24"


def test_a_reference_from_aws_to_a_group_outside_is_a_note() -> None:
    t = load_topology(ROOT / "tests" / "data" / "firewall" / "cloud" / "data-tier.yaml")
    notes = [text for _, text in t.notes]
    assert any("members of sg-0aaa1bbb2ccc3ddd4" in n for n in notes), notes


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (HEAD + TAIL + "vpc: x\n", 18, "unknown key 'vpc'"),
        (HEAD.replace("cidr: 10.0.1.0/24", "cidr: 10.0.1.1/24") + TAIL, 11, "host bits set"),
        (
            HEAD.replace("nacl: pub", "nacl: pubb") + TAIL,
            12,
            "no network ACL 'pubb' (did you mean 'pub'?)",
        ),
        (
            HEAD + TAIL.replace("[web]", "[wbe]"),
            17,
            "no security group 'wbe' (did you mean 'web'?)",
        ),
        (HEAD + TAIL.replace("[web]", "[]"), 17, "at least one security group"),
        (HEAD + TAIL.replace("10.0.1.10", "10.0.2.10"), 16, "the address is in no subnet"),
        (HEAD + TAIL.replace("10.0.1.10", "10.0.1.300"), 16, "not an IP address"),
        (
            HEAD + TAIL + "    listening: [tcp/70000]\n",
            18,
            "not a port",
        ),
        (
            HEAD + TAIL + "  web-2:\n    address: 10.0.1.10\n    security_groups: [web]\n",
            19,
            "also instance web-1's",
        ),
        (
            HEAD + "  b:\n    cidr: 10.0.1.128/25\n" + TAIL,
            14,
            "overlaps subnet a",
        ),
        (
            HEAD + TAIL + "    subnet: b\n",
            18,
            "no subnet 'b'",
        ),
        (
            HEAD.replace("ports: 443", "ports: 22:45") + TAIL,
            4,
            "YAML reads 22:45 as the number 1365",
        ),
        (HEAD.replace("ports: 443, ", "") + TAIL, 4, "a tcp rule needs `ports`"),
        (
            HEAD.replace("proto: tcp, ports: 443", "proto: icmp, ports: 8") + TAIL,
            4,
            "icmp has no ports",
        ),
        (HEAD.replace("proto: tcp", "proto: tpc") + TAIL, 4, "unknown protocol"),
        (
            HEAD.replace("443, cidr: 0.0.0.0/0}", "443, groups: db}") + TAIL,
            4,
            "no security group 'db'",
        ),
        (
            HEAD.replace("443, cidr: 0.0.0.0/0}", "443, prefix_lists: pl-1}") + TAIL,
            4,
            "prefix list pl-1 is not defined",
        ),
        (HEAD.replace(", cidr: 0.0.0.0/0}", "}") + TAIL, 4, "names no peer"),
        (HEAD.replace("rule: 100", "rule: 40000") + TAIL, 8, "a rule number is 1-32766"),
        (HEAD.replace("action: allow", "action: accept") + TAIL, 8, "action is allow or deny"),
        (
            HEAD.replace(
                "      - {rule: 100, action: allow, proto: all, cidr: 0.0.0.0/0}",
                "      - {rule: 100, action: allow, proto: all, cidr: 0.0.0.0/0}\n"
                "      - {rule: 100, action: deny, proto: tcp, ports: 22, cidr: 0.0.0.0/0}",
            )
            + TAIL,
            9,
            "inbound rule number 100 is used twice",
        ),
        (
            HEAD.replace("cidr: 0.0.0.0/0}\nsubnets", "cidr: 10.0.0.1-10.0.0.9}\nsubnets") + TAIL,
            8,
            "AWS rules take CIDR blocks",
        ),
        ("subnets: {}\n", 1, "`subnets` is missing or empty"),
        (HEAD, 1, "`instances` is missing or empty"),
        ("sources: [missing.json]\n" + HEAD + TAIL, 1, "does not exist"),
        ("- a\n- b\n", 1, "the top level must be a mapping"),
    ],
)
def test_errors(text: str, line: int, message: str) -> None:
    err = topo_error(text)
    assert message in err.reason, err.reason
    assert err.line == line


def test_an_ambiguous_group_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sgs.json").write_text(
        '{"SecurityGroups": [\n'
        '  {"GroupId": "sg-01", "GroupName": "web", "VpcId": "vpc-1"},\n'
        '  {"GroupId": "sg-02", "GroupName": "web", "VpcId": "vpc-2"}\n]}\n'
    )
    (tmp_path / "t.yaml").write_text(
        "sources: [sgs.json]\nsubnets:\n  a: {cidr: 10.0.1.0/24}\n"
        "instances:\n  i: {address: 10.0.1.5, security_groups: [web]}\n"
    )
    with pytest.raises(ConfigError, match=r"'web' is ambiguous: it names sg-01 .*sg-02") as info:
        load_topology(tmp_path / "t.yaml")
    assert info.value.line == 5
    (tmp_path / "t.yaml").write_text(
        "sources: [sgs.json]\nsubnets:\n  a: {cidr: 10.0.1.0/24}\n"
        "instances:\n  i: {address: 10.0.1.5, security_groups: [sg-02]}\n"
    )
    assert load_topology(tmp_path / "t.yaml").instances[0].groups[0].vpc_id == "vpc-2"


def test_an_error_inside_a_source_names_the_source(tmp_path: Path) -> None:
    (tmp_path / "sgs.json").write_text(
        '{"SecurityGroups": [\n  {"GroupId": "sg-01",\n'
        '   "IpPermissions": [{"IpProtocol": "tcp"}]}\n]}\n'
    )
    (tmp_path / "t.yaml").write_text(
        "sources: [sgs.json]\nsubnets:\n  a: {cidr: 10.0.1.0/24}\n"
        "instances:\n  i: {address: 10.0.1.5, security_groups: [sg-01]}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_topology(tmp_path / "t.yaml")
    assert info.value.file == str(tmp_path / "sgs.json")
    assert info.value.line == 3


# -- review fixes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "kind", "code"),
    [
        ("{proto: icmp, icmp_type: 8, cidr: 10.0.0.0/16}", 8, None),  # every code of type 8
        ("{proto: icmp, cidr: 10.0.0.0/16}", None, None),  # every type
        ("{proto: icmp, icmp_type: 3, icmp_code: 4, cidr: 10.0.0.0/16}", 3, 4),
        ("{proto: icmpv6, icmp_type: 128, cidr: '2001:db8::/32'}", 128, None),
    ],
)
def test_an_icmp_group_rule_may_leave_out_type_and_code(
    rule: str, kind: int | None, code: int | None
) -> None:
    # docs/cloud.md: icmp_type/icmp_code "-1 or omitted: all" (as for ACL entries)
    t = topo(HEAD.replace("{proto: tcp, ports: 443, cidr: 0.0.0.0/0}", rule) + TAIL)
    traffic = t.security_groups[0].ingress[0].traffic
    assert (traffic.icmp_type, traffic.icmp_code) == (kind, code)


def test_an_icmp_code_without_a_type_is_refused() -> None:
    err = topo_error(
        HEAD.replace(
            "{proto: tcp, ports: 443, cidr: 0.0.0.0/0}",
            "{proto: icmp, icmp_code: 4, cidr: 0.0.0.0/0}",
        )
        + TAIL
    )
    assert "icmp_code needs icmp_type" in err.reason, err.reason
    assert err.line == 4


def test_a_subnet_named_acl_must_agree_with_the_sources_association(tmp_path: Path) -> None:
    # AWS: a subnet is associated with exactly one network ACL
    (tmp_path / "acls.json").write_text(
        '{"NetworkAcls": [\n'
        '  {"NetworkAclId": "acl-01", "IsDefault": false, "VpcId": "vpc-1",\n'
        '   "Associations": [{"NetworkAclAssociationId": "aclassoc-1",\n'
        '                     "NetworkAclId": "acl-01", "SubnetId": "subnet-01"}],\n'
        '   "Entries": []},\n'
        '  {"NetworkAclId": "acl-02", "IsDefault": false, "VpcId": "vpc-1",\n'
        '   "Associations": [], "Entries": []}\n]}\n'
    )
    text = (
        "sources: [acls.json]\n"
        "security_groups:\n  web: {ingress: []}\n"
        "subnets:\n  a: {cidr: 10.0.1.0/24, id: subnet-01, nacl: acl-02}\n"
        "instances:\n  i: {address: 10.0.1.5, security_groups: [web]}\n"
    )
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"subnet-01 is associated with acl-01") as info:
        load_topology(tmp_path / "t.yaml")
    assert info.value.line == 5
    # naming the ACL it is associated with is fine
    (tmp_path / "t.yaml").write_text(text.replace("nacl: acl-02", "nacl: acl-01"))
    assert load_topology(tmp_path / "t.yaml").subnets[0].acl.key == "acl-01"
