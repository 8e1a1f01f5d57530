"""``ramparts cloud trace`` and ``ramparts cloud lint`` as a user runs them on the
examples/cloud files (subprocesses on the source tree): scenario 3 works, its broken
variant times out on the reply path with the missing rule named, SSH open to the world is
flagged; the AWS JSON and Terraform copies of the web tier give the same answers; the
fw commands read AWS JSON and Terraform; exit codes 0 (works), 1 (fails), 2 (bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..support import ROOT

EXAMPLES = ROOT / "examples" / "cloud"
WEB_TIERS = ["web-tier.yaml", "web-tier-aws.yaml", "web-tier-terraform.yaml"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ramparts.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", WEB_TIERS)
def test_https_to_the_web_tier_works(name: str) -> None:
    done = cli(
        "cloud",
        "trace",
        f"examples/cloud/{name}",
        "--from",
        "198.51.100.7",
        "--to",
        "web-1",
        "--port",
        "443",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CONNECTED: the connection is established and its replies come back" in done.stdout
    assert "ALLOW by rule 120" in done.stdout  # the reply, to the client's ephemeral port
    assert done.stderr == ""


def test_scenario_3_broken_times_out_and_names_the_missing_rule() -> None:
    done = cli(
        "cloud",
        "trace",
        "examples/cloud/web-tier-broken.yaml",
        "--from",
        "198.51.100.7",
        "--to",
        "web-1",
        "--port",
        "443",
    )
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert (
        "TIMEOUT: dropped by the subnet's ACL on the reply path, no outbound rule for the "
        "ephemeral port" in out
    )
    assert (
        "no outbound rule of public-nacl allows tcp to 198.51.100.7 port 32768-60999 "
        "(the client's ephemeral port)" in out
    )
    assert "subnet public-a network ACL public-nacl, outbound: DROP by rule 200" in out
    assert "fix: add an outbound rule to public-nacl numbered below 200" in out


def test_json_output_and_a_chosen_client_port() -> None:
    done = cli(
        "cloud",
        "trace",
        "examples/cloud/web-tier-broken.yaml",
        "--from",
        "198.51.100.7",
        "--to",
        "web-1",
        "--port",
        "443",
        "--sport",
        "51515",
        "--format",
        "json",
    )
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert data["outcome"] == "timeout" and data["client_ports"] == "51515"
    assert [h["verdict"] for h in data["hops"]] == ["allow", "allow", "listening", "state", "drop"]
    assert data["hops"][-1]["origin"].endswith("web-tier-broken.yaml:44")


@pytest.mark.parametrize("name", WEB_TIERS)
def test_web_to_db_through_a_group_reference(name: str) -> None:
    done = cli(
        "cloud",
        "trace",
        f"examples/cloud/{name}",
        "--from",
        "web-1",
        "--to",
        "db-1",
        "--port",
        "5432",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    hops = json.loads(done.stdout)["hops"]
    assert "from members of" in hops[3]["rule_text"]


def test_ssh_open_to_the_world_is_flagged() -> None:
    done = cli("cloud", "lint", "examples/cloud/web-tier-ssh-open.yaml")
    assert done.returncode == 1, done.stderr
    assert "HIGH world-open-admin: web-sg inbound rule 3 opens tcp port 22 (SSH) to 0.0.0.0/0" in (
        done.stdout
    )
    # the corporate-only rule of the working example is not flagged as world-open
    ok = cli("cloud", "lint", "examples/cloud/web-tier.yaml", "--format", "json")
    assert [f["code"] for f in json.loads(ok.stdout)] == ["group-rule-blocked"]


def test_lint_of_the_broken_tier_names_the_reply_path() -> None:
    done = cli("cloud", "lint", "examples/cloud/web-tier-broken.yaml")
    assert done.returncode == 1
    assert done.stdout.count("HIGH acl-reply-dropped") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["trace", "examples/cloud/missing.yaml", "--from", "a", "--to", "b", "--port", "1"],
            "cannot read",
        ),
        (
            [
                "trace",
                "examples/cloud/web-tier.yaml",
                "--from",
                "nobody",
                "--to",
                "web-1",
                "--port",
                "443",
            ],
            "'nobody' is neither an instance",
        ),
        (
            ["trace", "examples/cloud/web-tier.yaml", "--from", "198.51.100.7", "--to", "web-1"],
            "a tcp trace needs --port",
        ),
        (["lint", "examples/cloud/aws/security-groups.json"], "this is AWS JSON, not a topology"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    done = cli("cloud", *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr


def test_fw_commands_read_aws_json_and_terraform() -> None:
    done = cli(
        "fw", "check", "examples/cloud/aws/network-acls.json", "--select", "public-nacl:egress"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(": ok (4 rule(s), default drop)\n")
    done = cli(
        "fw",
        "eval",
        "examples/cloud/terraform",
        "--select",
        "public:egress",
        "--src",
        "10.0.1.10",
        "--dst",
        "198.51.100.7",
        "--sport",
        "443",
        "--dport",
        "40000",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ACCEPT by rule 3 120 (line 173)")
    done = cli(
        "fw", "check", "examples/cloud/aws/security-groups.json", "--select", "db-sg:ingress"
    )
    assert done.returncode == 1
    assert "security-groups.json:126: this rule allows members of sg-0a1b2c3d4e5f60718" in (
        done.stderr
    )
