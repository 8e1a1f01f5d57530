"""Header space: the set of packets a rule matches, as a union of boxes over the packet
fields a rule set uses, with exact set operations and concrete witness packets.

A packet (net/packet.py) is a point: IP version, source and destination address, protocol,
ports, ICMP type and code, the TCP flag bits, direction, interface and connection state.
A rule matches a product of per-field sets (``Rule.matches`` tests each field on its own),
so it is a union of *boxes*, one per combination of its ranges (an IPSet of three ranges
times a port list of two is six boxes). Addresses tie to the version: a box has one IP
version, and its addresses lie in that version's part of the address axis (IPv4 ``a`` is
``a``, IPv6 ``a`` is ``2**32 + a``), so no box mixes versions.

Every field becomes an integer axis. Values a rule cannot name (no ICMP type, no state,
an interface no rule names) get a code of their own, so "matches anything" is the whole
axis and "icmp type 3" leaves room for the packets with none. TCP flags are one axis per
bit a rule examines: ``(flags & mask) == value`` is then a box. A field no rule in the
``Space`` constrains is not an axis at all and costs nothing.

Coordinates are *compressed*: on each axis the boundaries of every rule's ranges cut the
domain into elementary intervals, and a box stores interval numbers. Order is kept, so
intersection, containment and subtraction are exact, and 128-bit addresses become small
integers that numpy can compare for thousands of rules at once (``RowTable``). Any box
built from the rules of a ``Space`` by these operations has rule boundaries only, so it is
a union of whole elementary intervals: one point of it stands for nothing less than the
interval, and the lowest corner is a witness ``Packet`` that ``Rule.matches`` agrees with.

``first_uncovered`` and ``first_match_pieces`` answer the union questions (is this box
inside the union of those rules; which of an ordered list of rules decides which part of
a box) by splitting boxes on rule boundaries, with a step budget: an answer is exact or
is "not decided within the budget", never a guess.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..net.addr import IPRange, IPSet
from ..net.intervals import merge_intervals
from ..net.packet import Packet
from ..net.proto import protocol_name
from .model import CT_STATES, Rule, RuleSet

__all__ = [
    "Box",
    "Dim",
    "FirstRow",
    "RowTable",
    "Search",
    "Space",
    "first_match_pieces",
    "first_uncovered",
]

I64 = npt.NDArray[np.int64]
Interval = tuple[int, int]

_V4_SIZE = 1 << 32
_V6_SIZE = 1 << 128
_ADDR_MAX = _V4_SIZE + _V6_SIZE - 1
_PART = {4: (0, _V4_SIZE - 1), 6: (_V4_SIZE, _ADDR_MAX)}
_VERSION_CODE = {4: 0, 6: 1}
_STATE_CODE = {"new": 1, "established": 2, "related": 3, "invalid": 4}
_STATE_NAME = {v: k for k, v in _STATE_CODE.items()}
_DIRECTION_CODE = {"in": 1, "out": 2}
_DIRECTION_NAME = {v: k for k, v in _DIRECTION_CODE.items()}
_FLAG_NAMES = {0: "fin", 1: "syn", 2: "rst", 3: "psh", 4: "ack", 5: "urg", 6: "ece", 7: "cwr"}
# Witness values preferred where a box allows them: a TCP packet reads better than one of
# protocol 0, and an ephemeral source port better than port 0.
_PREFERRED = {"proto": (6, 17, 1, 58), "sport": (49152, 1024)}

# The order of the axes (those used), and their domains.
_FIXED_DIMS: tuple[tuple[str, int, int], ...] = (
    ("version", 0, 1),
    ("src", 0, _ADDR_MAX),
    ("dst", 0, _ADDR_MAX),
    ("proto", 0, 255),
    ("sport", 0, 65535),
    ("dport", 0, 65535),
    ("icmp_type", 0, 256),  # 0: none; t + 1: type t
    ("icmp_code", 0, 256),
)


@dataclass(frozen=True, slots=True)
class Dim:
    """One axis: its name, its raw domain, and the boundaries that cut it into elementary
    intervals (interval ``e`` is ``cuts[e]`` to ``cuts[e + 1] - 1``)."""

    name: str
    lo: int
    hi: int
    cuts: tuple[int, ...]

    @property
    def size(self) -> int:
        """The number of elementary intervals."""
        return len(self.cuts) - 1

    def encode(self, lo: int, hi: int) -> Interval:
        a = bisect.bisect_left(self.cuts, lo)
        b = bisect.bisect_left(self.cuts, hi + 1) - 1
        if self.cuts[a] != lo or self.cuts[b + 1] != hi + 1:
            raise ValueError(f"{self.name}: {lo}-{hi} is not on this space's boundaries")
        return a, b

    def raw(self, lo: int, hi: int) -> Interval:
        """The raw values of elementary intervals ``lo`` to ``hi``."""
        return self.cuts[lo], self.cuts[hi + 1] - 1


@dataclass(frozen=True, slots=True)
class Box:
    """A box in compressed coordinates: elementary intervals ``lo[d]`` to ``hi[d]`` on
    every axis of its Space. Empty boxes are not made; operations return None or []."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]

    def intersect(self, other: Box) -> Box | None:
        lo = tuple(max(a, b) for a, b in zip(self.lo, other.lo, strict=True))
        hi = tuple(min(a, b) for a, b in zip(self.hi, other.hi, strict=True))
        if any(a > b for a, b in zip(lo, hi, strict=True)):
            return None
        return Box(lo, hi)

    def contains(self, other: Box) -> bool:
        return all(
            a <= c and d <= b
            for a, b, c, d in zip(self.lo, self.hi, other.lo, other.hi, strict=True)
        )

    def subtract(self, other: Box) -> list[Box]:
        """``self`` minus ``other`` as disjoint boxes (at most two per axis)."""
        if self.intersect(other) is None:
            return [self]
        out: list[Box] = []
        lo, hi = list(self.lo), list(self.hi)
        for d, (olo, ohi) in enumerate(zip(other.lo, other.hi, strict=True)):
            if lo[d] < olo:
                out.append(Box(tuple(lo), (*hi[:d], olo - 1, *hi[d + 1 :])))
                lo[d] = olo
            if ohi < hi[d]:
                out.append(Box((*lo[:d], ohi + 1, *lo[d + 1 :]), tuple(hi)))
                hi[d] = ohi
        return out


def subtract_all(region: Iterable[Box], other: Box) -> list[Box]:
    """A region (disjoint boxes) minus a box, still disjoint."""
    return [piece for box in region for piece in box.subtract(other)]


# -- what a rule constrains, field by field ------------------------------------------------


def _runs(codes: Iterable[int]) -> list[Interval]:
    return merge_intervals((c, c) for c in codes)


def _versions(rule: Rule) -> list[int]:
    vs = {4, 6}
    for field in (rule.src, rule.dst):
        if field is not None:
            vs &= field.versions
    return sorted(vs)


def _address(field: IPSet | None, version: int) -> list[Interval]:
    lo, _ = _PART[version]
    if field is None:
        return [_PART[version]]
    return merge_intervals((lo + r.lo, lo + r.hi) for r in field.ranges if r.version == version)


@dataclass(frozen=True, slots=True)
class _Context:
    """What the whole rule population names: interfaces and TCP flag bits."""

    ifaces: tuple[str, ...]
    flag_bits: tuple[int, ...]

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> _Context:
        names: set[str] = set()
        mask = 0
        for r in rules:
            if r.iface is not None:
                names.add(r.iface)
            if r.out_iface is not None:
                names.add(r.out_iface)
            if r.tcp_flags is not None:
                mask |= r.tcp_flags[0]
        bits = tuple(b for b in range(mask.bit_length()) if mask >> b & 1)
        return cls(tuple(sorted(names)), bits)

    def dims(self) -> list[tuple[str, int, int]]:
        out = list(_FIXED_DIMS)
        out += [(f"flag:{b}", 0, 1) for b in self.flag_bits]
        out += [("direction", 0, 2), ("iface", 0, len(self.ifaces))]
        out += [("out_iface", 0, len(self.ifaces)), ("ct_state", 0, 4)]
        return out


def _fields(rule: Rule, ctx: _Context) -> list[dict[str, list[Interval]]]:
    """The raw intervals per axis, one mapping per IP version the rule can match (none if
    it matches no packet). An axis left out of a mapping is the whole domain."""
    common: dict[str, list[Interval]] = {}
    if rule.proto is not None:
        common["proto"] = [(rule.proto, rule.proto)]
    for name, ports in (("sport", rule.sport), ("dport", rule.dport)):
        if ports is not None:
            common[name] = merge_intervals((p.lo, p.hi) for p in ports)
    if rule.icmp_type is not None:
        common["icmp_type"] = [(rule.icmp_type + 1, rule.icmp_type + 1)]
    if rule.icmp_code is not None:
        common["icmp_code"] = [(rule.icmp_code + 1, rule.icmp_code + 1)]
    if rule.tcp_flags is not None:
        mask, value = rule.tcp_flags
        for b in ctx.flag_bits:
            if mask >> b & 1:
                bit = value >> b & 1
                common[f"flag:{b}"] = [(bit, bit)]
    if rule.direction is not None:
        code = _DIRECTION_CODE[rule.direction]
        common["direction"] = [(code, code)]
    for axis, ifname in (("iface", rule.iface), ("out_iface", rule.out_iface)):
        if ifname is not None:
            code = ctx.ifaces.index(ifname) + 1
            common[axis] = [(code, code)]
    if rule.ct_state is not None:
        common["ct_state"] = _runs(_STATE_CODE[s] for s in rule.ct_state if s in CT_STATES)
    if any(not v for v in common.values()):
        return []
    out: list[dict[str, list[Interval]]] = []
    for v in _versions(rule):
        src, dst = _address(rule.src, v), _address(rule.dst, v)
        if not src or not dst:
            continue
        code = _VERSION_CODE[v]
        out.append({**common, "version": [(code, code)], "src": src, "dst": dst})
    return out


def _coordinate(name: str, p: Packet, ctx: _Context) -> int:
    """The raw value of packet ``p`` on axis ``name``."""
    if name == "version":
        return _VERSION_CODE[p.version]
    if name in ("src", "dst"):
        return _PART[p.version][0] + (p.src if name == "src" else p.dst)
    if name == "proto":
        return p.proto
    if name == "sport":
        return p.sport
    if name == "dport":
        return p.dport
    if name == "icmp_type":
        return 0 if p.icmp_type is None else p.icmp_type + 1
    if name == "icmp_code":
        return 0 if p.icmp_code is None else p.icmp_code + 1
    if name.startswith("flag:"):
        return p.tcp_flags >> int(name[5:]) & 1
    if name == "direction":
        return _DIRECTION_CODE.get(p.direction or "", 0)
    if name == "iface":
        return ctx.ifaces.index(p.iface) + 1 if p.iface in ctx.ifaces else 0
    if name == "out_iface":
        return ctx.ifaces.index(p.out_iface) + 1 if p.out_iface in ctx.ifaces else 0
    if name == "ct_state":
        return _STATE_CODE.get(p.ct_state or "", 0)
    raise ValueError(f"no axis {name!r}")


# -- the space -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowTable:
    """Rules as numpy rows, one row per box, rows of a rule together and in rule order:
    ``lo``/``hi`` are (rows, axes) compressed bounds, ``rule`` the 0-based rule of each
    row, and rule ``i`` owns rows ``start[i]`` to ``start[i + 1] - 1`` (none: it matches
    nothing)."""

    lo: I64
    hi: I64
    rule: I64
    start: I64

    def __len__(self) -> int:
        return int(self.rule.size)

    def rows_of(self, index: int) -> range:
        return range(int(self.start[index]), int(self.start[index + 1]))

    def box(self, row: int) -> Box:
        return Box(tuple(self.lo[row].tolist()), tuple(self.hi[row].tolist()))


class Space:
    """The axes (fields) a population of rules uses, with the boundaries of all of them;
    boxes of the rules, universes, witnesses and readable descriptions."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        population = list(rules)
        ctx = _Context.of(population)
        specs = ctx.dims()
        fields = [_fields(r, ctx) for r in population]
        used: list[tuple[str, int, int]] = []
        for name, lo, hi in specs:
            whole = [(lo, hi)]
            if name == "version":
                continue  # decided below: it exists exactly when addresses do
            if name in ("src", "dst"):
                # "any" is a whole part of the axis (one per version), so ask the rules.
                named = any((r.src if name == "src" else r.dst) is not None for r in population)
            else:
                named = any(f.get(name, whole) != whole for per_rule in fields for f in per_rule)
            if named:
                used.append((name, lo, hi))
        if any(name in ("src", "dst") for name, _, _ in used):
            used.insert(0, specs[0])
        dims: list[Dim] = []
        for name, lo, hi in used:
            cuts = {lo, hi + 1}
            if name in ("src", "dst"):
                cuts.add(_V4_SIZE)
            for per_rule in fields:
                for f in per_rule:
                    for a, b in f.get(name, ()):
                        cuts.add(a)
                        cuts.add(b + 1)
            dims.append(Dim(name, lo, hi, tuple(sorted(cuts))))
        self.dims: tuple[Dim, ...] = tuple(dims)
        self._index = {d.name: i for i, d in enumerate(self.dims)}
        self._ctx = ctx
        # By identity: the rule objects are kept here, so their ids stay theirs.
        self._fields = {id(r): (r, f) for r, f in zip(population, fields, strict=True)}

    @classmethod
    def of(cls, *rulesets: RuleSet) -> Space:
        return cls(r for rs in rulesets for r in rs.rules)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    def boxes(self, rule: Rule) -> list[Box]:
        """The boxes of ``rule`` (disjoint; none if it matches no packet). The rule must be
        one this Space was built from (its boundaries are the ones the axes know)."""
        known = self._fields.get(id(rule))
        per_version = known[1] if known is not None and known[0] is rule else None
        if per_version is None:
            per_version = _fields(rule, self._ctx)
        out: list[Box] = []
        seen: set[Box] = set()
        for f in per_version:
            axes = [[d.encode(a, b) for a, b in f.get(d.name, [(d.lo, d.hi)])] for d in self.dims]
            for combo in itertools.product(*axes):
                box = Box(tuple(c[0] for c in combo), tuple(c[1] for c in combo))
                if box not in seen:
                    seen.add(box)
                    out.append(box)
        return out

    def table(self, ruleset: RuleSet) -> RowTable:
        """Every rule of ``ruleset`` as rows (see RowTable)."""
        rows: list[Box] = []
        owner: list[int] = []
        start = [0]
        for i, rule in enumerate(ruleset.rules):
            boxes = self.boxes(rule)
            rows += boxes
            owner += [i] * len(boxes)
            start.append(len(rows))
        shape = (len(rows), len(self.dims))
        lo = np.array([b.lo for b in rows], dtype=np.int64).reshape(shape)
        hi = np.array([b.hi for b in rows], dtype=np.int64).reshape(shape)
        return RowTable(lo, hi, np.array(owner, dtype=np.int64), np.array(start, dtype=np.int64))

    def universe(self) -> list[Box]:
        """All packets, as one box per IP version (or one box, without address axes)."""
        whole_lo = [0] * len(self.dims)
        whole_hi = [d.size - 1 for d in self.dims]
        if "version" not in self._index:
            return [Box(tuple(whole_lo), tuple(whole_hi))]
        out = []
        for version in (4, 6):
            lo, hi = list(whole_lo), list(whole_hi)
            code = _VERSION_CODE[version]
            lo[0] = hi[0] = code
            for name in ("src", "dst"):
                if name in self._index:
                    d = self._index[name]
                    lo[d], hi[d] = self.dims[d].encode(*_PART[version])
            out.append(Box(tuple(lo), tuple(hi)))
        return out

    # -- reading a box -------------------------------------------------------------------

    def witness(self, box: Box) -> Packet:
        """A packet in ``box``: the lowest value on every axis (a preferred protocol or
        source port where the box allows one), the plain value on every other field."""
        return self.point(box.lo, box.hi)

    def _choose(self, lo: Sequence[int], hi: Sequence[int]) -> dict[str, int]:
        v: dict[str, int] = {}
        for dim, a, b in zip(self.dims, lo, hi, strict=True):
            value = dim.cuts[a]
            for preferred in _PREFERRED.get(dim.name, ()):
                if value <= preferred < dim.cuts[b + 1]:
                    value = preferred
                    break
            v[dim.name] = value
        return v

    def cell_of_witness(self, lo: Sequence[int], hi: Sequence[int]) -> list[int]:
        """The elementary cell of ``point(lo, hi)``."""
        v = self._choose(lo, hi)
        return [bisect.bisect_right(d.cuts, v[d.name]) - 1 for d in self.dims]

    def cell(self, packet: Packet) -> tuple[int, ...]:
        """The elementary cell that holds ``packet``."""
        out = []
        for d in self.dims:
            value = _coordinate(d.name, packet, self._ctx)
            out.append(bisect.bisect_right(d.cuts, value) - 1)
        return tuple(out)

    def point(self, lo: Sequence[int], hi: Sequence[int]) -> Packet:
        """``witness`` of the box with compressed bounds ``lo``/``hi``."""
        v = self._choose(lo, hi)
        version = 6 if v.get("version") == 1 else 4
        offset = _PART[version][0]
        proto = v.get("proto", 6)
        flags = 0
        for b in self._ctx.flag_bits:
            flags |= v.get(f"flag:{b}", 0) << b
        icmp_type, icmp_code = v.get("icmp_type", 0), v.get("icmp_code", 0)
        iface, out_iface = v.get("iface", 0), v.get("out_iface", 0)
        sport = v.get("sport", 49152 if proto in (6, 17, 132) else 0)
        return Packet(
            version,
            v["src"] - offset if "src" in v else 0,
            v["dst"] - offset if "dst" in v else 0,
            proto,
            sport,
            v.get("dport", 0),
            icmp_type=icmp_type - 1 if icmp_type else None,
            icmp_code=icmp_code - 1 if icmp_code else None,
            tcp_flags=flags,
            direction=_DIRECTION_NAME.get(v.get("direction", 0)),
            iface=self._ctx.ifaces[iface - 1] if iface else None,
            out_iface=self._ctx.ifaces[out_iface - 1] if out_iface else None,
            ct_state=_STATE_NAME.get(v.get("ct_state", 0)),
        )

    def describe(self, box: Box) -> dict[str, str]:
        """The box as readable ranges, field by field; a field the box does not restrict
        is left out (so ``{}`` is every packet)."""
        out: dict[str, str] = {}
        version = None
        if "version" in self._index:
            d = self._index["version"]
            if box.lo[d] == box.hi[d]:
                version = 6 if box.lo[d] == 1 else 4
                out["version"] = f"ipv{version}"
        flags_set: list[str] = []
        flags_clear: list[str] = []
        for d, dim in enumerate(self.dims):
            lo, hi = dim.raw(box.lo[d], box.hi[d])
            name = dim.name
            if name == "version":
                continue
            if name in ("src", "dst"):
                part = _PART[version] if version else (dim.lo, dim.hi)
                if (lo, hi) != part:
                    out[name] = _address_text(lo, hi)
            elif (lo, hi) == (dim.lo, dim.hi):
                continue
            elif name == "proto":
                out[name] = protocol_name(lo) if lo == hi else f"{lo}-{hi}"
            elif name in ("sport", "dport"):
                out[name] = str(lo) if lo == hi else f"{lo}-{hi}"
            elif name in ("icmp_type", "icmp_code"):
                out[name] = _coded_text(lo, hi, lambda c: str(c - 1))
            elif name.startswith("flag:"):
                bit = int(name[5:])
                (flags_set if lo == 1 else flags_clear).append(_FLAG_NAMES.get(bit, f"bit{bit}"))
            elif name == "direction":
                out[name] = _coded_text(lo, hi, _DIRECTION_NAME.__getitem__)
            elif name in ("iface", "out_iface"):
                out[name] = _coded_text(lo, hi, lambda c: self._ctx.ifaces[c - 1], "other")
            elif name == "ct_state":
                out[name] = _coded_text(lo, hi, _STATE_NAME.__getitem__)
        if flags_set or flags_clear:
            out["tcp_flags"] = ",".join(flags_set + ["!" + f for f in flags_clear])
        return out

    def text(self, box: Box) -> str:
        """The box on one line: ``ipv4 tcp 10.0.0.0/8 -> any port 22``."""
        return region_text(self.describe(box))


def region_text(fields: dict[str, str]) -> str:
    """A described box (``Space.describe``) on one line."""
    if not fields:
        return "every packet"
    proto = fields.get("proto", "any")
    if proto[:1].isdigit():
        proto = f"proto {proto}"  # a number or a range of numbers, not a name
    parts = [fields.get("version", "ip"), proto]
    src = fields.get("src", "any")
    if "sport" in fields:
        src += f" port {fields['sport']}"
    dst = fields.get("dst", "any")
    if "dport" in fields:
        dst += f" port {fields['dport']}"
    parts.append(f"{src} -> {dst}")
    labels = {
        "icmp_type": "icmp-type",
        "icmp_code": "icmp-code",
        "tcp_flags": "flags",
        "direction": "direction",
        "iface": "iface",
        "out_iface": "out-iface",
        "ct_state": "state",
    }
    parts += [f"{label} {fields[key]}" for key, label in labels.items() if key in fields]
    return " ".join(parts)


def _address_text(lo: int, hi: int) -> str:
    version = 4 if hi < _V4_SIZE else 6
    offset = _PART[version][0]
    lo, hi = lo - offset, hi - offset
    pieces: list[str] = []
    # An aligned range is one prefix; a few prefixes read better than a dash range.
    cursor = lo
    while cursor <= hi and len(pieces) <= 4:
        size = cursor & -cursor if cursor else 1 << (32 if version == 4 else 128)
        while size > hi - cursor + 1:
            size >>= 1
        pieces.append(str(IPRange(version, cursor, cursor + size - 1)))
        cursor += size
    if cursor <= hi:
        return str(IPRange(version, lo, hi))
    return ",".join(pieces)


def _coded_text(lo: int, hi: int, name: Callable[[int], str], none: str = "none") -> str:
    """Codes ``lo`` to ``hi`` of an axis whose code 0 is "none" (or "other")."""
    values = [none if c == 0 else name(c) for c in range(lo, hi + 1)]
    if len(values) > 4:
        return f"{values[0]}..{values[-1]}"
    return ",".join(values)


# -- union questions: numpy over rows --------------------------------------------------------


class Search(enum.Enum):
    """How a bounded search ended."""

    FOUND = "found"
    EXHAUSTED = "exhausted"  # searched everything: the answer is "none"
    BUDGET = "budget"  # stopped at the step budget: undecided


def _hits(table: RowTable, rows: I64, lo: I64, hi: I64) -> I64:
    """The rows of ``rows`` that intersect box (lo, hi), in order."""
    if rows.size == 0:
        return rows
    return rows[((table.lo[rows] <= hi) & (lo <= table.hi[rows])).all(axis=1)]


def _covering(table: RowTable, rows: I64, lo: I64, hi: I64) -> npt.NDArray[np.bool_]:
    ok: npt.NDArray[np.bool_] = np.all((table.lo[rows] <= lo) & (hi <= table.hi[rows]), axis=1)
    return ok


def _balanced_cut(table: RowTable, rows: I64, lo: I64, hi: I64) -> tuple[int, int]:
    """A cut (axis, first interval of the upper half) at the median of the rule
    boundaries strictly inside the box, on the axis that has the most of them."""
    best: tuple[int, int, int] = (-1, -1, -1)
    rlo, rhi = table.lo[rows], table.hi[rows] + 1
    for d in range(lo.size):
        if lo[d] == hi[d]:
            continue
        vals = np.concatenate((rlo[:, d], rhi[:, d]))
        vals = np.unique(vals[(vals > lo[d]) & (vals <= hi[d])])
        if vals.size > best[0]:
            best = (int(vals.size), d, int(vals[vals.size // 2]) if vals.size else -1)
    count, d, cut = best
    if count <= 0:
        raise AssertionError("no rule boundary inside a box that no rule covers")
    return d, cut


def _halves(lo: I64, hi: I64, d: int, cut: int) -> tuple[tuple[I64, I64], tuple[I64, I64]]:
    lower_hi = hi.copy()
    lower_hi[d] = cut - 1
    upper_lo = lo.copy()
    upper_lo[d] = cut
    return (lo, lower_hi), (upper_lo, hi)


def _probe(table: RowTable, rows: I64, lo: I64, hi: I64, count: int) -> I64 | None:
    """A cheap first try: ``count`` grid points of the box (each axis at the box's ends
    or just outside a rule), tested against every row at once; one that no row holds."""
    rng = np.random.default_rng(len(rows) * 7919 + int(lo.sum()))
    pts = np.empty((count, lo.size), dtype=np.int64)
    rlo, rhi = table.lo[rows], table.hi[rows]
    for d in range(lo.size):
        cand = np.concatenate(([lo[d], hi[d]], rlo[:, d] - 1, rhi[:, d] + 1))
        cand = cand[(cand >= lo[d]) & (cand <= hi[d])]
        pts[:, d] = rng.choice(cand, size=count)
    pts[0] = lo
    pts[1] = hi
    inside = np.ones((count, rows.size), dtype=bool)
    for d in range(lo.size):
        col = pts[:, d : d + 1]
        inside &= (rlo[:, d] <= col) & (col <= rhi[:, d])
    free = np.flatnonzero(~inside.any(axis=1))
    return pts[free[0]] if free.size else None


def first_uncovered(
    table: RowTable, rows: I64, box: Box, budget: int = 20000
) -> tuple[Search, Box | None]:
    """A point of ``box`` that none of ``rows`` (row numbers in ``table``) holds:
    (FOUND, the point as a one-cell box), (EXHAUSTED, None) when the rows cover the box,
    or (BUDGET, None) when ``budget`` boxes were split without an answer."""
    lo0, hi0 = np.array(box.lo, dtype=np.int64), np.array(box.hi, dtype=np.int64)
    rows = _hits(table, rows, lo0, hi0)
    if rows.size > 8:
        pt = _probe(table, rows, lo0, hi0, 64)
        if pt is not None:
            return Search.FOUND, Box(tuple(pt.tolist()), tuple(pt.tolist()))
    stack: list[tuple[I64, I64, I64]] = [(lo0, hi0, rows)]
    steps = 0
    while stack:
        lo, hi, here = stack.pop()
        here = _hits(table, here, lo, hi)
        if here.size == 0:
            return Search.FOUND, Box(tuple(lo.tolist()), tuple(lo.tolist()))
        if _covering(table, here, lo, hi).any():
            continue
        steps += 1
        if steps > budget:
            return Search.BUDGET, None
        d, cut = _balanced_cut(table, here, lo, hi)
        a, b = _halves(lo, hi, d, cut)
        # The half that fewer rules reach is searched first: a gap is likelier there.
        na = _hits(table, here, *a)
        nb = _hits(table, here, *b)
        first, second = ((a, na), (b, nb)) if na.size <= nb.size else ((b, nb), (a, na))
        stack.append((*second[0], second[1]))
        stack.append((*first[0], first[1]))
    return Search.EXHAUSTED, None


def first_match_pieces(
    table: RowTable, rows: I64, box: Box, budget: int = 20000
) -> tuple[Search, dict[int, Box], Box | None]:
    """Which of ``rows`` (in priority order) decides which part of ``box``: (status, for
    each row that decides some part one box it decides, a box no row holds or None).
    EXHAUSTED means complete; BUDGET means the step budget ran out (partial answer)."""
    lo0, hi0 = np.array(box.lo, dtype=np.int64), np.array(box.hi, dtype=np.int64)
    owners: dict[int, Box] = {}
    gap: Box | None = None
    stack: list[tuple[I64, I64, I64]] = [(lo0, hi0, np.asarray(rows, dtype=np.int64))]
    steps = 0
    while stack:
        lo, hi, here = stack.pop()
        here = _hits(table, here, lo, hi)
        if here.size == 0:
            if gap is None:
                gap = Box(tuple(lo.tolist()), tuple(hi.tolist()))
            continue
        cover = np.flatnonzero(_covering(table, here, lo, hi))
        if cover.size and cover[0] == 0:
            owners.setdefault(int(here[0]), Box(tuple(lo.tolist()), tuple(hi.tolist())))
            continue
        if cover.size:
            here = here[: cover[0] + 1]  # rows after a covering one never decide here
        steps += 1
        if steps > budget:
            return Search.BUDGET, owners, gap
        d, cut = _balanced_cut(table, here, lo, hi)
        for half in _halves(lo, hi, d, cut):
            stack.append((*half, here))
    return Search.EXHAUSTED, owners, gap


class FirstRow:
    """First match for many points at once, by bit vectors (Lakshman and Stiliadis): for
    every axis and elementary interval, the set of rows that contain it as a bitmap; the
    rows that hold a point are the AND of its axes' bitmaps, and the first set bit is the
    first row. Memory: (elementary intervals summed over axes) x (rows / 8) bytes."""

    def __init__(self, table: RowTable, sizes: Sequence[int]) -> None:
        rows = len(table)
        self.rows = rows
        self.words = max(1, (rows + 63) // 64)
        word = np.arange(rows, dtype=np.int64) // 64
        bit = np.left_shift(np.uint64(1), (np.arange(rows) % 64).astype(np.uint64))
        self.maps: list[npt.NDArray[np.uint64]] = []
        for d, size in enumerate(sizes):
            # A row's bit flips on at its low bound and off past its high bound; the
            # running XOR down the axis is then the set of rows holding each interval.
            flips = np.zeros((size + 1, self.words), dtype=np.uint64)
            np.bitwise_xor.at(flips, (table.lo[:, d], word), bit)
            np.bitwise_xor.at(flips, (table.hi[:, d] + 1, word), bit)
            self.maps.append(np.bitwise_xor.accumulate(flips[:size], axis=0))

    def first(self, points: I64, chunk: int = 2048) -> I64:
        """For each point (rows of compressed coordinates), the first row that holds it,
        or -1."""
        out = np.full(len(points), -1, dtype=np.int64)
        if not self.maps:  # no axis: every row holds every point
            out[:] = 0 if self.rows else -1
            return out
        for s in range(0, len(points), chunk):
            pts = points[s : s + chunk]
            acc = self.maps[0][pts[:, 0]].copy()
            for d in range(1, len(self.maps)):
                acc &= self.maps[d][pts[:, d]]
            nonzero = acc != 0
            found = nonzero.any(axis=1)
            w = nonzero.argmax(axis=1)
            words = acc[np.arange(len(pts)), w]
            lowest = words & (~words + np.uint64(1))
            bits = np.log2(np.where(found, lowest, 1).astype(np.float64)).astype(np.int64)
            out[s : s + len(pts)] = np.where(found, w * 64 + bits, -1)
        return out
