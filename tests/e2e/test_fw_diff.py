"""``ramparts fw diff`` as a user runs it: scenario 1's fix, the deploy check of an
iptables-save dump against its known-good baseline, a YAML file against the dump it
describes, and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from .test_fw_lint import CLASSIC, DATA, FIXED, fw, line_of

HTTPS_LINE = line_of(CLASSIC, "- id: https")


def test_the_fix_changes_two_regions() -> None:
    done = fw("diff", str(CLASSIC), str(FIXED))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0].endswith("2 region(s) of packet space changed verdict")
    assert "1. ipv4 tcp 185.220.101.9 -> any port 80: accept -> drop" in done.stdout
    assert "2. ipv4 tcp 185.220.101.9 -> any port 443: accept -> drop" in done.stdout
    old = f"   old: accept by rule 2 https, line {HTTPS_LINE}: accept tcp from any to any port 443"
    assert old in done.stdout


def test_json_regions() -> None:
    done = fw("diff", str(CLASSIC), str(FIXED), "--output-format", "json")
    assert done.returncode == 1
    regions = json.loads(done.stdout)
    assert [r["region"] for r in regions] == [
        {"version": "ipv4", "src": "185.220.101.9", "proto": "tcp", "dport": "80"},
        {"version": "ipv4", "src": "185.220.101.9", "proto": "tcp", "dport": "443"},
    ]
    second = regions[1]
    assert second["example"]["src"] == "185.220.101.9" and second["example"]["dport"] == 443
    assert second["old"] == {
        "action": "accept",
        "rule": 2,
        "id": "https",
        "line": HTTPS_LINE,
        "default": False,
    }
    assert second["new"]["rule"] == 1 and second["new"]["id"] == "block-bad-host"


def test_unchanged_exits_0() -> None:
    done = fw("diff", str(CLASSIC), str(CLASSIC))
    assert done.returncode == 0
    assert done.stdout.endswith("no packet changes verdict\n")


def test_deploy_check_against_the_baseline(tmp_path: Path) -> None:
    # The candidate appended the known-bad host's DROP below the web ALLOWs (and added
    # SNMP from the LAN): the diff shows both, the lint refuses the first.
    done = fw(
        "diff",
        str(DATA / "baseline.rules"),
        str(DATA / "candidate.rules"),
        "-o",
        str(tmp_path / "diff.txt"),
    )
    assert done.returncode == 1
    assert done.stdout == f"3 region(s) changed verdict; wrote {tmp_path / 'diff.txt'}\n"
    text = (tmp_path / "diff.txt").read_text()
    assert "1. ipv4 udp 10.0.0.0/24 -> any port 161: drop -> accept" in text
    assert "2. ipv4 tcp 185.220.101.9 -> any port 80: drop -> accept" in text
    assert "3. ipv4 tcp 185.220.101.9 -> any port 443: drop -> accept" in text
    assert "   new: accept by rule 3 INPUT/2, line 7:" in text


def test_a_yaml_file_against_the_iptables_dump_it_describes() -> None:
    done = fw("diff", str(DATA / "baseline.yaml"), str(DATA / "baseline.rules"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_bad_input_and_budget_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "new.yaml"
    broken.write_text("rules: [{action: maybe}]\n")
    done = fw("diff", str(CLASSIC), str(broken))
    assert done.returncode == 2
    assert f"{broken}:1" in done.stderr and "unknown action" in done.stderr
    tight = fw("diff", str(CLASSIC), str(FIXED), "--budget", "3")
    assert tight.returncode == 2
    assert "did not finish within 3 boxes" in tight.stderr
