"""Terraform in (formats/terraform.py): golden files of a realistic module (inline and
separate rule resources, references, variables with defaults, IPv6, ICMP, prefix lists,
self) and of the web tier example; --select; and every refusal (count, for_each,
dynamic blocks, locals, functions, a variable without default, inline rules mixed with
rule resources, ...) located by file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ramparts.errors import ConfigError
from ramparts.firewall.cloud import Direction, security_group_ruleset
from ramparts.firewall.formats import detect_format, load_rules
from ramparts.firewall.formats.terraform import parse_terraform, read_terraform
from ramparts.firewall.model import Action, evaluate
from ramparts.net import Packet

from ....support import ROOT
from .cloud_golden import check_golden, rendered

DATA = ROOT / "tests" / "data" / "firewall" / "terraform"
MODULE = DATA / "module"
EXAMPLE = ROOT / "examples" / "cloud" / "terraform"


def test_golden_module() -> None:
    check_golden(
        DATA / "module.expected.json", rendered(MODULE, "terraform", read_terraform(MODULE))
    )


def test_golden_example() -> None:
    got = rendered(EXAMPLE, "terraform", read_terraform(EXAMPLE))
    check_golden(DATA / "example.expected.json", got)


def test_detected_by_extension_and_directory() -> None:
    assert detect_format(MODULE) == "terraform"
    assert detect_format(MODULE / "security.tf") == "terraform"


# -- semantics ---------------------------------------------------------------------------


def test_rule_resources_join_their_group() -> None:
    policies = read_terraform(MODULE)
    app = next(g for g in policies.security_groups if g.key == "aws_security_group.app")
    assert [r.group or str(r.cidr) for r in app.ingress] == [
        "aws_security_group.alb",  # source_security_group_id
        "10.20.0.0/16",  # cidr_blocks = [aws_vpc.main.cidr_block], which is var.vpc_cidr
        "aws_security_group.app",  # self = true
    ]
    assert [r.prefix_list or r.group or str(r.cidr) for r in app.egress] == [
        "pl-63a5400a",
        "::/0",
        "aws_security_group.db",
    ]
    # from_port = var.db_port: a variable's default
    assert app.egress[2].traffic.ports is not None and app.egress[2].traffic.ports.lo == 5432


def test_no_egress_block_means_no_egress_rule() -> None:
    # Terraform removes AWS's default allow-all egress rule of a new group
    db = next(g for g in read_terraform(MODULE).security_groups if g.name == "db-postgres")
    assert db.egress == ()
    rs = load_rules(MODULE, "terraform", "db:egress")
    assert rs.rules == () and rs.default is Action.DROP


def test_protocol_spellings() -> None:
    policies = read_terraform(MODULE)
    alb = next(g for g in policies.security_groups if g.name == "prod-alb")
    assert {r.traffic.proto for r in alb.ingress} == {6}  # "tcp" and "6"
    bastion = next(g for g in policies.security_groups if g.name == "bastion")
    assert bastion.egress[0].traffic.proto is None  # "all"
    vpn = next(g for g in policies.security_groups if g.name == "vpn-endpoint")
    assert vpn.ingress[0].traffic.proto == 50


def test_acl_rules_resources_and_associations() -> None:
    policies = read_terraform(MODULE)
    private = next(a for a in policies.network_acls if a.key == "aws_network_acl.private")
    assert [e.number for e in private.ingress] == [90, 100]
    assert private.subnets == ("aws_subnet.private_a",)
    rs = load_rules(MODULE, "terraform", "private:ingress")
    v = evaluate(rs, Packet.make("10.20.99.4", "10.20.11.8", "tcp", 40000, 5432))
    assert v.action is Action.DROP and v.rule is not None and v.rule.id == "90"
    v = evaluate(rs, Packet.make("10.20.1.4", "10.20.11.8", "tcp", 40000, 5432))
    assert v.action is Action.ACCEPT
    public = next(a for a in policies.network_acls if a.key == "aws_network_acl.public")
    icmp = public.ingress[2].traffic
    assert (icmp.proto, icmp.icmp_type, icmp.icmp_code) == (1, 3, 4)


def test_group_references_need_a_topology_for_a_rule_set() -> None:
    with pytest.raises(ConfigError, match="only known in a topology") as info:
        load_rules(MODULE, "terraform", "app:ingress")
    assert info.value.file is not None and info.value.file.endswith("security.tf")
    assert info.value.line == 52


def test_the_example_equals_the_inline_web_tier() -> None:
    from ramparts.firewall.cloud import acl_ruleset, load_topology

    inline = load_topology(ROOT / "examples" / "cloud" / "web-tier.yaml")
    tf = load_topology(ROOT / "examples" / "cloud" / "web-tier-terraform.yaml")
    for d in Direction:
        a = acl_ruleset(inline.subnets[0].acl, d)
        b = acl_ruleset(tf.subnets[0].acl, d)
        assert [r.describe() for r in a.rules] == [r.describe() for r in b.rules]
        for ia, ib in zip(inline.instances, tf.instances, strict=True):
            ra = security_group_ruleset(ia.groups[0], d, inline)
            rb = security_group_ruleset(ib.groups[0], d, tf)
            assert sorted(r.describe() for r in ra.rules) == sorted(r.describe() for r in rb.rules)


def test_select_by_address_label_or_name() -> None:
    a = load_rules(MODULE, "terraform", "aws_security_group.bastion:ingress")
    assert load_rules(MODULE, "terraform", "bastion:ingress") == a
    assert [r.describe() for r in a.rules] == [
        "accept tcp from 198.51.100.0/24 to any port 22",
        "accept tcp from 192.0.2.64/26 to any port 22",
    ]
    assert load_rules(MODULE, None, "prod-public:egress").rules[0].id == "100"


# -- refusals ----------------------------------------------------------------------------

SG = """
resource "aws_security_group" "web" {
  name = "web"
}
"""


def tf_error(text: str, extra: str = SG) -> ConfigError:
    sources = [("main.tf", textwrap.dedent(text).lstrip("\n")), ("base.tf", extra)]
    with pytest.raises(ConfigError) as info:
        parse_terraform(sources)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            """
            resource "aws_security_group_rule" "r" {
              count             = 2
              type              = "ingress"
              security_group_id = aws_security_group.web.id
            }
            """,
            2,
            "`count` makes several resources",
        ),
        (
            """
            resource "aws_security_group" "s" {
              dynamic "ingress" {
                for_each = var.ports
                content {
                  from_port = ingress.value
                }
              }
            }
            """,
            2,
            "dynamic blocks are not read",
        ),
        (
            """
            locals {
              office = "198.51.100.0/24"
            }
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.web.id
              protocol          = "tcp"
              from_port         = 22
              to_port           = 22
              cidr_blocks       = [local.office]
            }
            """,
            10,
            "cannot resolve `local.office`",
        ),
        (
            """
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.web.id
              protocol          = "tcp"
              from_port         = 22
              to_port           = 22
              cidr_blocks       = concat(["10.0.0.0/8"], ["192.168.0.0/16"])
            }
            """,
            7,
            "cannot resolve `concat(",
        ),
        (
            """
            variable "office" {
              type = string
            }
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.web.id
              protocol          = "tcp"
              from_port         = 22
              to_port           = 22
              cidr_blocks       = [var.office]
            }
            """,
            10,
            "has no default (ramparts reads no .tfvars)",
        ),
        (
            """
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = data.aws_security_group.shared.id
              protocol          = "tcp"
              from_port         = 22
              to_port           = 22
              cidr_blocks       = ["10.0.0.0/8"]
            }
            """,
            3,
            "cannot resolve `data.aws_security_group.shared.id`",
        ),
        (
            """
            resource "aws_vpc" "main" {
              cidr_block = "10.0.0.0/16"
            }
            resource "aws_security_group_rule" "r" {
              type              = "egress"
              security_group_id = aws_security_group.web.id
              protocol          = "tcp"
              from_port         = 443
              to_port           = 443
              cidr_blocks       = [aws_vpc.main.ipv6_cidr_block]
            }
            """,
            10,
            "cannot resolve `aws_vpc.main.ipv6_cidr_block`: it is not an argument written",
        ),
        (
            """
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.other.id
              protocol          = "tcp"
              from_port         = 22
              to_port           = 22
              cidr_blocks       = ["10.0.0.0/8"]
            }
            """,
            3,
            "no resource aws_security_group.other in these files",
        ),
        (
            """
            resource "aws_security_group" "s" {
              ingress {
                from_port   = 22
                to_port     = 22
                protocol    = "tcp"
                cidr_blocks = ["10.0.0.0/8"]
              }
            }
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.s.id
              protocol          = "tcp"
              from_port         = 80
              to_port           = 80
              cidr_blocks       = ["10.0.0.0/8"]
            }
            """,
            11,
            "which has inline rules",
        ),
        (
            """
            resource "aws_security_group" "s" {
              ingress {
                from_port        = 22
                to_port          = 22
                protocol         = "tcp"
                cidr_blocks      = ["10.0.0.0/8"]
                ipv6_cidr_blocks = ["10.1.0.0/16"]
              }
            }
            """,
            7,
            "is not an IPv6 CIDR block",
        ),
        (
            """
            resource "aws_security_group" "s" {
              ingress {
                from_port   = 22
                to_port     = 22
                protocol    = "tcp"
                cidr_blocks = ["10.0.0.0/8"]
                ports       = 22
              }
            }
            """,
            7,
            "unknown field 'ports'",
        ),
        (
            """
            resource "aws_security_group" "s" {
              ingress {
                from_port = 22
                to_port   = 22
                protocol  = "tcp"
              }
            }
            """,
            2,
            "names no peer",
        ),
        (
            """
            resource "aws_network_acl" "n" {
              vpc_id = "vpc-1"
            }
            resource "aws_network_acl_rule" "r" {
              network_acl_id = aws_network_acl.n.id
              rule_number    = 100
              protocol       = "icmp"
              rule_action    = "allow"
              cidr_block     = "0.0.0.0/0"
            }
            """,
            4,
            "an ICMP rule needs icmp_type",
        ),
        (
            """
            resource "aws_network_acl" "n" {
              ingress {
                rule_no    = 100
                action     = "permit"
                protocol   = "-1"
                cidr_block = "0.0.0.0/0"
                from_port  = 0
                to_port    = 0
              }
            }
            """,
            4,
            "action is allow or deny",
        ),
        (
            """
            resource "aws_network_acl" "n" {
              ingress {
                rule_no    = 100
                action     = "allow"
                protocol   = "tcp"
                cidr_block = "0.0.0.0/0"
                from_port  = 80
                to_port    = 80
              }
              ingress {
                rule_no    = 100
                action     = "deny"
                protocol   = "-1"
                cidr_block = "0.0.0.0/0"
                from_port  = 0
                to_port    = 0
              }
            }
            """,
            10,
            "inbound rule number 100 is used twice",
        ),
        (
            """
            resource "aws_security_group" "s" {
              name = "a"
              name = "b"
            }
            """,
            3,
            "name is set twice",
        ),
        (
            """
            resource "aws_security_group" "s" {
              name = "a"
            """,
            3,
            "not valid HCL",
        ),
    ],
)
def test_refusals(text: str, line: int, message: str) -> None:
    err = tf_error(text)
    assert message in err.reason, err.reason
    assert err.file == "main.tf"
    assert err.line == line


def test_a_directory_without_tf_files_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds no \.tf file"):
        read_terraform(tmp_path)


def test_a_single_file_reads_no_variables_of_its_module() -> None:
    with pytest.raises(ConfigError, match="give the module's directory"):
        read_terraform(EXAMPLE / "main.tf")


def test_templates_resolve_variables_with_defaults() -> None:
    text = """
    variable "env" {
      default = "staging"
    }
    resource "aws_security_group" "web" {
      name = "${var.env}-web"
      ingress {
        description = "HTTPS for ${var.env}"
        from_port   = "443"
        to_port     = 443
        protocol    = "tcp"
        cidr_blocks = ["0.0.0.0/0"]
      }
    }
    """
    policies = parse_terraform([("main.tf", textwrap.dedent(text))])
    g = policies.security_groups[0]
    assert g.name == "staging-web"
    assert g.ingress[0].description == "HTTPS for staging"
    assert g.ingress[0].traffic.ports is not None and g.ingress[0].traffic.ports.lo == 443


# -- review fixes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (  # Terraform refuses it at plan; the author meant port 22
            """
            resource "aws_security_group" "s" {
              ingress {
                from_port   = 22
                to_port     = 22
                protocol    = "-1"
                cidr_blocks = ["10.0.0.0/8"]
              }
            }
            """,
            3,
        ),
        (  # AWS would ignore the ports and allow every protocol and port
            """
            resource "aws_security_group_rule" "r" {
              type              = "ingress"
              security_group_id = aws_security_group.web.id
              protocol          = "all"
              from_port         = 8080
              to_port           = 8080
              cidr_blocks       = ["10.0.0.0/8"]
            }
            """,
            5,
        ),
        (
            """
            resource "aws_network_acl" "n" {
              vpc_id = "vpc-1"
              ingress {
                rule_no    = 100
                action     = "allow"
                protocol   = -1
                cidr_block = "0.0.0.0/0"
                from_port  = 0
                to_port    = 65535
              }
            }
            """,
            9,
        ),
    ],
)
def test_protocol_all_with_ports_is_refused(text: str, line: int) -> None:
    err = tf_error(text)
    assert "from_port and to_port must be 0" in err.reason, err.reason
    assert err.file == "main.tf"
    assert err.line == line


def test_protocol_all_with_ports_zero_is_all_traffic() -> None:
    policies = parse_terraform(
        [
            (
                "main.tf",
                """
resource "aws_security_group" "s" {
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
""",
            )
        ]
    )
    assert policies.security_groups[0].egress[0].traffic.proto is None
