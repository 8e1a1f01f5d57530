"""The analysis renderers (firewall/report.py): SARIF checked against the key parts of the
SARIF 2.1.0 schema, the JSON shape of findings and diff regions, packets as text."""

from __future__ import annotations

import json
from typing import Any

from ramparts.firewall.analysis import KINDS, lint
from ramparts.firewall.diff import diff
from ramparts.firewall.formats import load_rules
from ramparts.firewall.report import (
    diff_json,
    diff_text,
    lint_json,
    lint_sarif,
    lint_text,
    packet_dict,
    packet_text,
)
from ramparts.net import Packet

from ...support import ROOT

CLASSIC = ROOT / "examples" / "firewall" / "classic.yaml"
FIXED = ROOT / "examples" / "firewall" / "classic-fixed.yaml"
ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"

# The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json, OASIS) that our output
# uses, transcribed: required members, types, enumerations, minimums, and - as in the
# schema - no members but the defined ones (additionalProperties: false) on these objects.
_MESSAGE = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "id": {"type": "string"}},
}
_MULTIFORMAT = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}},
}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
_ARTIFACT_LOCATION = {
    "type": "object",
    "properties": {"uri": {"type": "string"}, "uriBaseId": {"type": "string"}},
}
_LOCATION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": -1},
        "physicalLocation": {
            "type": "object",
            "properties": {
                "artifactLocation": _ARTIFACT_LOCATION,
                "region": {
                    "type": "object",
                    "properties": {
                        "startLine": {"type": "integer", "minimum": 1},
                        "startColumn": {"type": "integer", "minimum": 1},
                    },
                },
            },
        },
        "message": _MESSAGE,
    },
}
_RESULT = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "ruleId": {"type": "string"},
        "ruleIndex": {"type": "integer", "minimum": -1},
        "level": _LEVEL,
        "message": _MESSAGE,
        "locations": {"type": "array", "items": _LOCATION},
        "relatedLocations": {"type": "array", "items": _LOCATION},
        "partialFingerprints": {"type": "object", "values": {"type": "string"}},
        "properties": {"type": "object", "open": True},
    },
}
_DESCRIPTOR = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "shortDescription": _MULTIFORMAT,
        "fullDescription": _MULTIFORMAT,
        "help": _MULTIFORMAT,
        "defaultConfiguration": {"type": "object", "properties": {"level": _LEVEL}},
    },
}
SARIF_2_1_0 = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string"},
        "version": {"enum": ["2.1.0"]},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tool"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "version": {"type": "string"},
                                    "semanticVersion": {"type": "string"},
                                    "rules": {"type": "array", "items": _DESCRIPTOR},
                                },
                            }
                        },
                    },
                    "artifacts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"location": _ARTIFACT_LOCATION},
                        },
                    },
                    "results": {"type": "array", "items": _RESULT},
                },
            },
        },
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "integer": int}


def _validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
        return
    kind = _TYPES[schema["type"]]
    assert isinstance(value, kind) and not isinstance(value, bool), f"{where}: not {kind}"
    if "minimum" in schema:
        assert value >= schema["minimum"], f"{where}: below {schema['minimum']}"
    if schema["type"] == "array":
        for i, item in enumerate(value):
            _validate(item, schema["items"], f"{where}[{i}]")
    if schema["type"] == "object" and not schema.get("open"):
        for key in schema.get("required", []):
            assert key in value, f"{where}: {key} is required"
        if "values" in schema:
            for key, item in value.items():
                _validate(item, schema["values"], f"{where}.{key}")
            return
        known = schema.get("properties", {})
        for key, item in value.items():
            assert key in known, f"{where}: unknown member {key}"
            _validate(item, known[key], f"{where}.{key}")


def test_the_validator_refuses_what_the_schema_refuses() -> None:
    good = json.loads(lint_sarif(lint(load_rules(CLASSIC)), "x.yaml"))
    bad = json.loads(json.dumps(good))
    bad["runs"][0]["results"][0]["level"] = "fatal"
    for broken in (
        {"runs": []},
        {**good, "version": "2.0.0"},
        bad,
        {**good, "runs": [{"results": []}]},
    ):
        try:
            _validate(broken, SARIF_2_1_0)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {broken}")


def test_sarif_has_the_key_parts_of_2_1_0() -> None:
    rs = load_rules(ALSHAER)
    result = lint(rs)
    doc = json.loads(lint_sarif(result, "data/policy.csv"))
    _validate(doc, SARIF_2_1_0)
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == list(KINDS)
    assert len(run["results"]) == len(result.findings)
    for r, f in zip(run["results"], result.findings, strict=True):
        assert (r["ruleId"], r["level"], r["message"]["text"]) == (f.kind, f.severity, f.message)
        physical = r["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "data/policy.csv"
        assert physical["region"]["startLine"] == rs.rules[f.subject - 1].line
        related = [loc["physicalLocation"]["region"]["startLine"] for loc in r["relatedLocations"]]
        assert related == [rs.rules[i - 1].line for i in f.rules if i != f.subject]
        assert r["properties"]["rules"] == list(f.rules)


def test_lint_json_is_a_list_of_findings() -> None:
    findings = json.loads(lint_json(lint(load_rules(CLASSIC))))
    assert [(f["kind"], f["rules"]) for f in findings] == [
        ("partial-shadowing", [1, 4]),
        ("partial-shadowing", [2, 4]),
        ("correlation", [1, 4]),
        ("correlation", [2, 4]),
    ]
    assert findings[1]["witness"] == {
        "version": 4,
        "src": "185.220.101.9",
        "dst": "0.0.0.0",
        "proto": "tcp",
        "sport": 49152,
        "dport": 443,
        "icmp_type": None,
        "icmp_code": None,
        "tcp_flags": [],
        "direction": None,
        "iface": None,
        "ct_state": None,
    }


def test_lint_text_of_a_clean_rule_set_is_one_line() -> None:
    rs = load_rules(FIXED)
    clean = lint(rs.__class__.of(rs.rules[1:], rs.default))
    assert lint_text(clean, "f.yaml") == "f.yaml: 3 rule(s), default drop: 0 finding(s)\n"


def test_diff_renderers() -> None:
    result = diff(load_rules(CLASSIC), load_rules(FIXED))
    regions = json.loads(diff_json(result))
    assert [r["text"] for r in regions] == [r.text for r in result.regions]
    assert regions[0]["old"]["default"] is False
    text = diff_text(result, "old.yaml", "new.yaml")
    assert text.splitlines()[0] == (
        "old.yaml (4 rule(s), default drop) -> new.yaml (4 rule(s), default drop): "
        "2 region(s) of packet space changed verdict"
    )
    same = diff(load_rules(CLASSIC), load_rules(CLASSIC))
    assert diff_json(same) == "[]\n"


def test_packets_as_text_and_json() -> None:
    v6 = Packet.make("2001:db8::1", "2001:db8::2", "udp", 5353, 53)
    assert packet_text(v6) == "udp [2001:db8::1]:5353 -> [2001:db8::2]:53"
    ping = Packet.make("192.0.2.1", "192.0.2.2", "icmp", icmp_type=8, icmp_code=0)
    assert packet_text(ping) == "icmp 192.0.2.1 -> 192.0.2.2 type 8 code 0"
    syn = Packet.make(
        "192.0.2.1", "192.0.2.2", "tcp", 40000, 22, tcp_flags=0x12, ct_state="new", iface="eth0"
    )
    assert packet_text(syn) == (
        "tcp 192.0.2.1:40000 -> 192.0.2.2:22 flags syn,ack state new on eth0"
    )
    assert packet_dict(syn)["tcp_flags"] == ["syn", "ack"]
