"""``ramparts fw check`` and ``ramparts fw eval`` as a user runs them (subprocesses on the
source tree): the scenario 1 examples, the Al-Shaer CSV policy, and broken files named by
file:line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..support import ROOT

EXAMPLES = ROOT / "examples" / "firewall"
CLASSIC = EXAMPLES / "classic.yaml"
FIXED = EXAMPLES / "classic-fixed.yaml"
ALSHAER = ROOT.parent / "shared" / "data" / "alshaer-2004" / "policy.csv"


def fw(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ramparts.cli fw ARGS`` on this tree's sources."""
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", "fw", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` that starts (after indentation) with ``text``."""
    found = [
        i
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip().startswith(text)
    ]
    assert len(found) == 1, found
    return found[0]


# -- fw check ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CLASSIC, FIXED], ids=["classic", "classic-fixed"])
def test_check_accepts_the_examples(path: Path) -> None:
    done = fw("check", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{path}: ok (4 rule(s), default drop)\n"
    assert done.stderr == ""


@pytest.mark.skipif(not ALSHAER.exists(), reason=f"{ALSHAER} is not here")
def test_check_accepts_the_alshaer_csv() -> None:
    done = fw("check", str(ALSHAER))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{ALSHAER}: ok (12 rule(s), default drop)\n"


def test_check_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "default: drop\n"
        "rules:\n"
        "  - id: web\n"
        "    action: accept\n"
        "    proto: tcp\n"
        "    dport: 443\n"
        "  - id: ssh\n"
        "    action: accept\n"
        "    proto: tcp\n"
        "    dport: [22, 2222x]\n"
    )
    done = fw("check", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"ramparts: {path}:10:")
    assert "rules.1.dport.1: not a port or port range: '2222x'" in done.stderr


def test_check_names_the_rule_line_for_a_bad_combination(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text("rules:\n  - action: accept\n  - action: drop\n    dport: 22\n")
    done = fw("check", str(path))
    assert done.returncode == 1
    assert f"{path}:3:5: rules.1: ports need protocol tcp, udp or sctp" in done.stderr


def test_check_names_the_csv_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.csv"
    path.write_text(
        "protocol,src,s_port,dst,d_port,action\n"
        "tcp,140.192.37.20,any,0.0.0.0/0,80,deny\n"
        "tcp,140.192.37.0/24,any,0.0.0.0/0,80,acept\n"
    )
    done = fw("check", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"ramparts: {path}:3:38: action: unknown action 'acept'")


def test_check_refuses_an_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("rules: []\n")
    done = fw("check", str(path))
    assert done.returncode == 1
    assert f"{path}:" in done.stderr
    assert "cannot tell the rule format of this file" in done.stderr


def test_check_a_missing_file(tmp_path: Path) -> None:
    done = fw("check", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1
    assert "cannot read" in done.stderr


# -- fw eval -----------------------------------------------------------------------------


def test_eval_scenario_1_row_five_is_allowed_by_rule_2() -> None:
    """The known-bad host reaches :443 because the broad allow comes before its deny."""
    done = fw(
        "eval",
        str(CLASSIC),
        "--src",
        "185.220.101.9",
        "--dst",
        "192.168.1.1",
        "--proto",
        "tcp",
        "--sport",
        "51000",
        "--dport",
        "443",
    )
    assert done.returncode == 0, done.stderr
    line = line_of(CLASSIC, "- id: https")
    assert done.stdout == (
        f"ACCEPT by rule 2 https (line {line}): accept tcp from any to any port 443\n"
    )


def test_eval_fixed_order_drops_the_bad_host() -> None:
    done = fw(
        "eval", str(FIXED), "--src", "185.220.101.9", "--dst", "192.168.1.1", "--dport", "443"
    )
    assert done.returncode == 0, done.stderr
    line = line_of(FIXED, "- id: block-bad-host")
    assert done.stdout == (
        f"DROP by rule 1 block-bad-host (line {line}): drop any from 185.220.101.9 to any\n"
    )


@pytest.mark.parametrize(
    ("src", "dport", "expected"),
    [
        ("203.0.113.42", "80", "ACCEPT by rule 1 http "),
        ("203.0.113.42", "443", "ACCEPT by rule 2 https "),
        ("198.51.100.7", "22", "DROP by the default policy"),
        ("10.0.0.5", "22", "ACCEPT by rule 3 ssh-admin "),
        ("185.220.101.9", "443", "ACCEPT by rule 2 https "),
        ("203.0.113.42", "8080", "DROP by the default policy"),
    ],
)
def test_eval_scenario_1(src: str, dport: str, expected: str) -> None:
    done = fw("eval", str(CLASSIC), "--src", src, "--dst", "192.168.1.1", "--dport", dport)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(expected), done.stdout


@pytest.mark.skipif(not ALSHAER.exists(), reason=f"{ALSHAER} is not here")
def test_eval_csv_rule_without_id() -> None:
    done = fw(
        "eval", str(ALSHAER), "--src", "140.192.37.20", "--dst", "161.120.33.40", "--dport", "80"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "DROP by rule 1 (line 2): drop tcp from 140.192.37.20 to 0.0.0.0/0 port 80\n"
    )


def test_eval_on_a_broken_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - action: acept\n")
    done = fw("eval", str(path), "--src", "192.0.2.1", "--dst", "192.0.2.2")
    assert done.returncode == 1
    assert f"{path}:2:" in done.stderr
    assert done.stdout == ""


def test_eval_bad_address_is_a_usage_error() -> None:
    done = fw("eval", str(CLASSIC), "--src", "192.0.2.300", "--dst", "192.168.1.1")
    assert done.returncode == 2
    assert "192.0.2.300" in done.stderr
    assert done.stdout == ""


FLAGS_AND_ICMP = """\
default: drop
rules:
  - { id: ping, action: accept, proto: icmp, icmp_type: 8 }
  - { id: stray-ack, action: reject, reject_with: tcp-reset, proto: tcp, tcp_flags: "syn,ack/ack" }
  - { id: web, action: accept, proto: tcp, dport: 80 }
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--proto", "icmp", "--icmp-type", "8"], "ACCEPT by rule 1 ping"),
        (["--proto", "icmp", "--icmp-type", "0"], "DROP by the default policy"),
        (["--proto", "tcp", "--dport", "80"], "ACCEPT by rule 3 web"),  # a SYN by default
        (["--proto", "tcp", "--dport", "80", "--tcp-flags", "ack"], "REJECT by rule 2 stray-ack"),
        (["--proto", "tcp", "--dport", "80", "--tcp-flags", "syn,ack"], "ACCEPT by rule 3 web"),
    ],
)
def test_eval_icmp_type_and_tcp_flags(tmp_path: Path, args: list[str], expected: str) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(FLAGS_AND_ICMP)
    out = fw("eval", str(rules), "--src", "192.0.2.1", "--dst", "198.51.100.1", *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(expected), out.stdout


def test_eval_unknown_tcp_flag_is_a_usage_error(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(FLAGS_AND_ICMP)
    out = fw(
        "eval", str(rules), "--src", "192.0.2.1", "--dst", "198.51.100.1", "--tcp-flags", "sin"
    )
    assert out.returncode == 2 and "unknown TCP flag 'sin'" in out.stderr


def test_eval_a_forwarded_packet_by_its_two_interfaces(tmp_path: Path) -> None:
    """--format names the format of a file whose name does not; --iface and --out-iface
    are the interfaces a forwarded packet arrives on and leaves by."""
    rules = tmp_path / "forward.rules-yaml"
    rules.write_text(
        "rules:\n  - {id: lan-out, action: accept, iface: eth0, out_iface: eth1, proto: tcp}\n"
    )
    base = ["eval", str(rules), "--format", "yaml", "--src", "10.0.0.1", "--dst", "192.0.2.1"]
    done = fw(*base, "--dport", "80", "--iface", "eth0", "--out-iface", "eth1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ACCEPT by rule 1 lan-out")
    assert "on eth0 out via eth1" in done.stdout
    back = fw(*base, "--dport", "80", "--iface", "eth1", "--out-iface", "eth0")
    assert back.stdout.startswith("DROP by the default policy")
    assert fw("check", str(rules)).returncode == 1  # no --format: the name does not say
