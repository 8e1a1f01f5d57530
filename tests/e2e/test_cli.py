"""The ``ramparts`` command as a user runs it (a subprocess): check on the examples and on
broken files (file:line, field and reason), cert, schema, docs and --version."""

from __future__ import annotations

import json
import ssl
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from ramparts import __version__

from ..support import ROOT
from .conftest import EXAMPLE_FILES, run_cli


def test_version() -> None:
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"ramparts {__version__}"


def test_no_command_is_a_usage_error() -> None:
    done = run_cli()
    assert done.returncode == 2
    assert "usage: ramparts" in done.stderr


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_check_accepts_every_example(examples_copy: Path, name: str) -> None:
    path = examples_copy / name
    done = run_cli("check", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: ok"), done.stdout
    assert done.stderr == ""


def test_check_needs_the_example_certificate(examples_copy: Path) -> None:
    """Without `ramparts cert --out examples/certs`, the TLS example names what is missing."""
    for pem in (examples_copy / "certs").glob("*.pem"):
        pem.unlink()
    path = examples_copy / "reverse-proxy-api.yaml"
    done = run_cli("check", str(path))
    assert done.returncode != 0
    assert f"{path}:" in done.stderr
    assert "servers.1.tls" in done.stderr
    assert "cert.pem" in done.stderr


@dataclass(frozen=True)
class Bad:
    """A broken config. The line marked ``# <-`` is the one the error must name."""

    id: str
    text: str
    field: str | None
    reason: str

    @property
    def yaml(self) -> str:
        return textwrap.dedent(self.text).lstrip("\n")

    @property
    def line(self) -> int:
        lines = self.yaml.splitlines()
        marked = [i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("# <-")]
        assert len(marked) == 1, f"{self.id}: mark exactly one line"
        return marked[0]


BAD = [
    Bad(
        "unknown-field-deep-in-a-location",
        """
        upstreams:
          app: { servers: ["127.0.0.1:3000"] }
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                return: { status: 200 }
              - location: /api/
                proxy:
                  upstream: app
                  read_timeout: 30s
                  conect_timeout: 5s   # <-
        """,
        "servers.0.locations.1.proxy.conect_timeout",
        "Extra inputs are not permitted",
    ),
    Bad(
        "bad-duration",
        """
        upstreams:
          app:
            servers: ["127.0.0.1:3000"]
            connect_timeout: 5 seconds   # <-
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                proxy: { upstream: app }
        """,
        "upstreams.app.connect_timeout",
        "not a duration: '5 seconds'",
    ),
    Bad(
        "bad-size",
        """
        limits:
          max_body_size: 1.5m   # <-
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                return: { status: 200 }
        """,
        "limits.max_body_size",
        "not a size",
    ),
    Bad(
        "unknown-upstream",
        """
        upstreams:
          app: { servers: ["127.0.0.1:3000"] }
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                proxy:
                  upstream: ap   # <-
        """,
        "servers.0.locations.0.proxy.upstream",
        "unknown upstream 'ap' (known: app)",
    ),
    Bad(
        "duplicate-key",
        """
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                return: { status: 200 }
            listen: "127.0.0.1:8081"   # <-
        """,
        None,
        "duplicate key 'listen'",
    ),
    Bad(
        "yaml-syntax-error",
        """
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                return: { status: 200 }: oops   # <-
        """,
        None,
        "mapping values are not allowed here",
    ),
    Bad(
        "tls-listen-without-certificate",
        """
        servers:
          - listen:   # <-
              - { address: "127.0.0.1:8443", tls: true }
            locations:
              - location: /
                return: { status: 200 }
        """,
        "servers.0",
        "needs tls: certificate, key",
    ),
    Bad(
        "redirect-without-location",
        """
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /old/
                return: { status: 301 }   # <-
        """,
        "servers.0.locations.0.return",
        "a 301 needs a location",
    ),
    Bad(
        "bad-location-regex",
        """
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: "~ ^/(api"   # <-
                return: { status: 200 }
        """,
        "servers.0.locations.0.location",
        "bad location",
    ),
    Bad(
        "unknown-variable",
        """
        servers:
          - listen: "127.0.0.1:8080"
            locations:
              - location: /
                return:
                  status: 301
                  location: "https://$hots$request_uri"   # <-
        """,
        "servers.0.locations.0.return.location",
        "unknown variable $hots",
    ),
]


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_check_names_file_line_field_and_reason(tmp_path: Path, bad: Bad) -> None:
    path = tmp_path / f"{bad.id}.yaml"
    path.write_text(bad.yaml)
    done = run_cli("check", str(path))
    assert done.returncode != 0
    assert "ok" not in done.stdout
    err = done.stderr
    assert f"{path}:{bad.line}:" in err, err
    if bad.field is not None:
        assert f" {bad.field}:" in err, err
    assert bad.reason in err, err


def test_check_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    done = run_cli("check", str(path))
    assert done.returncode != 0
    assert str(path) in done.stderr
    assert "cannot read" in done.stderr
    assert "No such file" in done.stderr


def test_check_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    done = run_cli("check", str(path))
    assert done.returncode != 0
    assert f"{path}:1:" in done.stderr
    assert "empty" in done.stderr


def test_cert_writes_a_loadable_pair(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    done = run_cli("cert", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cert, key = out / "cert.pem", out / "key.pem"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    assert key.stat().st_mode & 0o077 == 0, "the private key must not be group/world readable"
    names = (
        x509.load_pem_x509_certificate(cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_cert_with_names(tmp_path: Path) -> None:
    done = run_cli(
        "cert", "--out", str(tmp_path), "--name", "api.test", "--name", "::1", "--days", "2"
    )
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["api.test"]
    assert [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)] == ["::1"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 2 * 86400 <= lifetime.total_seconds() <= 2 * 86400 + 3600


def test_schema_prints_the_editor_schema() -> None:
    done = run_cli("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert {"servers", "upstreams", "limits"} <= set(schema["properties"])
    committed = json.loads((ROOT / "docs" / "ramparts.schema.json").read_text())
    assert schema == committed


def test_docs_writes_both_files(tmp_path: Path) -> None:
    done = run_cli("docs", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    for name in ("configuration.md", "ramparts.schema.json"):
        assert (tmp_path / "out" / name).read_text() == (ROOT / "docs" / name).read_text()
