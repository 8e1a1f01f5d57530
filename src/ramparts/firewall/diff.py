"""Semantic diff of two rule sets: the regions of packet space whose verdict changed, each
with an example packet and the deciding rule before and after (``ramparts fw diff``).

The verdict of a packet is the effect of the first rule that matches it (accept, drop, or
reject with its reply type), or the default policy's; the diff is the set of packets on
which OLD and NEW disagree, exactly, as a list of disjoint boxes (space.py), adjacent
boxes with the same deciders merged.

The search splits the packet space recursively. A box carries, for each rule set, the rows
(rule boxes, in priority order) that reach into it, cut after the first row that covers
it (nothing after that can decide there). A box is settled when

- the two lists are the same rules in the same order (with the same default where they do
  not cover the box): the verdicts agree everywhere in it;
- every rule left in both lists (and the default, where reachable) has one and the same
  effect: they agree;
- the first row of each list covers the box: one verdict each, and if they differ, the
  whole box is a changed region.

Otherwise it is split on the boundary of the first rule where the two lists part (so the
search follows the rules that changed and leaves the rest of the space in a few large
boxes), or, when at that point each side is decided (by a rule that covers the box, or
its default) but differently, on the rules of the common prefix before it, which decide the
same on both sides wherever they match. A deploy check
against a baseline thus costs in proportion to the change, not to the size of the rule
set; the same rule set against itself is settled at the first box.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import RampartsError
from ..net.packet import Packet
from .model import Action, Rule, RuleSet
from .space import Box, RowTable, Space

__all__ = ["DEFAULT_DIFF_BUDGET", "Decider", "Diff", "DiffBudgetError", "Region", "diff"]

I64 = npt.NDArray[np.int64]

# Boxes examined before the diff gives up (it never returns part of an answer as the whole).
DEFAULT_DIFF_BUDGET = 2_000_000


class DiffBudgetError(RampartsError):
    """The diff did not finish within its budget of boxes; nothing is reported as done."""


@dataclass(frozen=True, slots=True)
class Decider:
    """What decides a region in one rule set: a rule (1-based position) or the default."""

    effect: str
    index: int | None
    rule: Rule | None

    @property
    def label(self) -> str:
        if self.rule is None or self.index is None:
            return "the default policy"
        name = f" {self.rule.id}" if self.rule.id else ""
        line = f", line {self.rule.line}" if self.rule.line else ""
        return f"rule {self.index}{name}{line}"


@dataclass(frozen=True, slots=True)
class Region:
    """A box of packets whose verdict changed: readable ``fields`` (Space.describe), an
    ``example`` packet in it, and the decider before and after."""

    box: Box
    fields: dict[str, str]
    text: str
    example: Packet
    old: Decider
    new: Decider


@dataclass(frozen=True, slots=True)
class Diff:
    old: RuleSet
    new: RuleSet
    regions: tuple[Region, ...]
    boxes_examined: int

    @property
    def changed(self) -> bool:
        return bool(self.regions)


def _effect(rule: Rule | None, default: Action) -> tuple[str, str | None]:
    if rule is None:
        return default.value, None
    return rule.action.value, rule.reject_with


def _effect_name(effect: tuple[str, str | None]) -> str:
    return effect[0] if effect[1] is None else f"{effect[0]} with {effect[1]}"


class _Side:
    """One rule set as rows, with a key per row (the same box and effect on both sides get
    the same key) and an effect code per row."""

    def __init__(
        self,
        ruleset: RuleSet,
        table: RowTable,
        keys: dict[tuple[tuple[int, ...], tuple[int, ...], int], int],
        effects: dict[tuple[str, str | None], int],
    ) -> None:
        self.ruleset = ruleset
        self.table = table
        rule_effect = [
            effects.setdefault(_effect(r, ruleset.default), len(effects)) for r in ruleset.rules
        ]
        self.default = effects.setdefault(_effect(None, ruleset.default), len(effects))
        row_effect = [rule_effect[int(i)] for i in table.rule]
        self.effect = np.array(row_effect, dtype=np.int64).reshape(-1)
        self.key = np.array(
            [
                keys.setdefault(
                    (tuple(table.lo[r].tolist()), tuple(table.hi[r].tolist()), e), len(keys)
                )
                for r, e in enumerate(row_effect)
            ],
            dtype=np.int64,
        ).reshape(-1)

    def trim(self, rows: I64, lo: I64, hi: I64) -> tuple[I64, bool]:
        """The rows that reach into the box, up to the first that covers it."""
        if rows.size == 0:
            return rows, False
        rlo, rhi = self.table.lo[rows], self.table.hi[rows]
        hit: npt.NDArray[np.bool_] = np.all((rlo <= hi) & (lo <= rhi), axis=1)
        cover = np.flatnonzero(((rlo <= lo) & (hi <= rhi)).all(axis=1))
        if cover.size:
            end = int(cover[0]) + 1
            return rows[:end][hit[:end]], True
        return rows[hit], False

    def effects(self, rows: I64, covered: bool) -> set[int]:
        out = set(self.effect[rows].tolist())
        if not covered:
            out.add(self.default)
        return out


def _split(lo: I64, hi: I64, rlo: I64, rhi: I64) -> list[tuple[I64, I64]]:
    """The box cut on the first axis where the row does not cover it: the part below the
    row, the part level with it, the part above (those that are not empty)."""
    for d in range(lo.size):
        if rlo[d] > lo[d] or rhi[d] < hi[d]:
            out = []
            a, b = max(lo[d], rlo[d]), min(hi[d], rhi[d])
            for plo, phi in ((lo[d], a - 1), (a, b), (b + 1, hi[d])):
                if plo <= phi:
                    nlo, nhi = lo.copy(), hi.copy()
                    nlo[d], nhi[d] = plo, phi
                    out.append((nlo, nhi))
            return out
    raise AssertionError("split on a row that covers the box")


def _first_difference(ko: I64, kn: I64) -> int:
    m = min(ko.size, kn.size)
    neq = np.flatnonzero(ko[:m] != kn[:m])
    return int(neq[0]) if neq.size else m


def _covers(table: RowTable, row: int, lo: I64, hi: I64) -> bool:
    return bool(np.all(table.lo[row] <= lo) and np.all(hi <= table.hi[row]))


def diff(old: RuleSet, new: RuleSet, *, budget: int = DEFAULT_DIFF_BUDGET) -> Diff:
    """The regions of packet space where ``old`` and ``new`` decide differently."""
    space = Space.of(old, new)
    keys: dict[tuple[tuple[int, ...], tuple[int, ...], int], int] = {}
    effects: dict[tuple[str, str | None], int] = {}
    a = _Side(old, space.table(old), keys, effects)
    b = _Side(new, space.table(new), keys, effects)
    names = {code: effect for effect, code in effects.items()}
    found: list[tuple[I64, I64, int, int]] = []  # box, deciding row old / new (-1: default)
    stack: list[tuple[I64, I64, I64, I64]] = []
    for box in space.universe():
        lo, hi = np.array(box.lo, dtype=np.int64), np.array(box.hi, dtype=np.int64)
        stack.append((lo, hi, np.arange(len(a.table)), np.arange(len(b.table))))
    examined = 0
    while stack:
        lo, hi, ro, rn = stack.pop()
        examined += 1
        if examined > budget:
            raise DiffBudgetError(
                f"the diff did not finish within {budget} boxes; the rule sets differ in "
                "too many places to list exactly"
            )
        ro, co = a.trim(ro, lo, hi)
        rn, cn = b.trim(rn, lo, hi)
        ko, kn = a.key[ro], b.key[rn]
        if co == cn and np.array_equal(ko, kn) and (co or a.default == b.default):
            continue
        eo, en = a.effects(ro, co), b.effects(rn, cn)
        if len(eo) == 1 and eo == en:
            continue
        head_o = ro.size == 0 or (co and ro.size == 1)
        head_n = rn.size == 0 or (cn and rn.size == 1)
        if head_o and head_n:
            found.append((lo, hi, int(ro[0]) if ro.size else -1, int(rn[0]) if rn.size else -1))
            continue
        i = _first_difference(ko, kn)
        side, row = None, -1
        if i < ro.size and not _covers(a.table, int(ro[i]), lo, hi):
            side, row = a, int(ro[i])
        elif i < rn.size and not _covers(b.table, int(rn[i]), lo, hi):
            side, row = b, int(rn[i])
        if side is None:
            # At position i each side has a rule that covers the box, or its default. The
            # rules before i are the same on both sides and decide alike where they match;
            # so with equal effects at i nothing here changed, and with different ones the
            # change is the box minus those rules: cut them away (ro[0] is one, i > 0).
            eff_o = int(a.effect[ro[i]]) if i < ro.size else a.default
            eff_n = int(b.effect[rn[i]]) if i < rn.size else b.default
            if eff_o == eff_n:
                continue
            side, row = a, int(ro[0])
        for plo, phi in _split(lo, hi, side.table.lo[row], side.table.hi[row]):
            stack.append((plo, phi, ro, rn))
    regions = [_region(space, a, b, names, *f) for f in _merge(found)]
    regions.sort(key=lambda r: (r.box.lo, r.box.hi))
    return Diff(old, new, tuple(regions), examined)


def _decider(side: _Side, row: int, names: dict[int, tuple[str, str | None]]) -> Decider:
    if row < 0:
        return Decider(_effect_name(names[side.default]), None, None)
    i = int(side.table.rule[row])
    return Decider(_effect_name(names[int(side.effect[row])]), i + 1, side.ruleset.rules[i])


def _region(
    space: Space,
    a: _Side,
    b: _Side,
    names: dict[int, tuple[str, str | None]],
    lo: I64,
    hi: I64,
    row_old: int,
    row_new: int,
) -> Region:
    box = Box(tuple(lo.tolist()), tuple(hi.tolist()))
    return Region(
        box,
        space.describe(box),
        space.text(box),
        space.witness(box),
        _decider(a, row_old, names),
        _decider(b, row_new, names),
    )


# Deciders (old row, new row) and a box's bounds on every axis but one.
_Key = tuple[int, int, tuple[int, ...], tuple[int, ...]]


def _merge(found: list[tuple[I64, I64, int, int]]) -> list[tuple[I64, I64, int, int]]:
    """Adjacent boxes with the same deciders, equal on every axis but one, joined; a few
    passes over the axes (cheap, not a minimal cover)."""
    if not found:
        return found
    width = found[0][0].size
    boxes = [(tuple(lo.tolist()), tuple(hi.tolist()), o, n) for lo, hi, o, n in found]
    for _ in range(2):
        changed = False
        for d in range(width):
            groups: dict[_Key, list[tuple[int, int]]] = defaultdict(list)
            for lo, hi, o, n in boxes:
                rest = (o, n, lo[:d] + lo[d + 1 :], hi[:d] + hi[d + 1 :])
                groups[rest].append((lo[d], hi[d]))
            merged = []
            for (o, n, rlo, rhi), spans in groups.items():
                spans.sort()
                joined: list[tuple[int, int]] = []
                for s, e in spans:
                    if joined and s == joined[-1][1] + 1:
                        joined[-1] = (joined[-1][0], e)
                        changed = True
                    else:
                        joined.append((s, e))
                for s, e in joined:
                    merged.append(((*rlo[:d], s, *rlo[d:]), (*rhi[:d], e, *rhi[d:]), o, n))
            boxes = merged
        if not changed:
            break
    return [
        (np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64), o, n) for lo, hi, o, n in boxes
    ]
