"""Semantic diff (firewall/diff.py) against the reference: on random rule sets and their
edits (rules moved, deleted, inserted, actions flipped, the default changed), the regions
are exactly the packets whose verdict differs, every packet in at most one region, and the
deciders are the rules evaluate names, checked on every elementary cell of packet space."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ramparts.firewall.diff import DiffBudgetError, diff
from ramparts.firewall.formats import load_rules
from ramparts.firewall.model import Action, Rule, RuleSet, evaluate
from ramparts.firewall.space import Box, Space
from ramparts.net import Packet, parse_ipset, parse_ports

from ...support import ROOT
from .policy_strategies import cell_count, effect, every_packet, meta_rules, rulesets, tuple_rules

EXAMPLES = ROOT / "examples" / "firewall"
CLASSIC, FIXED = EXAMPLES / "classic.yaml", EXAMPLES / "classic-fixed.yaml"


def test_scenario1_the_fix_changes_exactly_the_bad_host_on_80_and_443() -> None:
    old, new = load_rules(CLASSIC), load_rules(FIXED)
    result = diff(old, new)
    assert [r.text for r in result.regions] == [
        "ipv4 tcp 185.220.101.9 -> any port 80",
        "ipv4 tcp 185.220.101.9 -> any port 443",
    ]
    for r, (old_rule, new_rule) in zip(result.regions, [(1, 1), (2, 1)], strict=True):
        assert (r.old.effect, r.old.index, r.new.effect, r.new.index) == (
            "accept",
            old_rule,
            "drop",
            new_rule,
        )
        assert evaluate(old, r.example).index == old_rule
        assert evaluate(new, r.example).index == new_rule
    assert result.changed


def test_a_rule_set_against_itself_is_settled_at_once() -> None:
    rs = load_rules(CLASSIC)
    result = diff(rs, rs)
    assert not result.changed
    assert result.boxes_examined == 2  # one box per IP version, nothing split


def test_only_the_default_changed() -> None:
    rules = [dataclasses.replace(r) for r in load_rules(CLASSIC).rules]
    old = RuleSet.of(rules, Action.DROP)
    new = RuleSet.of(rules, Action.ACCEPT)
    result = diff(old, new)
    assert result.changed
    for r in result.regions:
        assert r.old.index is None and r.new.index is None
        assert (r.old.effect, r.new.effect) == ("drop", "accept")
        assert not any(rule.matches(r.example) for rule in rules)
    _check_exact(old, new)


def test_adjacent_boxes_are_merged() -> None:
    # Deleting a deny of port 22 from one /24, above an allow of ports 0-1023: the change
    # is that one box, not the several the search cut it into.
    deny = Rule(Action.DROP, src=parse_ipset("198.51.100.0/24"), proto=6, dport=parse_ports(22))
    allow = Rule(Action.ACCEPT, proto=6, dport=parse_ports("0-1023"))
    old = RuleSet.of([deny, allow])
    new = RuleSet.of([allow])
    result = diff(old, new)
    assert [r.text for r in result.regions] == ["ipv4 tcp 198.51.100.0/24 -> any port 22"]


def test_budget_is_an_error_not_a_partial_answer() -> None:
    old, new = load_rules(CLASSIC), load_rules(FIXED)
    with pytest.raises(DiffBudgetError):
        diff(old, new, budget=3)


# -- exactness on random edits ---------------------------------------------------------------


def _check_exact(old: RuleSet, new: RuleSet) -> int:
    """Every cell: in a region iff the verdicts differ; deciders as evaluate says."""
    result = diff(old, new)
    space = Space.of(old, new)
    changed = 0
    for cell, p in every_packet(space):
        a, b = effect(old, p), effect(new, p)
        holding = [r for r in result.regions if r.box.contains(Box(cell, cell))]
        assert len(holding) <= 1, "regions overlap"
        if a[:2] == b[:2]:
            assert not holding, (p, a, b)
            continue
        changed += 1
        assert holding, (p, a, b)
        r = holding[0]
        assert (r.old.index or 0, r.new.index or 0) == (a[2], b[2])
        assert r.old.effect.split()[0] == a[0].value and r.new.effect.split()[0] == b[0].value
    for r in result.regions:
        assert evaluate(old, r.example).index == r.old.index
        assert evaluate(new, r.example).index == r.new.index
        at = space.cell(r.example)
        assert r.box.contains(Box(at, at))
    assert result.changed == bool(changed)
    return changed


@st.composite
def edited(draw: st.DrawFn, profile: str) -> tuple[RuleSet, RuleSet]:
    old = draw(rulesets(profile, 5))
    rules = list(old.rules)
    default = old.default
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["move", "delete", "flip", "insert", "default"]))
        if op == "insert" or not rules:
            rule = draw(tuple_rules() if profile == "tuple" else meta_rules())
            rules.insert(draw(st.integers(0, len(rules))), rule)
        elif op == "move":
            rule = rules.pop(draw(st.integers(0, len(rules) - 1)))
            rules.insert(draw(st.integers(0, len(rules))), rule)
        elif op == "delete":
            rules.pop(draw(st.integers(0, len(rules) - 1)))
        elif op == "flip":
            i = draw(st.integers(0, len(rules) - 1))
            action = draw(st.sampled_from([a for a in Action if a is not rules[i].action]))
            rules[i] = dataclasses.replace(rules[i], action=action, reject_with=None)
        else:
            default = draw(st.sampled_from(list(Action)))
    return old, RuleSet.of(rules, default)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(["tuple", "meta"]).flatmap(edited))
def test_regions_are_exactly_the_changed_packets(pair: tuple[RuleSet, RuleSet]) -> None:
    old, new = pair
    assume(cell_count(Space.of(old, new)) <= 5000)
    _check_exact(old, new)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["tuple", "meta"]).flatmap(lambda p: st.tuples(rulesets(p, 4), rulesets(p, 4)))
)
def test_unrelated_rule_sets(pair: tuple[RuleSet, RuleSet]) -> None:
    old, new = pair
    assume(cell_count(Space.of(old, new)) <= 5000)
    _check_exact(old, new)


def test_example_packets_are_real_packets() -> None:
    old, new = load_rules(CLASSIC), load_rules(FIXED)
    for r in diff(old, new).regions:
        p = r.example
        assert isinstance(p, Packet) and p.version == 4 and 0 <= p.src < 1 << 32
