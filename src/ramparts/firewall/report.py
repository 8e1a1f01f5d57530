"""Renderers for policy analysis: lint findings as a text table, JSON or SARIF 2.1.0 (for
CI code scanning), and a semantic diff as text or JSON. Pure functions from results to
strings; the CLI writes them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..net.addr import IPRange
from ..net.packet import Packet
from ..net.proto import protocol_name
from .analysis import KINDS, SEVERITY, Finding, Lint
from .diff import Decider, Diff

__all__ = [
    "SARIF_SCHEMA",
    "diff_json",
    "diff_text",
    "lint_json",
    "lint_sarif",
    "lint_summary",
    "lint_text",
    "packet_dict",
    "packet_text",
]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_FLAG_NAMES = (
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "psh"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ece"),
    (0x80, "cwr"),
)

_DESCRIPTIONS = {
    "shadowing": (
        "A rule is shadowed by an earlier rule with a different action",
        "Every packet the rule matches is matched first by an earlier rule with another "
        "action, so the rule never decides (Al-Shaer and Hamed: shadowing).",
    ),
    "partial-shadowing": (
        "A drop or reject rule is partly overridden by an earlier accept",
        "An earlier ACCEPT rule that overlaps the rule without being contained in it "
        "decides some of the packets the rule was meant to refuse: a DENY placed after a "
        "broader ALLOW.",
    ),
    "unreachable": (
        "A rule can never match",
        "The earlier rules together cover every packet the rule matches. An error when "
        "some of them decide differently from the rule, else dead code.",
    ),
    "redundancy": (
        "A rule is redundant",
        "Removing the rule changes no verdict: another rule with the same action decides "
        "the same packets (Al-Shaer and Hamed: redundancy).",
    ),
    "generalization": (
        "A rule generalizes an earlier rule with a different action",
        "The rule matches every packet of an earlier rule with another action, and more: "
        "the earlier rule is an exception to it (Al-Shaer and Hamed: generalization).",
    ),
    "correlation": (
        "Two rules with different actions overlap partly",
        "The rules share packets, neither contains the other, and their order decides the "
        "shared packets (Al-Shaer and Hamed: correlation).",
    ),
    "empty": ("A rule matches no packet", "The rule cannot match any packet at all."),
    "undecided": (
        "The analysis of a rule did not finish",
        "A union question about the rule was not answered within the search budget.",
    ),
}


# -- packets ------------------------------------------------------------------------------


def _address(version: int, value: int) -> str:
    return str(IPRange(version, value, value))


def _flags(bits: int) -> list[str]:
    return [name for bit, name in _FLAG_NAMES if bits & bit]


def packet_dict(p: Packet) -> dict[str, Any]:
    """A packet as JSON: addresses as text, the protocol by name, TCP flags by name."""
    return {
        "version": p.version,
        "src": _address(p.version, p.src),
        "dst": _address(p.version, p.dst),
        "proto": protocol_name(p.proto),
        "sport": p.sport,
        "dport": p.dport,
        "icmp_type": p.icmp_type,
        "icmp_code": p.icmp_code,
        "tcp_flags": _flags(p.tcp_flags),
        "direction": p.direction,
        "iface": p.iface,
        "ct_state": p.ct_state,
    }


def packet_text(p: Packet) -> str:
    """``tcp 185.220.101.9:49152 -> 0.0.0.0:443`` (and what else the packet carries)."""
    src, dst = _address(p.version, p.src), _address(p.version, p.dst)
    if p.version == 6:
        src, dst = f"[{src}]", f"[{dst}]"
    proto = protocol_name(p.proto)
    if p.proto in (6, 17, 132):
        text = f"{proto} {src}:{p.sport} -> {dst}:{p.dport}"
    else:
        text = f"{proto} {src} -> {dst}"
    if p.icmp_type is not None:
        text += f" type {p.icmp_type}"
        if p.icmp_code is not None:
            text += f" code {p.icmp_code}"
    elif p.icmp_code is not None:
        text += f" code {p.icmp_code}"
    if p.tcp_flags:
        text += " flags " + ",".join(_flags(p.tcp_flags))
    if p.ct_state:
        text += f" state {p.ct_state}"
    if p.direction:
        text += f" {p.direction}"
    if p.iface:
        text += f" on {p.iface}"
    return text


# -- lint -----------------------------------------------------------------------------------


def _finding_dict(f: Finding) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": f.kind,
        "severity": f.severity,
        "rules": list(f.rules),
        "subject": f.subject,
        "line": f.line,
        "witness": packet_dict(f.witness) if f.witness is not None else None,
        "message": f.message,
    }
    if f.conflict is not None:
        out["conflict"] = f.conflict
    return out


def lint_json(result: Lint) -> str:
    """A JSON list of findings, each with kind, rules (1-based), witness and message."""
    return json.dumps([_finding_dict(f) for f in result.findings], indent=2) + "\n"


def lint_summary(result: Lint, path: str) -> str:
    """One line: the rule set and how many findings of which kinds."""
    rs = result.ruleset
    counts = ", ".join(f"{n} {k}" for k, n in result.counts.items() if n)
    total = len(result.findings)
    head = f"{path}: {len(rs.rules)} rule(s), default {rs.default.value}"
    return f"{head}: {total} finding(s)" + (f" ({counts})" if counts else "")


def lint_text(result: Lint, path: str) -> str:
    """A table, one finding a row with its message below it."""
    lines = [lint_summary(result, path)]
    if not result.findings:
        return lines[0] + "\n"
    rows = [
        (
            str(f.subject),
            str(f.line or ""),
            f.kind,
            f.severity,
            ",".join(map(str, f.rules)),
            packet_text(f.witness) if f.witness is not None else "-",
        )
        for f in result.findings
    ]
    header = ("RULE", "LINE", "KIND", "SEVERITY", "RULES", "WITNESS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines.append("")

    def fmt(row: tuple[str, ...]) -> str:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    lines.append(fmt(header))
    indent = " " * (widths[0] + 2)
    for row, f in zip(rows, result.findings, strict=True):
        lines.append(fmt(row))
        lines.append(indent + f.message)
    return "\n".join(lines) + "\n"


def _artifact(path: str) -> str:
    """The rule file as a URI relative to the working directory (the repository root in
    CI) when it lies inside it, so code scanning can place the annotation."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path(os.getcwd()))
        except ValueError:
            return p.as_uri()
    return p.as_posix()


def _location(uri: str, line: int | None, text: str | None = None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    if line is not None:
        physical["region"] = {"startLine": line}
    out: dict[str, Any] = {"physicalLocation": physical}
    if text is not None:
        out["message"] = {"text": text}
    return out


def lint_sarif(result: Lint, path: str) -> str:
    """SARIF 2.1.0: one result per finding, ruleId the kind, the location the line of the
    rule the finding is about, the other rules named as related locations."""
    uri = _artifact(path)
    rules = result.ruleset.rules
    descriptors = [
        {
            "id": kind,
            "name": "".join(w.capitalize() for w in kind.split("-")),
            "shortDescription": {"text": _DESCRIPTIONS[kind][0]},
            "fullDescription": {"text": _DESCRIPTIONS[kind][1]},
            "defaultConfiguration": {"level": SEVERITY[kind]},
            "help": {"text": _DESCRIPTIONS[kind][1]},
        }
        for kind in KINDS
    ]
    results = []
    for f in result.findings:
        related = [
            {
                "id": i,
                **_location(uri, rules[r - 1].line, f"rule {r}: {rules[r - 1].describe()}"),
            }
            for i, r in enumerate(f.rules)
            if r != f.subject
        ]
        entry: dict[str, Any] = {
            "ruleId": f.kind,
            "ruleIndex": KINDS.index(f.kind),
            "level": f.severity,
            "message": {"text": f.message},
            "locations": [_location(uri, f.line)],
            "partialFingerprints": {
                "rampartsFinding/v1": f"{f.kind}:"
                + ",".join(rules[r - 1].id or rules[r - 1].describe() for r in f.rules)
            },
            "properties": {
                "rules": list(f.rules),
                "witness": packet_dict(f.witness) if f.witness is not None else None,
            },
        }
        if related:
            entry["relatedLocations"] = related
        results.append(entry)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "ramparts",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": descriptors,
                    }
                },
                "artifacts": [{"location": {"uri": uri}}],
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


# -- diff -----------------------------------------------------------------------------------


def _decider_dict(d: Decider) -> dict[str, Any]:
    return {
        "action": d.effect,
        "rule": d.index,
        "id": (d.rule.id or None) if d.rule is not None else None,
        "line": d.rule.line if d.rule is not None else None,
        "default": d.rule is None,
    }


def diff_json(result: Diff) -> str:
    """A JSON list of changed regions: the ranges, an example packet, old and new."""
    return (
        json.dumps(
            [
                {
                    "region": r.fields,
                    "text": r.text,
                    "example": packet_dict(r.example),
                    "old": _decider_dict(r.old),
                    "new": _decider_dict(r.new),
                }
                for r in result.regions
            ],
            indent=2,
        )
        + "\n"
    )


def _side(label: str, d: Decider) -> str:
    rule = f": {d.rule.describe()}" if d.rule is not None else ""
    return f"{label} {d.effect} by {d.label}{rule}"


def diff_text(result: Diff, old_path: str, new_path: str) -> str:
    """The changed regions, each with an example and the rule that decides before and
    after, or a line saying nothing changed."""
    o, n = result.old, result.new
    head = (
        f"{old_path} ({len(o.rules)} rule(s), default {o.default.value}) -> "
        f"{new_path} ({len(n.rules)} rule(s), default {n.default.value})"
    )
    if not result.changed:
        return f"{head}: no packet changes verdict\n"
    count = len(result.regions)
    lines = [f"{head}: {count} region(s) of packet space changed verdict", ""]
    for i, r in enumerate(result.regions, 1):
        lines.append(f"{i}. {r.text}: {r.old.effect} -> {r.new.effect}")
        lines.append(f"   example {packet_text(r.example)}")
        lines.append("   " + _side("old:", r.old))
        lines.append("   " + _side("new:", r.new))
    return "\n".join(lines) + "\n"
