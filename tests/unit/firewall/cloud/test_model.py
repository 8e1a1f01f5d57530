"""The cloud model (cloud/model.py): AWS's reading of protocol and port fields, and the
conversion of a network ACL direction and a security group direction to a RuleSet,
checked against a direct implementation of AWS's rules on random ACLs and packets; and
``judge_ports`` (cloud/trace.py) against evaluating every port one by one."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramparts.firewall.cloud import (
    AclEntry,
    Direction,
    NetworkAcl,
    Origin,
    SecurityGroup,
    SgRule,
    Traffic,
    acl_ruleset,
    security_group_ruleset,
)
from ramparts.firewall.cloud.model import acl_traffic, sg_traffic
from ramparts.firewall.cloud.trace import judge_ports
from ramparts.firewall.model import Action, evaluate
from ramparts.net import IPRange, IPSet, Packet, PortRange

HERE = Origin("test", 1)


# -- AWS's fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((None, None, None), Traffic()),  # -1: all traffic, no ports
        ((None, 22, 22), Traffic()),  # ports of -1 are ignored
        ((6, 443, 443), Traffic(6, PortRange(443, 443))),
        ((6, 0, 65535), Traffic(6)),  # the whole range is "all ports"
        ((17, 1024, 65535), Traffic(17, PortRange(1024, 65535))),
        ((1, -1, -1), Traffic(1)),  # icmp: FromPort is the type, ToPort the code
        ((1, 8, -1), Traffic(1, icmp_type=8)),
        ((1, 3, 4), Traffic(1, icmp_type=3, icmp_code=4)),
        ((58, None, None), Traffic(58)),  # icmpv6 may leave both out
        ((50, 500, 500), Traffic(50)),  # other protocols: all their traffic
    ],
)
def test_sg_traffic(args: tuple[int | None, int | None, int | None], want: Traffic) -> None:
    assert sg_traffic(*args) == want


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((6, None, None), "needs a port range"),
        ((6, 80, 22), "invalid port range"),
        ((17, 0, 70000), "invalid port range"),
        ((1, None, None), "needs FromPort (type) and ToPort (code)"),
        ((1, -1, 0), "all ICMP types (-1) needs all codes"),
        ((1, 300, 0), "out of range"),
    ],
)
def test_sg_traffic_refusals(args: tuple[int | None, int | None, int | None], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sg_traffic(*args)


def test_acl_traffic() -> None:
    assert acl_traffic(None, (0, 0), None) == Traffic()
    assert acl_traffic(6, (80, 80), None) == Traffic(6, PortRange(80, 80))
    assert acl_traffic(1, None, (-1, -1)) == Traffic(1)
    assert acl_traffic(1, None, (0, -1)) == Traffic(1, icmp_type=0)
    assert acl_traffic(47, (1, 2), None) == Traffic(47)
    with pytest.raises(ValueError, match="needs a port range"):
        acl_traffic(17, None, None)
    with pytest.raises(ValueError, match="needs an ICMP type and code"):
        acl_traffic(1, None, None)


def test_describe() -> None:
    e = AclEntry(
        120,
        Direction.EGRESS,
        Action.ACCEPT,
        Traffic(6, PortRange(1024, 65535)),
        IPRange(4, 0, 2**32 - 1),
        HERE,
    )
    assert e.describe() == "allow tcp ports 1024-65535 to 0.0.0.0/0"
    assert not e.catch_all
    r = SgRule(
        Direction.INGRESS,
        Traffic(6, PortRange(22, 22)),
        HERE,
        cidr=IPRange(4, 0xCB007100, 0xCB0071FF),
        description="corp",
    )
    assert r.describe() == 'allow tcp port 22 from 203.0.113.0/24 "corp"'


def test_a_rule_has_exactly_one_peer() -> None:
    with pytest.raises(ValueError, match="exactly one peer"):
        SgRule(Direction.INGRESS, Traffic(), HERE)
    with pytest.raises(ValueError, match="exactly one peer"):
        SgRule(Direction.INGRESS, Traffic(), HERE, cidr=IPRange(4, 0, 255), group="sg-1")


# -- the conversion, against AWS's rules written out directly ------------------------------

V4 = 4


def _aws_acl_verdict(entries: list[AclEntry], p: Packet, direction: Direction) -> Action:
    """AWS, as documented: entries by ascending rule number, the first that matches
    decides, none matching is the implicit deny. Written without the rule model."""
    for e in sorted(entries, key=lambda e: e.number):
        if e.direction is not direction or e.cidr.version != p.version:
            continue
        peer = p.src if direction is Direction.INGRESS else p.dst
        if not e.cidr.lo <= peer <= e.cidr.hi:
            continue
        t = e.traffic
        if t.proto is not None and t.proto != p.proto:
            continue
        if t.ports is not None and not t.ports.lo <= p.dport <= t.ports.hi:
            continue
        if t.icmp_type is not None and t.icmp_type != p.icmp_type:
            continue
        if t.icmp_code is not None and t.icmp_code != p.icmp_code:
            continue
        return e.action
    return Action.DROP


def _cidr(draw: st.DrawFn) -> IPRange:
    plen = draw(st.integers(0, 32))
    base = draw(st.integers(0, 2**32 - 1)) >> (32 - plen) << (32 - plen) if plen else 0
    return IPRange(V4, base, base + (1 << (32 - plen)) - 1)


@st.composite
def entries(draw: st.DrawFn) -> list[AclEntry]:
    numbers = draw(st.lists(st.integers(1, 400), min_size=0, max_size=12, unique=True))
    out = []
    for n in numbers:
        proto = draw(st.sampled_from([None, 6, 17, 1, 47]))
        if proto in (6, 17):
            lo = draw(st.integers(0, 65535))
            t = acl_traffic(proto, (lo, draw(st.integers(lo, 65535))), None)
        elif proto == 1:
            kind = draw(st.integers(-1, 4))
            t = acl_traffic(1, None, (kind, -1 if kind == -1 else draw(st.integers(-1, 2))))
        else:
            t = acl_traffic(proto, None, None)
        action = draw(st.sampled_from([Action.ACCEPT, Action.DROP]))
        out.append(
            AclEntry(n, draw(st.sampled_from(list(Direction))), action, t, _cidr(draw), HERE)
        )
    return out


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    proto = draw(st.sampled_from([6, 17, 1, 47]))
    kind = code = None
    if proto == 1:
        kind, code = draw(st.integers(0, 4)), draw(st.integers(0, 2))
    sport = dport = 0
    if proto in (6, 17):
        sport, dport = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    src, dst = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    return Packet(V4, src, dst, proto, sport, dport, kind, code)


@settings(max_examples=120, deadline=None)
@given(entries(), st.lists(packets(), min_size=1, max_size=8))
def test_acl_ruleset_is_aws_first_match(items: list[AclEntry], pkts: list[Packet]) -> None:
    acl = NetworkAcl.of("acl-1", "acl-1", items, HERE)
    for d in Direction:
        rs = acl_ruleset(acl, d)
        assert [r.id for r in rs.rules] == [str(e.number) for e in acl.entries(d)]
        for p in pkts:
            assert evaluate(rs, p).action is _aws_acl_verdict(items, p, d)


@settings(max_examples=60, deadline=None)
@given(entries(), packets(), st.integers(0, 65000), st.integers(0, 300))
def test_judge_ports_equals_every_port(
    items: list[AclEntry], p: Packet, lo: int, width: int
) -> None:
    """The pieces of judge_ports say, for each port, what evaluating that port says."""
    acl = NetworkAcl.of("acl-1", "acl-1", items, HERE)
    rs = acl_ruleset(acl, Direction.EGRESS)
    want = PortRange(lo, min(65535, lo + width))
    pieces = judge_ports(rs, p, [want])
    assert pieces[0][0].lo == want.lo and pieces[-1][0].hi == want.hi
    for (a, _), (b, _) in itertools.pairwise(pieces):
        assert a.hi + 1 == b.lo
    for r, v in pieces:
        for port in range(r.lo, r.hi + 1):
            got = evaluate(
                rs,
                Packet(p.version, p.src, p.dst, p.proto, p.sport, port, p.icmp_type, p.icmp_code),
            )
            assert (got.action, got.index) == (v.action, v.index)


def test_security_group_ruleset_is_a_union_of_allows() -> None:
    web = IPRange(4, 0x0A000105, 0x0A000105)
    g = SecurityGroup(
        "sg-1",
        "db",
        (
            SgRule(Direction.INGRESS, Traffic(6, PortRange(5432, 5432)), HERE, group="sg-web"),
            SgRule(
                Direction.INGRESS,
                Traffic(1, icmp_type=8),
                HERE,
                cidr=IPRange(4, 0x0A000000, 0x0AFFFFFF),
            ),
        ),
        (),
        HERE,
    )

    class Peers:
        def group_members(self, ref: str, origin: Origin) -> IPSet:
            assert ref == "sg-web"
            return IPSet([web])

        def prefix_list(self, ref: str, origin: Origin) -> IPSet:
            raise AssertionError("no prefix list here")

    rs = security_group_ruleset(g, Direction.INGRESS, Peers())
    assert all(r.action is Action.ACCEPT for r in rs.rules) and rs.default is Action.DROP
    assert evaluate(rs, Packet.make("10.0.1.5", "10.0.2.9", "tcp", 40000, 5432)).action.allows
    assert not evaluate(rs, Packet.make("10.0.1.6", "10.0.2.9", "tcp", 40000, 5432)).action.allows
    ping = Packet.make("10.9.9.9", "10.0.2.9", "icmp", icmp_type=8, icmp_code=0)
    assert evaluate(rs, ping).action.allows
    assert security_group_ruleset(g, Direction.EGRESS).rules == ()
