"""Rule files: YAML and the Al-Shaer CSV layout into a RuleSet, each rule carrying its
source line; every broken file is one ConfigError naming file, line, column and field;
scenario 1 (examples/firewall/classic*.yaml) gives the verdicts of SCENARIOS.md."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ramparts.errors import ConfigError
from ramparts.firewall.files import (
    load_ruleset,
    parse_ruleset_csv,
    parse_ruleset_yaml,
    parse_tcp_flags,
)
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import Packet, parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, PSH, RST, SYN, URG

from ...support import ROOT

ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"
EXAMPLES = ROOT / "examples" / "firewall"


def yaml_rules(text: str, file: str = "fw.yaml") -> RuleSet:
    return parse_ruleset_yaml(textwrap.dedent(text).lstrip("\n"), file)


def yaml_error(text: str, file: str = "fw.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        yaml_rules(text, file)
    assert info.value.file == file
    return info.value


def csv_error(text: str, file: str = "fw.csv") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_ruleset_csv(textwrap.dedent(text).lstrip("\n"), file)
    assert info.value.file == file
    return info.value


# -- the Al-Shaer policy (CSV) -----------------------------------------------------------


@pytest.mark.skipif(not ALSHAER.exists(), reason=f"{ALSHAER} is not here")
def test_loads_the_alshaer_policy() -> None:
    rs = load_ruleset(ALSHAER)
    assert len(rs.rules) == 12
    assert rs.default is Action.DROP
    assert rs.name == str(ALSHAER)
    assert [r.line for r in rs.rules] == list(range(2, 14))
    first = rs.rules[0]
    assert first == Rule(
        Action.DROP,
        proto=6,
        src=parse_ipset("140.192.37.20"),
        dst=parse_ipset("0.0.0.0/0"),
        dport=parse_ports(80),
    )
    assert first.sport is None
    assert first.id == ""
    assert [r.action for r in rs.rules].count(Action.ACCEPT) == 7
    assert [r.proto for r in rs.rules] == [6] * 8 + [17] * 4
    assert rs.rules[7].dport is None and rs.rules[7].sport is None  # tcp ... any deny
    assert rs.rules[10].dst == parse_ipset("161.120.35.0/24")


@pytest.mark.skipif(not ALSHAER.exists(), reason=f"{ALSHAER} is not here")
@pytest.mark.parametrize(
    ("src", "dst", "proto", "dport", "action", "index"),
    [
        ("140.192.37.20", "161.120.33.40", "tcp", 80, Action.DROP, 1),
        ("140.192.37.21", "161.120.33.40", "tcp", 80, Action.ACCEPT, 2),
        ("140.192.36.1", "161.120.33.40", "tcp", 80, Action.ACCEPT, 3),
        ("140.192.37.30", "8.8.8.8", "tcp", 21, Action.DROP, 5),
        ("140.192.37.31", "8.8.8.8", "tcp", 21, Action.ACCEPT, 6),
        ("140.192.36.1", "8.8.8.8", "tcp", 22, Action.DROP, 8),
        ("140.192.37.1", "161.120.33.40", "udp", 53, Action.ACCEPT, 9),
        ("140.192.38.9", "161.120.35.200", "udp", 5000, Action.ACCEPT, 11),
        ("140.192.39.9", "161.120.35.200", "udp", 5000, Action.DROP, 12),
    ],
)
def test_alshaer_verdicts(
    src: str, dst: str, proto: str, dport: int, action: Action, index: int
) -> None:
    v = evaluate(load_ruleset(ALSHAER), Packet.make(src, dst, proto, 40000, dport))
    assert (v.action, v.index) == (action, index)


def test_icmp_falls_to_the_default_in_the_alshaer_layout() -> None:
    rs = parse_ruleset_csv("protocol,src,s_port,dst,d_port,action\ntcp,*,*,*,*,accept\n", "p")
    v = evaluate(rs, Packet.make("192.0.2.1", "192.0.2.2", "icmp", icmp_type=8))
    assert v.by_default and v.action is Action.DROP


# -- CSV details -------------------------------------------------------------------------


def test_csv_any_star_lists_comments_and_blank_lines() -> None:
    rs = parse_ruleset_csv(
        textwrap.dedent(
            """\
            # a comment before the header

            Action, D_Port ,dst,s_port,src,protocol
            accept,"80,443",192.0.2.0/24,*,any,tcp
            # a comment between rules
            drop,any,"10.0.0.0/8,2001:db8::/32",1024-65535,*,udp
            """
        ),
        "p.csv",
    )
    assert [r.line for r in rs.rules] == [4, 6]
    web, other = rs.rules
    assert web.action is Action.ACCEPT and web.proto == 6
    assert web.dport == parse_ports([80, 443])
    assert web.src is None and web.sport is None
    assert web.dst == parse_ipset("192.0.2.0/24")
    assert other.action is Action.DROP and other.proto == 17
    assert other.dst == parse_ipset(["10.0.0.0/8", "2001:db8::/32"])
    assert other.sport == parse_ports("1024-65535")
    assert other.src is None and other.dport is None


def test_csv_ports_need_a_port_protocol() -> None:
    err = csv_error(
        """\
        protocol,src,s_port,dst,d_port,action
        tcp,any,any,any,80,accept
        any,any,1024-65535,any,any,drop
        """
    )
    assert (err.line, err.column) == (3, 1)
    assert "ports need protocol" in err.reason


def test_csv_bom_and_crlf() -> None:
    text = "\ufeffprotocol,src,s_port,dst,d_port,action\r\nudp,*,*,*,53,allow\r\n"
    rs = parse_ruleset_csv(text, "p.csv")
    assert len(rs.rules) == 1
    assert rs.rules[0].line == 2
    assert rs.rules[0].dport == parse_ports(53)


def test_csv_header_only_is_an_empty_rule_set() -> None:
    rs = parse_ruleset_csv("protocol,src,s_port,dst,d_port,action\n", "p.csv")
    assert rs.rules == ()
    assert rs.default is Action.DROP


@pytest.mark.parametrize(
    ("directive", "action"),
    [
        ("# default: accept", Action.ACCEPT),
        ("#default=reject", Action.REJECT),
        ("  # Default : allow", Action.ACCEPT),
        ("# default: drop", Action.DROP),
    ],
)
def test_csv_default_directive(directive: str, action: Action) -> None:
    text = f"{directive}\nprotocol,src,s_port,dst,d_port,action\ntcp,*,*,*,22,drop\n"
    rs = parse_ruleset_csv(text, "p.csv")
    assert rs.default is action
    assert rs.rules[0].line == 3


def test_csv_prose_comment_mentioning_default_is_only_a_comment() -> None:
    text = "# the default is deny\nprotocol,src,s_port,dst,d_port,action\n"
    assert parse_ruleset_csv(text, "p.csv").default is Action.DROP


@dataclass(frozen=True)
class BadCsv:
    id: str
    text: str
    line: int
    column: int | None
    field: str | None
    reason: str


HEADER = "protocol,src,s_port,dst,d_port,action\n"

BAD_CSV = [
    BadCsv("empty-file", "", 1, None, None, "no header row"),
    BadCsv("comments-only", "# nothing\n\n", 1, None, None, "no header row"),
    BadCsv(
        "data-row-first",
        "tcp,any,any,any,80,accept\n",
        1,
        1,
        None,
        "unknown column 'tcp': the first row must be the header",
    ),
    BadCsv(
        "missing-column",
        "protocol,src,dst,d_port,action\n",
        1,
        None,
        None,
        "the header lacks s_port",
    ),
    BadCsv("extra-column", "protocol,src,s_port,dst,d_port,action,id\n", 1, 39, None, "'id'"),
    BadCsv("twice", "protocol,src,src,dst,d_port,action\n", 1, 14, None, "'src' appears twice"),
    BadCsv(
        "too-few-fields",
        HEADER + "tcp,any,any,any,80,accept\ntcp,any,any,80,accept\n",
        3,
        None,
        None,
        "expected 6 fields",
    ),
    BadCsv(
        "too-many-fields",
        HEADER + "tcp,any,any,any,80,accept,x\n",
        2,
        None,
        None,
        "found 7",
    ),
    BadCsv("bad-protocol", HEADER + "tpc,any,any,any,80,accept\n", 2, 1, "protocol", "tpc"),
    BadCsv(
        "bad-src",
        HEADER + "tcp,10.0.0.256,any,any,80,accept\n",
        2,
        5,
        "src",
        "not an address or prefix: '10.0.0.256'",
    ),
    BadCsv(
        "host-bits",
        HEADER + "tcp,any,any,10.0.0.1/8,80,accept\n",
        2,
        13,
        "dst",
        "host bits set",
    ),
    BadCsv(
        "bad-port",
        HEADER + "tcp,any,any,any,8o,accept\n",
        2,
        17,
        "d_port",
        "not a port or port range: '8o'",
    ),
    BadCsv(
        "port-range-reversed",
        HEADER + "tcp,any,2000-1000,any,80,accept\n",
        2,
        9,
        "s_port",
        "invalid port range 2000-1000",
    ),
    BadCsv("bad-action", HEADER + "tcp,any,any,any,80,permitt\n", 2, 20, "action", "permitt"),
    BadCsv("empty-cell", HEADER + "tcp,,any,any,80,accept\n", 2, 5, "src", "is empty"),
    BadCsv(
        "quoted-cell-hides-the-column",
        HEADER + 'tcp,"10.0.0.0/8,x",any,any,80,accept\n',
        2,
        None,
        "src",
        "'x'",
    ),
    BadCsv(
        "unterminated-quote",
        HEADER + 'tcp,"10.0.0.0/8,any,any,80,accept\n',
        2,
        None,
        None,
        "not a CSV row",
    ),
    BadCsv(
        "no-common-ip-version",
        HEADER + "tcp,10.0.0.0/8,any,2001:db8::/32,80,accept\n",
        2,
        1,
        None,
        "no IP version in common",
    ),
    BadCsv(
        "error-after-comments",
        "# one\n\n" + HEADER + "# two\ntcp,any,any,any,80,accept\nudp,any,any,any,x,drop\n",
        6,
        17,
        "d_port",
        "'x'",
    ),
    BadCsv(
        "bad-default",
        "# default: maybe\n" + HEADER,
        1,
        1,
        "default",
        "unknown action 'maybe'",
    ),
    BadCsv(
        "empty-default",
        "# default:\n" + HEADER,
        1,
        1,
        "default",
        "unknown action ''",
    ),
    BadCsv(
        "default-twice",
        "# default: accept\n" + HEADER + "# default: drop\n",
        3,
        None,
        None,
        "set twice",
    ),
]


@pytest.mark.parametrize("bad", BAD_CSV, ids=[b.id for b in BAD_CSV])
def test_csv_errors_name_the_line(bad: BadCsv) -> None:
    with pytest.raises(ConfigError) as info:
        parse_ruleset_csv(bad.text, "p.csv")
    err = info.value
    assert err.file == "p.csv"
    assert (err.line, err.column, err.field) == (bad.line, bad.column, bad.field)
    assert bad.reason in err.reason, err.reason
    assert str(err).startswith(f"p.csv:{bad.line}")


# -- YAML --------------------------------------------------------------------------------


FULL = """\
default: reject
rules:
  - id: web
    action: allow
    proto: tcp
    src: 0.0.0.0/0
    dst: [192.0.2.0/24, 198.51.100.7]
    sport: 1024-65535
    dport: [80, 443]
    tcp_flags: "syn,ack/syn"
    direction: in
    iface: eth0
    state: [new]
    comment: "the web servers"
  - action: reject
    proto: tcp
    reject_with: tcp-reset
  - id: 7
    action: deny
    proto: icmpv6
    src: "2001:db8::/32"
    icmp_type: 1
    icmp_code: 4
    state: established, related
  - action: accept
    proto: 132
    src: 192.0.2.10-192.0.2.20
    dport: "8000:8080"
    comment: 42
"""


def test_yaml_every_key() -> None:
    rs = parse_ruleset_yaml(FULL, "full.yaml")
    assert rs.default is Action.REJECT
    assert rs.name == "full.yaml"
    assert [r.line for r in rs.rules] == [3, 15, 18, 25]
    web, reset, icmp, sctp = rs.rules
    assert web == Rule(
        Action.ACCEPT,
        id="web",
        proto=6,
        src=parse_ipset("0.0.0.0/0"),
        dst=parse_ipset(["192.0.2.0/24", "198.51.100.7"]),
        sport=parse_ports("1024-65535"),
        dport=parse_ports([80, 443]),
        tcp_flags=(SYN | ACK, SYN),
        direction="in",
        iface="eth0",
        ct_state=frozenset({"new"}),
        comment="the web servers",
    )
    assert reset.action is Action.REJECT and reset.reject_with == "tcp-reset"
    assert reset.id == "" and reset.src is None and reset.dport is None
    assert icmp.id == "7"
    assert (icmp.proto, icmp.icmp_type, icmp.icmp_code) == (58, 1, 4)
    assert icmp.ct_state == frozenset({"established", "related"})
    assert icmp.src == parse_ipset("2001:db8::/32")
    assert sctp.proto == 132
    assert sctp.dport == parse_ports("8000-8080")
    assert sctp.src == parse_ipset("192.0.2.10-192.0.2.20")
    assert sctp.comment == "42"


def test_yaml_default_is_drop_and_any_is_none() -> None:
    rs = yaml_rules(
        """
        rules:
          - {action: accept, proto: any, src: any, dst: "*", comment: flow style}
          - action: drop
            proto: udp
            dport: any
        """
    )
    assert rs.default is Action.DROP
    first, second = rs.rules
    assert (first.proto, first.src, first.dst) == (None, None, None)
    assert first.comment == "flow style"
    assert second.dport is None
    assert [r.line for r in rs.rules] == [2, 3]


def test_yaml_empty_rule_list() -> None:
    rs = yaml_rules("default: accept\nrules: []\n")
    assert rs.rules == ()
    assert evaluate(rs, Packet.make("192.0.2.1", "192.0.2.2")).action is Action.ACCEPT


def test_yaml_case_and_whitespace_in_words() -> None:
    rs = yaml_rules(
        """
        default: ACCEPT
        rules:
          - {action: " Drop ", proto: TCP, direction: OUT, state: [NEW]}
        """
    )
    assert rs.default is Action.ACCEPT
    r = rs.rules[0]
    assert (r.action, r.proto, r.direction, r.ct_state) == (
        Action.DROP,
        6,
        "out",
        frozenset({"new"}),
    )


@pytest.mark.parametrize(
    ("text", "mask", "value"),
    [
        ("syn,ack/syn", SYN | ACK, SYN),
        ("SYN,RST,ACK,FIN/SYN", SYN | RST | ACK | FIN, SYN),
        ("all/none", FIN | SYN | RST | PSH | ACK | URG, 0),
        ("fin,syn/fin,syn", FIN | SYN, FIN | SYN),
        (" urg , psh / ", URG | PSH, 0),
        ("all/all", 0x3F, 0x3F),
    ],
)
def test_tcp_flags(text: str, mask: int, value: int) -> None:
    assert parse_tcp_flags(text) == (mask, value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("syn", "mask/value"),
        ("syn,bogus/syn", "unknown TCP flag 'bogus'"),
        ("syn/ack", "the mask does not examine"),
        ("none/none", "examines no flag"),
        ("/syn", "examines no flag"),
        ("syn,,ack/syn", "unknown TCP flag ''"),
    ],
)
def test_bad_tcp_flags(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_tcp_flags(text)


@dataclass(frozen=True)
class Bad:
    """A broken rule file. The line marked ``# <-`` is the one the error must name."""

    id: str
    text: str
    field: str | None
    reason: str
    column: int | None = None

    @property
    def yaml(self) -> str:
        return textwrap.dedent(self.text).lstrip("\n")

    @property
    def line(self) -> int:
        lines = self.yaml.splitlines()
        marked = [i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("# <-")]
        assert len(marked) == 1, f"{self.id}: mark exactly one line"
        return marked[0]


BAD_YAML = [
    Bad(
        "unknown-top-level-key",
        """
        default: drop
        rule:   # <-
          - action: accept
        """,
        "rule",
        "unknown key 'rule' (did you mean 'rules'?)",
        1,
    ),
    Bad(
        "unknown-rule-key",
        """
        rules:
          - action: accept
            proto: tcp
          - action: accept
            proto: tcp
            dports: 80   # <-
        """,
        "rules.1.dports",
        "unknown key 'dports' (did you mean 'dport'?)",
        5,
    ),
    Bad(
        "unknown-key-without-a-close-match",
        """
        rules:
          - action: accept
            colour: red   # <-
        """,
        "rules.0.colour",
        "known: id, action, proto",
    ),
    Bad(
        "missing-action",
        """
        rules:
          - action: accept
          - proto: tcp   # <-
            dport: 80
        """,
        "rules.1",
        "the rule has no `action`",
        5,
    ),
    Bad(
        "bad-action",
        """
        rules:
          - action: permitt   # <-
        """,
        "rules.0.action",
        "unknown action 'permitt' (accept/allow, drop/deny, reject)",
    ),
    Bad(
        "action-not-text",
        """
        rules:
          - action: yes   # <-
        """,
        "rules.0.action",
        "must be text, not true/false",
    ),
    Bad(
        "bad-default",
        """
        default: nope   # <-
        rules: []
        """,
        "default",
        "unknown action 'nope'",
    ),
    Bad(
        "bad-protocol",
        """
        rules:
          - action: accept
            proto: tpc   # <-
        """,
        "rules.0.proto",
        "unknown protocol 'tpc'",
    ),
    Bad(
        "protocol-out-of-range",
        """
        rules:
          - action: accept
            proto: 256   # <-
        """,
        "rules.0.proto",
        "protocol number out of range: 256",
    ),
    Bad(
        "bad-address",
        """
        rules:
          - action: accept
            src: 10.0.0.256   # <-
        """,
        "rules.0.src",
        "not an address or prefix: '10.0.0.256'",
    ),
    Bad(
        "host-bits-in-a-list",
        """
        rules:
          - action: accept
            dst:
              - 192.0.2.0/24
              - 10.0.0.1/8   # <-
        """,
        "rules.0.dst.1",
        "host bits set",
    ),
    Bad(
        "reversed-address-range",
        """
        rules:
          - action: accept
            src: 10.0.0.9-10.0.0.1   # <-
        """,
        "rules.0.src",
        "not an address range",
    ),
    Bad(
        "empty-address-list",
        """
        rules:
          - action: accept
            src: []   # <-
        """,
        "rules.0.src",
        "empty address set",
    ),
    Bad(
        "ipv6-read-as-base-60",
        """
        rules:
          - action: accept
            src: 1:2:3:4:5:6:7:8   # <-
        """,
        "rules.0.src",
        "quote IPv6 addresses",
    ),
    Bad(
        "address-mapping",
        """
        rules:
          - action: accept
            src: {net: 10.0.0.0/8}   # <-
        """,
        "rules.0.src",
        "not a mapping",
    ),
    Bad(
        "bad-port",
        """
        rules:
          - action: accept
            proto: tcp
            dport: 8o   # <-
        """,
        "rules.0.dport",
        "not a port or port range: '8o'",
    ),
    Bad(
        "port-out-of-range",
        """
        rules:
          - action: accept
            proto: tcp
            dport: [80, 70000]   # <-
        """,
        "rules.0.dport.1",
        "invalid port range 70000-70000",
        17,
    ),
    Bad(
        "any-inside-a-port-list",
        """
        rules:
          - action: accept
            proto: tcp
            dport:
              - 80
              - any   # <-
        """,
        "rules.0.dport.1",
        "`any` is not a list item",
    ),
    Bad(
        "any-inside-an-address-list",
        """
        rules:
          - action: accept
            src: [10.0.0.0/8, "*"]   # <-
        """,
        "rules.0.src.1",
        "`any` is not a list item",
        23,
    ),
    Bad(
        "port-true",
        """
        rules:
          - action: accept
            proto: tcp
            sport: true   # <-
        """,
        "rules.0.sport",
        "not true/false",
    ),
    Bad(
        "port-range-read-as-base-60",
        """
        rules:
          - action: accept
            proto: tcp
            dport: 22:45   # <-
        """,
        "rules.0.dport",
        "YAML reads 22:45 as the number 1365: write a port range as 22-45",
    ),
    Bad(
        "base-60-inside-a-list",
        """
        rules:
          - action: accept
            proto: tcp
            dport:
              - 80
              - 1:30   # <-
        """,
        "rules.0.dport.1",
        "YAML reads 1:30 as the number 90",
    ),
    Bad(
        "ports-without-a-protocol",
        """
        rules:
          - action: accept
            proto: tcp
          - id: x   # <-
            action: accept
            dport: 80
        """,
        "rules.1",
        "ports need protocol tcp, udp or sctp",
    ),
    Bad(
        "ports-with-icmp",
        """
        rules:
          - action: accept   # <-
            proto: icmp
            sport: 1
        """,
        "rules.0",
        "ports need protocol",
    ),
    Bad(
        "icmp-type-with-tcp",
        """
        rules:
          - action: accept   # <-
            proto: tcp
            icmp_type: 8
        """,
        "rules.0",
        "an ICMP type or code needs protocol icmp or icmpv6",
    ),
    Bad(
        "icmp-code-without-type",
        """
        rules:
          - action: accept   # <-
            proto: icmp
            icmp_code: 0
        """,
        "rules.0",
        "an ICMP code needs an ICMP type",
    ),
    Bad(
        "icmp-type-too-big",
        """
        rules:
          - action: accept
            proto: icmp
            icmp_type: 300   # <-
        """,
        "rules.0.icmp_type",
        "a number from 0 to 255, not int 300",
    ),
    Bad(
        "icmp-type-as-name",
        """
        rules:
          - action: accept
            proto: icmp
            icmp_type: echo-request   # <-
        """,
        "rules.0.icmp_type",
        "a number from 0 to 255",
    ),
    Bad(
        "bad-tcp-flag",
        """
        rules:
          - action: accept
            proto: tcp
            tcp_flags: "syn,ack/sin"   # <-
        """,
        "rules.0.tcp_flags",
        "unknown TCP flag 'sin'",
    ),
    Bad(
        "tcp-flags-with-udp",
        """
        rules:
          - action: accept   # <-
            proto: udp
            tcp_flags: syn/syn
        """,
        "rules.0",
        "TCP flags need protocol tcp",
    ),
    Bad(
        "bad-direction",
        """
        rules:
          - action: accept
            direction: sideways   # <-
        """,
        "rules.0.direction",
        "direction is in or out",
    ),
    Bad(
        "empty-iface",
        """
        rules:
          - action: accept
            iface: ""   # <-
        """,
        "rules.0.iface",
        "must not be empty",
    ),
    Bad(
        "bad-state",
        """
        rules:
          - action: accept
            state: [new, establised]   # <-
        """,
        "rules.0.state.1",
        "unknown connection state 'establised' (new, established, related, invalid)",
    ),
    Bad(
        "bad-state-in-text",
        """
        rules:
          - action: accept
            state: "new,bogus"   # <-
        """,
        "rules.0.state",
        "unknown connection state 'bogus'",
    ),
    Bad(
        "empty-state-list",
        """
        rules:
          - action: accept
            state: []   # <-
        """,
        "rules.0.state",
        "empty list of connection states",
    ),
    Bad(
        "reject-with-on-accept",
        """
        rules:
          - action: accept   # <-
            proto: tcp
            reject_with: tcp-reset
        """,
        "rules.0",
        "reject_with needs action reject",
    ),
    Bad(
        "unknown-reject-type",
        """
        rules:
          - action: reject
            reject_with: icmp-go-away   # <-
        """,
        "rules.0.reject_with",
        "unknown reject type 'icmp-go-away'",
    ),
    Bad(
        "tcp-reset-with-udp",
        """
        rules:
          - action: reject   # <-
            proto: udp
            reject_with: tcp-reset
        """,
        "rules.0",
        "tcp-reset needs protocol tcp",
    ),
    Bad(
        "no-common-ip-version",
        """
        rules:
          - action: accept   # <-
            src: 10.0.0.0/8
            dst: "2001:db8::/32"
        """,
        "rules.0",
        "no IP version in common",
    ),
    Bad(
        "duplicate-id",
        """
        rules:
          - id: web
            action: accept
          - id: ssh
            action: accept
          - id: web   # <-
            action: drop
        """,
        "rules.2.id",
        "duplicate rule id 'web' (first used at line 2)",
    ),
    Bad(
        "id-with-spaces",
        """
        rules:
          - id: my rule   # <-
            action: accept
        """,
        "rules.0.id",
        "a rule id is one word",
    ),
    Bad(
        "key-without-a-value",
        """
        rules:
          - action: accept
            src:   # <-
        """,
        "rules.0.src",
        "has no value (leave the key out to match anything)",
    ),
    Bad(
        "comment-not-text",
        """
        rules:
          - action: accept
            comment: [a, b]   # <-
        """,
        "rules.0.comment",
        "must be text, not a list",
    ),
    Bad(
        "rules-not-a-list",
        """
        rules:   # <-
          action: accept
        """,
        "rules",
        "must be a list of rules",
    ),
    Bad(
        "rule-not-a-mapping",
        """
        rules:
          - action: accept
          - accept   # <-
        """,
        "rules.1",
        "a rule is a mapping",
    ),
    Bad(
        "rules-missing",
        """
        default: drop   # <-
        """,
        None,
        "`rules` is missing",
    ),
    Bad(
        "top-level-a-list",
        """
        - action: accept   # <-
        """,
        None,
        "the top level must be a mapping",
    ),
    Bad(
        "duplicate-key",
        """
        rules:
          - action: accept
            proto: tcp
            proto: udp   # <-
        """,
        None,
        "duplicate key 'proto'",
    ),
    Bad(
        "yaml-syntax",
        """
        rules:
          - action: accept
            proto: tcp: udp   # <-
        """,
        None,
        "mapping values are not allowed here",
    ),
]


@pytest.mark.parametrize("bad", BAD_YAML, ids=[b.id for b in BAD_YAML])
def test_yaml_errors_name_the_line_and_field(bad: Bad) -> None:
    err = yaml_error(bad.yaml)
    assert err.line == bad.line, str(err)
    assert err.field == bad.field, str(err)
    assert bad.reason in err.reason, str(err)
    if bad.column is not None:
        assert err.column == bad.column, str(err)
    assert str(err).startswith(f"fw.yaml:{bad.line}:")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_yaml_empty_file(text: str) -> None:
    err = yaml_error(text)
    assert err.line == 1
    assert "empty" in err.reason


def test_yaml_first_error_wins_and_nothing_is_returned() -> None:
    """The first rule is fine, the third is broken: the whole file is refused."""
    err = yaml_error(
        """
        rules:
          - action: accept
            proto: tcp
            dport: 80
          - action: accept
            proto: tcp
            dport: 443
          - action: accept
            proto: tcp
            dport: 99999
        """
    )
    assert (err.line, err.field) == (10, "rules.2.dport")


# -- load_ruleset: files and extensions --------------------------------------------------


@pytest.mark.parametrize("name", ["rules.yaml", "rules.yml", "RULES.YAML"])
def test_load_yaml_by_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("rules:\n  - action: accept\n    proto: udp\n")
    rs = load_ruleset(path)
    assert rs.rules[0].proto == 17
    assert rs.rules[0].line == 2
    assert load_ruleset(str(path)) == rs


def test_load_csv_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "rules.CSV"
    path.write_text("protocol,src,s_port,dst,d_port,action\nudp,*,*,*,53,accept\n")
    assert load_ruleset(path).rules[0].dport == parse_ports(53)


def test_yaml_text_in_a_csv_file_is_a_csv_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.csv"
    path.write_text("rules:\n  - action: accept\n")
    with pytest.raises(ConfigError) as info:
        load_ruleset(path)
    assert (info.value.file, info.value.line) == (str(path), 1)


@pytest.mark.parametrize("name", ["rules.txt", "rules", "rules.json"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("rules: []\n")
    with pytest.raises(ConfigError) as info:
        load_ruleset(path)
    assert info.value.file == str(path)
    assert "use .yaml, .yml or .csv" in info.value.reason


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_ruleset(path)
    assert info.value.file == str(path)
    assert "cannot read" in info.value.reason


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - action: accept\n    proto: tcp\n    dport: 0x\n")
    with pytest.raises(ConfigError) as info:
        load_ruleset(path)
    assert str(info.value).startswith(f"{path}:4:5: rules.0.dport: ")


# -- scenario 1: the classic packet filter -----------------------------------------------

DST = "192.168.1.1"

# SCENARIOS.md, scenario 1: (source, destination port, verdict, deciding rule or None).
SCENARIO_1 = [
    ("203.0.113.42", 80, Action.ACCEPT, 1),
    ("203.0.113.42", 443, Action.ACCEPT, 2),
    ("198.51.100.7", 22, Action.DROP, None),
    ("10.0.0.5", 22, Action.ACCEPT, 3),
    ("185.220.101.9", 443, Action.ACCEPT, 2),  # (!) the deny below never applies
    ("203.0.113.42", 8080, Action.DROP, None),
]


def test_classic_example_is_scenario_1() -> None:
    rs = load_ruleset(EXAMPLES / "classic.yaml")
    assert rs.default is Action.DROP
    assert [r.action for r in rs.rules] == [Action.ACCEPT] * 3 + [Action.DROP]
    assert [r.id for r in rs.rules] == ["http", "https", "ssh-admin", "block-bad-host"]
    assert [r.dport for r in rs.rules] == [
        parse_ports(80),
        parse_ports(443),
        parse_ports(22),
        None,
    ]
    assert [r.proto for r in rs.rules] == [6, 6, 6, None]
    assert [r.src for r in rs.rules] == [
        None,
        None,
        parse_ipset("10.0.0.5"),
        parse_ipset("185.220.101.9"),
    ]
    assert all(r.dst is None for r in rs.rules)


@pytest.mark.parametrize(("src", "dport", "action", "index"), SCENARIO_1)
def test_scenario_1_verdicts(src: str, dport: int, action: Action, index: int | None) -> None:
    rs = load_ruleset(EXAMPLES / "classic.yaml")
    v = evaluate(rs, Packet.make(src, DST, "tcp", 51000, dport))
    assert v.action is action
    assert v.index == index
    if index is None:
        assert v.by_default and v.decided_by == "firewall:default"
    else:
        assert v.rule is rs.rules[index - 1]


def test_scenario_1_bad_host_is_let_in_by_the_broad_https_allow() -> None:
    rs = load_ruleset(EXAMPLES / "classic.yaml")
    v = evaluate(rs, Packet.make("185.220.101.9", DST, "tcp", 51000, 443))
    assert v.action is Action.ACCEPT
    assert v.decided_by == "firewall:https"
    text = (EXAMPLES / "classic.yaml").read_text().splitlines()
    assert v.rule is not None and v.rule.line is not None
    assert text[v.rule.line - 1].split("#")[0].strip() == "- id: https"
    # ... while its other ports do reach rule 4
    v22 = evaluate(rs, Packet.make("185.220.101.9", DST, "tcp", 51000, 22))
    assert (v22.action, v22.index, v22.decided_by) == (Action.DROP, 4, "firewall:block-bad-host")


@pytest.mark.parametrize(("src", "dport", "action", "index"), SCENARIO_1)
def test_scenario_1_fixed(src: str, dport: int, action: Action, index: int | None) -> None:
    """With the deny first, the bad host is dropped on 443 too (by rule 1), and every other
    row keeps its verdict (rule numbers move down by one)."""
    rs = load_ruleset(EXAMPLES / "classic-fixed.yaml")
    v = evaluate(rs, Packet.make(src, DST, "tcp", 51000, dport))
    if src == "185.220.101.9":
        assert (v.action, v.index, v.decided_by) == (Action.DROP, 1, "firewall:block-bad-host")
    else:
        assert v.action is action
        assert v.index == (None if index is None else index + 1)


def test_fixed_example_has_the_same_rules_in_another_order() -> None:
    classic = load_ruleset(EXAMPLES / "classic.yaml")
    fixed = load_ruleset(EXAMPLES / "classic-fixed.yaml")
    assert fixed.default is classic.default
    assert fixed.rules[1:] == classic.rules[:3]
    assert fixed.rules[0] == replace(classic.rules[3], comment=fixed.rules[0].comment)
    assert fixed.rules[0].id == "block-bad-host"
