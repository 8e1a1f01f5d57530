"""The real iptables (iptables-restore / iptables-save in a network namespace of its own)
as the oracle for syntax and round trips of formats/iptables.py:

- every golden input is a file the kernel loads, and the kernel's own dump of it reads
  back into the same rule set;
- what render_iptables_restore writes, iptables-restore loads (the file is complete) and
  iptables-save gives back line for line; loaded back, it decides every packet as the
  rule set it came from (golden rule sets, and random ones);
- the importer's tables of ICMP type names, protocol names and reject types agree with
  the ones iptables itself resolves.

Each test makes a namespace with a unique name and deletes it, even on failure. Nothing
here touches the host's own tables.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramparts.firewall.formats.iptables import (
    load_iptables,
    parse_iptables,
    render_iptables_restore,
)
from ramparts.firewall.model import Action, Rule, RuleSet

from ..unit.firewall.formats.iptables_cases import (
    DATA,
    GOLDEN,
    RT_UNIVERSE,
    decision,
    model_rules,
    reject_kind,
    sample_packets,
)

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
    """The table of a restore file or dump, without comment lines and counters."""
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


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
    packets = sample_packets([rs], version, "out" if chain == "OUTPUT" else "in", 2000, 11)
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
    for p in RT_UNIVERSE[(version, "out" if chain == "OUTPUT" else "in")]:
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
                f"-A INPUT -p {proto} -m {module} {option} {n} -m comment --comment {n}"
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
