"""Anomaly analysis (firewall/analysis.py): Al-Shaer and Hamed's own example policy worked
out by hand, scenario 1, and random rule sets against a brute-force reading of the same
definitions over every elementary cell of packet space, witnesses checked with evaluate."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ramparts.firewall.analysis import KINDS, Finding, lint
from ramparts.firewall.formats import load_rules
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.firewall.space import Space
from ramparts.net import IPSet, Packet, parse_ipset, parse_ports

from ...support import ROOT
from .policy_strategies import cell_count, every_packet, rulesets

ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"
EXAMPLES = ROOT / "examples" / "firewall"


def _pairs(findings: list[Finding] | tuple[Finding, ...]) -> set[tuple[str, tuple[int, ...]]]:
    return {(f.kind, f.rules) for f in findings}


# -- Al-Shaer and Hamed's policy, by hand ----------------------------------------------------
#
# The policy (1-based, first match; all addresses IPv4):
#   R1  tcp 140.192.37.20    any -> any            80  deny
#   R2  tcp 140.192.37.0/24  any -> any            80  accept
#   R3  tcp any              any -> 161.120.33.40  80  accept
#   R4  tcp 140.192.37.0/24  any -> 161.120.33.40  80  deny
#   R5  tcp 140.192.37.30    any -> any            21  deny
#   R6  tcp 140.192.37.0/24  any -> any            21  accept
#   R7  tcp 140.192.37.0/24  any -> 161.120.33.40  21  accept
#   R8  tcp any              any -> any            any deny
#   R9  udp 140.192.37.0/24  any -> 161.120.33.40  53  accept
#   R10 udp any              any -> 161.120.33.40  53  accept
#   R11 udp 140.192.38.0/24  any -> 161.120.35.0/24 any accept
#   R12 udp any              any -> any            any deny
#
# TCP and UDP rules never overlap, nor do port 80 and port 21 rules. The overlapping pairs
# (x < y), their relation and the anomaly by the papers' definitions:
#   (1,2)  R1 ⊂ R2 (source .20 in .0/24), deny/accept        -> generalization
#   (1,3)  R1 source ⊂, destination ⊃: correlated, deny/accept -> correlation
#   (1,4)  correlated, both deny                             -> none
#   (1,8)  R1 ⊂ R8, both deny, but R2 between overlaps R1 with accept -> none
#   (2,3)  correlated, both accept                           -> none
#   (2,4)  R4 ⊂ R2, accept/deny                              -> shadowing (R4)
#   (2,8)  R2 ⊂ R8, accept/deny                              -> generalization
#   (3,4)  R4 ⊂ R3, accept/deny                              -> shadowing (R4)
#   (3,8)  R3 ⊂ R8                                           -> generalization
#   (4,8)  R4 ⊂ R8, both deny; R5-R7 (port 21) do not overlap R4 -> redundancy (R4 to R8)
#   (5,6)  R5 ⊂ R6, deny/accept                              -> generalization
#   (5,7)  source ⊂, destination ⊃: correlated, deny/accept  -> correlation
#   (5,8)  R5 ⊂ R8, both deny, but R6 between overlaps R5 with accept -> none
#   (6,7)  R7 ⊂ R6, both accept                              -> redundancy (R7 to R6)
#   (6,8), (7,8)  ⊂ R8, accept/deny                          -> generalization
#   (9,10) R9 ⊂ R10, both accept, nothing between            -> redundancy (R9 to R10)
#   (9,12), (10,12), (11,12)  ⊂ R12, accept/deny             -> generalization
#   (9,11), (10,11): sources .37/.38 and destinations .33.40/.35.0/24 differ: no overlap.
# No correlated pair has the ACCEPT first and the DENY second, so no partial shadowing.
# Union cover (first match over all earlier rules):
#   R4: .20 -> .33.40:80 is decided by R1 (deny, like R4), the rest of .37.0/24 by R2
#       (accept): unreachable, and the cover decides differently (conflict).
#   R7: .30 -> .33.40:21 by R5 (deny), the rest by R6 (accept): unreachable, conflict
#       (R7 would accept what R5 denies).
#   Every other rule decides some packet itself (e.g. R8 any tcp to port 22, R12 udp to 1).
ALSHAER_EXPECTED = {
    ("generalization", (1, 2)),
    ("correlation", (1, 3)),
    ("shadowing", (2, 4)),
    ("generalization", (2, 8)),
    ("shadowing", (3, 4)),
    ("generalization", (3, 8)),
    ("redundancy", (4, 8)),
    ("generalization", (5, 6)),
    ("correlation", (5, 7)),
    ("redundancy", (6, 7)),
    ("generalization", (6, 8)),
    ("generalization", (7, 8)),
    ("redundancy", (9, 10)),
    ("generalization", (9, 12)),
    ("generalization", (10, 12)),
    ("generalization", (11, 12)),
    ("unreachable", (1, 2, 4)),
    ("unreachable", (5, 6, 7)),
}


def test_alshaer_policy_has_exactly_the_anomalies_of_the_taxonomy() -> None:
    rs = load_rules(ALSHAER)
    result = lint(rs)
    assert _pairs(result.findings) == ALSHAER_EXPECTED
    assert len(result.findings) == len(ALSHAER_EXPECTED)
    subjects = {(f.kind, f.rules): f.subject for f in result.findings}
    # Who is redundant: the later rule when it is the subset, the earlier one otherwise.
    assert subjects[("redundancy", (6, 7))] == 7
    assert subjects[("redundancy", (4, 8))] == 4
    assert subjects[("redundancy", (9, 10))] == 9
    assert subjects[("shadowing", (2, 4))] == subjects[("shadowing", (3, 4))] == 4
    for f in result.of_kind("unreachable"):
        assert f.conflict is True and f.severity == "error"
    for f in result.findings:
        _check_witness(rs, f)
        assert f.line == rs.rules[f.subject - 1].line == f.subject + 1  # the CSV row


def test_alshaer_unreachable_witnesses_are_decided_differently() -> None:
    rs = load_rules(ALSHAER)
    by_rule = {f.subject: f for f in lint(rs).of_kind("unreachable")}
    w4, w7 = by_rule[4].witness, by_rule[7].witness
    assert w4 is not None and w7 is not None
    assert evaluate(rs, w4).index == 2 and evaluate(rs, w4).action is Action.ACCEPT
    assert evaluate(rs, w7).index == 5 and evaluate(rs, w7).action is Action.DROP


# -- scenario 1 --------------------------------------------------------------------------------


def test_scenario1_flags_the_deny_below_the_https_allow() -> None:
    rs = load_rules(EXAMPLES / "classic.yaml")
    result = lint(rs)
    partial = {f.rules: f for f in result.of_kind("partial-shadowing")}
    assert set(partial) == {(1, 4), (2, 4)}
    w = partial[(2, 4)].witness
    assert w is not None
    assert (w.version, w.src, w.proto, w.dport) == (4, 0xB9DC6509, 6, 443)  # 185.220.101.9
    v = evaluate(rs, w)
    assert (v.action, v.index) == (Action.ACCEPT, 2)
    assert rs.rules[3].matches(w)
    assert partial[(2, 4)].severity == "error"
    assert partial[(2, 4)].line == rs.rules[3].line
    # In the paper's pairwise terms the same pairs are correlations.
    assert _pairs(result.of_kind("correlation")) == {
        ("correlation", (1, 4)),
        ("correlation", (2, 4)),
    }


def test_scenario1_fixed_order_has_no_shadowing() -> None:
    result = lint(load_rules(EXAMPLES / "classic-fixed.yaml"))
    assert not result.of_kind("shadowing", "partial-shadowing", "unreachable")
    # The deny on top, then the allows: exceptions carved out, correlated in the paper's
    # sense (the order matters), which is what was meant.
    assert _pairs(result.findings) == {("correlation", (1, 2)), ("correlation", (1, 3))}


# -- small cases -------------------------------------------------------------------------------


def test_union_cover_with_no_single_cover() -> None:
    rules = [
        Rule(Action.ACCEPT, proto=6, dport=parse_ports("0-1023")),
        Rule(Action.DROP, proto=6, dport=parse_ports("1024-65535")),
        Rule(Action.REJECT, proto=6, src=parse_ipset("10.0.0.0/8"), dport=parse_ports("1000-1100")),
    ]
    rs = RuleSet.of(rules)
    result = lint(rs)
    [unreachable] = result.of_kind("unreachable")
    assert unreachable.rules == (1, 2, 3) and unreachable.conflict is True
    assert not result.of_kind("shadowing")  # no single earlier rule covers rule 3
    assert _pairs(result.of_kind("generalization")) == set()
    assert _pairs(result.of_kind("correlation")) == {
        ("correlation", (1, 3)),
        ("correlation", (2, 3)),
    }
    # With no search budget the cover is not decided, and that is what is said.
    tight = lint(rs, budget=0)
    assert not tight.of_kind("unreachable")
    assert [f.rules for f in tight.of_kind("undecided")] == [(3,)]


def test_dead_rule_with_the_same_action_is_a_warning() -> None:
    rules = [
        Rule(Action.DROP, src=parse_ipset("10.0.0.0/9")),
        Rule(Action.DROP, src=parse_ipset("10.128.0.0/9")),
        Rule(Action.DROP, src=parse_ipset("10.0.0.0/8"), proto=17),
    ]
    [f] = lint(RuleSet.of(rules)).of_kind("unreachable")
    assert (f.rules, f.conflict, f.severity) == ((1, 2, 3), False, "warning")


def test_reject_types_are_different_actions() -> None:
    rules = [
        Rule(Action.REJECT, proto=6, reject_with="tcp-reset"),
        Rule(Action.REJECT, proto=6, dport=parse_ports(22)),
    ]
    result = lint(RuleSet.of(rules))
    assert _pairs(result.of_kind("shadowing")) == {("shadowing", (1, 2))}


def test_a_rule_that_matches_nothing_is_empty() -> None:
    rules = [Rule(Action.ACCEPT, proto=6), Rule(Action.DROP, src=IPSet([]))]
    [f] = lint(RuleSet.of(rules)).findings
    assert (f.kind, f.rules, f.witness) == ("empty", (2,), None)


# -- random rule sets against brute force ------------------------------------------------------


def _check_witness(rs: RuleSet, f: Finding) -> None:
    w = f.witness
    assert w is not None
    rules = rs.rules
    if f.kind in ("shadowing", "redundancy", "generalization", "correlation"):
        x, y = f.rules
        assert rules[x - 1].matches(w) and rules[y - 1].matches(w), f
    elif f.kind == "partial-shadowing":
        x, y = f.rules
        assert evaluate(rs, w).index == x and rules[y - 1].matches(w), f
    elif f.kind == "unreachable":
        decider = evaluate(rs, w)
        assert rules[f.subject - 1].matches(w) and decider.index in f.rules[:-1], f
        subject = rules[f.subject - 1]
        other = decider.rule is not None and (decider.rule.action, decider.rule.reject_with) != (
            subject.action,
            subject.reject_with,
        )
        assert other == bool(f.conflict), f


def _expected(rs: RuleSet, packets: list[Packet]) -> set[tuple[str, tuple[int, ...], object]]:
    """The definitions read literally, over every packet class."""
    rules = rs.rules
    n = len(rules)
    match = [{i for i, p in enumerate(packets) if r.matches(p)} for r in rules]
    first = [evaluate(rs, p).index for p in packets]
    eff = [(r.action, r.reject_with) for r in rules]
    out: set[tuple[str, tuple[int, ...], object]] = set()
    for y in range(n):
        if not match[y]:
            out.add(("empty", (y + 1,), None))
            continue
        overlapping = [x for x in range(y) if match[x] & match[y]]
        for x in overlapping:
            differ = eff[x] != eff[y]
            if match[y] <= match[x]:
                out.add(("shadowing" if differ else "redundancy", (x + 1, y + 1), None))
            elif match[x] <= match[y]:
                if differ:
                    out.add(("generalization", (x + 1, y + 1), None))
                elif not any(eff[z] != eff[x] and match[z] & match[x] for z in range(x + 1, y)):
                    out.add(("redundancy", (x + 1, y + 1), None))
            elif differ:
                out.add(("correlation", (x + 1, y + 1), None))
                decides = any(first[i] == x + 1 for i in match[y])
                refused = rules[x].action is Action.ACCEPT and rules[y].action is not Action.ACCEPT
                if refused and decides:
                    out.add(("partial-shadowing", (x + 1, y + 1), None))
        if overlapping and not any(first[i] == y + 1 for i in match[y]):
            deciders = sorted({first[i] for i in match[y]})
            assert 0 not in deciders
            conflict = any(eff[d - 1] != eff[y] for d in deciders)
            out.add(("unreachable", (*deciders, y + 1), conflict))
    return out


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["tuple", "meta"]).flatmap(lambda p: rulesets(p, 6)))
def test_findings_equal_the_definitions_on_every_packet(rs: RuleSet) -> None:
    space = Space.of(rs)
    assume(cell_count(space) <= 5000)
    packets = [p for _, p in every_packet(space)]
    result = lint(rs)
    got = {(f.kind, f.rules, f.conflict) for f in result.findings}
    assert got == _expected(rs, packets)
    for f in result.findings:
        assert f.kind in KINDS
        if f.kind != "empty":
            _check_witness(rs, f)
