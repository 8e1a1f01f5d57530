"""TLS termination over real sockets: the certificate chosen by SNI and the matching server
block, TLS 1.2 and 1.3 only, ALPN http/1.1, proxying over TLS, and ``ramparts cert``."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from ..support import (
    Response,
    closed_by_peer,
    free_port,
    read_response,
    running,
    start_gateway,
    start_origin,
)


def write_cert(ca: trustme.CA, host: str, cert_path: Path, key_path: Path) -> None:
    cert = ca.issue_cert(host)
    cert.private_key_pem.write_to_path(str(key_path))
    with cert_path.open("wb") as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())


@dataclass
class TLSEnv:
    port: int
    ca_file: Path


@pytest.fixture(scope="module")
def tls_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSEnv]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    for name, host in (("a", "a.test"), ("b", "b.test"), ("wild", "*.wild.test")):
        write_cert(ca, host, tmp / f"{name}.crt", tmp / f"{name}.key")
    origin, oport = start_origin(tmp, name="behind-tls")
    port = free_port()
    cfg = f"""
limits: {{ client_header_timeout: 1s }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    server_names: [a.test]
    tls: {{ certificate: "{tmp}/a.crt", key: "{tmp}/a.key" }}
    locations:
      - location: /
        return: {{ status: 200, body: "server a\\n" }}
      - location: /proxy/
        proxy: {{ upstream: app }}
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    server_names: [b.test]
    tls: {{ certificate: "{tmp}/b.crt", key: "{tmp}/b.key" }}
    locations:
      - location: /
        return: {{ status: 200, body: "server b\\n" }}
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    server_names: ["*.wild.test"]
    tls: {{ certificate: "{tmp}/wild.crt", key: "{tmp}/wild.key" }}
    locations:
      - location: /
        return: {{ status: 200, body: "server wild\\n" }}
"""
    gw = start_gateway(tmp, cfg, [port])
    try:
        yield TLSEnv(port, ca_file)
    finally:
        gw.stop()
        origin.stop()


def client_context(
    ca_file: Path,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


@dataclass
class Session:
    """What one TLS connection negotiated."""

    version: str | None
    alpn: str | None
    names: set[str]  # DNS names of the certificate served


def tls_get(
    port: int, ctx: ssl.SSLContext, sni: str | None, host: str, path: str = "/"
) -> tuple[Response, Session]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        session = Session(s.version(), s.selected_alpn_protocol(), served_names(s))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return read_response(s, bytearray()), session


def served_names(s: ssl.SSLSocket) -> set[str]:
    der = s.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


@pytest.mark.parametrize("name", ["a", "b"])
def test_sni_picks_certificate_and_server(tls_env: TLSEnv, name: str) -> None:
    ctx = client_context(tls_env.ca_file)  # verifies the chain and the host name
    r, s = tls_get(tls_env.port, ctx, f"{name}.test", f"{name}.test")
    assert s.names == {f"{name}.test"}
    assert r.status == 200
    assert r.body == f"server {name}\n".encode()


def test_wildcard_server_name(tls_env: TLSEnv) -> None:
    ctx = client_context(tls_env.ca_file)
    r, s = tls_get(tls_env.port, ctx, "x.wild.test", "x.wild.test")
    assert s.names == {"*.wild.test"}
    assert r.status == 200 and r.body == b"server wild\n"


def test_sni_and_host_disagree(tls_env: TLSEnv) -> None:
    # The certificate follows SNI; the server block follows Host (as in nginx).
    ctx = client_context(tls_env.ca_file)
    r, s = tls_get(tls_env.port, ctx, "a.test", "b.test")
    assert s.names == {"a.test"}
    assert r.status in (200, 421)
    if r.status == 200:
        assert r.body == b"server b\n"


def test_stalled_handshake_is_closed_after_the_header_timeout(tls_env: TLSEnv) -> None:
    with socket.create_connection(("127.0.0.1", tls_env.port), timeout=5.0) as s:
        t0 = time.monotonic()
        s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        assert closed_by_peer(s, 4.0)
        assert time.monotonic() - t0 < 3.0


def test_no_sni_gets_the_default_certificate(tls_env: TLSEnv) -> None:
    ctx = client_context(tls_env.ca_file)
    ctx.check_hostname = False
    r, s = tls_get(tls_env.port, ctx, None, "a.test")
    assert s.names == {"a.test"}  # the first server's certificate
    assert r.status == 200 and r.body == b"server a\n"


def test_wrong_host_name_fails_verification(tls_env: TLSEnv) -> None:
    ctx = client_context(tls_env.ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_get(tls_env.port, ctx, "c.test", "c.test")


def test_proxy_over_tls_sets_forwarded_proto(tls_env: TLSEnv) -> None:
    ctx = client_context(tls_env.ca_file)
    r, _ = tls_get(tls_env.port, ctx, "a.test", "a.test", "/proxy/echo")
    assert r.status == 200
    assert b'"X-Forwarded-Proto", "https"' in r.body
    assert b'"origin": "behind-tls"' in r.body


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_tls12_and_tls13_accepted(tls_env: TLSEnv, version: ssl.TLSVersion, name: str) -> None:
    ctx = client_context(tls_env.ca_file, version, version)
    r, s = tls_get(tls_env.port, ctx, "b.test", "b.test")
    assert s.version == name
    assert r.status == 200 and r.body == b"server b\n"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_tls_refused(tls_env: TLSEnv, version: ssl.TLSVersion) -> None:
    ctx = client_context(tls_env.ca_file)
    try:
        # Let the client offer the old version at all (OpenSSL 3 hides it at level 1+).
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = version
        ctx.maximum_version = version
    except (ssl.SSLError, ValueError):
        pytest.skip(f"this OpenSSL cannot offer {version.name} at all")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(tls_env.port, ctx, "a.test", "a.test")
    # And the listener still works afterwards.
    r, _ = tls_get(tls_env.port, client_context(tls_env.ca_file), "a.test", "a.test")
    assert r.status == 200


def test_tls12_weak_ciphers_refused(tls_env: TLSEnv) -> None:
    weak = "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA256:DHE-RSA-AES128-SHA"
    ctx = client_context(tls_env.ca_file, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(weak)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_get(tls_env.port, ctx, "a.test", "a.test")
    ctx = client_context(tls_env.ca_file, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE+AESGCM")
    r, _ = tls_get(tls_env.port, ctx, "a.test", "a.test")
    assert r.status == 200


@pytest.mark.parametrize("name", ["a.test", "b.test", "x.wild.test"])
def test_alpn_http11(tls_env: TLSEnv, name: str) -> None:
    # Also after SNI switched to another server's context.
    ctx = client_context(tls_env.ca_file)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    r, s = tls_get(tls_env.port, ctx, name, name)
    assert s.alpn == "http/1.1"
    assert r.status == 200
    ctx = client_context(tls_env.ca_file)
    ctx.set_alpn_protocols(["h2"])  # nothing in common: no protocol, or no connection
    try:
        r, s = tls_get(tls_env.port, ctx, name, name)
    except ssl.SSLError:
        return
    assert s.alpn is None


def test_plain_http_on_tls_port_is_not_served(tls_env: TLSEnv) -> None:
    with socket.create_connection(("127.0.0.1", tls_env.port), timeout=5.0) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(5.0)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    assert b"server a" not in data


def test_ramparts_cert_makes_a_usable_certificate(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    done = subprocess.run(
        [sys.executable, "-m", "ramparts.cli", "cert", "--out", str(out)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    cert, key = out / "cert.pem", out / "key.pem"
    assert cert.is_file() and key.is_file()
    assert key.stat().st_mode & 0o077 == 0  # the private key is not world-readable
    port = free_port()
    cfg = f"""
servers:
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    server_names: [localhost]
    tls: {{ certificate: "{cert}", key: "{key}" }}
    locations:
      - location: /
        return: {{ status: 200, body: "self-signed ok\\n" }}
"""
    with running(start_gateway(tmp_path, cfg, [port])):
        # The self-signed certificate is its own trust anchor; it names localhost and
        # 127.0.0.1, so both verify.
        ctx = ssl.create_default_context(cafile=str(cert))
        r, s = tls_get(port, ctx, "localhost", "localhost")
        assert r.status == 200 and r.body == b"self-signed ok\n"
        assert s.version in ("TLSv1.2", "TLSv1.3")
        ctx = ssl.create_default_context(cafile=str(cert))
        r, _ = tls_get(port, ctx, "127.0.0.1", "localhost")
        assert r.status == 200


def test_reload_picks_up_a_new_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    write_cert(ca, "old.test", tmp_path / "c.crt", tmp_path / "c.key")
    port = free_port()
    cfg = f"""
servers:
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    tls: {{ certificate: "{tmp_path}/c.crt", key: "{tmp_path}/c.key" }}
    locations:
      - location: /
        return: {{ status: 200, body: "ok" }}
"""
    with running(start_gateway(tmp_path, cfg, [port])) as gw:
        ctx = client_context(ca_file)
        ctx.check_hostname = False
        _, s = tls_get(port, ctx, "old.test", "old.test")
        assert s.names == {"old.test"}
        write_cert(ca, "new.test", tmp_path / "c.crt", tmp_path / "c.key")
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 3.0
        names: set[str] = set()
        while time.monotonic() < deadline:
            r, s = tls_get(port, ctx, "new.test", "new.test")
            assert r.status == 200  # served throughout the swap
            names = s.names
            if names == {"new.test"}:
                break
            time.sleep(0.05)
        assert names == {"new.test"}, gw.output()
        # A certificate that cannot be loaded is refused; the current one stays.
        (tmp_path / "c.key").write_text("not a key")
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 3.0
        while "reload refused" not in gw.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "reload refused" in gw.output()
        r, s = tls_get(port, ctx, "new.test", "new.test")
        assert r.status == 200 and s.names == {"new.test"}
