"""Rule files -> a RuleSet: YAML (the full rule model) and the six-column CSV layout of
Al-Shaer & Hamed's policy tables. Every failure is one ConfigError naming the file, line,
column and field; a file loads whole or not at all. The format is in docs/firewall-rules.md.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config.loader import LineMap, load_yaml, read_file
from ..errors import ConfigError
from ..net.addr import IPSet, parse_ipset
from ..net.packet import ACK, FIN, PSH, RST, SYN, URG
from ..net.ports import PortRange, parse_ports
from ..net.proto import parse_protocol
from .model import CT_STATES, REJECT_WITH, Action, Rule, RuleSet

__all__ = [
    "CSV_COLUMNS",
    "RULE_KEYS",
    "TCP_FLAGS",
    "load_ruleset",
    "parse_flag_list",
    "parse_ruleset_csv",
    "parse_ruleset_yaml",
    "parse_tcp_flags",
]

T = TypeVar("T")
Loc = tuple[str | int, ...]

TOP_KEYS = ("default", "rules")
RULE_KEYS = (
    "id",
    "action",
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "icmp_type",
    "icmp_code",
    "tcp_flags",
    "direction",
    "iface",
    "out_iface",
    "state",
    "reject_with",
    "comment",
)
CSV_COLUMNS = ("protocol", "src", "s_port", "dst", "d_port", "action")
TCP_FLAGS = {"fin": FIN, "syn": SYN, "rst": RST, "psh": PSH, "ack": ACK, "urg": URG}
_ALL_FLAGS = FIN | SYN | RST | PSH | ACK | URG
_ANY = ("any", "*")
_STATE_ORDER = ("new", "established", "related", "invalid")

# A CSV comment that sets the default policy: "# default: accept".
_CSV_DEFAULT = re.compile(r"#\s*default\s*[:=]\s*(.*?)\s*$", re.IGNORECASE)
# YAML 1.1 reads 22:45 as the base-60 integer 1365; a port written so must not pass silently.
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-9_]+)+")


def load_ruleset(path: str | Path) -> RuleSet:
    """The rule set in ``path``: ``.yaml``/``.yml`` or ``.csv`` (by extension)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return read_file(p, parse_ruleset_yaml)
    if suffix == ".csv":
        return read_file(p, parse_ruleset_csv)
    raise ConfigError(
        f"unknown rule file type {suffix or '(no extension)'!r}: use .yaml, .yml or .csv",
        file=str(p),
    )


# -- values shared by both formats -------------------------------------------------------


def parse_tcp_flags(text: str) -> tuple[int, int]:
    """``"syn,ack/syn"`` -> (mask, value), as iptables' ``--tcp-flags MASK COMP``: the
    flags in the mask are examined and those in the value must be set, the rest of the
    mask clear. Flags: fin syn rst psh ack urg; ``all`` and ``none`` as in iptables."""
    mask_text, slash, value_text = text.partition("/")
    if not slash:
        raise ValueError(
            f"TCP flags are written mask/value, e.g. 'syn,ack,rst,fin/syn', not {text!r}"
        )
    mask, value = parse_flag_list(mask_text), parse_flag_list(value_text)
    if mask == 0:
        raise ValueError(f"the TCP flag mask of {text!r} examines no flag")
    if value & ~mask:
        raise ValueError(f"in {text!r} the value sets flags the mask does not examine")
    return mask, value


def parse_flag_list(text: str) -> int:
    """``"syn,ack"`` -> the bits of those TCP flags (``all`` and ``none`` too)."""
    words = [w.strip().lower() for w in text.split(",")]
    if words == ["all"]:
        return _ALL_FLAGS
    if words == ["none"] or words == [""]:
        return 0
    bits = 0
    for w in words:
        if w not in TCP_FLAGS:
            raise ValueError(f"unknown TCP flag {w!r} (fin, syn, rst, psh, ack, urg, all, none)")
        bits |= TCP_FLAGS[w]
    return bits


def _is_any(text: str) -> bool:
    return text.strip().lower() in _ANY


# -- YAML --------------------------------------------------------------------------------


def parse_ruleset_yaml(text: str, file: str) -> RuleSet:
    """A rule set from YAML text: ``default`` (accept, drop or reject; drop if omitted)
    and ``rules``, a list in priority order."""
    data, lines = load_yaml(text, file)
    if data is None:
        raise ConfigError("the file is empty (it needs a `rules:` list)", file=file, line=1)
    if not isinstance(data, dict):
        raise lines.error((), "the top level must be a mapping with `default` and `rules`")
    _check_keys(data, (), TOP_KEYS, lines)
    default = Action.DROP
    if "default" in data:
        default = _convert(lines, ("default",), data["default"], _action)
    if "rules" not in data:
        raise lines.error((), "`rules` is missing (a list of rules, or [] for none)")
    items = data["rules"]
    if not isinstance(items, list):
        raise lines.error(("rules",), "must be a list of rules")
    source = text.splitlines()
    rules: list[Rule] = []
    first_line: dict[str, int | None] = {}
    for i, item in enumerate(items):
        rule = _yaml_rule(item, ("rules", i), lines, source)
        if rule.id:
            if rule.id in first_line:
                raise lines.error(
                    ("rules", i, "id"),
                    f"duplicate rule id {rule.id!r} (first used at line {first_line[rule.id]})",
                )
            first_line[rule.id] = rule.line
        rules.append(rule)
    return RuleSet(tuple(rules), default, name=file)


def _yaml_rule(item: Any, loc: Loc, lines: LineMap, source: list[str]) -> Rule:
    line = lines.where(loc)[0]
    if not isinstance(item, dict):
        raise lines.error(loc, "a rule is a mapping (action: ..., proto: ..., ...)")
    _check_keys(item, loc, RULE_KEYS, lines)
    if "action" not in item:
        raise lines.error(loc, "the rule has no `action` (accept, drop or reject)")

    def get(key: str, convert: Callable[[Any], T]) -> T | None:
        if key not in item:
            return None
        return _convert(lines, (*loc, key), item[key], convert)

    for key in ("sport", "dport"):
        if key in item:
            _refuse_base60(item[key], (*loc, key), lines, source)
    # Items of a list are checked one by one first, so an error names the item's line.
    for key, check in _ITEM_CHECKS.items():
        if isinstance(item.get(key), list):
            for i, v in enumerate(item[key]):
                _convert(lines, (*loc, key, i), v, check)
    try:
        return Rule(
            action=_convert(lines, (*loc, "action"), item["action"], _action),
            id=get("id", _rule_id) or "",
            src=get("src", _addresses),
            dst=get("dst", _addresses),
            proto=get("proto", _protocol),
            sport=get("sport", _ports),
            dport=get("dport", _ports),
            icmp_type=get("icmp_type", _byte),
            icmp_code=get("icmp_code", _byte),
            tcp_flags=get("tcp_flags", lambda v: parse_tcp_flags(_text(v))),
            direction=get("direction", _direction),
            iface=get("iface", _name),
            out_iface=get("out_iface", _name),
            ct_state=get("state", _states),
            reject_with=get("reject_with", _reject_with),
            comment=get("comment", _comment) or "",
            line=line,
        )
    except ValueError as exc:
        raise lines.error(loc, str(exc)) from None


def _check_keys(data: dict[Any, Any], loc: Loc, known: tuple[str, ...], lines: LineMap) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
            raise lines.error((*loc, str(key)), f"unknown key {str(key)!r} ({hint})")


def _convert(lines: LineMap, loc: Loc, value: Any, convert: Callable[[Any], T]) -> T:
    if value is None:
        raise lines.error(loc, "has no value (leave the key out to match anything)")
    try:
        return convert(value)
    except ValueError as exc:
        raise lines.error(loc, str(exc)) from None


def _refuse_base60(value: Any, loc: Loc, lines: LineMap, source: list[str]) -> None:
    """Catch ``dport: 22:45``, which YAML 1.1 reads as the number 1365."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_base60(v, (*loc, i), lines, source)
        return
    if not isinstance(value, int) or isinstance(value, bool) or loc not in lines.positions:
        return
    line, col = lines.positions[loc]
    raw = source[line - 1][col - 1 :] if 0 < line <= len(source) else ""
    if isinstance(loc[-1], str):  # the position is the key's: the value follows its colon
        raw = raw.partition(":")[2]
    found = _SEXAGESIMAL.match(raw.strip())
    if found:
        token = found.group()
        raise lines.error(
            loc,
            f"YAML reads {token} as the number {value}: write a port range as "
            f"{token.replace(':', '-')} (or quote it)",
        )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _action(value: Any) -> Action:
    return Action.parse(_text(value))


def _rule_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _text(value).strip()
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"a rule id is one word, not {value!r}")
    return text


def _protocol(value: Any) -> int | None:
    if not isinstance(value, int | str) or isinstance(value, bool):
        raise ValueError(f"a protocol is a name or a number, not {_kind(value)}")
    return parse_protocol(value)


def _addresses(value: Any) -> IPSet | None:
    if isinstance(value, str) and _is_any(value):
        return None
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, str):
            raise ValueError(
                f"an address, prefix or range is text, not {_kind(v)} (quote IPv6 addresses)"
            )
    return parse_ipset(items)


def _ports(value: Any) -> tuple[PortRange, ...] | None:
    if isinstance(value, str) and _is_any(value):
        return None
    items = value if isinstance(value, list) else [value]
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ValueError(f"a port is a number or a range lo-hi, not {_kind(v)}")
    return parse_ports(items)


def _byte(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"must be a number from 0 to 255, not {_kind(value)}")
    return value


def _direction(value: Any) -> str:
    text = _text(value).strip().lower()
    if text not in ("in", "out"):
        raise ValueError(f"direction is in or out, not {value!r}")
    return text


def _name(value: Any) -> str:
    text = _text(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _states(value: Any) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    words: list[str] = []
    for v in items:
        words += [w.strip().lower() for w in _text(v).split(",") if w.strip()]
    if not words:
        raise ValueError("empty list of connection states")
    for w in words:
        if w not in CT_STATES:
            raise ValueError(f"unknown connection state {w!r} ({', '.join(_STATE_ORDER)})")
    return frozenset(words)


def _reject_with(value: Any) -> str:
    text = _text(value).strip().lower()
    if text not in REJECT_WITH:
        raise ValueError(f"unknown reject type {text!r} ({', '.join(sorted(REJECT_WITH))})")
    return text


def _comment(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _address_item(value: Any) -> None:
    if isinstance(value, str) and _is_any(value):
        raise ValueError("`any` is not a list item (write `any` alone, or leave the key out)")
    _addresses(value)


def _port_item(value: Any) -> None:
    if isinstance(value, str) and _is_any(value):
        raise ValueError("`any` is not a list item (write `any` alone, or leave the key out)")
    _ports(value)


_ITEM_CHECKS: dict[str, Callable[[Any], object]] = {
    "src": _address_item,
    "dst": _address_item,
    "sport": _port_item,
    "dport": _port_item,
    "state": _states,
}


# -- CSV ---------------------------------------------------------------------------------


def parse_ruleset_csv(text: str, file: str) -> RuleSet:
    """A rule set from the CSV layout ``protocol,src,s_port,dst,d_port,action``: a header
    row, then one rule per row in priority order. ``any`` or ``*`` matches anything. The
    default policy is drop unless a comment line says ``# default: accept`` (or reject)."""
    header: dict[str, int] | None = None
    default: Action | None = None
    rules: list[Rule] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if n == 1:
            raw = raw.removeprefix("\ufeff")
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            directive = _CSV_DEFAULT.match(stripped)
            if directive:
                if default is not None:
                    raise ConfigError("the default policy is set twice", file=file, line=n)
                try:
                    default = Action.parse(directive.group(1))
                except ValueError as exc:
                    raise ConfigError(
                        str(exc), file=file, line=n, column=raw.index("#") + 1, field="default"
                    ) from None
            continue
        cells = _csv_cells(raw, file, n)
        if header is None:
            header = _csv_header(cells, file, n)
        else:
            rules.append(_csv_rule(cells, header, file, n))
    if header is None:
        raise ConfigError("no header row (" + ",".join(CSV_COLUMNS) + ")", file=file, line=1)
    return RuleSet(tuple(rules), default or Action.DROP, name=file)


def _csv_cells(raw: str, file: str, n: int) -> list[tuple[str, int | None]]:
    """The cells of one line, each with its 1-based column (None where quoting hides it)."""
    try:
        values = next(csv.reader([raw], strict=True))
    except csv.Error as exc:
        raise ConfigError(f"not a CSV row: {exc}", file=file, line=n) from None
    if '"' in raw:
        return [(v, None) for v in values]
    cols: list[int | None] = []
    at = 0
    for v in values:
        cols.append(at + len(v) - len(v.lstrip()) + 1)
        at += len(v) + 1
    return list(zip(values, cols, strict=True))


def _csv_header(cells: list[tuple[str, int | None]], file: str, n: int) -> dict[str, int]:
    expected = ",".join(CSV_COLUMNS)
    header: dict[str, int] = {}
    for i, (name, col) in enumerate(cells):
        key = name.strip().lower()
        if key not in CSV_COLUMNS:
            raise ConfigError(
                f"unknown column {name.strip()!r}: the first row must be the header {expected}",
                file=file,
                line=n,
                column=col,
            )
        if key in header:
            raise ConfigError(f"column {key!r} appears twice", file=file, line=n, column=col)
        header[key] = i
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise ConfigError(
            f"the header lacks {', '.join(missing)} (expected {expected})", file=file, line=n
        )
    return header


def _csv_rule(
    cells: list[tuple[str, int | None]], header: dict[str, int], file: str, n: int
) -> Rule:
    if len(cells) != len(header):
        raise ConfigError(
            f"expected {len(header)} fields ({','.join(header)}), found {len(cells)}",
            file=file,
            line=n,
        )

    def get(column: str, convert: Callable[[str], T]) -> T:
        value, col = cells[header[column]]
        value = value.strip()
        try:
            if not value:
                raise ValueError("is empty (write any or * to match anything)")
            return convert(value)
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, line=n, column=col, field=column) from None

    def addresses(v: str) -> IPSet | None:
        return None if _is_any(v) else parse_ipset(v)

    def ports(v: str) -> tuple[PortRange, ...] | None:
        return None if _is_any(v) else parse_ports(v)

    action = get("action", Action.parse)
    proto = get("protocol", parse_protocol)
    src = get("src", addresses)
    sport = get("s_port", ports)
    dst = get("dst", addresses)
    dport = get("d_port", ports)
    try:
        return Rule(action, src=src, dst=dst, proto=proto, sport=sport, dport=dport, line=n)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, line=n, column=1) from None
