"""nginx allow/deny without sockets: first match wins, no match allows, IPv4 and IPv6
lists with ``all`` in both, IPv4-mapped clients, rule names, configuration errors, and a
property test against a plain ipaddress reference. tests/integration/test_realip_nginx.py
checks the same lists against nginx itself."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.http.request import parse_head
from ramparts.pipeline.context import Context
from ramparts.pipeline.phases import Respond
from ramparts.policies.access import ALLOWED, AccessList, AccessRule

OFFICE = [
    ("allow", "192.0.2.0/24"),
    ("deny", "10.1.2.3"),
    ("allow", "10.0.0.0/8"),
    ("allow", "2001:db8::/32"),
    ("deny", "all"),
]


def test_first_match_wins() -> None:
    acl = AccessList(OFFICE)
    assert acl.check("192.0.2.77") == ALLOWED
    assert acl.check("10.1.2.3") == 2
    assert acl.check("10.1.2.4") == ALLOWED
    assert acl.check("2001:db8::1") == ALLOWED
    assert acl.check("198.51.100.1") == 5
    assert acl.check("2001:db9::1") == 5


def test_no_match_allows_as_in_nginx() -> None:
    acl = AccessList([("deny", "10.0.0.0/8"), ("deny", "2001:db8::/32")])
    assert acl.check("10.9.9.9") == 1
    assert acl.check("2001:db8::9") == 2
    assert acl.check("192.0.2.1") == ALLOWED
    assert acl.check("::1") == ALLOWED
    assert AccessList([]).check("192.0.2.1") == ALLOWED


def test_rules_of_one_family_leave_the_other_alone() -> None:
    assert AccessList([("deny", "0.0.0.0/0")]).check("2001:db8::1") == ALLOWED
    assert AccessList([("deny", "::/0")]).check("192.0.2.1") == ALLOWED
    both = AccessList([("deny", "0.0.0.0/0"), ("deny", "::/0")])
    assert both.check("192.0.2.1") == 1
    assert both.check("2001:db8::1") == 2


def test_all_matches_both_families() -> None:
    acl = AccessList([("allow", "::1"), ("deny", "all")])
    assert acl.check("::1") == ALLOWED
    assert acl.check("127.0.0.1") == 2
    assert acl.check("::2") == 2


def test_match_reports_allow_rules_too() -> None:
    acl = AccessList(OFFICE)
    assert acl.match("192.0.2.1") == 1
    assert acl.match("10.1.2.3") == 2
    assert AccessList([("deny", "10.0.0.0/8")]).match("192.0.2.1") == 0


def test_a_mapped_client_is_judged_as_ipv4() -> None:
    acl = AccessList([("deny", "10.1.2.3"), ("allow", "10.0.0.0/8"), ("deny", "all")])
    assert acl.check("::ffff:10.1.2.3") == 1
    assert acl.check("::ffff:10.1.2.4") == ALLOWED
    assert acl.check("::ffff:192.0.2.1") == 3


def test_with_ipv6_rules_only_a_mapped_client_is_judged_as_ipv6() -> None:
    """nginx uses the IPv4 rules for a mapped client only if there is one."""
    v6_only = AccessList([("deny", "::ffff:0:0/96"), ("allow", "::/0")])
    assert v6_only.check("::ffff:192.0.2.1") == 1
    assert v6_only.check("192.0.2.1") == ALLOWED  # no IPv4 rule: allowed
    assert AccessList([("deny", "::/0")]).check("::ffff:192.0.2.1") == 1
    # One IPv4 rule, and the same client no longer meets ::/0.
    mixed = AccessList([("deny", "::/0"), ("allow", "10.0.0.0/8")])
    assert mixed.check("::ffff:192.0.2.1") == ALLOWED
    assert mixed.check("2001:db8::1") == 1
    assert len(v6_only.warnings) == 1 and "IPv4-mapped" in v6_only.warnings[0]


def test_clients_as_sockets_and_realip_write_them() -> None:
    acl = AccessList([("deny", "fe80::/10"), ("deny", "::ffff:0.0.0.0/96"), ("allow", "all")])
    assert acl.check("fe80::1%eth0") == 1
    assert acl.check("FE80::2") == 1
    assert acl.check("::1.2.3.4") == ALLOWED  # IPv4-compatible, not mapped
    # nginx's text reader refuses it (its error value); a socket address it is not.
    assert AccessList([("deny", "255.255.255.255")]).check("255.255.255.255") == 1
    assert AccessList([("deny", "255.0.0.0/8")]).check("::ffff:255.255.255.255") == 1
    with pytest.raises(ValueError, match="not an IP address"):
        acl.check("unix:/run/gw.sock")
    with pytest.raises(ValueError, match="not an IP address"):
        acl.check("")


def test_host_bits_are_cleared_with_a_warning() -> None:
    acl = AccessList([("deny", "10.1.2.3/8"), ("allow", "2001:db8::1/16")])
    assert acl.check("10.200.0.1") == 1
    assert acl.match("2001:ffff::1") == 2
    assert acl.warnings == (
        "access rule 1 (deny 10.1.2.3/8): low address bits of 10.1.2.3/8 are meaningless",
        "access rule 2 (allow 2001:db8::1/16): low address bits of 2001:db8::1/16 are meaningless",
    )
    assert AccessList(OFFICE).warnings == ()


def test_rule_names_for_decided_by() -> None:
    acl = AccessList([("allow", "10.0.0.0/8", "office"), ("deny", "10.1.0.0/16"), ("deny", "all")])
    assert acl.decided_by(1) == "access:office"
    assert acl.decided_by(2) == "access:rule-2"
    assert acl.decided_by(acl.check("192.0.2.1")) == "access:rule-3"
    assert acl.rules[0] == AccessRule(1, "allow", "10.0.0.0/8", "office")
    assert acl.rules[2].deny and not acl.rules[0].deny
    assert acl.rules[1].name == "rule-2"


def test_as_a_request_phase() -> None:
    """How the pipeline uses it: a deny becomes a 403 naming the rule."""
    acl = AccessList([("allow", "192.0.2.0/24"), ("deny", "all", "default-deny")])

    def phase(ctx: Context) -> Respond | None:
        rule = acl.check(ctx.client_ip)
        return Respond(403, decided_by=acl.decided_by(rule)) if rule else None

    req = parse_head(b"GET", b"/", "1.1", [(b"Host", b"h")])
    ctx = Context(req, "198.51.100.7", 5555, "http", 0.0)
    assert phase(ctx) == Respond(403, decided_by="access:default-deny")
    ctx.client_ip = "192.0.2.9"
    assert phase(ctx) is None


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([("permit", "10.0.0.0/8")], r"access rule 1 \(permit 10.0.0.0/8\): the action"),
        ([("allow", "all"), ("Deny", "all")], r"access rule 2 \(Deny all\): the action"),
        ([("deny", "10.0.0.0/33")], r"access rule 1 \(deny 10.0.0.0/33\): .*not an IP"),
        ([("deny", "example.com")], r"host names are not resolved"),
        ([("deny", "unix:")], r"unix: sources are not supported"),
        ([("deny", "")], r"access rule 1 .*empty address"),
        ([("deny", "10.0.0.0/255.0.0.0")], r"prefix length must be a number"),
        ([("deny", "ALL")], r"not an IP address"),
        ([("deny",)], r"access rule 1: expected"),
    ],
)
def test_bad_rules_are_refused_naming_the_entry(rules: list[tuple[str, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AccessList(rules)  # type: ignore[arg-type]


def test_the_memo_stays_bounded_and_correct() -> None:
    acl = AccessList([("deny", "10.0.0.0/8")], cache_size=4)
    for i in range(100):
        assert acl.check(f"10.0.0.{i}") == 1
        assert acl.check(f"192.0.2.{i}") == ALLOWED
        assert len(acl._cache) <= 4
    with pytest.raises(ValueError):
        AccessList([], cache_size=0)


# --- property: against a plain reference ------------------------------------------------


def reference(rules: list[tuple[str, str]], client: str) -> int:
    """nginx's allow/deny with ipaddress: two lists, mapped clients as IPv4 if there is an
    IPv4 rule; the deny position or 0."""
    addr = ipaddress.ip_address(client)
    nets = [(a, None if t == "all" else ipaddress.ip_network(t, strict=False)) for a, t in rules]
    has_v4 = any(n is None or n.version == 4 for _, n in nets)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped and has_v4:
        addr = addr.ipv4_mapped
    for position, (action, net) in enumerate(nets, 1):
        if net is None or (net.version == addr.version and addr in net):
            return position if action == "deny" else 0
    return 0


# Addresses bunched near each other so that rules and clients meet often.
_v4 = st.one_of(
    st.ip_addresses(v=4),
    st.integers(0, 0xFFFF).map(lambda n: str(ipaddress.IPv4Address(0x0A000000 | n))),
).map(str)
_v6 = st.one_of(
    st.ip_addresses(v=6),
    st.integers(0, 0xFFFF).map(lambda n: str(ipaddress.IPv6Address((0x20010DB8 << 96) | n))),
).map(str)
_mapped = _v4.map(lambda a: "::ffff:" + a)
_client = st.one_of(_v4, _v6, _mapped)
_target = st.one_of(
    st.just("all"),
    st.tuples(_v4, st.integers(0, 32)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(_v6, st.integers(0, 128)).map(lambda t: f"{t[0]}/{t[1]}"),
    st.tuples(_v4, st.integers(8, 32)).map(lambda t: f"::ffff:{t[0]}/{96 + t[1]}"),
    _v4,
    _v6,
)
_rules = st.lists(st.tuples(st.sampled_from(["allow", "deny"]), _target), max_size=8)


@settings(max_examples=500)
@given(rules=_rules, clients=st.lists(_client, min_size=1, max_size=8))
def test_check_matches_a_plain_reference(rules: list[tuple[str, str]], clients: list[str]) -> None:
    acl = AccessList(rules, cache_size=3)
    for client in clients:
        assert acl.check(client) == reference(rules, client), (rules, client)
        assert acl.check(client) == reference(rules, client)  # from the memo
