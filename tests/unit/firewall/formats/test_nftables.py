"""nftables out and in (firewall/formats/nftables.py).

Out: golden ``nft -f`` scripts for realistic rule sets (tests/data/firewall/nftables/
render/), named sets for long address lists, one rule per IP version, every reject, and
refusals with file and line.

In: listings made by the kernel itself (``nft -f`` SOURCE.nft in a namespace, then
``nft -j list ruleset``; see tests/data/firewall/nftables/README.md) imported and compared
with golden YAML rule files, and with an independent interpreter of nft's chain semantics
(jump, goto, return, ``!=``, sets) on thousands of packets; every unsupported construct is
refused with its JSON path, rule handle, line and column.

RAMPARTS_UPDATE_GOLDEN=1 rewrites the golden files after a deliberate change (review the
diff before committing).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import random
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ramparts.errors import ConfigError
from ramparts.firewall.files import load_ruleset, parse_ruleset_yaml
from ramparts.firewall.formats import detect_format, load_rules
from ramparts.firewall.formats.nftables import (
    ICMP_TYPES,
    ICMPV6_TYPES,
    compile_nftables,
    load_nftables,
    parse_nftables,
    render_nftables,
)
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import IPSet, Packet, parse_ipset, parse_ports
from ramparts.net.addr import IPRange

from ....support import ROOT

DATA = ROOT / "tests" / "data" / "firewall" / "nftables"
RENDERED = DATA / "render"
EXAMPLES = ROOT / "examples" / "firewall"
ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"
UPDATE = os.environ.get("RAMPARTS_UPDATE_GOLDEN") == "1"

# (JSON listing, --select, golden YAML)
IMPORTS = [
    ("host.json", None, "host.expected.yaml"),
    ("docker-like.json", "ip/filter/FORWARD", "docker-like.expected.yaml"),
    ("router.json", "forward", "router.expected.yaml"),
    ("router-ifaces.json", "inet/edge/forward", "router-ifaces.expected.yaml"),
    ("host-ifaces.json", "inet/host/input", "host-ifaces-input.expected.yaml"),
    ("host-ifaces.json", "inet/host/output", "host-ifaces-output.expected.yaml"),
]
# (golden script, rule file, render options)
RENDERS: list[tuple[str, Path, dict[str, Any]]] = [
    ("classic-input.nft", EXAMPLES / "classic.yaml", {"hook": "input"}),
    ("alshaer-forward.nft", ALSHAER, {"hook": "forward"}),
    ("edge-forward.nft", DATA / "edge.yaml", {"hook": "forward", "counters": True}),
    ("edge-ip-output.nft", DATA / "edge.yaml", {"hook": "output", "family": "ip"}),
    ("host-directions-input.nft", DATA / "host-directions.yaml", {"hook": "input"}),
    ("host-directions-output.nft", DATA / "host-directions.yaml", {"hook": "output"}),
    ("zones-forward.nft", DATA / "zones.yaml", {"hook": "forward"}),
    ("zones-input.nft", DATA / "zones.yaml", {"hook": "input"}),
]


def _golden_text(path: Path, text: str) -> str:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with RAMPARTS_UPDATE_GOLDEN=1"
    return path.read_text(encoding="utf-8")


# =========================================================================================
# Out
# =========================================================================================


@pytest.mark.parametrize(("golden", "source", "options"), RENDERS, ids=[r[0] for r in RENDERS])
def test_render_matches_the_golden_script(
    golden: str, source: Path, options: dict[str, Any]
) -> None:
    script = render_nftables(load_ruleset(source), **options)
    assert script == _golden_text(RENDERED / golden, script)


def _rules(*rules: Rule, default: Action = Action.DROP) -> RuleSet:
    return RuleSet(tuple(rules), default, name="t.yaml")


def _chain_lines(script: str) -> list[str]:
    """The rule lines of the chain (no header, sets, comments or braces)."""
    body = script.split("priority filter;", 1)[1].splitlines()[1:]
    return [
        line.strip() for line in body if line.strip() and not line.strip().startswith(("#", "}"))
    ]


def test_a_long_address_list_is_one_rule_with_a_named_set() -> None:
    # 5,000 addresses, none adjacent (so nothing merges): one rule, one interval set.
    addrs = [f"10.{i // 250}.{i % 250}.{1 + 2 * (i % 100)}" for i in range(5000)]
    rs = _rules(Rule(Action.DROP, id="blocked", src=parse_ipset(addrs)))
    program = compile_nftables(rs, hook="forward")
    assert [r.statement for r in program.rules] == ["ip saddr @s4_1 drop"]
    assert len(program.sets) == 1
    assert program.sets[0].version == 4
    assert len(program.sets[0].elements) == 5000
    assert "flags interval" in program.script()


def test_v4_and_v6_addresses_make_one_rule_per_version_and_sets_per_version() -> None:
    many4 = [f"192.0.2.{i}" for i in range(0, 40, 2)]
    many6 = [f"2001:db8::{i:x}" for i in range(0, 40, 2)]
    rs = _rules(
        Rule(Action.ACCEPT, id="a", src=parse_ipset(many4 + many6), proto=6, dport=parse_ports(22)),
        Rule(Action.ACCEPT, id="b", dst=parse_ipset(many4 + many6)),
        Rule(Action.ACCEPT, id="c", src=parse_ipset(many4 + many6)),  # the same sets again
        Rule(Action.DROP, id="d", src=parse_ipset(["10.0.0.0/8", "2001:db8::/32"])),
    )
    lines = _chain_lines(render_nftables(rs))
    assert lines == [
        'ip saddr @s4_1 tcp dport 22 accept comment "a"',
        'ip6 saddr @s6_1 tcp dport 22 accept comment "a"',
        'ip daddr @s4_1 accept comment "b"',
        'ip6 daddr @s6_1 accept comment "b"',
        'ip saddr @s4_1 accept comment "c"',
        'ip6 saddr @s6_1 accept comment "c"',
        'ip saddr 10.0.0.0/8 drop comment "d"',
        'ip6 saddr 2001:db8::/32 drop comment "d"',
    ]
    program = compile_nftables(rs)
    assert [(s.name, len(s.elements)) for s in program.sets] == [("s4_1", 20), ("s6_1", 20)]


def test_set_threshold_decides_between_anonymous_and_named_sets() -> None:
    five = parse_ipset([f"192.0.2.{i}" for i in (1, 3, 5, 7, 9)])
    rs = _rules(Rule(Action.DROP, id="x", src=five))
    assert "@s4_1" in render_nftables(rs)  # 5 > 4
    anon = render_nftables(rs, set_threshold=5)
    assert "ip saddr { 192.0.2.1, 192.0.2.3, 192.0.2.5, 192.0.2.7, 192.0.2.9 }" in anon
    assert "set s4_1" not in anon
    assert "@s4_1" in render_nftables(rs, set_threshold=0)


def test_the_whole_of_one_version_becomes_nfproto() -> None:
    rs = _rules(
        Rule(Action.ACCEPT, id="v4", src=parse_ipset("0.0.0.0/0"), proto=17),
        Rule(Action.ACCEPT, id="v6", dst=parse_ipset("::/0")),
    )
    assert _chain_lines(render_nftables(rs)) == [
        'meta nfproto ipv4 meta l4proto udp accept comment "v4"',
        'meta nfproto ipv6 accept comment "v6"',
    ]


@pytest.mark.parametrize(
    ("reject_with", "src", "expected"),
    [
        (None, None, "reject"),
        ("tcp-reset", None, "reject with tcp reset"),
        ("icmp-port-unreachable", None, "reject with icmpx type port-unreachable"),
        ("icmpv6-port-unreachable", None, "reject with icmpx type port-unreachable"),
        ("icmp-host-unreachable", None, "reject with icmpx type host-unreachable"),
        ("icmp-net-unreachable", None, "reject with icmpx type no-route"),
        ("icmp-admin-prohibited", None, "reject with icmpx type admin-prohibited"),
        ("icmp-port-unreachable", "10.0.0.0/8", "reject with icmp type port-unreachable"),
        ("icmp-host-unreachable", "10.0.0.0/8", "reject with icmp type host-unreachable"),
        ("icmp-net-unreachable", "10.0.0.0/8", "reject with icmp type net-unreachable"),
        ("icmpv6-admin-prohibited", "10.0.0.0/8", "reject with icmp type admin-prohibited"),
        ("icmp-port-unreachable", "fd00::/8", "reject with icmpv6 type port-unreachable"),
        ("icmp-host-unreachable", "fd00::/8", "reject with icmpv6 type addr-unreachable"),
        ("icmp-net-unreachable", "fd00::/8", "reject with icmpv6 type no-route"),
        ("icmp-admin-prohibited", "fd00::/8", "reject with icmpv6 type admin-prohibited"),
    ],
)
def test_reject_types_per_ip_version(
    reject_with: str | None, src: str | None, expected: str
) -> None:
    """A reject answers each IP version with its own ICMP (icmpx when the rule covers
    both), never with an ICMP type that would make nft skip the other version."""
    proto = 6 if reject_with == "tcp-reset" else None
    rule = Rule(
        Action.REJECT,
        id="r",
        src=parse_ipset(src) if src else None,
        proto=proto,
        reject_with=reject_with,
    )
    (line,) = _chain_lines(render_nftables(_rules(rule)))
    assert line.endswith(f'{expected} comment "r"')


def test_policies_and_the_reject_default() -> None:
    for default, policy, last in (
        (Action.ACCEPT, "policy accept;", None),
        (Action.DROP, "policy drop;", None),
        (Action.REJECT, "policy drop;", 'reject comment "default"'),
    ):
        script = render_nftables(_rules(default=default))
        assert f"type filter hook input priority filter; {policy}" in script
        assert _chain_lines(script)[-1:] == ([last] if last else [])


def test_a_rule_without_id_is_named_by_its_number() -> None:
    rs = load_ruleset(ALSHAER)
    lines = _chain_lines(render_nftables(rs, hook="forward"))
    assert lines[0] == 'ip saddr 140.192.37.20 tcp dport 80 drop comment "rule-1"'


def test_the_script_replaces_only_our_table_in_one_transaction() -> None:
    script = render_nftables(_rules(), table="edge", family="ip", hook="forward")
    lines = script.splitlines()
    start = lines.index("table ip edge")
    assert lines[start : start + 3] == ["table ip edge", "delete table ip edge", "table ip edge {"]
    assert "flush ruleset" not in script


@pytest.mark.parametrize(
    ("rule", "hook", "reason"),
    [
        (Rule(Action.ACCEPT, id="x", iface="eth*"), "input", "wildcard"),
        (Rule(Action.ACCEPT, id="x", iface="a-very-long-name0"), "input", "at most 15"),
        (Rule(Action.ACCEPT, id='say"hi"'), "input", "cannot be an nft comment"),
    ],
)
def test_render_refuses_what_nft_cannot_say_with_file_and_line(
    rule: Rule, hook: str, reason: str
) -> None:
    rs = RuleSet((Rule(Action.ACCEPT, id="first", line=3), Rule(**_fields(rule, line=9))))
    rs = RuleSet(rs.rules, Action.DROP, name="policy.yaml")
    with pytest.raises(ConfigError) as info:
        render_nftables(rs, hook=hook)
    err = info.value
    assert (err.file, err.line, err.field) == ("policy.yaml", 9, "rules.1")
    assert reason in err.reason
    assert "rule 2" in err.reason


def _fields(rule: Rule, **changes: Any) -> dict[str, Any]:
    names = Rule.__dataclass_fields__
    return {**{n: getattr(rule, n) for n in names}, **changes}


def test_rules_that_never_match_here_are_left_out_and_named() -> None:
    rs = load_ruleset(DATA / "host-directions.yaml")
    program = compile_nftables(rs, hook="input")
    assert [r.comment for r in program.rules] == ["replies", "ssh-in", "loopback"]
    assert program.notes == (
        "rule 3 (dns-out) left out: direction out never matches in hook input",
        "rule 4 (web-out) left out: direction out never matches in hook input",
    )
    # a forwarded packet has no direction: a host's rules never match in forward
    forward = compile_nftables(rs, hook="forward")
    assert [r.comment for r in forward.rules] == ["replies", "loopback"]
    assert forward.notes == (
        "rule 2 (ssh-in) left out: direction in never matches in hook forward",
        "rule 3 (dns-out) left out: direction out never matches in hook forward",
        "rule 4 (web-out) left out: direction out never matches in hook forward",
    )
    v6 = _rules(Rule(Action.DROP, id="v6only", src=parse_ipset("2001:db8::/32")))
    ip = compile_nftables(v6, family="ip")
    assert ip.rules == ()
    assert ip.notes == (
        "rule 1 (v6only) left out: it matches IPv6 only, which a table of family ip never sees",
    )


def test_out_iface_is_oifname_in_forward_and_never_matches_elsewhere() -> None:
    rs = _rules(
        Rule(
            Action.ACCEPT, id="out", proto=6, dport=parse_ports(443), iface="lan0", out_iface="wan0"
        ),
        Rule(Action.DROP, id="only-out", out_iface="dmz0"),
        Rule(Action.ACCEPT, id="in", iface="lan0"),
    )
    forward = compile_nftables(rs, hook="forward")
    assert [r.statement for r in forward.rules] == [
        'tcp dport 443 iifname "lan0" oifname "wan0" accept',
        'oifname "dmz0" drop',
        'iifname "lan0" accept',
    ]
    assert forward.notes == ()
    for hook, kw in (("input", "iifname"), ("output", "oifname")):
        program = compile_nftables(rs, hook=hook)
        assert [r.statement for r in program.rules] == [f'{kw} "lan0" accept']
        assert program.notes == (
            "rule 1 (out) left out: out_iface wan0 (the interface a forwarded packet leaves "
            f"by) never matches in hook {hook}",
            "rule 2 (only-out) left out: out_iface dmz0 (the interface a forwarded packet "
            f"leaves by) never matches in hook {hook}",
        )


@pytest.mark.parametrize("hook", ["forward", "input"])
@pytest.mark.parametrize("name", ["wan*", "a-very-long-name0"])
def test_a_bad_out_iface_is_refused_on_every_hook(hook: str, name: str) -> None:
    rs = RuleSet((Rule(Action.ACCEPT, id="x", out_iface=name, line=4),), Action.DROP, name="z.yaml")
    with pytest.raises(ConfigError) as info:
        render_nftables(rs, hook=hook)
    assert (info.value.file, info.value.line) == ("z.yaml", 4)
    assert "interface name" in info.value.reason


def test_render_checks_its_options() -> None:
    for bad in ({"hook": "prerouting"}, {"family": "bridge"}, {"table": "no spaces"}):
        with pytest.raises(ValueError):
            render_nftables(_rules(), **bad)


# =========================================================================================
# In: golden imports
# =========================================================================================


def _yaml_of(rs: RuleSet, source: str) -> str:
    """A rule set as a YAML rule file (docs/firewall-rules.md), for the golden files."""
    names = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
    flag_names = ("fin", "syn", "rst", "psh", "ack", "urg")

    def flags(bits: int) -> str:
        assert not bits & ~0x3F, "the YAML format names six TCP flags"
        return ",".join(n for i, n in enumerate(flag_names) if bits & (1 << i)) or "none"

    def ports(p: Any) -> Any:
        items = [r.lo if r.lo == r.hi else f"{r.lo}-{r.hi}" for r in p]
        return items[0] if len(items) == 1 else items

    def addrs(a: IPSet) -> Any:
        items = [str(r) for r in a.ranges]
        return items[0] if len(items) == 1 else items

    out = []
    for r in rs.rules:
        d: dict[str, Any] = {"id": r.id, "action": r.action.value}
        if r.proto is not None:
            d["proto"] = names.get(r.proto, r.proto)
        if r.src is not None:
            d["src"] = addrs(r.src)
        if r.dst is not None:
            d["dst"] = addrs(r.dst)
        if r.sport is not None:
            d["sport"] = ports(r.sport)
        if r.dport is not None:
            d["dport"] = ports(r.dport)
        if r.icmp_type is not None:
            d["icmp_type"] = r.icmp_type
        if r.icmp_code is not None:
            d["icmp_code"] = r.icmp_code
        if r.tcp_flags is not None:
            d["tcp_flags"] = f"{flags(r.tcp_flags[0])}/{flags(r.tcp_flags[1])}"
        if r.iface is not None:
            d["iface"] = r.iface
        if r.out_iface is not None:
            d["out_iface"] = r.out_iface
        if r.ct_state is not None:
            order = ("new", "established", "related", "invalid")
            d["state"] = [s for s in order if s in r.ct_state]
        if r.reject_with is not None:
            d["reject_with"] = r.reject_with
        if r.comment:
            d["comment"] = r.comment
        out.append(d)
    head = (
        f"# The rule set ramparts imports from {source} (see test_nftables.py).\n"
        "# Regenerated with RAMPARTS_UPDATE_GOLDEN=1; review every change by hand.\n"
    )
    body = yaml.safe_dump({"default": rs.default.value, "rules": out}, sort_keys=False, width=100)
    return head + body


@pytest.mark.parametrize(("source", "select", "golden"), IMPORTS, ids=[i[0] for i in IMPORTS])
def test_import_matches_the_golden_rule_file(source: str, select: str | None, golden: str) -> None:
    got = load_nftables(DATA / source, select)
    text = _golden_text(DATA / golden, _yaml_of(got, source))
    want = parse_ruleset_yaml(text, golden)
    assert got.default == want.default
    assert got.rules == want.rules  # every field but the line
    # Each rule points back at the rule object it came from.
    doc_lines = (DATA / source).read_text().splitlines()
    assert len(doc_lines) == 1  # nft -j prints one line: the column locates
    assert all(r.line == 1 for r in got.rules if r.line is not None)


def test_the_same_listing_pretty_printed_gives_lines(tmp_path: Path) -> None:
    pretty = tmp_path / "host.json"
    pretty.write_text(json.dumps(json.loads((DATA / "host.json").read_text()), indent=2))
    rs = load_nftables(pretty)
    lines = pretty.read_text().splitlines()
    for rule in rs.rules:
        assert rule.line is not None
        assert lines[rule.line - 1].strip() == "{", rule.id
        if rule.id.startswith("input/policy"):
            assert '"chain": {' in lines[rule.line]  # the policy: the chain's line
            continue
        assert '"rule": {' in lines[rule.line]
        handle = rule.id.split("/")[1].split("~")[0]
        assert f'"handle": {handle},' in "\n".join(lines[rule.line : rule.line + 6])


def test_load_rules_finds_nftables_json_by_its_content(tmp_path: Path) -> None:
    copy_ = tmp_path / "dump.txt"
    copy_.write_bytes((DATA / "router.json").read_bytes())
    assert detect_format(copy_) == "nftables"
    assert load_rules(copy_, select="inet/fw/forward") == load_nftables(copy_, "forward")


# =========================================================================================
# In: exact semantics, against an independent interpreter of the chain
# =========================================================================================


_FLAG_BITS = {
    "fin": 1,
    "syn": 2,
    "rst": 4,
    "psh": 8,
    "ack": 16,
    "urg": 32,
    "ecn": 64,
    "cwr": 128,
}
_STATE_BITS = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
_L4 = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "gre": 47}
_ICMP_CODES = {"port-unreachable": 3, "admin-prohibited": 13, "no-route": 0}


class NftInterpreter:
    """nft's chain semantics, read straight off the JSON listing: a rule matches when every
    match holds; accept/drop/reject decide; jump runs the chain and continues if it returns;
    goto runs the chain and returns to our caller; return leaves; the base chain's policy
    decides what falls off its end. Written without the importer's code, for comparing."""

    def __init__(self, listing: dict[str, Any], family: str, table: str, base: str) -> None:
        self.family, self.table = family, table
        self.chains: dict[str, list[list[dict[str, Any]]]] = {}
        self.sets: dict[str, list[Any]] = {}
        self.policy = "accept"
        self.hook = ""
        for item in listing["nftables"]:
            kind, body = next(iter(item.items()))
            if kind in ("metainfo", "table") or (body["family"], body["table"]) != (
                family,
                table,
            ):
                continue
            if kind == "chain":
                self.chains.setdefault(body["name"], [])
                if body["name"] == base:
                    self.policy, self.hook = body["policy"], body["hook"]
            elif kind == "set":
                self.sets[body["name"]] = body.get("elem", [])
            elif kind == "rule":
                self.chains.setdefault(body["chain"], []).append(body["expr"])
        self.base = base

    def verdict(self, p: Packet) -> tuple[str, Any]:
        if self.family == "ip" and p.version != 4:
            return ("accept", None)
        done = self._run(self.base, p)
        return done if done is not None else (self.policy, None)

    def _run(self, chain: str, p: Packet) -> tuple[str, Any] | None:
        for exprs in self.chains[chain]:
            outcome = self._rule(exprs, p)
            if outcome is None:
                continue
            kind, arg = outcome
            if kind in ("accept", "drop", "reject"):
                return outcome
            if kind == "jump":
                done = self._run(arg["target"], p)
                if done is not None:
                    return done
            elif kind == "goto":
                return self._run(arg["target"], p)
            elif kind == "return":
                return None
        return None

    def _rule(self, exprs: list[dict[str, Any]], p: Packet) -> tuple[str, Any] | None:
        for e in exprs:
            kind, arg = next(iter(e.items()))
            if kind == "match":
                if not self._match(arg, p):
                    return None
            elif kind in ("counter", "log"):
                continue
            else:
                if kind == "reject" and not self._reject_applies(arg, p):
                    return None
                return (kind, arg)
        return ("none", None)

    def _reject_applies(self, arg: Any, p: Packet) -> bool:
        kind = (arg or {}).get("type")
        return {"icmp": p.version == 4, "icmpv6": p.version == 6, "tcp reset": p.proto == 6}.get(
            kind, True
        )

    def _value(self, left: Any, p: Packet) -> int | str | None:
        """The packet's value of ``left``, None if the packet does not have that header."""
        kind, body = next(iter(left.items()))
        if kind == "&":
            v = self._value(body[0], p)
            return None if v is None else int(v) & self._bits(body[1], _FLAG_BITS)
        if kind == "ct":
            return _STATE_BITS[p.ct_state or "untracked"]
        if kind == "meta":
            key = body["key"]
            if key == "l4proto":
                return p.proto
            if key == "nfproto":
                return p.version
            # iifname / oifname: the packet's input interface (input, forward), its output
            # interface (output; out_iface on forward), "" for the one the hook lacks.
            side = key[0]
            if self.hook == "forward":
                return (p.iface if side == "i" else p.out_iface) or ""
            if (side == "o") == (self.hook == "output"):
                return p.iface or ""
            return ""
        proto, fld = body["protocol"], body["field"]
        needs = {
            "ip": (4, None),
            "ip6": (6, None),
            "icmp": (4, 1),
            "icmpv6": (6, 58),
            "tcp": (None, 6),
            "udp": (None, 17),
            "sctp": (None, 132),
            "th": (None, None),
        }[proto]
        if (needs[0] and p.version != needs[0]) or (needs[1] and p.proto != needs[1]):
            return None
        if fld in ("saddr", "daddr"):
            return p.src if fld == "saddr" else p.dst
        if fld in ("protocol", "nexthdr"):
            return p.proto
        if fld in ("sport", "dport"):
            return p.sport if fld == "sport" else p.dport
        if fld == "flags":
            return p.tcp_flags
        if fld == "type":
            return p.icmp_type
        if fld == "code":
            return p.icmp_code
        raise AssertionError(f"unknown field {proto} {fld}")

    def _bits(self, v: Any, names: dict[str, int]) -> int:
        if isinstance(v, list):
            out = 0
            for x in v:
                out |= self._bits(x, names)
            return out
        return names[v] if isinstance(v, str) else int(v)

    def _number(self, left: Any, v: Any) -> int | str:
        """A right-hand value in the packet's terms."""
        kind, body = next(iter(left.items()))
        if kind == "meta" and body["key"] in ("iifname", "oifname"):
            return str(v).replace("\\*", "*")
        if kind == "meta" and body["key"] == "nfproto":
            return {"ipv4": 4, "ipv6": 6}[v]
        if isinstance(v, int):
            return v
        if kind == "meta" or body.get("field") in ("protocol", "nexthdr"):
            return _L4[v]
        if body.get("field") == "type":
            return (ICMP_TYPES if body["protocol"] == "icmp" else ICMPV6_TYPES)[v]
        if body.get("field") == "code":
            return _ICMP_CODES[v]
        return int(ipaddress.ip_address(v))

    def _contains(self, left: Any, item: Any, value: int | str) -> bool:
        if isinstance(item, dict) and "elem" in item:
            item = item["elem"]["val"]
        if isinstance(item, dict) and "prefix" in item:
            net = ipaddress.ip_network(f"{item['prefix']['addr']}/{item['prefix']['len']}")
            return int(net.network_address) <= int(value) <= int(net.broadcast_address)
        if isinstance(item, dict) and "range" in item:
            lo, hi = (self._number(left, x) for x in item["range"])
            return int(lo) <= int(value) <= int(hi)
        return self._number(left, item) == value

    def _match(self, arg: dict[str, Any], p: Packet) -> bool:
        op, left, right = arg["op"], arg["left"], arg["right"]
        value = self._value(left, p)
        if value is None:
            return False  # the header is not there: the dependency fails
        kind, body = next(iter(left.items()))
        is_flags = kind == "&" or (kind == "payload" and body.get("field") == "flags")
        is_state = kind == "ct"
        if is_flags or is_state:
            names = _STATE_BITS if is_state else _FLAG_BITS
            if isinstance(right, dict) and "set" in right:
                values = [self._bits(v, names) for v in right["set"]]
            else:
                values = [self._bits(right, names)]
            if op == "in":
                return any(int(value) & v for v in values)
            if op == "!":
                return not int(value) & values[0]
            if op == "==":
                return int(value) in values if is_flags else any(int(value) & v for v in values)
            if op == "!=":
                return int(value) not in values if is_flags else not int(value) & values[0]
            raise AssertionError(op)
        if op in ("<", ">", "<=", ">="):
            r = int(self._number(left, right))
            v = int(value)
            return {"<": v < r, ">": v > r, "<=": v <= r, ">=": v >= r}[op]
        if isinstance(right, str) and right.startswith("@"):
            items = self.sets[right[1:]]
        elif isinstance(right, dict) and "set" in right:
            items = right["set"]
        else:
            items = [right]
        found = any(self._contains(left, item, value) for item in items)
        return found if op in ("==", "in") else not found


def _harvest(listing: dict[str, Any]) -> dict[str, set[Any]]:
    """The addresses, ports, names and numbers a listing mentions, to aim packets at."""
    found: dict[str, set[Any]] = {"v4": set(), "v6": set(), "ports": set(), "ifaces": set()}

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("prefix"), dict):
                net = ipaddress.ip_network(f"{x['prefix']['addr']}/{x['prefix']['len']}")
                for a in (int(net.network_address) - 1, int(net.network_address)):
                    found[f"v{net.version}"].add(a)
                found[f"v{net.version}"].add(int(net.broadcast_address))
                found[f"v{net.version}"].add(int(net.broadcast_address) + 1)
            for k, v in x.items():
                if k == "key" and v in ("iifname", "oifname"):
                    continue
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            try:
                a = ipaddress.ip_address(x)
            except ValueError:
                if x.isidentifier() or "-" in x or x.isalnum():
                    found["ifaces"].add(x)
            else:
                found[f"v{a.version}"] |= {int(a) - 1, int(a), int(a) + 1}
        elif isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 65535:
            found["ports"] |= {x - 1, x, x + 1} - {-1, 65536}

    walk(listing)
    found["v4"] = {a for a in found["v4"] if 0 <= a < 1 << 32}
    found["v6"] = {a for a in found["v6"] if 0 <= a < 1 << 128}
    return found


def _packets(listing: dict[str, Any], n: int, seed: int, forward: bool) -> Iterator[Packet]:
    rng = random.Random(seed)
    h = _harvest(listing)
    v4, v6 = sorted(h["v4"]) or [1], sorted(h["v6"]) or [1]
    ports = sorted(h["ports"]) or [80]
    ifaces = [*sorted(h["ifaces"]), "eth9"]
    for _ in range(n):
        version = rng.choice((4, 4, 6))
        pool = v4 if version == 4 else v6
        top = (1 << 32) - 1 if version == 4 else (1 << 128) - 1

        def addr(pool: list[int] = pool, top: int = top) -> int:
            return rng.choice(pool) if rng.random() < 0.8 else rng.randint(0, top)

        proto = rng.choice((6, 6, 6, 17, 17, 1 if version == 4 else 58, 47))
        extra: dict[str, Any] = {}
        if proto in (1, 58):
            types = list(ICMP_TYPES.values() if proto == 1 else ICMPV6_TYPES.values())
            extra["icmp_type"] = rng.choice(types)
            extra["icmp_code"] = rng.choice((0, 1, 3, 4, 13))
        if proto == 6:
            extra["tcp_flags"] = rng.choice((0x02, 0x12, 0x10, 0x11, 0x04, 0x03, 0x18, 0x00))
        yield Packet(
            version,
            addr(),
            addr(),
            proto,
            rng.choice(ports) if proto in (6, 17) else 0,
            rng.choice(ports) if proto in (6, 17) else 0,
            iface=rng.choice(ifaces),
            out_iface=rng.choice(ifaces) if forward else None,
            ct_state=rng.choice(("new", "established", "related", "invalid", None)),
            **extra,
        )


def _agree(listing: dict[str, Any], rs: RuleSet, chain: tuple[str, str, str], n: int) -> int:
    """Compare the import with the interpreter on ``n`` packets; returns how many."""
    family, table, name = chain
    ref = NftInterpreter(listing, family, table, name)
    seed = zlib.crc32("/".join(chain).encode())
    for i, p in enumerate(_packets(listing, n, seed, forward=ref.hook == "forward")):
        want_kind, want_arg = ref.verdict(p)
        got = evaluate(rs, p)
        assert got.action.value == want_kind, (i, p, got.rule, want_kind, want_arg)
    return n


@pytest.mark.parametrize(
    ("source", "chain"),
    [
        ("host.json", ("inet", "filter", "input")),
        ("docker-like.json", ("ip", "filter", "FORWARD")),
        ("router.json", ("inet", "fw", "forward")),
        ("router-ifaces.json", ("inet", "edge", "forward")),
        ("host-ifaces.json", ("inet", "host", "input")),
        ("host-ifaces.json", ("inet", "host", "output")),
    ],
)
def test_import_agrees_with_the_chain_interpreter(source: str, chain: tuple[str, str, str]) -> None:
    listing = json.loads((DATA / source).read_text())
    rs = load_nftables(DATA / source, "/".join(chain))
    assert _agree(listing, rs, chain, 4000) == 4000


def _listing(*chains: tuple[str, dict[str, Any], list[list[dict[str, Any]]]]) -> dict[str, Any]:
    """A listing of table inet t: chains (name, attributes, rules as expr lists)."""
    items: list[dict[str, Any]] = [{"table": {"family": "inet", "name": "t", "handle": 1}}]
    handle = 10
    for name, attrs, _ in chains:
        items.append({"chain": {"family": "inet", "table": "t", "name": name, **attrs}})
    for name, _, rules in chains:
        for exprs in rules:
            handle += 1
            items.append(
                {
                    "rule": {
                        "family": "inet",
                        "table": "t",
                        "chain": name,
                        "handle": handle,
                        "expr": exprs,
                    }
                }
            )
    return {"nftables": items}


def m(op: str, left: Any, right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def pay(proto: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": fld}}


def meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


CT = {"ct": {"key": "state"}}
BASE_IN = {"type": "filter", "hook": "input", "prio": 0, "policy": "drop"}
ACCEPT, DROP = {"accept": None}, {"drop": None}


def _tricky() -> dict[str, Any]:
    """Nested jumps, conditional returns, gotos and every kind of negation."""
    return _listing(
        (
            "in",
            BASE_IN,
            [
                [m("!=", meta("iifname"), "lo"), m("==", CT, "invalid"), DROP],
                [
                    m("==", pay("tcp", "dport"), {"set": [22, {"range": [8000, 8100]}]}),
                    {"jump": {"target": "a"}},
                ],
                [
                    m("!=", meta("l4proto"), "tcp"),
                    m("==", pay("ip", "saddr"), {"prefix": {"addr": "10.0.0.0", "len": 8}}),
                    {"goto": {"target": "b"}},
                ],
                [
                    m("!=", {"&": [pay("tcp", "flags"), ["syn", "ack"]]}, "syn"),
                    m("in", CT, "new"),
                    {"reject": {"type": "tcp reset"}},
                ],
                [
                    m(
                        "!=",
                        pay("ip6", "daddr"),
                        {"set": [{"prefix": {"addr": "2001:db8::", "len": 32}}]},
                    ),
                    m(">=", pay("udp", "dport"), 1024),
                    ACCEPT,
                ],
                [
                    m("!=", CT, "established"),
                    m("==", pay("icmp", "type"), {"set": ["echo-request", "echo-reply"]}),
                    ACCEPT,
                ],
                [
                    m("in", pay("tcp", "flags"), ["fin", "rst"]),
                    {"reject": {"type": "icmpx", "expr": "admin-prohibited"}},
                ],
                [m("!", pay("tcp", "flags"), ["syn", "ack"]), DROP],
                [m("==", meta("nfproto"), "ipv6"), {"jump": {"target": "c"}}],
                [
                    m("<", pay("th", "sport"), 1024),
                    m("==", meta("l4proto"), {"set": ["tcp", "udp"]}),
                    ACCEPT,
                ],
                [
                    {"counter": {"packets": 0, "bytes": 0}},
                    {"reject": {"type": "icmp", "expr": "host-unreachable"}},
                ],
            ],
        ),
        (
            "a",
            {},
            [
                [
                    m("==", pay("ip", "saddr"), {"range": ["192.0.2.1", "192.0.2.100"]}),
                    {"return": None},
                ],
                [m("!=", meta("iifname"), "eth0"), {"jump": {"target": "c"}}],
                [m("==", pay("tcp", "dport"), 22), ACCEPT],
                [m("==", CT, {"set": ["new", "related"]}), DROP],
            ],
        ),
        (
            "b",
            {},
            [
                [m("==", pay("udp", "dport"), 53), ACCEPT],
                [m("==", pay("ip", "daddr"), "10.9.9.9"), {"return": None}],
                [m("!=", pay("icmp", "type"), "echo-request"), DROP],
            ],
        ),
        (
            "c",
            {},
            [
                [m("==", meta("iifname"), "eth1"), {"return": None}],
                [m("==", pay("ip6", "saddr"), "2001:db8::1"), DROP],
                [m("!=", pay("tcp", "sport"), {"set": [22, 80]}), {"return": None}],
                [ACCEPT],
            ],
        ),
    )


def test_jumps_returns_gotos_and_negations_are_expanded_exactly() -> None:
    listing = _tricky()
    rs = parse_nftables(json.dumps(listing), "tricky.json")
    assert _agree(listing, rs, ("inet", "t", "in"), 6000) == 6000


BASE_FWD = {**BASE_IN, "hook": "forward"}


def _zones() -> dict[str, Any]:
    """A forward chain on interface pairs: iifname and oifname, negated, in sets, and in
    chains reached by jump and goto (where they still mean the forward hook's)."""
    iif, oif = meta("iifname"), meta("oifname")
    return _listing(
        (
            "fwd",
            BASE_FWD,
            [
                [m("==", iif, "lan0"), m("==", oif, "wan0"), {"jump": {"target": "out"}}],
                [m("!=", oif, "lan0"), m("==", pay("tcp", "dport"), 22), DROP],
                [m("==", oif, {"set": ["dmz0", "dmz1"]}), m("!=", iif, "wan0"), ACCEPT],
                [m("!=", iif, {"set": ["lan0", "dmz0"]}), {"goto": {"target": "inbound"}}],
                [m("==", oif, "wan0"), {"reject": {"type": "icmpx", "expr": "admin-prohibited"}}],
                [m("==", iif, "lan0"), ACCEPT],
            ],
        ),
        (
            "out",
            {},
            [
                [m("==", pay("udp", "dport"), 53), m("!=", oif, "wan0"), DROP],
                [m("!=", oif, "wan0"), {"return": None}],
                [m("==", pay("tcp", "dport"), {"set": [25, 465]}), DROP],
                [ACCEPT],
            ],
        ),
        (
            "inbound",
            {},
            [
                [m("==", oif, "lan0"), m("==", CT, "new"), DROP],
                [m("!=", oif, "dmz0"), {"return": None}],
                [m("==", pay("tcp", "dport"), 443), ACCEPT],
            ],
        ),
    )


def test_iifname_and_oifname_in_a_forward_chain_are_iface_and_out_iface() -> None:
    listing = _zones()
    rs = parse_nftables(json.dumps(listing), "zones.json", "fwd")
    assert {r.out_iface for r in rs.rules} >= {"wan0", "lan0", "dmz0", "dmz1"}
    assert all(r.direction is None for r in rs.rules)
    assert _agree(listing, rs, ("inet", "t", "fwd"), 6000) == 6000
    # The first rule's jump: lan0 -> wan0 only, whatever the out chain says.
    first = rs.rules[0]
    assert (first.iface, first.out_iface, first.action) == ("lan0", "wan0", Action.DROP)
    assert first.describe().endswith("on lan0 out via wan0")


@pytest.mark.parametrize(
    ("hook", "key"), [("input", "oifname"), ("input", "oif"), ("output", "iifname")]
)
def test_the_interface_a_hook_does_not_have_never_matches_a_name(hook: str, key: str) -> None:
    """The kernel reads it as "" (nft_meta_store_ifname; checked in test_nft_kernel.py):
    ``== "X"`` never matches, ``!= "X"`` always does, in a set or not."""
    rules = [
        [m("==", meta(key), "eth0"), m("==", pay("tcp", "dport"), 1), DROP],
        [m("!=", meta(key), "eth0"), m("==", pay("tcp", "dport"), 2), DROP],
        [m("==", meta(key), {"set": ["eth0", "eth1"]}), m("==", pay("tcp", "dport"), 3), DROP],
        [m("!=", meta(key), {"set": ["eth0", "eth1"]}), m("==", pay("tcp", "dport"), 4), DROP],
    ]
    rs = parse_nftables(
        json.dumps(_listing(("c", {**BASE_IN, "hook": hook}, rules))), "h.json", "c"
    )
    assert [(r.id, r.dport, r.iface, r.out_iface) for r in rs.rules] == [
        ("c/12", parse_ports(2), None, None),
        ("c/14", parse_ports(4), None, None),
    ]
    assert rs.default is Action.DROP


def test_an_expansion_that_grows_too_large_is_refused() -> None:
    # Each negated interface skips to the rest of the chain: the copies multiply.
    rules = [
        [m("!=", meta("iifname"), f"if{i}"), m("<=", pay("tcp", "dport"), 60000 - i), ACCEPT]
        for i in range(40)
    ]
    text = json.dumps(_listing(("in", BASE_IN, rules)))
    assert len(parse_nftables(text, "x.json", max_rules=100_000).rules) > 500
    with pytest.raises(ConfigError) as info:
        parse_nftables(text, "x.json", max_rules=200)
    assert "expands to more than 200 rules" in info.value.reason


def test_a_table_of_family_ip_lets_ipv6_through() -> None:
    rs = load_nftables(DATA / "docker-like.json", "ip/filter/FORWARD")
    first = rs.rules[0]
    assert (first.action, first.src) == (Action.ACCEPT, parse_ipset("::/0"))
    p6 = Packet.make("2001:db8::1", "2001:db8::2", "tcp", 1, 2, iface="eth0")
    assert evaluate(rs, p6).rule is first


# =========================================================================================
# In: refusals, located
# =========================================================================================


def _one_rule(*exprs: dict[str, Any], hook: str = "input") -> str:
    return json.dumps(_listing(("c", {**BASE_IN, "hook": hook}, [list(exprs)])))


REFUSALS = [
    ("limit", [{"limit": {"rate": 5, "per": "second"}}, ACCEPT], "input", ".expr[0]", "rate limit"),
    (
        "xt",
        [{"xt": {"type": "match", "name": "conntrack"}}, ACCEPT],
        "input",
        ".expr[0]",
        "iptables-save",
    ),
    (
        "vmap",
        [{"vmap": {"key": pay("tcp", "dport"), "data": {"set": []}}}],
        "input",
        ".expr[0]",
        "verdict map",
    ),
    (
        "concat",
        [m("==", {"concat": [pay("ip", "saddr"), pay("tcp", "dport")]}, {"set": []}), ACCEPT],
        "input",
        ".expr[0].match.left",
        "concatenation",
    ),
    (
        "oif wildcard in forward",
        [m("==", meta("oifname"), "wan*"), ACCEPT],
        "forward",
        ".expr[0].match.right",
        "wildcard",
    ),
    (
        "oif wildcard in input",
        [m("!=", meta("oifname"), "wan*"), ACCEPT],
        "input",
        ".expr[0].match.right",
        "wildcard",
    ),
    (
        "wildcard",
        [m("==", meta("iifname"), "eth*"), ACCEPT],
        "input",
        ".expr[0].match.right",
        "wildcard",
    ),
    ("untracked", [m("==", CT, "untracked"), ACCEPT], "input", ".expr[0].match.right", "untracked"),
    (
        "mapped",
        [m("==", pay("ip6", "saddr"), "::ffff:10.0.0.1"), ACCEPT],
        "input",
        ".expr[0].match.right",
        "IPv4-mapped",
    ),
    ("th alone", [m("==", pay("th", "dport"), 53), ACCEPT], "input", "", "ports need protocol"),
    (
        "reject type",
        [{"reject": {"type": "icmp", "expr": "net-prohibited"}}],
        "input",
        ".expr[0].reject",
        "not a reject of the rule model",
    ),
    ("mark", [m("==", meta("mark"), 1), ACCEPT], "input", ".expr[0].match.left", "meta mark"),
    (
        "ttl",
        [m("==", pay("ip", "ttl"), 1), ACCEPT],
        "input",
        ".expr[0].match.left",
        "payload ip ttl",
    ),
    (
        "service",
        [m("==", pay("tcp", "dport"), "ssh"), ACCEPT],
        "input",
        ".expr[0].match.right",
        "service name",
    ),
    ("queue", [{"queue": {"num": 1}}], "input", ".expr[0]", "user space"),
    ("missing chain", [{"jump": {"target": "nowhere"}}], "input", "", "no such chain"),
    (
        "code alone",
        [m("==", pay("icmp", "code"), 3), ACCEPT],
        "input",
        "",
        "ICMP code needs an ICMP type",
    ),
]


@pytest.mark.parametrize(
    ("exprs", "hook", "path", "reason"),
    [r[1:] for r in REFUSALS],
    ids=[r[0] for r in REFUSALS],
)
def test_unsupported_constructs_are_refused_at_their_json_path(
    exprs: list[dict[str, Any]], hook: str, path: str, reason: str
) -> None:
    text = _one_rule(*exprs, hook=hook)
    with pytest.raises(ConfigError) as info:
        parse_nftables(text, "dump.json", "c")
    err = info.value
    assert err.file == "dump.json"
    assert err.field == f"nftables[2].rule{path}"
    assert reason in err.reason
    assert "(rule handle 11)" in err.reason
    assert (err.line, err.column) == (1, text.index('{"rule"') + 1)


def test_the_real_iptables_nft_docker_dump_is_refused_at_its_xt_match() -> None:
    path = DATA / "iptables-nft-docker.json"
    with pytest.raises(ConfigError) as info:
        load_nftables(path, "ip/filter/FORWARD")
    err = info.value
    listing = json.loads(path.read_text())["nftables"]
    index = int(str(err.field).split("]")[0].split("[")[1])
    assert "xt" in json.dumps(listing[index]["rule"]["expr"][1])
    assert "iptables-save" in err.reason
    # Only the xt matches stand in the way: its -i/-o (iifname/oifname) are taken.
    kept = [
        item
        for item in listing
        if not (item.get("rule") and any("xt" in e for e in item["rule"]["expr"]))
    ]
    rs = parse_nftables(json.dumps({"nftables": kept}), "x.json", "ip/filter/FORWARD")
    assert {(r.iface, r.out_iface) for r in rs.rules} >= {("docker0", "docker0"), (None, "docker0")}


def test_jump_loops_are_refused() -> None:
    text = json.dumps(
        _listing(
            ("in", BASE_IN, [[{"jump": {"target": "a"}}]]),
            ("a", {}, [[{"jump": {"target": "b"}}]]),
            ("b", {}, [[{"jump": {"target": "a"}}]]),
        )
    )
    with pytest.raises(ConfigError, match="in -> a -> b -> a"):
        parse_nftables(text, "loop.json")


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("DOCKER", "'DOCKER' is ambiguous (chains: ip/nat/DOCKER, ip/filter/DOCKER)"),
        ("filter/DOCKER", "is a regular chain"),
        ("PREROUTING", "is a nat chain on hook prerouting"),
        ("ip/filter/NOPE", "names no chain"),
    ],
)
def test_select_names_one_filter_base_chain(select: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_nftables(DATA / "docker-like.json", select)
    assert message in info.value.reason


def test_without_select_the_only_input_chain_is_taken_or_the_candidates_listed() -> None:
    assert load_nftables(DATA / "host.json") == load_nftables(DATA / "host.json", "input")
    with pytest.raises(ConfigError) as info:
        load_nftables(DATA / "router.json")
    assert info.value.reason == (
        "no base chain has hook input; name one with --select (chains: inet/fw/forward)"
    )


@pytest.mark.parametrize(
    ("text", "reason", "line"),
    [
        ('{"nftables": [\n  {"table": ', "not JSON", 2),
        ('{"rules": []}', "not an nftables listing", 1),
        ('{"nftables": [{"flush": {"ruleset": null}}]}', "'flush' is a command", 1),
    ],
)
def test_files_that_are_not_listings(text: str, reason: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_nftables(text, "x.json")
    assert reason in info.value.reason
    assert info.value.line == line


def test_a_listing_mutated_from_a_real_dump_still_names_the_rule(tmp_path: Path) -> None:
    listing = json.loads((DATA / "router.json").read_text())
    mutated = copy.deepcopy(listing)
    for item in mutated["nftables"]:
        rule = item.get("rule")
        if rule and rule["chain"] == "guest" and rule["handle"] == 27:
            rule["expr"].insert(0, {"limit": {"rate": 10, "per": "minute"}})
    path = tmp_path / "router.json"
    path.write_text(json.dumps(mutated, indent=1))
    with pytest.raises(ConfigError) as info:
        load_nftables(path, "forward")
    err = info.value
    assert "(rule handle 27)" in err.reason
    assert err.line is not None
    assert path.read_text().splitlines()[err.line - 1].strip() == "{"


def test_imported_rules_keep_ranges_from_sets_and_complements() -> None:
    rs = load_nftables(DATA / "host.json")
    by_id = {r.id: r for r in rs.rules}
    assert by_id["input/13"].src == parse_ipset(
        [
            "45.155.205.0/24",
            "80.94.95.0/24",
            "185.220.100.0/22",
            "193.32.162.0/24",
            "194.26.29.0/24",
            "198.51.100.66",
            "203.0.113.10-203.0.113.20",
        ]
    )
    # ip saddr != 10.0.0.0/8 is every other IPv4 address.
    assert by_id["ssh/29"].src == IPSet(
        [IPRange(4, 0, 0x09FFFFFF), IPRange(4, 0x0B000000, 0xFFFFFFFF)]
    )
