"""The real iptables (iptables-restore / iptables-save in a network namespace of its own)
as the oracle for syntax and round trips of formats/iptables.py:

- every golden input is a file the kernel loads, and the kernel's own dump of it reads
  back into the same rule set;
- what render_iptables_restore writes, iptables-restore loads (the file is complete) and
  iptables-save gives back line for line; loaded back, it decides every packet as the
  rule set it came from (golden rule sets, and random ones);
- the importer's tables of ICMP type names, protocol names and reject types agree with
  the ones iptables itself resolves;
- the kernel decides as the flattened rule set: each golden file's INPUT chains run in a
  router's FORWARD chain (tests/integration/nftlab.py: real packets crossing a namespace),
  and so do the real FORWARD chains of the Docker host and the router, whose -i and -o
  name the lab router's own interfaces and others it does not have; for every probe the
  kernel's verdict (arrived, the reset or ICMP error it sent back, or nothing) equals
  ``evaluate`` on the rule set ramparts flattened from the same text, for a forwarded
  packet in by the router's ingress veth and out by its egress veth.

Each test makes a namespace with a unique name and deletes it, even on failure. Nothing
here touches the host's own tables.
"""

from __future__ import annotations

import random
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.firewall.formats.iptables import (
    load_iptables,
    parse_iptables,
    render_iptables_restore,
)
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.net import IPSet, PortRange

from ..unit.firewall.formats.iptables_cases import (
    DATA,
    GOLDEN,
    RT_UNIVERSE,
    decision,
    direction_of,
    model_rules,
    reject_kind,
    sample_packets,
)
from .nftlab import Lab, Probe, expected_reply, run

TOOLS = {4: ("iptables-restore", "iptables-save"), 6: ("ip6tables-restore", "ip6tables-save")}


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"rpt-ipt-{uuid.uuid4().hex[:10]}"
    made = _run("ip", "netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"the kernel refuses a network namespace: {made.stderr.strip()}")
    try:
        yield name
    finally:
        _run("ip", "netns", "delete", name)


def restore(ns: str, text: str, version: int = 4) -> None:
    done = _run("ip", "netns", "exec", ns, TOOLS[version][0], stdin=text)
    assert done.returncode == 0, f"{TOOLS[version][0]} refused it: {done.stderr}\n{text}"


def save(ns: str, version: int = 4) -> str:
    done = _run("ip", "netns", "exec", ns, TOOLS[version][1], "-t", "filter")
    assert done.returncode == 0, done.stderr
    return done.stdout


def rules_only(text: str) -> list[str]:
    """The table of a restore file or dump without its comment lines; a protocol the dump
    names from /etc/protocols (``-p gre``) is written as the number we render (``-p 47``)."""
    from ramparts.firewall.formats import iptables as ipt

    def number(word: str) -> str:
        keep = word in ipt._PROTOCOL_OUT.values() or word not in ipt._PROTOCOLS
        return word if keep else str(ipt._PROTOCOLS[word])

    out = []
    for ln in text.splitlines():
        if ln and not ln.startswith("#"):
            words = ln.split(" ")
            out.append(" ".join(number(w) if k and words[k - 1] == "-p" else w
                                for k, w in enumerate(words)))  # fmt: skip
    return out


def same(a: RuleSet, b: RuleSet) -> bool:
    return (a.rules, a.default) == (b.rules, b.default)


@pytest.mark.parametrize(("name", "chain", "version"), GOLDEN)
def test_golden_inputs_load_and_read_back(netns: str, name: str, chain: str, version: int) -> None:
    source = DATA / name
    restore(netns, source.read_text(), version)
    dumped = save(netns, version)
    assert same(parse_iptables(dumped, "dump", chain), load_iptables(source, chain))


def test_stock_ufw_is_real_syntax_refused_only_for_the_model(netns: str) -> None:
    restore(netns, (DATA / "ufw-stock.rules").read_text())
    assert "-m addrtype --dst-type LOCAL" in save(netns)


@pytest.mark.parametrize(("name", "chain", "version"), GOLDEN)
def test_rendered_golden_rule_sets_round_trip(
    netns: str, name: str, chain: str, version: int
) -> None:
    rs = load_iptables(DATA / name, chain)
    text = render_iptables_restore(rs, chain, version)
    restore(netns, text, version)
    dumped = save(netns, version)
    assert rules_only(dumped) == rules_only(text)
    back = parse_iptables(dumped, "dump", chain)
    packets = sample_packets([rs], version, direction_of(chain), 2000, 11)
    assert [decision(back, p) for p in packets] == [decision(rs, p) for p in packets]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(model_rules(), max_size=6),
    st.sampled_from(list(Action)),
    st.sampled_from([(4, "INPUT"), (6, "INPUT"), (4, "OUTPUT"), (6, "OUTPUT")]),
)
def test_random_rule_sets_round_trip_through_the_kernel(
    netns: str, rules: list[Rule], default: Action, where: tuple[int, str]
) -> None:
    version, chain = where
    rs = RuleSet.of(rules, default, name="random.yaml")
    text = render_iptables_restore(rs, chain, version)
    restore(netns, text, version)
    dumped = save(netns, version)
    assert rules_only(dumped) == rules_only(text)
    back = parse_iptables(dumped, "dump", chain)
    for p in RT_UNIVERSE[(version, direction_of(chain))]:
        assert reject_kind(back, p) == reject_kind(rs, p), (p, text)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(model_rules(forward=True), max_size=6),
    st.sampled_from(list(Action)),
    st.sampled_from([4, 6]),
)
def test_random_forward_rule_sets_round_trip_through_the_kernel(
    netns: str, rules: list[Rule], default: Action, version: int
) -> None:
    """FORWARD rule sets with iface (-i) and out_iface (-o): the kernel loads them and
    gives them back line for line, and read back they decide as before."""
    rs = RuleSet.of(rules, default, name="random.yaml")
    text = render_iptables_restore(rs, "FORWARD", version)
    restore(netns, text, version)
    dumped = save(netns, version)
    assert rules_only(dumped) == rules_only(text)
    back = parse_iptables(dumped, "dump", "FORWARD")
    for p in RT_UNIVERSE[(version, None)]:
        assert reject_kind(back, p) == reject_kind(rs, p), (p, text)


def _names_file(lines: list[str]) -> str:
    return "\n".join(["*filter", ":INPUT ACCEPT [0:0]", *lines, "COMMIT", ""])


def test_icmp_names_are_the_ones_iptables_resolves(netns: str) -> None:
    from ramparts.firewall.formats import iptables as ipt

    for version, module, option, names in (
        (4, "icmp", "--icmp-type", ipt._ICMP_TYPES),
        (6, "icmp6", "--icmpv6-type", ipt._ICMPV6_TYPES),
    ):
        proto = "icmp" if version == 4 else "ipv6-icmp"
        text = _names_file(
            [
                f"-A INPUT -p {proto} -m {module} {option} {n} -m comment --comment {n} -j DROP"
                for n in names
            ]
        )
        restore(netns, text, version)
        mine = parse_iptables(text, "names", version=version)
        kernel = parse_iptables(save(netns, version), "dump")
        assert same(mine, kernel)
        assert len(mine.rules) == 1 + len(names)


def test_protocol_names_are_the_ones_iptables_resolves(netns: str) -> None:
    from ramparts.firewall.formats import iptables as ipt

    names = [n for n in ipt._PROTOCOLS if n not in ("icmpv6",)]
    text = _names_file([f"-A INPUT -p {n} -m comment --comment {n} -j DROP" for n in names])
    restore(netns, text)
    mine, kernel = parse_iptables(text, "names"), parse_iptables(save(netns), "dump")
    assert same(mine, kernel)
    assert [r.proto for r in mine.rules[1:]] == [ipt._PROTOCOLS[n] for n in names]


def test_reject_types_are_the_ones_iptables_knows(netns: str) -> None:
    from ramparts.firewall.formats import iptables as ipt

    for version, names in ipt._REJECT_IN.items():
        usable = [n for n, model in names.items() if model]
        lines = [
            f"-A INPUT -p tcp -m tcp --dport {k} -j REJECT --reject-with {n}"
            for k, n in enumerate(usable, 1)
        ]
        text = _names_file(lines)
        restore(netns, text, version)
        assert same(
            parse_iptables(text, "t", version=version), parse_iptables(save(netns, version), "d")
        )
        # the ones the model lacks are real reject types too
        refused = [n for n, model in names.items() if not model]
        restore(
            netns, _names_file([f"-A INPUT -j REJECT --reject-with {n}" for n in refused]), version
        )


# -- the kernel runs the chains: verdicts packet by packet ---------------------------------


def as_forward(text: str) -> str:
    """The filter table of ``text`` with its INPUT chain (and the user chains) run as the
    FORWARD chain: probes cross the lab's router, so that is where they meet it."""
    body = text.split("*filter\n", 1)[1].split("\nCOMMIT", 1)[0].splitlines()
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    for line in body:
        if line.startswith((":FORWARD ", "-A FORWARD ", ":INPUT", ":OUTPUT", "-A OUTPUT ")):
            if line.startswith(":INPUT"):
                out.append(":FORWARD" + line[len(":INPUT") :])
            continue
        out.append(
            "-A FORWARD " + line[len("-A INPUT ") :] if line.startswith("-A INPUT ") else line
        )
    return "\n".join([*out, "COMMIT", ""])


def forward_only(text: str) -> str:
    """The filter table of ``text`` with its own FORWARD chain and user chains, INPUT and
    OUTPUT emptied and accepting, the other tables (nat would rewrite the probes) left out."""
    body = text.split("*filter\n", 1)[1].split("\nCOMMIT", 1)[0].splitlines()
    out = ["*filter", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [
        ln for ln in body if not ln.startswith((":INPUT", ":OUTPUT", "-A INPUT ", "-A OUTPUT "))
    ]
    return "\n".join([*out, "COMMIT", ""])


def aimed(lab: Lab, rs: RuleSet, version: int, rng: random.Random, n: int) -> list[Probe]:
    """Probes built to match rules picked at random (a field nudged over an edge now and
    then) and some of the other IP version; TCP SYN, UDP, ICMP echo and GRE."""
    top = (1 << (32 if version == 4 else 128)) - 1

    def addr(s: IPSet | None) -> int:
        inside = [r for r in s.ranges if r.version == version] if s else []
        if inside and rng.random() < 0.9:
            r = rng.choice(inside)
            return rng.choice([r.lo, r.hi, rng.randint(r.lo, r.hi)])
        return (
            rng.randint(0x2000 << 112, (0x4000 << 112) - 1) if version == 6 else rng.randint(0, top)
        )

    def port(ranges: tuple[PortRange, ...] | None) -> int:
        if ranges and rng.random() < 0.9:
            r = rng.choice(ranges)
            return rng.choice([r.lo, r.hi, rng.randint(r.lo, r.hi)])
        return rng.choice([22, 53, 80, 443, 1024, 5353, 8080, rng.randint(1, 65535)])

    out: list[Probe] = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        rule = rng.choice(rs.rules[1:])
        proto = rule.proto if rule.proto is not None else rng.choice([6, 17, 1, 47])
        proto = (1 if version == 4 else 58) if proto in (1, 58) else proto
        if proto not in (1, 6, 17, 47, 58):
            continue
        side = rng.choice("cs")
        if rule.iface in (lab.r_in, lab.r_out) and rng.random() < 0.9:
            side = "c" if rule.iface == lab.r_in else "s"
        elif rule.out_iface in (lab.r_in, lab.r_out) and rng.random() < 0.9:
            side = "c" if rule.out_iface == lab.r_out else "s"
        src, dst = addr(rule.src), addr(rule.dst)
        sport, dport = port(rule.sport), port(rule.dport)
        if rng.random() < 0.25:
            src, dport = min(top, src + 1), min(65535, dport + 1)
        v = version if rng.random() < 0.95 else 10 - version
        if v != version:
            src, dst = rng.randint(0, 1 << 31), rng.randint(0, 1 << 31)
            proto = 6 if proto in (1, 58) else proto
        probe = lab.probe(side, v, src, dst, proto, sport, dport)
        if probe is not None:
            out.append(probe)
    return out


@pytest.mark.parametrize(
    ("name", "chain", "version", "r_in", "r_out"),
    [
        ("gateway.rules", "INPUT", 4, "eth0", "wg0"),
        ("ufw-webserver.rules", "INPUT", 4, "eth0", "ens3"),
        ("webserver6.rules", "INPUT", 6, "eth0", "eth1"),
        ("docker.rules", "INPUT", 4, "docker0", "eth0"),
        # the real FORWARD chains: -i/-o on the router's names (and on dmz0, wg0 it lacks)
        ("docker.rules", "FORWARD", 4, "docker0", "eth0"),
        ("router.rules", "FORWARD", 4, "lan0", "wan0"),
        ("router.rules", "FORWARD", 4, "wan0", "lan0"),
        ("router.rules", "FORWARD", 4, "dmz0", "wan0"),
    ],
)
def test_the_kernel_decides_as_the_flattened_rule_set(
    name: str, chain: str, version: int, r_in: str, r_out: str
) -> None:
    source = (DATA / name).read_text()
    text = as_forward(source) if chain == "INPUT" else forward_only(source)
    rs = parse_iptables(text, name, "FORWARD", version=version)
    with Lab(r_in=r_in, r_out=r_out) as lab:
        run(TOOLS[version][0], ns=lab.r, stdin=text)
        probes = aimed(lab, rs, version, random.Random(zlib.crc32(name.encode())), 300)
        seen = lab.run_probes(probes)
    wrong = []
    for p in probes:
        # a forwarded packet: in by the router's veth on its side, out by the other one
        out_iface = lab.iface_of("s" if p.side == "c" else "c")
        v = evaluate(rs, replace(p.packet(lab.iface_of(p.side)), out_iface=out_iface))
        reply = (
            expected_reply(v.rule.reject_with, p.version)
            if v.rule and v.action is Action.REJECT
            else None
        )
        want = (v.action.value, reply)
        got = (seen[p.id].verdict, seen[p.id].reply)
        if got != want:
            wrong.append(
                f"{p}: kernel {got}, ramparts {want} by {v.rule.id if v.rule else 'policy'}"
            )
    verdicts = sorted({seen[p.id].verdict for p in probes})
    print(
        f"[iptables oracle] {name} {chain} via {r_in}/{r_out}: {len(probes)} probes, "
        f"verdicts {verdicts}, {len(wrong)} differ"
    )
    assert not wrong, "\n".join(wrong[:10])
    assert len(probes) >= 250 and len(verdicts) >= 2
