"""The compiled first-match classifier: the verdict of ``evaluate`` (same rule, same index,
same default) for every packet, at a cost that grows far slower than the rule count.

Two structures are built from one rule set, each chosen for the way it is driven:

**Single packets: bit vectors** (Lakshman and Stiliadis, SIGCOMM 1998). Per field (source,
destination, source port, destination port, protocol) the rule boundaries cut the value
space into elementary intervals; each interval holds a bitmap (a Python int) of the rules
whose range covers it. A lookup finds the interval of each field (a C-level ``bisect`` for
addresses, a direct table for ports and protocol), ANDs the five bitmaps and takes the
first rule. Rule ``i`` of ``n`` is bit ``n - i``, so the first match is the *highest* set
bit and ``int.bit_length()`` finds it in O(1). Five lookups and four ANDs of ~n/30
machine words: a median of 1.3-2 us per call in CPython at 10K rules (0.7 us at 1K),
against 1-2 ms for the linear reference. It is exact by construction (an interval's
bitmap is literally the set of rules that match there), simple to check, and builds in a
fraction of a second. The cost of the ANDs grows with n/64, which is why it rises 2-3x
from 1K to 10K rules; a decision tree walked in Python costs ~80 ns a level, and the
trees below need 50-90 levels in all, so up to a few tens of thousands of rules the bit
vectors are the faster scalar path.

**Batches: partitioned decision trees walked by numpy.** Bit vectors vectorise badly:
the first common bit of 10K-bit maps means reading ~3.6 KB per packet (or scanning word
by word, ~75 words on average since matches spread over the whole rule list), which by
our estimate holds numpy near 1M packets/s. A decision tree vectorises well: every packet
descends one level per numpy step (three gathers and three element-wise operations over
the whole batch). The
trees are HyperSplit trees (Qi et al., INFOCOM 2009: binary cuts, the dimension with the
fewest rules per segment, the threshold at the weighted median) built in *rank space* (the
same elementary intervals as above), so a packet's five ranks pack into one int64 and a
node tests its field with ``(key & mask) > threshold``. Leaves are exact: a region is cut
until the first rule intersecting it covers it (or none does), and the rules after a rule
that covers a region are dropped from it, so no leaf needs a linear check. Wildcards are
what blow decision trees up (fw1's 5,600 any-source rules would be copied into every
source cut); as in EffiCuts and CutSplit, rules are first partitioned by which address
fields are small (at most a /16), one tree per partition, so no partition cuts through
its own wildcards. A packet's verdict is the smallest index over the trees; trees are
walked in order of their first rule, a packet skips a tree (or a subtree) whose rules all
come after its best match so far, and finished packets are dropped from the batch every
few levels. IP ranks come from a 16-8-8 multibit trie in numpy, port and protocol ranks
from direct tables. Measured at 10K rules (acl1, fw1, ipc1): 3.5-6 million packets/s,
about the same as at 1K; building both structures takes 1-1.5 s and at most ~150 MB.

Both are checked against ``evaluate`` by property tests and reproduce ClassBench traces.

Fields beyond the 5-tuple (ICMP type and code, TCP flags, direction, interface,
connection state) are not in either structure, because they are almost never the field
that separates 10K rules and would multiply the tables. Instead the bitmaps are built over
the 5-tuple of every rule, and the candidates are taken in priority order: a rule without
such conditions decides at once; a rule with them decides only if ``Rule.matches`` says so
for the packet, else the next candidate is tried. For the common packet that carries none
of these fields (``lookup_index``, batches), a rule whose extra conditions reject such a
packet is masked out once at build time, so the fast path stays five lookups and ANDs.

Limits and fallbacks (always exact, only slower): batches of IPv6 packets, rule sets whose
five ranks do not fit 63 bits, multi-range rules that would expand into more than
``max_boxes`` boxes, and tree regions beyond ``max_nodes`` or ``max_depth`` (a "residual"
leaf) are classified with the bit vectors, packet by packet.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ..net.addr import IPSet
from ..net.intervals import merge_intervals
from ..net.packet import Packet
from ..net.ports import PortRange
from .model import Rule, RuleSet, Verdict

__all__ = ["Classifier"]

I64: TypeAlias = npt.NDArray[np.int64]
Range: TypeAlias = tuple[int, int]
LookupIndex: TypeAlias = Callable[[int, int, int, int, int, int], int]

_ADDR_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
_PORT_MAX = 65535
_PROTO_MAX = 255
_SMALL_ADDR = 1 << 16  # an address range of at most a /16 counts as "small" (partitioning)
_COMPACT_EVERY = 6  # levels between two compactions of the batch during a tree walk
_CHUNK = 1 << 17  # packets per numpy pass (bounds the batch's working memory)

DEFAULT_MAX_NODES = 1_000_000
DEFAULT_MAX_DEPTH = 48
DEFAULT_MAX_BOXES = 200_000


# -- rule projections ----------------------------------------------------------------------


# The projections are normalised (merge_intervals): a rule's toggles in the sweep must not
# meet.


def _address_ranges(field: IPSet | None, version: int) -> list[Range]:
    if field is None:
        return [(0, _ADDR_MAX[version])]
    return merge_intervals([(r.lo, r.hi) for r in field.ranges if r.version == version])


def _port_ranges(field: tuple[PortRange, ...] | None) -> list[Range]:
    if field is None:
        return [(0, _PORT_MAX)]
    return merge_intervals([(r.lo, r.hi) for r in field])


def _proto_ranges(proto: int | None) -> list[Range]:
    return [(0, _PROTO_MAX)] if proto is None else [(proto, proto)]


def _has_extras(rule: Rule) -> bool:
    """Whether the rule looks at anything beyond the 5-tuple. (The fields are listed here
    and in _is_plain; a test fails when Rule or Packet gains a field these do not know.)"""
    return not (
        rule.icmp_type is None
        and rule.icmp_code is None
        and rule.tcp_flags is None
        and rule.direction is None
        and rule.iface is None
        and rule.out_iface is None
        and rule.ct_state is None
    )


def _accepts_plain_packets(rule: Rule) -> bool:
    """Whether the rule's extra conditions accept a packet that carries none (no ICMP type,
    no TCP flags, no direction ...). Asked of the reference itself: a witness packet inside
    the rule's 5-tuple with every other field at its default."""
    if not _has_extras(rule):
        return True
    for version in (4, 6):
        src = _address_ranges(rule.src, version)
        dst = _address_ranges(rule.dst, version)
        if src and dst:
            witness = Packet(
                version,
                src[0][0],
                dst[0][0],
                _proto_ranges(rule.proto)[0][0],
                _port_ranges(rule.sport)[0][0],
                _port_ranges(rule.dport)[0][0],
            )
            return rule.matches(witness)
    return False  # matches no address at all


def _is_plain(p: Packet) -> bool:
    return (
        p.tcp_flags == 0
        and p.icmp_type is None
        and p.icmp_code is None
        and p.direction is None
        and p.iface is None
        and p.out_iface is None
        and p.ct_state is None
    )


# -- bit vectors (the scalar path) ---------------------------------------------------------


def _sweep(ranges: Sequence[tuple[int, list[Range]]], vmax: int) -> tuple[list[int], list[int]]:
    """(starts, maps) of one field: ``starts`` the sorted interval starts (starts[0] == 0);
    ``maps[j]`` the bitmap of the interval containing every v with bisect_right(starts, v)
    == j (maps[0], below 0, is empty)."""
    toggles: dict[int, int] = {0: 0}
    for bit, rs in ranges:
        for lo, hi in rs:
            toggles[lo] = toggles.get(lo, 0) ^ bit
            toggles[hi + 1] = toggles.get(hi + 1, 0) ^ bit
    starts = sorted(p for p in toggles if p <= vmax)
    maps = [0]
    cur = 0
    for p in starts:
        cur ^= toggles[p]
        maps.append(cur)
    return starts, maps


def _direct(starts: list[int], maps: list[int], size: int) -> list[int]:
    """A table value -> bitmap over 0..size-1 (ports, protocols)."""
    table: list[int] = []
    bounds = [*starts[1:], size]
    for j, (lo, hi) in enumerate(zip(starts, bounds, strict=True)):
        table.extend([maps[j + 1]] * (hi - lo))
    return table


@dataclass(frozen=True, slots=True)
class _AddrTables:
    """The address fields of one IP version: interval starts and bitmaps."""

    src_starts: list[int]
    src_maps: list[int]
    dst_starts: list[int]
    dst_maps: list[int]


# -- decision trees (the batch path) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tree:
    """One partition's tree, flattened in breadth-first order; a node's children are
    ``ch`` and ``ch + 1``, a leaf is its own child with mask 0. ``res`` is the deciding
    rule (1-based) of a leaf, ``none`` (n + 1) when no rule matches there, 0 for a residual
    leaf (the build budget ran out: the bit vectors decide); ``minr`` is the smallest
    ``res`` under a node, for pruning."""

    mask: I64
    thr: I64
    ch: I64
    res: I64
    minr: I64
    leaf: npt.NDArray[np.bool_]
    depth: int
    first_rule: int


class _TreeBuilder:
    """HyperSplit in rank space with exact leaves, for boxes (one per rule x range product)."""

    def __init__(
        self,
        lo: list[list[int]],
        hi: list[list[int]],
        rule_of: list[int],
        widths: list[int],
        shifts: list[int],
        none: int,
        max_nodes: int,
        max_depth: int,
    ) -> None:
        self.lo = lo
        self.hi = hi
        self.rule_of = rule_of
        self.widths = widths
        self.shifts = shifts
        self.none = none
        self.budget = max_nodes
        self.max_depth = max_depth
        self.residual_leaves = 0

    def _split(self, rl: list[int], rlo: list[int], rhi: list[int]) -> tuple[int, int]:
        """(dimension, threshold t): left gets [lo, t - 1], right [t, hi]."""
        best: tuple[float, int, int] | None = None
        for d in range(5):
            lo, hi1 = rlo[d], rhi[d] + 1
            if hi1 - lo < 2:
                continue
            L, H = self.lo[d], self.hi[d]
            delta: dict[int, int] = {}
            get = delta.get
            for b in rl:
                a = L[b]
                if a < lo:
                    a = lo
                e = H[b] + 1
                if e > hi1:
                    e = hi1
                delta[a] = get(a, 0) + 1
                delta[e] = get(e, 0) - 1
            pts = sorted(delta)
            nseg = len(pts) - 1
            if nseg < 2:
                continue
            weights = list(itertools.accumulate(delta[p] for p in pts[:-1]))
            total = sum(weights)
            avg = total / nseg
            if best is not None and avg >= best[0]:
                continue
            half = total / 2
            acc = 0
            t = pts[1]
            for j in range(nseg - 1):
                acc += weights[j]
                t = pts[j + 1]
                if acc > half:
                    break
            best = (avg, d, t)
        if best is not None:
            return best[1], best[2]
        # Every rule spans the same part of the region in every field, and the first one
        # does not cover the region: cut off the part it misses.
        b0 = rl[0]
        for d in range(5):
            if self.lo[d][b0] > rlo[d]:
                return d, self.lo[d][b0]
            if self.hi[d][b0] < rhi[d]:
                return d, self.hi[d][b0] + 1
        raise AssertionError("unreachable: the first rule covers the region")

    def build(self, boxes: list[int], region_hi: list[int]) -> _Tree:
        lo, hi = self.lo, self.hi
        lo0, lo1, lo2, lo3, lo4 = lo
        hi0, hi1, hi2, hi3, hi4 = hi
        mask = [0]
        thr = [0]
        ch = [0]
        res = [self.none]
        self.budget -= 1
        depth_max = 0
        queue: deque[tuple[int, list[int], list[int], list[int], int]] = deque()
        queue.append((0, [0, 0, 0, 0, 0], list(region_hi), boxes, 0))
        while queue:
            nid, rlo, rhi, rl, depth = queue.popleft()
            a0, a1, a2, a3, a4 = rlo
            z0, z1, z2, z3, z4 = rhi
            cover = -1
            for pos, b in enumerate(rl):
                if (
                    lo0[b] <= a0
                    and hi0[b] >= z0
                    and lo1[b] <= a1
                    and hi1[b] >= z1
                    and lo2[b] <= a2
                    and hi2[b] >= z2
                    and lo3[b] <= a3
                    and hi3[b] >= z3
                    and lo4[b] <= a4
                    and hi4[b] >= z4
                ):
                    cover = pos
                    break
            ch[nid] = nid
            depth_max = max(depth_max, depth)
            if cover == 0:
                res[nid] = self.rule_of[rl[0]]
                continue
            if not rl:
                continue
            if cover > 0:
                rl = rl[: cover + 1]
            if depth >= self.max_depth or self.budget < 2:
                res[nid] = 0  # residual: the bit vectors decide packets that land here
                self.residual_leaves += 1
                continue
            d, t = self._split(rl, rlo, rhi)
            child = len(mask)
            self.budget -= 2
            mask[nid] = ((1 << self.widths[d]) - 1) << self.shifts[d]
            thr[nid] = (t - 1) << self.shifts[d]
            ch[nid] = child
            mask += [0, 0]
            thr += [0, 0]
            ch += [0, 0]
            res += [self.none, self.none]
            L, H = lo[d], hi[d]
            left_hi = list(rhi)
            left_hi[d] = t - 1
            right_lo = list(rlo)
            right_lo[d] = t
            queue.append((child, rlo, left_hi, [b for b in rl if L[b] < t], depth + 1))
            queue.append((child + 1, right_lo, rhi, [b for b in rl if H[b] >= t], depth + 1))
        n = len(mask)
        minr = list(res)
        for i in range(n - 1, -1, -1):  # children come after their parent
            c = ch[i]
            if c != i:
                minr[i] = min(minr[c], minr[c + 1])
        ch_a = np.array(ch, dtype=np.int64)
        return _Tree(
            mask=np.array(mask, dtype=np.int64),
            thr=np.array(thr, dtype=np.int64),
            ch=ch_a,
            res=np.array(res, dtype=np.int64),
            minr=np.array(minr, dtype=np.int64),
            leaf=ch_a == np.arange(n, dtype=np.int64),
            depth=depth_max,
            first_rule=self.rule_of[boxes[0]],
        )


def _ranks(starts: I64, values: I64) -> I64:
    """The interval index of each value: the number of starts <= value, minus one."""
    r: I64 = np.searchsorted(starts, values, side="right").astype(np.int64) - 1
    return r


def _rank_table(starts: list[int], vmax: int) -> I64:
    """A direct table value -> rank over 0..vmax (ports, protocols)."""
    return _ranks(np.array(starts, dtype=np.int64), np.arange(vmax + 1, dtype=np.int64))


def _rank_trie(starts: list[int]) -> tuple[I64, I64, I64]:
    """A 16-8-8 multibit trie giving the interval index (rank) of an IPv4 address: an entry
    >= 0 is the rank, an entry < 0 points (as -1 - block) to a 256-entry block one level
    down."""
    s = np.array(starts, dtype=np.int64)

    def rank(v: I64) -> I64:
        return _ranks(s, v)

    base1 = np.arange(1 << 16, dtype=np.int64) << 16
    r_lo, r_hi = rank(base1), rank(base1 + 0xFFFF)
    split1 = np.flatnonzero(r_lo != r_hi)
    t1 = r_lo.copy()
    t1[split1] = -1 - np.arange(split1.size, dtype=np.int64)
    base2 = ((split1 << 16)[:, None] + (np.arange(256, dtype=np.int64) << 8)[None, :]).ravel()
    r_lo, r_hi = rank(base2), rank(base2 + 0xFF)
    split2 = np.flatnonzero(r_lo != r_hi)
    t2 = r_lo.copy()
    t2[split2] = -1 - np.arange(split2.size, dtype=np.int64)
    base3 = (base2[split2][:, None] + np.arange(256, dtype=np.int64)[None, :]).ravel()
    t3 = rank(base3)
    return t1, t2, t3


def _trie_lookup(trie: tuple[I64, I64, I64], addr: I64) -> I64:
    t1, t2, t3 = trie
    r: I64 = t1[addr >> 16]
    down = np.flatnonzero(r < 0)
    if down.size:
        a = addr[down]
        r2: I64 = t2[((-1 - r[down]) << 8) | ((a >> 8) & 0xFF)]
        down2 = np.flatnonzero(r2 < 0)
        if down2.size:
            r2[down2] = t3[((-1 - r2[down2]) << 8) | (a[down2] & 0xFF)]
        r[down] = r2
    return r


class _BatchTrees:
    """The IPv4 batch engine: rank tables and one tree per partition."""

    def __init__(
        self,
        starts: list[list[int]],
        boxes: list[tuple[int, list[Range]]],
        n: int,
        max_nodes: int,
        max_depth: int,
    ) -> None:
        self.none = n + 1
        nint = [len(s) for s in starts]
        self.widths = [max(1, (k - 1).bit_length()) for k in nint]
        self.shifts = [sum(self.widths[:d]) for d in range(5)]
        self.fits = sum(self.widths) <= 63
        self.trees: list[_Tree] = []
        self.residual_leaves = 0
        if not self.fits:
            return
        self.src_trie = _rank_trie(starts[0])
        self.dst_trie = _rank_trie(starts[1])
        self.port_rank = [_rank_table(starts[d], _PORT_MAX) for d in (2, 3)]
        self.proto_rank = _rank_table(starts[4], _PROTO_MAX)
        # Boxes in rank space, one list per field, and their partition.
        lo: list[list[int]] = [[] for _ in range(5)]
        hi: list[list[int]] = [[] for _ in range(5)]
        rule_of: list[int] = []
        groups: dict[tuple[bool, bool], list[int]] = {}
        for index, box in boxes:
            b = len(rule_of)
            rule_of.append(index)
            for d in range(5):
                blo, bhi = box[d]
                lo[d].append(bisect_right(starts[d], blo) - 1)
                hi[d].append(bisect_right(starts[d], bhi) - 1)
            key = (box[0][1] - box[0][0] < _SMALL_ADDR, box[1][1] - box[1][0] < _SMALL_ADDR)
            groups.setdefault(key, []).append(b)
        builder = _TreeBuilder(
            lo, hi, rule_of, self.widths, self.shifts, self.none, max_nodes, max_depth
        )
        region_hi = [k - 1 for k in nint]
        for members in sorted(groups.values(), key=lambda m: rule_of[m[0]]):
            self.trees.append(builder.build(members, region_hi))
        self.residual_leaves = builder.residual_leaves

    @property
    def nodes(self) -> int:
        return sum(int(t.ch.size) for t in self.trees)

    def keys(self, src: I64, dst: I64, sport: I64, dport: I64, proto: I64) -> I64:
        sh = self.shifts
        key: I64 = _trie_lookup(self.src_trie, src) << sh[0]
        key |= _trie_lookup(self.dst_trie, dst) << sh[1]
        key |= self.port_rank[0][sport] << sh[2]
        key |= self.port_rank[1][dport] << sh[3]
        key |= self.proto_rank[proto] << sh[4]
        return key

    def classify(self, key: I64) -> I64:
        """Per packet: the deciding rule (1-based), n + 1 for the default, 0 for "ask the
        bit vectors" (a residual leaf)."""
        p = key.size
        best: I64 = np.full(p, self.none, dtype=np.int64)
        for tree in self.trees:
            sel: I64 = np.flatnonzero(best > tree.first_rule)
            if sel.size == 0:
                continue
            k = key if sel.size == p else key[sel]
            node: I64 = np.zeros(sel.size, dtype=np.int64)
            mask, thr, ch = tree.mask, tree.thr, tree.ch
            for level in range(1, tree.depth + 1):
                node = ch[node] + ((k & mask[node]) > thr[node])
                if level % _COMPACT_EVERY == 0 and level < tree.depth:
                    b = best[sel]
                    np.minimum(b, tree.res[node], out=b)
                    best[sel] = b
                    keep = np.flatnonzero(~tree.leaf[node] & (tree.minr[node] < b))
                    if keep.size == 0:
                        break
                    sel, node, k = sel[keep], node[keep], k[keep]
            else:
                b = best[sel]
                np.minimum(b, tree.res[node], out=b)
                best[sel] = b
        return best


# -- the classifier --------------------------------------------------------------------------


class Classifier:
    """A rule set compiled for fast first-match lookups; verdicts identical to ``evaluate``.

    ``lookup(packet)`` gives the Verdict; ``lookup_index(version, src, dst, proto, sport,
    dport)`` the 1-based rule index (0: the default) of a packet with nothing beyond its
    5-tuple, the hot path; ``classify_batch`` the indices of many such packets (numpy).
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        batch_trees: bool = True,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_boxes: int = DEFAULT_MAX_BOXES,
    ) -> None:
        self.ruleset = ruleset
        rules = ruleset.rules
        n = len(rules)
        self._n = n
        self._rules = rules
        self._verdicts: tuple[Verdict, ...] = (
            Verdict(ruleset.default, None, None),
            *(Verdict(r.action, r, i) for i, r in enumerate(rules, 1)),
        )
        # _plain[i]: rule i decides as soon as its 5-tuple matches (no extra conditions).
        self._plain = (True, *(not _has_extras(r) for r in rules))
        fast = [_accepts_plain_packets(r) for r in rules]
        self._fast_mask: int | None = None
        if not all(fast):
            self._fast_mask = sum(1 << (n - i) for i, ok in enumerate(fast, 1) if ok)

        bits = [1 << (n - i) for i in range(1, n + 1)]
        sp_starts, sp_maps = _sweep(
            [(b, _port_ranges(r.sport)) for b, r in zip(bits, rules, strict=True)], _PORT_MAX
        )
        dp_starts, dp_maps = _sweep(
            [(b, _port_ranges(r.dport)) for b, r in zip(bits, rules, strict=True)], _PORT_MAX
        )
        pr_starts, pr_maps = _sweep(
            [(b, _proto_ranges(r.proto)) for b, r in zip(bits, rules, strict=True)], _PROTO_MAX
        )
        self._sport = _direct(sp_starts, sp_maps, _PORT_MAX + 1)
        self._dport = _direct(dp_starts, dp_maps, _PORT_MAX + 1)
        self._proto = _direct(pr_starts, pr_maps, _PROTO_MAX + 1)
        self._addr: dict[int, _AddrTables] = {}
        for v in (4, 6):
            ss, sm = _sweep(
                [(b, _address_ranges(r.src, v)) for b, r in zip(bits, rules, strict=True)],
                _ADDR_MAX[v],
            )
            ds, dm = _sweep(
                [(b, _address_ranges(r.dst, v)) for b, r in zip(bits, rules, strict=True)],
                _ADDR_MAX[v],
            )
            self._addr[v] = _AddrTables(ss, sm, ds, dm)
        self.lookup_index: LookupIndex = self._make_lookup_index()

        self._batch: _BatchTrees | None = None
        self.batch_note = "disabled"
        if batch_trees:
            t4 = self._addr[4]
            starts = [t4.src_starts, t4.dst_starts, sp_starts, dp_starts, pr_starts]
            self._build_batch(fast, starts, max_nodes, max_depth, max_boxes)

    def _build_batch(
        self,
        fast: list[bool],
        starts: list[list[int]],
        max_nodes: int,
        max_depth: int,
        max_boxes: int,
    ) -> None:
        """The batch trees: IPv4, the rules a plain packet can match, one box per product of
        a rule's ranges."""
        boxes: list[tuple[int, list[Range]]] = []
        for i, r in enumerate(self._rules, 1):
            if not fast[i - 1]:
                continue
            fields = [
                _address_ranges(r.src, 4),
                _address_ranges(r.dst, 4),
                _port_ranges(r.sport),
                _port_ranges(r.dport),
                _proto_ranges(r.proto),
            ]
            count = 1
            for f in fields:
                count *= len(f)
            if len(boxes) + count > max_boxes:
                self.batch_note = f"more than {max_boxes} boxes: bit vectors per packet"
                return
            boxes.extend((i, list(box)) for box in itertools.product(*fields))
        engine = _BatchTrees(starts, boxes, self._n, max_nodes, max_depth)
        if not engine.fits:
            self.batch_note = "ranks exceed 63 bits: bit vectors per packet"
            return
        self._batch = engine
        self.batch_note = (
            f"{len(engine.trees)} tree(s), {engine.nodes} nodes, "
            f"{engine.residual_leaves} residual leaves"
        )

    # -- single packets

    def _make_lookup_index(self) -> LookupIndex:
        # A closure over local variables: the hot path pays no attribute lookups.
        t4, t6 = self._addr[4], self._addr[6]
        ss4, sm4, ds4, dm4 = t4.src_starts, t4.src_maps, t4.dst_starts, t4.dst_maps
        ss6, sm6, ds6, dm6 = t6.src_starts, t6.src_maps, t6.dst_starts, t6.dst_maps
        spm, dpm, prm = self._sport, self._dport, self._proto
        fast_mask = self._fast_mask
        top = self._n + 1
        amax4, amax6 = _ADDR_MAX[4], _ADDR_MAX[6]

        def lookup_index(
            version: int, src: int, dst: int, proto: int, sport: int, dport: int
        ) -> int:
            """The 1-based index of the rule that decides a packet with nothing beyond its
            5-tuple, or 0 when the default policy does."""
            if not (0 <= sport <= 65535 and 0 <= dport <= 65535 and 0 <= proto <= 255):
                raise ValueError(f"port or protocol out of range: {sport} {dport} {proto}")
            if version == 4:
                if not (0 <= src <= amax4 and 0 <= dst <= amax4):
                    raise ValueError("IPv4 address out of range")
                x = sm4[bisect_right(ss4, src)] & dm4[bisect_right(ds4, dst)]
            elif version == 6:
                if not (0 <= src <= amax6 and 0 <= dst <= amax6):
                    raise ValueError("IPv6 address out of range")
                x = sm6[bisect_right(ss6, src)] & dm6[bisect_right(ds6, dst)]
            else:
                raise ValueError(f"IP version {version}")
            x = x & spm[sport] & dpm[dport] & prm[proto]
            if fast_mask is not None:
                x &= fast_mask
            return top - x.bit_length() if x else 0

        return lookup_index

    def _candidates(self, p: Packet) -> int:
        """Bitmap of the rules whose 5-tuple matches (extra conditions not yet checked)."""
        if p.version not in self._addr:
            raise ValueError(f"IP version {p.version}")
        t = self._addr[p.version]
        amax = _ADDR_MAX[p.version]
        if not (0 <= p.src <= amax and 0 <= p.dst <= amax):
            raise ValueError(f"IPv{p.version} address out of range")
        if not (0 <= p.sport <= _PORT_MAX and 0 <= p.dport <= _PORT_MAX):
            raise ValueError("port out of range")
        if not 0 <= p.proto <= _PROTO_MAX:
            raise ValueError("protocol out of range")
        return (
            t.src_maps[bisect_right(t.src_starts, p.src)]
            & t.dst_maps[bisect_right(t.dst_starts, p.dst)]
            & self._sport[p.sport]
            & self._dport[p.dport]
            & self._proto[p.proto]
        )

    def lookup_packet_index(self, packet: Packet) -> int:
        """The 1-based index of the deciding rule for any packet (0: the default)."""
        if _is_plain(packet):
            return self.lookup_index(
                packet.version, packet.src, packet.dst, packet.proto, packet.sport, packet.dport
            )
        x = self._candidates(packet)
        top, plain, rules = self._n + 1, self._plain, self._rules
        while x:
            b = x.bit_length()
            i = top - b
            if plain[i] or rules[i - 1].matches(packet):
                return i
            x ^= 1 << (b - 1)
        return 0

    def lookup(self, packet: Packet) -> Verdict:
        """The verdict for one packet, identical to ``evaluate(ruleset, packet)``."""
        return self._verdicts[self.lookup_packet_index(packet)]

    def verdict(self, index: int) -> Verdict:
        """The Verdict for a rule index as returned by lookup_index (0: the default)."""
        return self._verdicts[index]

    # -- batches

    def classify_batch(
        self,
        src: npt.ArrayLike,
        dst: npt.ArrayLike,
        sport: npt.ArrayLike,
        dport: npt.ArrayLike,
        proto: npt.ArrayLike,
        *,
        version: int = 4,
    ) -> I64:
        """Rule indices (1-based, 0 for the default) of many packets with nothing beyond
        their 5-tuple, as an int64 array. IPv4 runs on the numpy trees; IPv6 addresses
        (Python ints) go through the bit vectors one by one."""
        if version == 6:
            # 128-bit addresses do not fit numpy integers: Python ints, one packet at a time.
            srcs = [int(a) for a in np.asarray(src, dtype=object).reshape(-1)]
            dsts = [int(a) for a in np.asarray(dst, dtype=object).reshape(-1)]
            sps, dps, prs = (
                np.asarray(a, dtype=np.int64).reshape(-1) for a in (sport, dport, proto)
            )
            if not len(srcs) == len(dsts) == sps.size == dps.size == prs.size:
                raise ValueError("batch columns differ in length")
            li = self.lookup_index
            return np.array(
                [
                    li(6, s, d, pr, sp, dp)
                    for s, d, sp, dp, pr in zip(
                        srcs, dsts, sps.tolist(), dps.tolist(), prs.tolist(), strict=True
                    )
                ],
                dtype=np.int64,
            ).reshape(-1)
        if version != 4:
            raise ValueError(f"IP version {version}")
        cols = [np.asarray(a, dtype=np.int64).reshape(-1) for a in (src, dst, sport, dport, proto)]
        size = cols[0].size
        if any(c.size != size for c in cols):
            raise ValueError("batch columns differ in length")
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        limits = (_ADDR_MAX[4], _ADDR_MAX[4], _PORT_MAX, _PORT_MAX, _PROTO_MAX)
        for name, c, top in zip(
            ("src", "dst", "sport", "dport", "proto"), cols, limits, strict=True
        ):
            if int(c.min()) < 0 or int(c.max()) > top:
                raise ValueError(f"{name} out of range (0..{top})")
        out: I64 = np.empty(size, dtype=np.int64)
        for start in range(0, size, _CHUNK):
            part = [c[start : start + _CHUNK] for c in cols]
            out[start : start + _CHUNK] = self._classify_v4(*part)
        return out

    def _classify_v4(self, src: I64, dst: I64, sport: I64, dport: I64, proto: I64) -> I64:
        engine = self._batch
        if engine is None:
            li = self.lookup_index
            return np.array(
                [
                    li(4, s, d, pr, sp, dp)
                    for s, d, sp, dp, pr in zip(
                        src.tolist(),
                        dst.tolist(),
                        sport.tolist(),
                        dport.tolist(),
                        proto.tolist(),
                        strict=True,
                    )
                ],
                dtype=np.int64,
            ).reshape(-1)
        best = engine.classify(engine.keys(src, dst, sport, dport, proto))
        residual = np.flatnonzero(best == 0)
        best[best == engine.none] = 0
        if residual.size:
            li = self.lookup_index
            best[residual] = [
                li(4, int(src[j]), int(dst[j]), int(proto[j]), int(sport[j]), int(dport[j]))
                for j in residual.tolist()
            ]
        return best

    # -- introspection

    @property
    def stats(self) -> dict[str, Any]:
        """Sizes of the compiled structures (for benchmarks and the curious)."""
        t4 = self._addr[4]
        engine = self._batch
        return {
            "rules": self._n,
            "intervals_v4": [len(t4.src_starts), len(t4.dst_starts)],
            "batch": self.batch_note,
            "trees": len(engine.trees) if engine else 0,
            "tree_nodes": engine.nodes if engine else 0,
            "tree_depths": [t.depth for t in engine.trees] if engine else [],
            "residual_leaves": engine.residual_leaves if engine else 0,
        }
