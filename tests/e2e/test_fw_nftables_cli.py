"""``ramparts fw export --to nftables`` and nftables listings read by ``fw check`` and
``fw eval`` (subprocesses on the source tree). ``fw apply`` needs the kernel: it is tested
in tests/integration/test_nft_kernel.py, inside namespaces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..support import ROOT

DATA = ROOT / "tests" / "data" / "firewall" / "nftables"
EXAMPLES = ROOT / "examples" / "firewall"


def fw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", "fw", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )


def test_export_prints_the_nft_script() -> None:
    done = fw("export", str(EXAMPLES / "classic.yaml"), "--to", "nftables")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (DATA / "render" / "classic-input.nft").read_text()


def test_export_options_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "edge.nft"
    done = fw(
        "export",
        str(DATA / "edge.yaml"),
        "--to",
        "nftables",
        "--hook",
        "forward",
        "--counters",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert out.read_text() == (DATA / "render" / "edge-forward.nft").read_text()


def test_export_refuses_with_file_and_line() -> None:
    path = DATA / "wildcard-iface.yaml"
    done = fw("export", str(path), "--to", "nftables", "--hook", "forward")
    assert done.returncode == 1
    assert done.stdout == ""
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "id: lan" in text)
    assert done.stderr.startswith(f"ramparts: {path}:{line}: rules.1: rule 2 (lan) cannot")
    assert "as a wildcard" in done.stderr


def test_export_knows_its_targets() -> None:
    done = fw("export", str(EXAMPLES / "classic.yaml"), "--to", "pf")
    assert done.returncode == 2
    assert "invalid choice: 'pf'" in done.stderr and "nftables" in done.stderr


def test_check_reads_an_nft_json_listing() -> None:
    done = fw("check", str(DATA / "host.json"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{DATA / 'host.json'}: ok (31 rule(s), default drop)\n"


def test_check_names_the_chains_to_select_from() -> None:
    done = fw("check", str(DATA / "router.json"))
    assert done.returncode == 1
    assert "name one with --select (chains: inet/fw/forward)" in done.stderr
    done = fw("check", str(DATA / "router.json"), "--select", "forward")
    assert done.returncode == 0, done.stderr


def test_check_refuses_an_iptables_nft_dump_at_its_xt_match() -> None:
    done = fw("check", str(DATA / "iptables-nft-docker.json"), "--select", "ip/filter/FORWARD")
    assert done.returncode == 1
    assert ":1:" in done.stderr and ".rule.expr[1]: xt is not in the rule model" in done.stderr


def test_eval_names_the_nft_rule_that_decides() -> None:
    args = ["--select", "ip/filter/FORWARD", "--dst", "172.17.0.2", "--dport", "80"]
    base = ["eval", str(DATA / "docker-like.json"), *args]
    trusted = fw(*base, "--src", "198.51.100.5", "--iface", "eth0")
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.startswith("ACCEPT by rule 3 DOCKER/14 (line 1): accept tcp from ")
    blocked = fw(*base, "--src", "192.0.2.1", "--iface", "eth0", "--dport", "22")
    assert blocked.stdout.startswith("DROP by rule")
    assert "DOCKER-USER/25" in blocked.stdout
