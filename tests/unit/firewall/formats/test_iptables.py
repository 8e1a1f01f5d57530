"""iptables-save in, iptables-restore out (formats/iptables.py).

Golden files: realistic iptables-save dumps (ufw with fail2ban, a hand-kept rules.v4 with
user chains, RETURNs and negations, an ip6tables web server, a Docker host with its
FORWARD chain, a router's FORWARD chain with -i and -o), each saved by
the kernel's own iptables-save, flattened and compared with a reviewed YAML rule set
literally (rule by rule, with each rule's source line) and semantically (packet by packet
against a direct chain-walking interpreter, tests/.../iptables_oracle.py). Then every
option's mapping, the flattening cases one by one, the refusals with line and column, the
renderer, and two hypothesis properties: random chain structures flatten to rule sets that
decide every packet of a small universe as the chain walk does, and random rule sets
survive render -> load unchanged in their decisions.

Set RAMPARTS_UPDATE_GOLDEN=1 to rewrite the golden YAML after a deliberate change, then
review the diff before committing it.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.errors import ConfigError
from ramparts.firewall.files import load_ruleset
from ramparts.firewall.formats import detect_format, load_rules
from ramparts.firewall.formats.iptables import (
    load_iptables,
    parse_iptables,
    render_ip6tables_restore,
    render_iptables_restore,
)
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import Packet, parse_ipset, parse_ports
from ramparts.net.packet import ACK, FIN, RST, SYN

from .iptables_cases import (
    DATA,
    GOLDEN,
    RT_UNIVERSE,
    decision,
    direction_of,
    golden_yaml,
    model_rules,
    reject_kind,
    sample_packets,
    source_line,
)
from .iptables_oracle import Oracle

UPDATE = os.environ.get("RAMPARTS_UPDATE_GOLDEN") == "1"
Props = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(text: str, select: str | None = None, file: str = "rules.v4") -> RuleSet:
    return parse_iptables(textwrap.dedent(text).lstrip("\n"), file, select)


def error(text: str, select: str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, select)
    assert info.value.file == "rules.v4"
    return info.value


def table(*rules: str, policy: str = "DROP", chains: Iterable[str] = ()) -> str:
    """A *filter table: INPUT with ``policy``, the user ``chains``, the ``rules`` lines."""
    head = [f":INPUT {policy} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    head += [f":{c} - [0:0]" for c in chains]
    return "\n".join(["*filter", *head, *rules, "COMMIT", ""])


def rules_of(rs: RuleSet) -> list[Rule]:
    """The rules after the first (the one that lets the other IP version through)."""
    assert rs.rules[0].id.endswith(("/not-ipv6", "/not-ipv4"))
    return list(rs.rules[1:])


# -- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "chain", "version"), GOLDEN)
def test_golden_literally(name: str, chain: str, version: int) -> None:
    source = DATA / name
    got = load_iptables(source, chain)
    expected_file = DATA / f"{source.stem}.{chain}.yaml"
    title = f"{name}, chain {chain}, flattened by ramparts (formats/iptables.py); reviewed"
    if UPDATE:
        expected_file.write_text(golden_yaml(got, title))
    expected = load_ruleset(expected_file)
    assert got.default == expected.default
    assert [r.id for r in got.rules] == [r.id for r in expected.rules]
    assert list(got.rules) == list(expected.rules)
    assert golden_yaml(got, title) == expected_file.read_text()
    text = source.read_text()
    assert [r.line for r in got.rules] == [source_line(text, r.id) for r in got.rules]


@pytest.mark.parametrize(("name", "chain", "version"), GOLDEN)
def test_golden_semantically(name: str, chain: str, version: int) -> None:
    """The reviewed YAML decides every sampled packet as the chain walk of the file does."""
    source = DATA / name
    expected = load_ruleset(DATA / f"{source.stem}.{chain}.yaml")
    oracle = Oracle(source.read_text(), version)
    packets = sample_packets([expected], version, direction_of(chain), 3000, seed=len(name))
    wrong = [p for p in packets if decision(expected, p) != oracle.decide(chain, p)]
    assert not wrong, f"{len(wrong)} packets differ, e.g. {wrong[0]}"


def test_golden_files_are_detected_and_loaded_through_load_rules() -> None:
    for name, chain, _ in GOLDEN:
        assert detect_format(DATA / name) == "iptables"
        assert load_rules(DATA / name, None, chain) == load_iptables(DATA / name, chain)
    assert load_rules(DATA / "gateway.rules", "iptables") == load_iptables(DATA / "gateway.rules")


def test_ufw_webserver_in_plain_words() -> None:
    rs = load_iptables(DATA / "ufw-webserver.rules")
    ids = {r.id: r for r in rs.rules}
    # fail2ban's chain comes first and rejects the banned address on port 22 only
    banned = Packet.make("203.0.113.45", "192.0.2.1", "tcp", 40000, 22, ct_state="new")
    assert evaluate(rs, banned).rule == ids["f2b-sshd/1"]
    other_port = Packet.make("203.0.113.45", "192.0.2.1", "tcp", 40000, 443, ct_state="new")
    assert evaluate(rs, other_port).rule == ids["ufw-user-input/3"]
    # "ufw insert 1 deny" is before the allows; the deny added last is below them (shadowed)
    early = Packet.make("192.0.2.77", "192.0.2.1", "tcp", 40000, 22, ct_state="new")
    assert evaluate(rs, early).action is Action.DROP
    late = Packet.make("198.51.100.9", "192.0.2.1", "tcp", 40000, 22, ct_state="new")
    assert evaluate(rs, late).rule == ids["ufw-user-input/2"]
    # the LOG rules and ufw-logging-deny's rate-limited RETURN decide nothing
    assert all(
        r.id.split("/")[0] not in ("ufw-logging-deny", "ufw-after-logging-input") for r in rs.rules
    )
    # each of ufw-after-input's jumps to ufw-skip-to-policy-input is one DROP of its own
    skips = [r for r in rs.rules if r.id.startswith("ufw-skip-to-policy-input/1")]
    assert [(r.proto, r.dport) for r in skips] == [
        (17, parse_ports(137)),
        (17, parse_ports(138)),
        (6, parse_ports(139)),
        (6, parse_ports(445)),
        (17, parse_ports(67)),
        (17, parse_ports(68)),
    ]
    assert rs.default is Action.DROP


def test_stock_ufw_is_refused_at_its_addrtype_line() -> None:
    source = DATA / "ufw-stock.rules"
    text = source.read_text().splitlines()
    with pytest.raises(ConfigError) as info:
        load_iptables(source)
    e = info.value
    assert e.file == str(source)
    assert e.line is not None
    assert text[e.line - 1] == "-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN"
    assert e.column == text[e.line - 1].index("-m addrtype") + 1
    assert "address type depends on the host's own addresses" in e.reason
    # OUTPUT never reaches ufw-not-local
    stock, edited = (
        load_iptables(source, "OUTPUT"),
        load_iptables(DATA / "ufw-webserver.rules", "OUTPUT"),
    )
    assert (stock.rules, stock.default) == (edited.rules, edited.default)


def fwd(src: str, dst: str, iface: str, out_iface: str, proto: str = "tcp", dport: int = 80,
        state: str = "new") -> Packet:  # fmt: skip
    """A forwarded packet (no direction): in by ``iface``, out by ``out_iface``."""
    return Packet.make(src, dst, proto, 40000, dport, iface=iface, out_iface=out_iface,
                       ct_state=state, tcp_flags=SYN if proto == "tcp" else 0)  # fmt: skip


def by_rule(rs: RuleSet, p: Packet) -> str:
    v = evaluate(rs, p)
    return v.rule.id if v.rule else "default"


def test_docker_forward_in_plain_words() -> None:
    """Docker's FORWARD: containers reach out (-i docker0 ! -o docker0), the published port
    is reached from outside (DOCKER: ! -i docker0 -o docker0), replies come back, the rest
    is dropped. Its '! -o docker0' is expanded: bridge-internal packets skip the isolation
    chain and meet the rest of FORWARD right there."""
    rs = load_iptables(DATA / "docker.rules", "FORWARD")
    assert rs.default is Action.DROP
    assert all(r.direction is None for r in rs.rules)
    out = fwd("172.17.0.2", "192.0.2.80", "docker0", "eth0")
    assert by_rule(rs, out) == "FORWARD/5"
    published = fwd("198.51.100.7", "172.17.0.2", "eth0", "docker0")
    assert by_rule(rs, published) == "DOCKER/1"
    assert evaluate(rs, replace(published, dport=81)).action is Action.DROP
    reply = fwd("192.0.2.80", "172.17.0.2", "eth0", "docker0", state="established")
    assert by_rule(rs, reply) == "FORWARD/3~2"
    internal = fwd("172.17.0.3", "172.17.0.2", "docker0", "docker0", dport=5432)
    assert by_rule(rs, internal) == "FORWARD/6"
    banned = fwd("203.0.113.9", "172.17.0.2", "eth0", "docker0")
    assert by_rule(rs, banned) == "DOCKER-USER/1"


def test_router_forward_in_plain_words() -> None:
    rs = load_iptables(DATA / "router.rules", "FORWARD")
    lan, wan, dmz, wg = "lan0", "wan0", "dmz0", "wg0"
    assert by_rule(rs, fwd("192.168.1.5", "192.0.2.1", lan, wan, dport=443)) == "fwd-lan/2"
    assert by_rule(rs, fwd("192.168.1.5", "192.0.2.1", lan, wan, dport=25)) == "fwd-reject/2"
    assert by_rule(rs, fwd("192.168.1.5", "192.168.50.10", lan, dmz, dport=22)) == "fwd-lan/3"
    # the LAN to the DMZ on another port: fwd-lan falls off, FORWARD ends in fwd-reject
    assert evaluate(rs, fwd("192.168.1.5", "192.168.50.10", lan, dmz, dport=3306)).action is (
        Action.REJECT
    )
    web = fwd("198.51.100.7", "192.168.50.10", wan, dmz, dport=443)
    assert by_rule(rs, web) == "fwd-wan/1"
    # from the WAN straight into the LAN: fwd-wan was a goto, so falling off it is the policy
    assert by_rule(rs, fwd("198.51.100.7", "192.168.1.5", wan, lan, dport=22)) == "FORWARD/6"
    ping = fwd("198.51.100.7", "192.168.50.10", wan, dmz, proto="icmp", dport=0)
    assert evaluate(rs, replace(ping, icmp_type=8, icmp_code=0)).rule.id == "fwd-wan/4"  # type: ignore[union-attr]
    assert evaluate(rs, replace(ping, icmp_type=8, icmp_code=0, out_iface=lan)).action is (
        Action.DROP
    )
    assert by_rule(rs, fwd("10.99.0.4", "192.168.1.5", wg, lan)) == "FORWARD/5"
    assert by_rule(rs, fwd("10.99.0.4", "192.0.2.1", wg, wan)) == "fwd-reject/2~3"
    assert by_rule(rs, fwd("192.168.50.10", "192.0.2.1", dmz, wan)) == "FORWARD/8"
    assert by_rule(rs, fwd("192.168.50.10", "192.168.1.5", dmz, lan)) == "fwd-reject/2~2"


def test_gateway_return_for_an_interface_is_expanded_exactly() -> None:
    """SERVICES starts with '-i wg0 -j RETURN': the model cannot say 'not wg0', so wg0's
    packets get the rest of INPUT (accept the VPN clients, else LOGREJECT) right there."""
    rs = load_iptables(DATA / "gateway.rules")
    wg = [r.id for r in rs.rules if r.iface == "wg0"]
    assert wg == ["INPUT/9", "LOGREJECT/2", "LOGREJECT/3", "LOGREJECT/4"]

    def ssh(src: str, dst: str, iface: str) -> Packet:
        return Packet.make(
            src, dst, "tcp", 40000, 22, direction="in", iface=iface, ct_state="new", tcp_flags=SYN
        )

    def by(p: Packet) -> str:
        v = evaluate(rs, p)
        return v.rule.id if v.rule else "default"

    assert by(ssh("10.99.1.2", "10.99.0.1", "wg0")) == "INPUT/9"
    assert by(ssh("192.0.2.99", "10.99.0.1", "wg0")) == "LOGREJECT/2"
    assert by(ssh("10.99.1.2", "192.0.2.1", "eth0")) == "MGMT/1"
    assert by(ssh("192.0.2.99", "192.0.2.1", "eth0")) == "MGMT/3"


# -- reading: tokens, lines, options --------------------------------------------------------


def test_quotes_and_escapes_as_iptables_restore_reads_them() -> None:
    rs = parse(
        table(
            '-A INPUT -p tcp --dport 1 -m comment --comment "say \\"hi\\" back\\\\slash" -j DROP',
            "-A INPUT -p tcp --dport 2 -m comment --comment plain\\x -j DROP",
            '-A INPUT -p tcp --dport 3 -m comment --comment x"y z" -j DROP',
            '-A INPUT -p tcp --dport 4 -m comment --comment "" -j DROP',
            "-A INPUT -p tcp --dport 5 -m comment --comment \"\\'dapp_OpenSSH\\'\" -j DROP",
        )
    )
    assert [r.comment for r in rules_of(rs)] == [
        'say "hi" back\\slash',
        "plain\\x",
        "xy z",
        "",
        "'dapp_OpenSSH'",
    ]


def test_a_closing_quote_ends_the_token() -> None:
    e = error(table('-A INPUT -m comment --comment "a b"c -j DROP'))
    assert (e.line, e.column) == (5, 36)
    assert "unknown option 'c'" in e.reason


def test_an_unclosed_quote_is_refused() -> None:
    e = error(table('-A INPUT -m comment --comment "no end -j DROP'))
    assert (e.line, e.column) == (5, 31)
    assert "not closed" in e.reason


def test_counters_comments_blank_lines_insert_new_chain_and_policy_lines() -> None:
    rs = parse(
        """
        # Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 19:55:34 2026
        *filter

        :INPUT ACCEPT [10:600]
        -N web
        -P INPUT DROP
        [3:180] -A INPUT -p tcp -m tcp --dport 80 -j web
        -A INPUT -c 5 300 -p tcp -m tcp --dport 22 -j ACCEPT
        -I INPUT -i lo -j ACCEPT
        -I INPUT 3 -p udp --dport 53 -j ACCEPT
        -A web -j ACCEPT
        COMMIT
        # Completed on Thu Nov 26 19:55:34 2026
        """
    )
    assert rs.default is Action.DROP
    got = [(r.id, r.line, r.describe()) for r in rules_of(rs)]
    assert got == [
        ("INPUT/1", 9, "accept any from 0.0.0.0/0 to any in on lo"),
        ("web/1", 11, "accept tcp from 0.0.0.0/0 to any port 80"),
        ("INPUT/3", 10, "accept udp from 0.0.0.0/0 to any port 53"),
        ("INPUT/4", 8, "accept tcp from 0.0.0.0/0 to any port 22"),
    ]


def test_addresses_masks_lists_and_ranges() -> None:
    rs = parse(
        table(
            "-A INPUT -s 10.1.2.3/8 -j DROP",
            "-A INPUT -s 192.0.2.0/255.255.255.0 -d 198.51.100.7 -j DROP",
            "-A INPUT -s 192.0.2.1,192.0.2.2,203.0.113.0/24 -j DROP",
            "-A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 --dst-range 10.9.0.0-10.9.1.255"
            " -j DROP",
            "-A INPUT ! -d 10.0.0.0/8 -j DROP",
        )
    )
    got = [(str(r.src), str(r.dst)) for r in rules_of(rs)]
    assert got == [
        ("10.0.0.0/8", "None"),
        ("192.0.2.0/24", "198.51.100.7"),
        ("192.0.2.1-192.0.2.2, 203.0.113.0/24", "None"),
        ("10.0.0.1-10.0.0.9", "10.9.0.0/23"),
        ("None", "0.0.0.0-9.255.255.255, 11.0.0.0-255.255.255.255"),
    ]


@pytest.mark.parametrize(
    ("rule", "column", "reason"),
    [
        ("-A INPUT -s example.com -j DROP", 13, "iptables resolves host names"),
        ("-A INPUT -s 10.0.0.0/255.0.255.0 -j DROP", 13, "not contiguous"),
        ("-A INPUT ! -s 10.0.0.1,10.0.0.2 -j DROP", 10, "several addresses"),
        ("-A INPUT -s 10.0.0.0/8 -s 11.0.0.0/8 -j DROP", 24, "-s is given twice"),
        ("-A INPUT -s 10.0.0.0/33 -j DROP", 13, "longer than the address"),
        ("-A INPUT -p tcp --dport ssh -j DROP", 25, "/etc/services"),
        ("-A INPUT -p tcp --dport 5:3 -j DROP", 25, "min > max"),
        ("-A INPUT -p tcp --dport 70000 -j DROP", 25, "port out of range"),
        (
            "-A INPUT -p tcp -m multiport --dports 1:2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j DROP",
            39,
            "too many ports",
        ),
        ("-A INPUT -p tcp -m tcp --dport 1 --dport 2 -j DROP", 34, "given twice"),
        ("-A INPUT --dport 22 -j DROP", 10, "unknown option '--dport'"),
        ("-A INPUT -m tcp --dport 22 -j DROP", 10, "-m tcp needs -p tcp"),
        ("-A INPUT -p udp -m tcp --dport 22 -j DROP", 17, "-m tcp needs -p tcp"),
        ("-A INPUT -p icmp -m multiport --dports 1,2 -j DROP", 18, "-m multiport needs -p tcp"),
        ("-A INPUT -p bogus -j DROP", 13, "unknown protocol 'bogus'"),
        ("-A INPUT -p 300 -j DROP", 13, "out of range"),
        ("-A INPUT ! -p all -j DROP", 10, "matches no packet"),
        ("-A INPUT -p icmp --icmp-type nonsense -j DROP", 30, "unknown ICMP type"),
        ("-A INPUT -p tcp --tcp-flags SYN,BOGUS SYN -j DROP", 29, "unknown TCP flag"),
        ("-A INPUT -m conntrack --ctstate NEW,CONFUSED -j DROP", 33, "unknown connection state"),
        ("-A INPUT -j NOWHERE", 13, "no chain or target named 'NOWHERE'"),
        ("-A INPUT -j INPUT", 13, "no chain or target named 'INPUT'"),
        ("-A INPUT -g DROP", 13, "-g goes to a user chain"),
        ("-A INPUT -j ACCEPT -j DROP", 20, "one target"),
        ("-A INPUT -j REJECT --reject-with icmp-bogus", 34, "unknown reject type"),
        ("-A INPUT ! -m tcp -j DROP", 10, "cannot be negated"),
        ("-A INPUT -m comment ! --comment x -j DROP", 21, "cannot be negated"),
        ("-A INPUT -i eth0 !", 18, "negates nothing"),
        ("-A INPUT -i this-name-is-too-long -j DROP", 13, "not an interface name"),
        ("-A INPUT -x -j DROP", 10, "unknown option '-x'"),
        ("-A NOCHAIN -j DROP", 4, "chain NOCHAIN is not declared"),
        ("-D INPUT 1", 1, "only -A, -I, -N and -P"),
        ("-I INPUT 5 -j DROP", 1, "cannot insert at 5"),
    ],
)
def test_bad_rules_are_refused_at_their_column(rule: str, column: int, reason: str) -> None:
    e = error(table(rule))
    assert (e.line, e.column) == (5, column), e
    assert reason in e.reason


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\n", 1, "has no COMMIT"),
        ("*filter\n:INPUT DROP [0:0]\n*nat\nCOMMIT\n", 3, "before *filter (line 1)"),
        ("-A INPUT -j DROP\n", 1, "a line outside a table"),
        ("*filter\nCOMMIT\nCOMMIT\n", 3, "COMMIT outside a table"),
        ("*broute\nCOMMIT\n", 1, "unknown table"),
        ("*filter\n:INPUT DROP [0:0]\nCOMMIT\n*filter\nCOMMIT\n", 4, "appears twice"),
        ("*nat\nCOMMIT\n", 1, "no *filter table"),
        ("*filter\n:INPUT REJECT [0:0]\nCOMMIT\n", 2, "ACCEPT or DROP"),
        ("*filter\n:web ACCEPT [0:0]\nCOMMIT\n", 2, "a user chain has no policy"),
        ("*filter\n:INPUT DROP [0:0]\n:INPUT DROP [0:0]\nCOMMIT\n", 3, "declared twice"),
        ("*filter\n:INPUT DROP [x]\nCOMMIT\n", 2, "[packets:bytes]"),
        ("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n", 1, "INPUT chain has no policy"),
        ("*filter\n:INPUT DROP [0:0]\n-P web DROP\nCOMMIT\n", 3, "only a built-in chain"),
    ],
)
def test_bad_files_are_refused_at_their_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_iptables(text, "rules.v4")
    assert info.value.line == line, info.value
    assert reason in info.value.reason


def test_select_takes_a_built_in_chain() -> None:
    text = table("-A INPUT -j DROP", "-A OUTPUT -o eth1 -j DROP", policy="ACCEPT")
    assert (
        rules_of(parse(text, "output"))[0].describe()
        == "drop any from 0.0.0.0/0 to any out on eth1"
    )
    assert parse(text, "filter:OUTPUT") == parse(text, "OUTPUT")
    e = error(table(chains=["web"]), "web")
    assert "INPUT, FORWARD or OUTPUT" in e.reason and e.line is None


def test_the_ip_version_comes_from_the_header_or_the_rules() -> None:
    v6 = "# Generated by ip6tables-save v1.8.9 (nf_tables)\n" + table("-A INPUT -p tcp -j REJECT")
    rs = parse(v6)
    assert rs.rules[0] == Rule(
        Action.ACCEPT,
        id="INPUT/not-ipv4",
        src=parse_ipset("0.0.0.0/0"),
        comment="IPv4 packets do not pass ip6tables",
    )
    assert rules_of(rs)[0].reject_with == "icmpv6-port-unreachable"
    shown = parse(table("-A INPUT -s 2001:db8::/32 -j ACCEPT", "-A INPUT -j REJECT"))
    assert rules_of(shown)[1].reject_with == "icmpv6-port-unreachable"
    assert rules_of(parse(table("-A INPUT -j REJECT")))[0].reject_with == "icmp-port-unreachable"
    e = error(table("-A INPUT -s 10.0.0.0/8 -j ACCEPT", "-A INPUT -s 2001:db8::/32 -j ACCEPT"))
    assert (e.line, e.column) == (6, 13)
    assert "address 2001:db8::/32 is IPv6, but line 5 (address 10.0.0.0/8) shows IPv4" in e.reason
    e = error("# Generated by ip6tables-save v1.8.9\n" + table("-A INPUT -p icmp --icmp-type 8"))
    assert e.line == 6 and "-m icmp is IPv4" in e.reason


def test_rules_marked_for_the_other_ip_version_are_skipped() -> None:
    """iptables-restore skips a rule marked -6, ip6tables-restore one marked -4: one file
    can feed both; the other version's addresses then prove nothing about the file."""
    text = table(
        "-A INPUT -4 -s 10.0.0.0/8 -j ACCEPT",
        "-A INPUT -6 -s 2001:db8::/32 -j ACCEPT",
        "-A INPUT -p tcp -j DROP",
    )
    assert [r.id for r in rules_of(parse(text))] == ["INPUT/1", "INPUT/3"]
    six = parse_iptables(text, "rules.v6", version=6)
    assert [r.id for r in rules_of(six)] == ["INPUT/2", "INPUT/3"]


def test_protocols_by_name_and_number() -> None:
    rs = parse(
        table(
            "-A INPUT -p gre -j ACCEPT",
            "-A INPUT -p 50 -j ACCEPT",
            "-A INPUT -p ipv6-icmp -j ACCEPT",
            "-A INPUT -p all -s 10.0.0.0/8 -j ACCEPT",
            "-A INPUT -p 0 -s 11.0.0.0/8 -j DROP",
        )
    )
    assert [r.proto for r in rules_of(rs)] == [47, 50, 58, None, None]


def test_ports_ranges_multiport_and_either_port() -> None:
    rs = parse(
        table(
            "-A INPUT -p tcp --sport :1023 --dport 1024: -j ACCEPT",
            "-A INPUT -p udp -m multiport --sports 53,123 --dports 1000:2000 -j ACCEPT",
            "-A INPUT -p tcp -m multiport --ports 22,80 -j ACCEPT",
            "-A INPUT -p sctp -m sctp --dport 2905 -j ACCEPT",
        )
    )
    got = [(r.sport, r.dport) for r in rules_of(rs)]
    assert got == [
        (parse_ports("0-1023"), parse_ports("1024-65535")),
        (parse_ports([53, 123]), parse_ports("1000-2000")),
        (parse_ports([22, 80]), None),
        (parse_ports(["0-21", "23-79", "81-65535"]), parse_ports([22, 80])),
        (None, parse_ports(2905)),
    ]


def test_icmp_types_names_codes_and_any() -> None:
    rs = parse(
        table(
            "-A INPUT -p icmp --icmp-type echo-request -j ACCEPT",
            "-A INPUT -p icmp -m icmp --icmp-type fragmentation-needed -j ACCEPT",
            "-A INPUT -p icmp -m icmp --icmp-type 11/1 -j ACCEPT",
            "-A INPUT -p icmp -m icmp --icmp-type any -j DROP",
        )
    )
    got = [(r.proto, r.icmp_type, r.icmp_code) for r in rules_of(rs)]
    assert got == [(1, 8, None), (1, 3, 4), (1, 11, 1), (1, None, None)]
    six = parse(
        "# Generated by ip6tables-save\n"
        + table("-A INPUT -p icmpv6 --icmpv6-type neighbor-solicitation -j ACCEPT")
    )
    assert [(r.proto, r.icmp_type) for r in rules_of(six)] == [(58, 135)]


def test_tcp_flags_and_syn() -> None:
    rs = parse(
        table(
            "-A INPUT -p tcp --syn -j ACCEPT",
            "-A INPUT -p tcp -m tcp --tcp-flags ALL NONE -j DROP",
            "-A INPUT -p tcp -m tcp --tcp-flags syn,fin SYN,FIN -j DROP",
            "-A INPUT -p tcp -m tcp --tcp-flags SYN ACK -j DROP",
        )
    )
    assert [r.tcp_flags for r in rules_of(rs)] == [
        (FIN | SYN | RST | ACK, SYN),
        (0x3F, 0),
        (FIN | SYN, FIN | SYN),
    ]  # the last compares a flag outside its mask: it never matches, so it is not emitted


def test_states_from_conntrack_and_state() -> None:
    rs = parse(
        table(
            "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -m state --state INVALID -j DROP",
            "-A INPUT -m conntrack ! --ctstate NEW -j DROP",
        )
    )
    assert [r.ct_state for r in rules_of(rs)] == [
        frozenset({"related", "established"}),
        frozenset({"invalid"}),
        frozenset({"established", "related", "invalid"}),
    ]


def test_interfaces_give_iface_and_direction() -> None:
    rs = parse(table("-A INPUT -i eth0 -j ACCEPT", "-A INPUT -i + -j DROP"))
    got = [(r.direction, r.iface) for r in rules_of(rs)]
    assert got == [("in", "eth0"), (None, None)]
    out = parse(table("-A OUTPUT -o wg0 -j DROP", policy="ACCEPT"), "OUTPUT")
    assert [(r.direction, r.iface) for r in rules_of(out)] == [("out", "wg0")]
    forward = parse(
        table(
            "-A FORWARD -i eth0 -j DROP",
            "-A FORWARD -o eth1 -j ACCEPT",
            "-A FORWARD -i eth1 -o eth0 -j ACCEPT",
        ),
        "FORWARD",
    )
    assert [(r.direction, r.iface, r.out_iface) for r in rules_of(forward)] == [
        (None, "eth0", None),
        (None, None, "eth1"),
        (None, "eth1", "eth0"),
    ]


def test_output_interface_in_a_chain_input_reaches_never_matches() -> None:
    rs = parse(
        table(
            "-A INPUT -j both",
            "-A both -o eth0 -j DROP",
            "-A both ! -o eth0 -p tcp -j ACCEPT",
            chains=["both"],
        )
    )
    assert [(r.id, r.describe()) for r in rules_of(rs)] == [
        ("both/2", "accept tcp from 0.0.0.0/0 to any")
    ]


def test_reject_types() -> None:
    rs = parse(
        table(
            "-A INPUT -p tcp --dport 1 -j REJECT --reject-with tcp-reset",
            "-A INPUT -p tcp --dport 2 -j REJECT --reject-with tcp-rst",
            "-A INPUT -p tcp --dport 3 -j REJECT --reject-with admin-prohib",
            "-A INPUT -p tcp --dport 4 -j REJECT --reject-with icmp-net-unreachable",
            "-A INPUT -p tcp --dport 5 -j REJECT --reject-with host-unreach",
            "-A INPUT -j REJECT",
        )
    )
    assert [r.reject_with for r in rules_of(rs)] == [
        "tcp-reset",
        "tcp-reset",
        "icmp-admin-prohibited",
        "icmp-net-unreachable",
        "icmp-host-unreachable",
        "icmp-port-unreachable",
    ]


@pytest.mark.parametrize(
    "reject_with", ["icmp-host-prohibited", "icmp-net-prohibited", "icmp-proto-unreachable"]
)
def test_reject_types_the_model_lacks_are_refused(reject_with: str) -> None:
    e = error(table(f"-A INPUT -j REJECT --reject-with {reject_with}"))
    assert (e.line, e.column) == (5, 13)
    assert f"--reject-with {reject_with} is not in the rule model" in e.reason


def test_tcp_reset_without_tcp_is_refused() -> None:
    e = error(table("-A INPUT -j REJECT --reject-with tcp-reset"))
    assert e.line == 5 and "tcp-reset needs protocol tcp" in e.reason


def test_comments_are_kept_and_joined() -> None:
    rs = parse(table('-A INPUT -m comment --comment one -m comment --comment "two 2" -j DROP'))
    assert rules_of(rs)[0].comment == "one; two 2"


# -- flattening -------------------------------------------------------------------------------


def described(rs: RuleSet) -> list[str]:
    return [f"{r.id}: {r.describe()}" for r in rules_of(rs)]


def test_a_jump_inlines_the_chain_under_its_conditions() -> None:
    rs = parse(
        table(
            "-A INPUT -s 10.0.0.0/8 -p tcp -j web",
            "-A INPUT -j DROP",
            "-A web -m multiport --dports 80,443 -p tcp -j ACCEPT",
            "-A web -s 10.1.0.0/16 -j ACCEPT",
            "-A web -s 192.0.2.0/24 -j ACCEPT",
            chains=["web"],
        )
    )
    assert described(rs) == [
        "web/1: accept tcp from 10.0.0.0/8 to any port 80,443",
        "web/2: accept tcp from 10.1.0.0/16 to any",
        "INPUT/2: drop any from 0.0.0.0/0 to any",
    ]


def test_return_with_an_address_narrows_the_rest_of_the_chain() -> None:
    rs = parse(
        table(
            "-A INPUT -j chk",
            "-A INPUT -j ACCEPT",
            "-A chk -s 10.0.0.0/8 -j RETURN",
            "-A chk -p tcp -j DROP",
            chains=["chk"],
            policy="DROP",
        )
    )
    assert described(rs) == [
        "chk/2: drop tcp from 0.0.0.0-9.255.255.255, 11.0.0.0-255.255.255.255 to any",
        "INPUT/2: accept any from 0.0.0.0/0 to any",
    ]


def test_return_the_model_cannot_complement_takes_the_caller_along() -> None:
    rs = parse(
        table(
            "-A INPUT -j chk",
            "-A INPUT -p udp -j ACCEPT",
            "-A chk -p tcp -j RETURN",
            "-A chk -j DROP",
            chains=["chk"],
            policy="ACCEPT",
        )
    )
    # tcp returns: it meets INPUT/2 (udp: no) and then the policy; chk/2 drops all else,
    # so INPUT/2 is never reached by anything and is not emitted
    assert described(rs) == [
        "INPUT/policy: accept tcp from 0.0.0.0/0 to any",
        "chk/2: drop any from 0.0.0.0/0 to any",
    ]


def test_return_in_the_built_in_chain_applies_the_policy() -> None:
    rs = parse(table("-A INPUT -p tcp -j RETURN", "-A INPUT -j ACCEPT", policy="DROP"))
    assert described(rs) == [
        "INPUT/1: drop tcp from 0.0.0.0/0 to any",
        "INPUT/2: accept any from 0.0.0.0/0 to any",
    ]
    assert rules_of(rs)[0].comment == "back to the INPUT policy"


def test_goto_does_not_come_back() -> None:
    rs = parse(
        table(
            "-A INPUT -j outer",
            "-A INPUT -j ACCEPT",
            "-A outer -p tcp -g inner",
            "-A outer -j DROP",
            "-A inner -p tcp --dport 22 -j REJECT --reject-with tcp-reset",
            chains=["outer", "inner"],
        )
    )
    # tcp goes to inner; what falls off inner goes back to INPUT (after its jump to
    # outer), not on to outer's DROP
    assert described(rs) == [
        "inner/1: reject with tcp-reset tcp from 0.0.0.0/0 to any port 22",
        "INPUT/2: accept tcp from 0.0.0.0/0 to any",
        "outer/2: drop any from 0.0.0.0/0 to any",
    ]
    # a goto from the built-in chain: what falls off (or returns) meets the policy
    from_builtin = parse(
        table(
            "-A INPUT -p tcp -g inner",
            "-A INPUT -j ACCEPT",
            "-A inner -j RETURN",
            chains=["inner"],
        )
    )
    assert described(from_builtin) == [
        "inner/1: drop tcp from 0.0.0.0/0 to any",
        "INPUT/2: accept any from 0.0.0.0/0 to any",
    ]


def test_a_negated_interface_is_expanded_exactly() -> None:
    rs = parse(
        table(
            "-A INPUT ! -i lo -s 127.0.0.0/8 -j DROP",
            "-A INPUT -p tcp --dport 22 -j ACCEPT",
            policy="ACCEPT",
        )
    )
    assert described(rs) == [
        "INPUT/2: accept tcp from 127.0.0.0/8 to any port 22 in on lo",
        "INPUT/policy: accept any from 127.0.0.0/8 to any in on lo",
        "INPUT/1: drop any from 127.0.0.0/8 to any",
        "INPUT/2~2: accept tcp from 0.0.0.0/0 to any port 22",
    ]


def test_log_and_rules_without_target_decide_nothing() -> None:
    rs = parse(
        table(
            '-A INPUT -m limit --limit 3/min -j LOG --log-prefix "[drop] " --log-level 4',
            "-A INPUT -m recent --set --name ssh",
            "-A INPUT -j NFLOG --nflog-group 2",
            "-A INPUT -j logged",
            "-A logged -m hashlimit --hashlimit-above 1/s -j RETURN",
            "-A logged -j LOG",
            "-A INPUT -p tcp -j DROP",
            chains=["logged"],
        )
    )
    assert described(rs) == ["INPUT/5: drop tcp from 0.0.0.0/0 to any"]


def test_what_the_model_cannot_say_is_refused_only_where_it_decides() -> None:
    unreachable = table(
        "-A INPUT -j ACCEPT",
        "-A spare -m set --match-set bad src -j DROP",
        chains=["spare"],
    )
    assert described(parse(unreachable)) == ["INPUT/1: accept any from 0.0.0.0/0 to any"]
    e = error(table("-A INPUT -p tcp -m set --match-set bad src -j DROP"))
    assert (e.line, e.column) == (5, 17)
    assert (
        e.reason == "-m set --match-set bad src: the rule model cannot say it "
        "(an ipset's members are not in the file)"
    )
    e = error(table("-A INPUT -m owner --uid-owner 0 -j ACCEPT"))
    assert "the owner of the local socket" in e.reason
    e = error(table("-A INPUT -j NFQUEUE --queue-num 1"))
    assert (e.line, e.column) == (5, 13)
    assert "-j NFQUEUE hands the packet to a user-space program" in e.reason
    e = error(table("-A INPUT -f -j DROP"))
    assert e.reason == "-f: the rule model cannot say it (it has no IP fragments)"
    assert e.column == 10
    e = error(table("-A INPUT -i eth+ -j DROP"))
    assert "eth+ is a name prefix" in e.reason
    e = error(table("-A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT"))
    assert "(it has the states new, established, related and invalid, not UNTRACKED)" in e.reason
    e = error(table("-A INPUT -m conntrack --ctproto tcp -j ACCEPT"))
    assert "(it has no field for --ctproto of -m conntrack)" in e.reason
    e = error(table("-A INPUT -m socket -j ACCEPT"))
    assert e.reason == "-m socket: the rule model cannot say it (local sockets)"
    e = error(table("-A INPUT -m cpu --cpu 1 -j ACCEPT"))
    assert e.reason == "-m cpu --cpu 1: the rule model cannot say it (it has no field for -m cpu)"


def test_jump_loops_are_refused() -> None:
    e = error(
        table(
            "-A INPUT -j a",
            "-A a -j b",
            "-A b -p tcp -g a",
            chains=["a", "b"],
        )
    )
    assert (e.line, e.column) == (9, 16)
    assert "makes a loop" in e.reason


def test_forward_reads_both_interfaces_and_expands_their_negations() -> None:
    rs = parse(
        table(
            "-A FORWARD -i lan0 -o wan0 -j ACCEPT",
            "-A FORWARD -i lan0 ! -o wan0 -p tcp -j REJECT --reject-with tcp-reset",
            "-A FORWARD ! -i lan0 -o lan0 -j DROP",
            "-A FORWARD -p udp -j ACCEPT",
        ),
        "FORWARD",
    )
    assert described(rs) == [
        "FORWARD/1: accept any from 0.0.0.0/0 to any on lan0 out via wan0",
        "FORWARD/2: reject with tcp-reset tcp from 0.0.0.0/0 to any on lan0",
        # '! -i lan0': lan0's packets to lan0 skip the DROP and meet the rest right there
        "FORWARD/4: accept udp from 0.0.0.0/0 to any on lan0 out via lan0",
        "FORWARD/policy: accept any from 0.0.0.0/0 to any on lan0 out via lan0",
        "FORWARD/3: drop any from 0.0.0.0/0 to any out via lan0",
        "FORWARD/4~2: accept udp from 0.0.0.0/0 to any",
    ]
    assert by_rule(rs, fwd("10.0.0.1", "192.0.2.1", "lan0", "lan0", proto="udp")) == "FORWARD/4"
    assert by_rule(rs, fwd("10.0.0.1", "192.0.2.1", "wan0", "lan0", proto="udp")) == "FORWARD/3"


def test_interface_wildcards_are_still_refused() -> None:
    e = error(table("-A FORWARD -i lan0 -o eth+ -j ACCEPT"), "FORWARD")
    assert (e.line, e.column) == (5, 20)
    assert "eth+ is a name prefix" in e.reason


def test_a_drop_in_another_table_on_the_way_is_refused() -> None:
    mangle = (
        "*mangle\n:PREROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_iptables(mangle + table("-A INPUT -j ACCEPT"), "rules.v4")
    assert (info.value.line, info.value.column) == (3, 49)
    assert "decides outside the filter table" in info.value.reason
    # OUTPUT packets do not pass PREROUTING; nat rules never decide
    parse_iptables(mangle + table("-A OUTPUT -j ACCEPT"), "rules.v4", "OUTPUT")
    nat = (
        "*nat\n:PREROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2\nCOMMIT\n"
    )
    assert parse_iptables(nat + table("-A INPUT -j ACCEPT"), "r") == parse_iptables(
        table("-A INPUT -j ACCEPT"), "r"
    )


def test_the_flattening_is_bounded() -> None:
    # each '! -i eth0' rule copies the rest of the chain for eth0's packets
    negations = [f"-A INPUT ! -i eth0 -s 10.0.{k}.0/24 -j DROP" for k in range(30)]
    ports = [f"-A INPUT -p tcp --dport {k} -j ACCEPT" for k in range(1, 31)]
    text = table(*negations, *ports)
    # per negation: eth0's copy of the 30 port rules and of the policy, then the DROP;
    # then the 30 port rules for everything else (and the rule for IPv6 first)
    assert len(parse_iptables(text, "r").rules) == 1 + 30 * (30 + 1 + 1) + 30
    with pytest.raises(ConfigError) as info:
        parse_iptables(text, "rules.v4", max_rules=500)
    assert "flattens into more than 500 rules" in info.value.reason
    assert info.value.line is not None and info.value.line > 5


# -- rendering ---------------------------------------------------------------------------------


def yaml_rules(text: str) -> RuleSet:
    from ramparts.firewall.files import parse_ruleset_yaml

    return parse_ruleset_yaml(textwrap.dedent(text).lstrip("\n"), "policy.yaml")


POLICY = yaml_rules(
    """
    default: reject
    rules:
      - id: lo
        action: accept
        iface: lo
        direction: in
      - id: established
        action: accept
        state: [established, related]
      - id: blocked
        action: drop
        src: [198.51.100.0/24, "2001:db8:bad::/48", 10.0.0.1-10.0.0.9]
      - id: web
        action: accept
        proto: tcp
        dport: [80, 443, 8000-8080]
        comment: the "public" site
      - id: not-admin
        action: drop
        src: [0.0.0.0-192.0.1.255, 192.0.3.0-255.255.255.255]
        proto: tcp
        dport: 22
      - id: ping
        action: accept
        proto: icmp
        icmp_type: 8
      - id: ping6
        action: accept
        proto: icmpv6
        icmp_type: 128
      - id: syn-flood
        action: drop
        proto: tcp
        tcp_flags: syn,ack,rst,fin/syn
        state: invalid
      - id: outbound
        action: accept
        direction: out
      - id: telnet
        action: reject
        reject_with: icmp-admin-prohibited
        proto: tcp
        dport: 23
    """
)


def test_render_ipv4() -> None:
    assert render_iptables_restore(POLICY) == textwrap.dedent(
        """\
        # Generated by ramparts for iptables-restore: the INPUT chain of policy.yaml
        # IPv4 only: the IPv6 rules go to the ip6tables-restore file
        # left out ping6: ICMPv6 types are IPv6's
        # left out outbound: direction out never matches in INPUT
        *filter
        :INPUT DROP [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        -A INPUT -i lo -m comment --comment lo -j ACCEPT
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment established -j ACCEPT
        -A INPUT -m iprange --src-range 10.0.0.1-10.0.0.9 -m comment --comment blocked -j DROP
        -A INPUT -s 198.51.100.0/24 -m comment --comment blocked -j DROP
        -A INPUT -p tcp -m multiport --dports 80,443,8000:8080 -m comment --comment "web: the \\"public\\" site" -j ACCEPT
        -A INPUT ! -s 192.0.2.0/24 -p tcp -m tcp --dport 22 -m comment --comment not-admin -j DROP
        -A INPUT -p icmp -m icmp --icmp-type 8 -m comment --comment ping -j ACCEPT
        -A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate INVALID -m comment --comment syn-flood -j DROP
        -A INPUT -p tcp -m tcp --dport 23 -m comment --comment telnet -j REJECT --reject-with icmp-admin-prohibited
        -A INPUT -m comment --comment default -j REJECT --reject-with icmp-port-unreachable
        COMMIT
        """  # noqa: E501
    )


def test_render_ipv6_and_output() -> None:
    six = render_ip6tables_restore(POLICY)
    assert "-A INPUT -s 2001:db8:bad::/48 -m comment --comment blocked -j DROP" in six
    assert (
        "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -m comment --comment ping6 -j ACCEPT"
        in six
    )
    assert "--reject-with icmp6-adm-prohibited" in six
    assert "# left out ping: ICMP types are IPv4's" in six
    assert "# left out not-admin: it names IPv4 addresses only" in six
    out = render_iptables_restore(POLICY, "OUTPUT")
    assert ":OUTPUT DROP [0:0]" in out and ":INPUT ACCEPT [0:0]" in out
    assert "-A OUTPUT -m comment --comment outbound -j ACCEPT" in out
    assert "# left out lo: direction in never matches in OUTPUT" in out


def test_render_splits_long_port_lists_and_address_lists() -> None:
    ports = list(range(1000, 1040, 2))  # 20 ports: 15 + 5
    rs = RuleSet.of(
        [
            Rule(
                Action.ACCEPT,
                id="many",
                proto=17,
                sport=parse_ports([53, "100-200"]),
                dport=parse_ports(ports),
                src=parse_ipset(["192.0.2.1", "192.0.2.3"]),
            )
        ],
        Action.ACCEPT,
    )
    lines = [ln for ln in render_iptables_restore(rs).splitlines() if ln.startswith("-A")]
    assert len(lines) == 4
    assert lines[0] == (
        "-A INPUT -s 192.0.2.1/32 -p udp -m multiport --sports 53,100:200 -m multiport --dports "
        + ",".join(map(str, ports[:15]))
        + " -m comment --comment many -j ACCEPT"
    )
    assert lines[3].startswith("-A INPUT -s 192.0.2.3/32 -p udp -m multiport --sports 53,100:200")


def test_render_comments_are_quoted_and_cut_to_255_bytes() -> None:
    rs = RuleSet.of([Rule(Action.DROP, id="x", comment="é" * 200 + "\nnext line")])
    (line,) = [ln for ln in render_iptables_restore(rs).splitlines() if ln.startswith("-A")]
    comment = line.split("--comment ")[1].rsplit(" -j", 1)[0]
    assert comment.startswith('"x: éé') and comment.endswith('é"')
    assert len(comment[1:-1].encode()) <= 255


@pytest.mark.parametrize(
    ("rule", "chain", "reason"),
    [
        (Rule(Action.DROP, id="r", proto=0), "INPUT", "protocol 0 as any protocol"),
        (Rule(Action.DROP, id="r", proto=1, icmp_type=255), "INPUT", "ICMP type 255"),
        (Rule(Action.DROP, id="r", iface="eth+"), "INPUT", "cannot be said in iptables"),
        (Rule(Action.DROP, id="r", iface="a-very-long-interface"), "INPUT", "cannot be said"),
        (Rule(Action.DROP, id="r", out_iface="wan+"), "FORWARD", "'wan+' cannot be said"),
        (Rule(Action.DROP, id="r", iface="lan0", out_iface="x" * 16), "FORWARD", "cannot be said"),
    ],
)
def test_render_refuses_what_iptables_cannot_say(rule: Rule, chain: str, reason: str) -> None:
    rs = RuleSet(tuple([Rule(Action.ACCEPT, id="first"), replace_line(rule, 7)]), name="p.yaml")
    with pytest.raises(ConfigError) as info:
        render_iptables_restore(rs, chain)
    assert (info.value.file, info.value.line) == ("p.yaml", 7)
    assert info.value.reason.startswith("rule r (")
    assert reason in info.value.reason


def replace_line(rule: Rule, line: int) -> Rule:
    return replace(rule, line=line)


def test_render_forward_gives_iface_as_in_and_out_iface_as_out() -> None:
    rs = RuleSet.of(
        [
            Rule(Action.ACCEPT, id="vpn", iface="wg0", out_iface="lan0",
                 src=parse_ipset("10.99.0.0/24")),
            Rule(Action.DROP, id="to-wan", out_iface="wan0"),
            Rule(Action.ACCEPT, id="from-lan", iface="lan0"),
            Rule(Action.ACCEPT, id="host-in", direction="in", iface="eth0"),
        ]
    )  # fmt: skip
    text = render_iptables_restore(rs, "FORWARD")
    assert [ln for ln in text.splitlines() if ln.startswith(("-A", "# left"))] == [
        "# left out host-in: direction in never matches in FORWARD (a forwarded packet has none)",
        "-A FORWARD -s 10.99.0.0/24 -i wg0 -o lan0 -m comment --comment vpn -j ACCEPT",
        "-A FORWARD -o wan0 -m comment --comment to-wan -j DROP",
        "-A FORWARD -i lan0 -m comment --comment from-lan -j ACCEPT",
    ]
    back = parse_iptables(text, "back", "FORWARD")
    assert [(r.iface, r.out_iface, r.direction) for r in rules_of(back)] == [
        ("wg0", "lan0", None),
        (None, "wan0", None),
        ("lan0", None, None),
    ]
    # in INPUT and OUTPUT a forwarded packet's output interface never matches
    for chain in ("INPUT", "OUTPUT"):
        host = render_iptables_restore(rs, chain)
        assert (
            f"# left out vpn: out_iface (a forwarded packet's output interface) never "
            f"matches in {chain}" in host
        )
        assert "to-wan" not in host.split("*filter")[1]


def test_the_rendered_golden_files_load_back_the_same() -> None:
    for name, chain, version in GOLDEN:
        rs = load_iptables(DATA / name, chain)
        text = render_iptables_restore(rs, chain, version)
        back = parse_iptables(text, "rendered", chain)
        packets = sample_packets([rs], version, direction_of(chain), 1500, 7)
        assert [decision(rs, p) for p in packets] == [decision(back, p) for p in packets]


# -- properties ---------------------------------------------------------------------------------

SLOTS = {
    "src": ["-s 10.0.0.0/24", "-s 10.0.0.2/32", "! -s 10.0.0.0/24",
            "-m iprange --src-range 10.0.0.1-10.0.0.5"],
    "dst": ["-d 192.0.2.0/25", "! -d 192.0.2.1/32"],
    "proto": ["-p tcp", "-p udp", "-p icmp", "! -p tcp", "-p tcp -m tcp --dport 22",
              "-p tcp -m tcp ! --dport 80:443", "-p tcp -m multiport --dports 22,80",
              "-p udp -m multiport --ports 53,80", "-p tcp -m tcp --syn", "-p tcp -m tcp ! --syn",
              "-p tcp -m tcp --tcp-flags SYN,ACK ACK", "-p tcp -m tcp --sport 1024:",
              "-p icmp -m icmp --icmp-type 8", "-p icmp -m icmp ! --icmp-type 8",
              "-p udp -m udp ! --sport 53"],
    "iface": ["-i eth0", "! -i eth0", "-i lo", "-o eth0", "! -o lo", "-i eth0 -o lo",
              "! -i lo -o eth0", "-i lo ! -o eth0"],
    "state": ["-m conntrack --ctstate NEW", "-m conntrack ! --ctstate ESTABLISHED,RELATED",
              "-m state --state INVALID", "-m conntrack --ctstate NEW,ESTABLISHED"],
}  # fmt: skip


@st.composite
def chain_tables(draw: st.DrawFn) -> tuple[str, str]:
    """A filter table with a built-in chain and up to three user chains, jumps and gotos
    only forward (no loops), rules from the SLOTS palette."""
    builtin = draw(st.sampled_from(["INPUT", "OUTPUT", "FORWARD"]))
    users = [f"U{k}" for k in range(1, draw(st.integers(1, 3)) + 1)]
    policy = draw(st.sampled_from(["ACCEPT", "DROP"]))
    lines = ["*filter", f":{builtin} {policy} [0:0]", *(f":{u} - [0:0]" for u in users)]
    for index, chain in enumerate([builtin, *users]):
        later = users[index:] if chain != builtin else users
        for _ in range(draw(st.integers(1, 6))):
            parts = [
                draw(st.sampled_from(opts))
                for opts in SLOTS.values()
                if draw(st.integers(0, 2)) == 0
            ]
            targets = ["-j ACCEPT", "-j DROP", "-j REJECT", "-j RETURN", "-j RETURN", "-j LOG"]
            for u in later:
                targets += [f"-j {u}", f"-j {u}", f"-g {u}"]
            target = draw(st.sampled_from(targets))
            if target == "-j REJECT" and any(p.startswith("-p tcp") for p in parts):
                target += draw(st.sampled_from(["", " --reject-with tcp-reset"]))
            lines.append(" ".join(["-A", chain, *parts, target]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n", builtin


def universe(direction: str | None) -> list[Packet]:
    """Every combination of the values the SLOTS palette tells apart (and one IPv6 packet);
    direction None: forwarded packets, with every output interface too."""
    out = [Packet.make("2001:db8::1", "2001:db8::2", "tcp", 1, 22, direction=direction)]
    srcs, dsts = ["10.0.0.2", "10.0.0.9", "172.16.0.1"], ["192.0.2.1", "192.0.2.200"]
    shapes: list[tuple[str, int, int, dict[str, int]]] = []
    for sport in (53, 2000):
        for dport in (22, 80, 8080):
            for flags in (SYN, ACK, SYN | ACK, FIN | ACK, RST):
                shapes.append(("tcp", sport, dport, {"tcp_flags": flags}))
        for dport in (53, 80, 9999):
            shapes.append(("udp", sport, dport, {}))
    shapes += [("icmp", 0, 0, {"icmp_type": t, "icmp_code": 0}) for t in (0, 8)]
    shapes.append(("47", 0, 0, {}))
    for src in srcs:
        for dst in dsts:
            for proto, sport, dport, extra in shapes:
                for iface in ("eth0", "lo"):
                    for out_iface in ("eth0", "lo") if direction is None else (None,):
                        for state in ("new", "established", "invalid"):
                            out.append(
                                Packet.make(
                                    src, dst, proto, sport, dport, direction=direction,
                                    iface=iface, out_iface=out_iface, ct_state=state, **extra,
                                )
                            )  # fmt: skip
    return out


UNIVERSE = {d: universe(d) for d in ("in", "out", None)}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain_tables())
def test_flattening_decides_as_the_chain_walk(drawn: tuple[str, str]) -> None:
    text, builtin = drawn
    rs = parse_iptables(text, "random.rules", builtin)
    oracle = Oracle(text)
    for p in UNIVERSE[direction_of(builtin)]:
        assert decision(rs, p) == oracle.decide(builtin, p), (p, [r.describe() for r in rs.rules])


@Props
@given(st.lists(model_rules(), max_size=6), st.sampled_from(list(Action)),
       st.sampled_from([(4, "INPUT"), (6, "INPUT"), (4, "OUTPUT")]))  # fmt: skip
def test_render_then_load_decides_the_same(
    rules: list[Rule], default: Action, where: tuple[int, str]
) -> None:
    version, chain = where
    rs = RuleSet.of(rules, default, name="random.yaml")
    text = render_iptables_restore(rs, chain, version)
    back = parse_iptables(text, "rendered.rules", chain)
    for p in RT_UNIVERSE[(version, direction_of(chain))]:
        assert reject_kind(back, p) == reject_kind(rs, p), (p, text)


@Props
@given(st.lists(model_rules(forward=True), max_size=6), st.sampled_from(list(Action)),
       st.sampled_from([4, 6]))  # fmt: skip
def test_forward_rule_sets_render_then_load_decide_the_same(
    rules: list[Rule], default: Action, version: int
) -> None:
    """Random FORWARD rule sets with iface and out_iface (and rules with a direction, which
    never match a forwarded packet and are left out) survive render -> load."""
    rs = RuleSet.of(rules, default, name="random.yaml")
    text = render_iptables_restore(rs, "FORWARD", version)
    back = parse_iptables(text, "rendered.rules", "FORWARD")
    assert all(r.direction is None for r in back.rules)
    for p in RT_UNIVERSE[(version, None)]:
        assert reject_kind(back, p) == reject_kind(rs, p), (p, text)


def test_render_then_load_keeps_ids_in_comments() -> None:
    back = parse_iptables(render_iptables_restore(POLICY), "r", None)
    assert [r.comment for r in rules_of(back)][:4] == ["lo", "established", "blocked", "blocked"]


def test_load_iptables_reads_a_path(tmp_path: Path) -> None:
    f = tmp_path / "rules.v4"
    f.write_text(table("-A INPUT -p tcp --dport 22 -j ACCEPT"))
    assert detect_format(f) == "iptables"
    assert load_rules(f) == parse_iptables(f.read_text(), str(f))
    with pytest.raises(ConfigError) as info:
        load_iptables(tmp_path / "missing.rules")
    assert "cannot read" in info.value.reason
