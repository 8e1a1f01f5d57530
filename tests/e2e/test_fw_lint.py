"""``ramparts fw lint`` as a user runs it (subprocesses on the source tree): scenario 1's
examples, Al-Shaer and Hamed's policy, an iptables-save dump, the exit codes, and the
JSON and SARIF reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ramparts.firewall.analysis import KINDS

from ..support import ROOT

EXAMPLES = ROOT / "examples" / "firewall"
CLASSIC = EXAMPLES / "classic.yaml"
FIXED = EXAMPLES / "classic-fixed.yaml"
ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"
DATA = ROOT / "tests" / "data" / "firewall" / "analysis"


def fw(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m ramparts.cli fw ARGS`` on this tree's sources."""
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", "fw", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that starts (after indentation) with ``text``."""
    [line] = [
        i for i, row in enumerate(path.read_text().splitlines(), 1) if row.strip().startswith(text)
    ]
    return line


BAD_HOST_LINE = line_of(CLASSIC, "- id: block-bad-host")  # rule 4 of classic.yaml


def lint_json(*args: str) -> tuple[int, list[dict[str, object]]]:
    done = fw("lint", *args, "--output-format", "json")
    assert done.returncode in (0, 1), done.stderr
    found = json.loads(done.stdout)
    assert isinstance(found, list)
    return done.returncode, found


def test_scenario1_classic_fails_with_the_witness_of_the_bad_host() -> None:
    code, findings = lint_json(str(CLASSIC))
    assert code == 1
    for f in findings:
        assert {"kind", "rules", "witness", "message"} <= set(f)
    [shadow] = [f for f in findings if f["kind"] == "partial-shadowing" and f["rules"] == [2, 4]]
    witness = shadow["witness"]
    assert isinstance(witness, dict)
    assert (witness["src"], witness["proto"], witness["dport"]) == ("185.220.101.9", "tcp", 443)
    assert shadow["subject"] == 4 and shadow["severity"] == "error"


def test_scenario1_table() -> None:
    done = fw("lint", str(CLASSIC))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"{CLASSIC}: 4 rule(s), default drop: 4 finding(s) (2 partial-shadowing, 2 correlation)"
    )
    assert lines[2].split() == ["RULE", "LINE", "KIND", "SEVERITY", "RULES", "WITNESS"]
    row = next(line for line in lines if "partial-shadowing" in line and " 2,4 " in line)
    assert row.split()[:5] == ["4", str(BAD_HOST_LINE), "partial-shadowing", "error", "2,4"]
    assert row.endswith("tcp 185.220.101.9:49152 -> 0.0.0.0:443")


def test_scenario1_fixed_passes() -> None:
    code, findings = lint_json(str(FIXED))
    assert code == 0
    assert {f["kind"] for f in findings} == {"correlation"}


def test_fail_on_is_configurable() -> None:
    assert fw("lint", str(CLASSIC), "--fail-on", "none").returncode == 0
    assert fw("lint", str(FIXED), "--fail-on", "correlation").returncode == 1
    assert fw("lint", str(FIXED), "--fail-on", "all").returncode == 1
    assert fw("lint", str(FIXED), "--fail-on", "shadowing,unreachable").returncode == 0
    bad = fw("lint", str(FIXED), "--fail-on", "shadowed")
    assert bad.returncode == 2
    assert "unknown kind shadowed" in bad.stderr


def test_alshaer_policy() -> None:
    code, findings = lint_json(str(ALSHAER))
    assert code == 1  # rule 4 is shadowed by rules 2 and 3
    got = sorted((str(f["kind"]), tuple(f["rules"])) for f in findings)
    assert [g for g in got if g[0] in ("shadowing", "redundancy", "unreachable")] == [
        ("redundancy", (4, 8)),
        ("redundancy", (6, 7)),
        ("redundancy", (9, 10)),
        ("shadowing", (2, 4)),
        ("shadowing", (3, 4)),
        ("unreachable", (1, 2, 4)),
        ("unreachable", (5, 6, 7)),
    ]
    assert sum(k == "generalization" for k, _ in got) == 9
    assert [r for k, r in got if k == "correlation"] == [(1, 3), (5, 7)]


def test_an_iptables_dump_names_its_own_lines(tmp_path: Path) -> None:
    code, findings = lint_json(str(DATA / "candidate.rules"))
    assert code == 1
    shadowed = [f for f in findings if f["kind"] == "partial-shadowing"]
    assert {tuple(f["rules"]) for f in shadowed} == {(2, 6), (3, 6)}
    assert {f["line"] for f in shadowed} == {10}  # the appended -j DROP
    assert fw("lint", str(DATA / "baseline.rules")).returncode == 0


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("tests/data/firewall/nftables/host.json", []),
        (
            "tests/data/firewall/aws/network-acls.json",
            ["--select", "acl-0f1e2d3c4b5a69788:ingress"],
        ),
    ],
    ids=["nftables", "aws"],
)
def test_every_rule_format_is_read(path: str, extra: list[str]) -> None:
    code, findings = lint_json(str(ROOT / path), *extra)
    for f in findings:
        assert isinstance(f["rules"], list) and f["kind"] in KINDS
        assert f["witness"] is None or isinstance(f["witness"], dict)
    assert code == (
        1 if any(f["kind"] in ("shadowing", "partial-shadowing") for f in findings) else 0
    )


def test_sarif_for_code_scanning(tmp_path: Path) -> None:
    out = tmp_path / "lint.sarif"
    done = fw(
        "lint",
        "examples/firewall/classic.yaml",
        "--output-format",
        "sarif",
        "-o",
        str(out),
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("examples/firewall/classic.yaml: 4 rule(s)")
    assert done.stdout.rstrip().endswith(f"wrote {out}")
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    [run] = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "ramparts"
    ids = [r["id"] for r in driver["rules"]]
    assert "shadowing" in ids and "partial-shadowing" in ids
    results = run["results"]
    assert len(results) == 4
    for r in results:
        assert r["ruleId"] in ids and ids[r["ruleIndex"]] == r["ruleId"]
        assert r["level"] in ("error", "warning", "note")
        [loc] = r["locations"]
        physical = loc["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == "examples/firewall/classic.yaml"
        assert physical["region"]["startLine"] == BAD_HOST_LINE  # rule 4, the shadowed deny
        assert r["message"]["text"]


def test_bad_input_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text("default: drop\nrules:\n  - action: allow\n    dport: 22\n")
    done = fw("lint", str(broken))
    assert done.returncode == 2
    assert f"{broken}:3" in done.stderr and "ports need protocol" in done.stderr
    missing = fw("lint", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2


@pytest.mark.parametrize("command", ["eval", "lint", "diff"])
def test_help_still_works(command: str) -> None:
    done = fw(command, "--help")
    assert done.returncode == 0
    assert "--format RULES_FORMAT" in done.stdout
