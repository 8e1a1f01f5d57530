"""Anomalies of an ordered rule set, exactly, in Al-Shaer and Hamed's taxonomy, with a
witness packet for every finding (``ramparts fw lint``).

For every ordered pair of rules Rx before Ry that match a common packet, with the rules
read as sets of packets (space.py) and "action" meaning the whole effect (accept, drop,
or reject with its reply type):

shadowing (Ry ⊆ Rx, different action)
    Ry never decides: every packet it matches was decided by Rx first. A critical error.
redundancy (Ry ⊆ Rx, same action)
    Ry is redundant to Rx: removing Ry changes nothing.
redundancy (Rx ⊂ Ry, same action, and no rule Rz between them, x < z < y, that
overlaps Rx with a different action)
    Rx is redundant to Ry: a packet of Rx falls through to Ry, or to an Rz between with
    the same action. The papers state the condition on Rz through their pair relations
    (Rx inside Rz, or correlated with it); we exclude every Rz that overlaps Rx with
    another action, Rz ⊆ Rx too: such an Rz is shadowed by Rx and would come to life
    without it, and the papers define a redundant rule as one whose removal does not
    change the policy.
generalization (Rx ⊂ Ry, different action)
    Ry is a generalization of Rx: Rx is an exception carved out of Ry. Often intended.
correlation (Rx and Ry overlap, neither contains the other, different action)
    The order decides the common packets; swapping the two would change the policy.

Each pair gets at most one of these (the first that applies), as in the papers, and the
witness is a packet both rules match. Beyond the pairs, three findings about one rule:

partial-shadowing (Rx accepts, Ry drops or rejects, the two are correlated, and Rx
actually decides some packet of Ry)
    The dangerous "DENY below a broader ALLOW" (scenario 1): part of what Ry was meant to
    refuse is accepted. The witness is a packet Rx decides (first match) and Ry matches.
    It adds to the correlation finding of the same pair.
unreachable (the UNION of the earlier rules covers Ry)
    Ry can never match, even where no single earlier rule covers it. The finding lists
    the earlier rules that decide its packets and says whether any of them decides
    differently (``conflict``, the dangerous case, an error) or all alike (dead code).
empty
    Ry matches no packet by itself (an address set with no range of a usable version).

Everything is exact: pairs are compared as sets, and the union questions are answered
by splitting boxes on rule boundaries (space.py). A union search has a step budget; a
rule whose answer did not come within it gets an ``undecided`` finding, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ..net.packet import Packet
from .model import Action, Rule, RuleSet
from .space import (
    Box,
    FirstRow,
    RowTable,
    Search,
    Space,
    first_match_pieces,
    first_uncovered,
)

__all__ = [
    "DEFAULT_BUDGET",
    "KINDS",
    "SEVERITY",
    "Finding",
    "Lint",
    "effect_text",
    "lint",
]

I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

KINDS = (
    "shadowing",
    "partial-shadowing",
    "unreachable",
    "redundancy",
    "generalization",
    "correlation",
    "empty",
    "undecided",
)
# SARIF levels. An unreachable rule whose cover decides like it is dead code (warning);
# one whose cover decides otherwise is an error (Finding.severity has the final word).
SEVERITY = {
    "shadowing": "error",
    "partial-shadowing": "error",
    "unreachable": "error",
    "redundancy": "warning",
    "generalization": "note",
    "correlation": "warning",
    "empty": "warning",
    "undecided": "warning",
}
# Boxes split per union question before it is given up as undecided.
DEFAULT_BUDGET = 20000
_ORDER = {k: i for i, k in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One anomaly: ``rules`` are 1-based positions (earlier first; the subject last for
    shadowing, unreachable and partial shadowing), ``subject`` the rule it is about,
    ``witness`` a packet that shows it (None only for an empty rule)."""

    kind: str
    rules: tuple[int, ...]
    subject: int
    witness: Packet | None
    message: str
    severity: str
    line: int | None = None
    conflict: bool | None = None  # unreachable: whether the cover decides differently

    def sort_key(self) -> tuple[int, int, tuple[int, ...]]:
        return self.subject, _ORDER[self.kind], self.rules


@dataclass(frozen=True, slots=True)
class Lint:
    """The findings for one rule set, sorted by the rule they are about."""

    ruleset: RuleSet
    findings: tuple[Finding, ...]
    budget: int = DEFAULT_BUDGET
    counts: dict[str, int] = field(default_factory=dict)

    def of_kind(self, *kinds: str) -> list[Finding]:
        return [f for f in self.findings if f.kind in kinds]


def effect_text(rule: Rule | None, default: Action = Action.DROP) -> str:
    """``accept``, ``drop``, ``reject`` or ``reject with tcp-reset``."""
    if rule is None:
        return default.value
    if rule.reject_with:
        return f"{rule.action.value} with {rule.reject_with}"
    return rule.action.value


def _effects(rules: Iterable[Rule]) -> I64:
    codes: dict[tuple[Action, str | None], int] = {}
    return np.array(
        [codes.setdefault((r.action, r.reject_with), len(codes)) for r in rules], dtype=np.int64
    ).reshape(-1)


@dataclass(slots=True)
class _Pairs:
    """The earlier rules ``xs`` (0-based, ascending) that share a packet with one later
    rule y, whether y ⊆ x and x ⊆ y for each, and for each a box of packets both match
    (compressed bounds ``lo``/``hi``, one row per x)."""

    xs: I64
    y_in_x: BoolArray
    x_in_y: BoolArray
    lo: I64
    hi: I64


def _relations(table: RowTable, y: int) -> _Pairs | None:
    """Every earlier rule that shares a packet with rule ``y``, and the containments."""
    ys = table.rows_of(y)
    end = ys.start
    if end == 0 or len(ys) == 0:
        return None
    lo, hi = table.lo[:end], table.hi[:end]
    ylo, yhi = table.lo[ys.start : ys.stop], table.hi[ys.start : ys.stop]
    partner = np.full(end, -1, dtype=np.int64)  # for each earlier row, a y row it meets
    for j in range(len(ys) - 1, -1, -1):
        meets = np.all((lo <= yhi[j]) & (ylo[j] <= hi), axis=1)
        partner[meets] = j
    hit = np.flatnonzero(partner >= 0)
    if hit.size == 0:
        return None
    owners = table.rule[:end]
    xs, first = np.unique(owners[hit], return_index=True)
    a = hit[first]
    b = partner[a]
    both_lo = np.maximum(lo[a], ylo[b])
    both_hi = np.minimum(hi[a], yhi[b])
    # Every row of the rules that overlap y (a row of such a rule may itself miss y).
    sel = np.flatnonzero(np.isin(owners, xs))
    local = np.searchsorted(xs, owners[sel])
    slo, shi = lo[sel], hi[sel]
    # y ⊆ x: each row of y inside some row of x (a box inside a product of merged ranges
    # lies inside one of its rows).
    y_in_x = np.ones(xs.size, dtype=bool)
    inside_y = np.zeros(sel.size, dtype=bool)
    for j in range(len(ys)):
        holds = np.all((slo <= ylo[j]) & (yhi[j] <= shi), axis=1)
        y_in_x &= np.bincount(local[holds], minlength=xs.size) > 0
        inside_y |= np.all((ylo[j] <= slo) & (shi <= yhi[j]), axis=1)
    # x ⊆ y: every row of x inside some row of y.
    x_in_y = np.bincount(local[~inside_y], minlength=xs.size) == 0
    return _Pairs(xs, y_in_x, x_in_y, both_lo, both_hi)


class _Linter:
    """The state of one lint run (kept off the module: no globals)."""

    def __init__(self, ruleset: RuleSet, budget: int) -> None:
        self.ruleset = ruleset
        self.rules = ruleset.rules
        self.space = Space.of(ruleset)
        self.table = self.space.table(ruleset)
        self.first = FirstRow(self.table, [d.size for d in self.space.dims])
        self.effect = _effects(self.rules)
        self.allows = np.array([r.action is Action.ACCEPT for r in self.rules], dtype=bool)
        self.budget = budget
        self.findings: list[Finding] = []

    def _act(self, i: int) -> str:
        return effect_text(self.rules[i])

    def _add(
        self,
        kind: str,
        rules: tuple[int, ...],
        subject: int,
        witness: Packet | None,
        message: str,
        severity: str | None = None,
        conflict: bool | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                kind,
                tuple(r + 1 for r in rules),
                subject + 1,
                witness,
                message,
                severity or SEVERITY[kind],
                self.rules[subject].line,
                conflict,
            )
        )

    def _decides_own_corner(self) -> BoolArray:
        """Rules that decide the low or the high corner of one of their own boxes: those
        are reachable, with no search (the first match of the corner is theirs)."""
        t = self.table
        mine = np.zeros(len(self.rules), dtype=bool)
        if len(t) == 0:
            return mine
        for corner in (t.lo, t.hi):
            first = self.first.first(corner)
            own = t.rule[first] == t.rule
            mine[t.rule[own]] = True
        return mine

    def run(self) -> list[Finding]:
        n = len(self.rules)
        barrier = np.full(n, -1, dtype=np.int64)  # first later rule overlapping, other action
        reachable = self._decides_own_corner()
        for y in range(n):
            if len(self.table.rows_of(y)) == 0:
                self._add("empty", (y,), y, None, f"rule {y + 1} matches no packet at all")
                continue
            rel = _relations(self.table, y)
            if rel is None:
                continue
            partial = self._pairs(y, rel, barrier)
            # Only rules that overlap y can decide any part of it.
            rows = np.flatnonzero(np.isin(self.table.rule[: self.table.rows_of(y).start], rel.xs))
            if not reachable[y]:
                self._union(y, rel, rows)
            if partial.size:
                self._partial(y, rel, partial, rows)
        return self.findings

    def _pairs(self, y: int, rel: _Pairs, barrier: I64) -> I64:
        """The pair findings of y with each earlier rule; returns the partners (indices
        into ``rel.xs``) to check for partial shadowing."""
        xs, ey = rel.xs, int(self.effect[y])
        differ = self.effect[xs] != ey
        free = barrier[xs] == -1
        barrier[xs[differ & free]] = y
        Y = y + 1
        for k in np.flatnonzero(rel.y_in_x | rel.x_in_y | differ).tolist():
            x = int(xs[k])
            X = x + 1
            if rel.y_in_x[k]:
                if differ[k]:
                    self._pair(
                        "shadowing",
                        rel,
                        k,
                        y,
                        y,
                        f"rule {Y} ({self._act(y)}) is shadowed by rule {X} ({self._act(x)}): "
                        f"rule {X} matches every packet rule {Y} matches, so rule {Y} never "
                        "decides",
                    )
                else:
                    self._pair(
                        "redundancy",
                        rel,
                        k,
                        y,
                        y,
                        f"rule {Y} is redundant to rule {X}: rule {X} already "
                        f"{self._act(x)}s every packet rule {Y} matches",
                    )
            elif rel.x_in_y[k]:
                if differ[k]:
                    self._pair(
                        "generalization",
                        rel,
                        k,
                        y,
                        y,
                        f"rule {Y} ({self._act(y)}) is a generalization of rule {X} "
                        f"({self._act(x)}): it matches every packet rule {X} matches, and more",
                    )
                elif free[k]:
                    self._pair(
                        "redundancy",
                        rel,
                        k,
                        y,
                        x,
                        f"rule {X} is redundant to rule {Y}: rule {Y} {self._act(y)}s every "
                        f"packet rule {X} matches and no rule between them decides any of "
                        "them otherwise",
                    )
            else:
                self._pair(
                    "correlation",
                    rel,
                    k,
                    y,
                    y,
                    f"rules {X} ({self._act(x)}) and {Y} ({self._act(y)}) are correlated: "
                    "they overlap, neither contains the other, and their order decides "
                    "the packets both match",
                )
        if self.allows[y]:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~rel.y_in_x & ~rel.x_in_y & self.allows[xs])

    def _pair(self, kind: str, rel: _Pairs, k: int, y: int, subject: int, msg: str) -> None:
        witness = self.space.point(rel.lo[k].tolist(), rel.hi[k].tolist())
        self._add(kind, (int(rel.xs[k]), y), subject, witness, msg)

    def _union(self, y: int, rel: _Pairs, rows: I64) -> None:
        """Whether the earlier rules (``rows``: those that overlap y) together cover rule
        y; if so, which of them decide its packets."""
        if not rel.y_in_x.any():
            for r in self.table.rows_of(y):
                status, _ = first_uncovered(self.table, rows, self.table.box(r), self.budget)
                if status is Search.FOUND:
                    return
                if status is Search.BUDGET:
                    self._undecided(y)
                    return
        owners: dict[int, Box] = {}
        for r in self.table.rows_of(y):
            status, pieces, gap = first_match_pieces(
                self.table, rows, self.table.box(r), self.budget
            )
            if status is Search.BUDGET:
                self._undecided(y)
                return
            if gap is not None:
                raise AssertionError(f"rule {y + 1}: covered, yet a part is decided by none")
            for row, piece in pieces.items():
                owners.setdefault(int(self.table.rule[row]), piece)
        deciders = sorted(owners)
        ey = int(self.effect[y])
        others = [x for x in deciders if int(self.effect[x]) != ey]
        shown = others[0] if others else deciders[0]
        names = ", ".join(str(x + 1) for x in deciders)
        which = "rule" if len(deciders) == 1 else "rules"
        if others:
            acts = sorted({self._act(x) for x in others})
            tail = (
                f"; some of them {' / '.join(acts)} what rule {y + 1} would "
                f"{self._act(y)} (e.g. rule {shown + 1} decides the witness)"
            )
        else:
            tail = f", all with its action ({self._act(y)}): it can be removed"
        self._add(
            "unreachable",
            (*deciders, y),
            y,
            self.space.witness(owners[shown]),
            f"rule {y + 1} can never match: {which} {names} before it decide every packet "
            f"it matches{tail}",
            "error" if others else "warning",
            bool(others),
        )

    def _undecided(self, y: int) -> None:
        self._add(
            "undecided",
            (y,),
            y,
            self.space.witness(self.table.box(self.table.rows_of(y).start)),
            f"rule {y + 1}: whether the rules before it cover it was not decided within "
            f"the search budget ({self.budget} splits per question)",
        )

    def _partial(self, y: int, rel: _Pairs, ks: I64, rows: I64) -> None:
        """For each correlated earlier ACCEPT rule xs[k], whether it decides some packet
        of y (a drop or reject); ``rows`` are the rows of the rules that overlap y."""
        # First try two points of the shared box, the witness it would show and its low
        # corner: does x itself decide one of them? Most pairs end here.
        tried = [
            np.array(
                [
                    self.space.cell_of_witness(lo, hi)
                    for lo, hi in zip(rel.lo[ks].tolist(), rel.hi[ks].tolist(), strict=True)
                ],
                dtype=np.int64,
            ).reshape(-1, rel.lo.shape[1]),
            rel.lo[ks],
        ]
        found: dict[int, list[int]] = {}
        for points in tried:
            owner = self.table.rule[self.first.first(points)]
            for k, pt, mine in zip(
                ks.tolist(), points.tolist(), (owner == rel.xs[ks]).tolist(), strict=True
            ):
                if mine and k not in found:
                    found[k] = pt
        for k in ks.tolist():
            x = int(rel.xs[k])
            point: Packet | None
            if k in found:
                point = self.space.point(found[k], found[k])
            else:
                point = self._decided_by(x, y, rows[self.table.rule[rows] < x])
            if point is not None:
                self._partial_finding(x, y, point)

    def _decided_by(self, x: int, y: int, before: I64) -> Packet | None:
        """A packet of y that rule x decides (``before``: rows of earlier rules that
        overlap y), searched box by box; None if there is none."""
        undecided: Box | None = None
        for a in self.table.rows_of(x):
            for b in self.table.rows_of(y):
                common = self.table.box(a).intersect(self.table.box(b))
                if common is None:
                    continue
                status, point = first_uncovered(self.table, before, common, self.budget)
                if status is Search.FOUND and point is not None:
                    return self.space.witness(point)
                if status is Search.BUDGET:
                    undecided = common
        if undecided is not None:
            self._add(
                "undecided",
                (x, y),
                y,
                self.space.witness(undecided),
                f"rules {x + 1} and {y + 1}: whether rule {x + 1} decides any packet of rule "
                f"{y + 1} was not decided within the search budget ({self.budget} splits)",
            )
        return None

    def _partial_finding(self, x: int, y: int, witness: Packet) -> None:
        X, Y = x + 1, y + 1
        self._add(
            "partial-shadowing",
            (x, y),
            y,
            witness,
            f"rule {Y} ({self._act(y)}) is partly shadowed by rule {X} ({self._act(x)}): "
            f"rule {X} comes first and accepts some packets rule {Y} was meant to "
            f"{self._act(y)}",
        )


def lint(ruleset: RuleSet, *, budget: int = DEFAULT_BUDGET) -> Lint:
    """Every anomaly of ``ruleset`` (see the module's docstring for the definitions)."""
    found = sorted(_Linter(ruleset, budget).run(), key=Finding.sort_key)
    counts = {k: 0 for k in KINDS}
    for f in found:
        counts[f.kind] += 1
    return Lint(ruleset, tuple(found), budget, counts)
