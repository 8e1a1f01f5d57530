"""The connection phase: each accepted connection's 5-tuple is judged by the firewall rule
set before a byte is read (on TLS listeners, before the handshake); accepted ones are
served, dropped ones closed at once, rejected ones reset, and nothing from a refused peer
reaches the upstream."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trustme

from ..support import Proc, free_port, read_response, running, start_gateway


def _connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


@pytest.fixture
def gateway(tmp_path: Path, origin: tuple[Proc, int]) -> tuple[int, int]:
    _, oport = origin
    port = free_port()
    (tmp_path / "rules.yaml").write_text(
        f"""
default: drop
rules:
  - id: reset-bad
    action: reject
    reject_with: tcp-reset
    proto: tcp
    src: 127.0.0.3
  - id: drop-bad
    action: drop
    src: 127.0.0.2
  - id: local-web
    action: accept
    proto: tcp
    src: 127.0.0.0/8
    dport: {port}
"""
    )
    cfg = f"""
firewall: {{ rules: rules.yaml }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    proc = start_gateway(tmp_path, cfg, [port])
    with running(proc):
        yield port, oport


def test_accepted_peer_is_served(gateway: tuple[int, int]) -> None:
    port, _ = gateway
    with _connect_from("127.0.0.1", port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = read_response(s, bytearray())
    assert r.status == 200
    assert r.body == b"Hello, world\n"


def test_dropped_peer_is_closed_before_anything_is_read(gateway: tuple[int, int]) -> None:
    port, _ = gateway
    with _connect_from("127.0.0.2", port) as s:
        try:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert data == b""  # closed, no HTTP answer


def test_rejected_peer_is_reset(gateway: tuple[int, int]) -> None:
    port, _ = gateway
    with _connect_from("127.0.0.3", port) as s, pytest.raises(ConnectionResetError):
        for _ in range(50):  # bounded: the reset arrives at once
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            if not s.recv(4096):
                break


def test_every_decision_is_counted_per_rule(tmp_path: Path, origin: tuple[Proc, int]) -> None:
    _, oport = origin
    port = free_port()
    (tmp_path / "rules.yaml").write_text(
        f"""
default: drop
rules:
  - id: drop-two
    action: drop
    src: 127.0.0.2
  - id: web
    action: accept
    proto: tcp
    dport: {port}
    src: 127.0.0.1
"""
    )
    cfg = f"""
firewall: {{ rules: rules.yaml }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    proc = start_gateway(tmp_path, cfg, [port])
    with running(proc):
        for source in ("127.0.0.2", "127.0.0.2", "127.0.0.4"):
            with _connect_from(source, port) as s:
                try:
                    assert s.recv(100) == b""
                except ConnectionResetError:
                    pass
    out = proc.output()
    # wait_port's own probe connection from 127.0.0.1 is the one accepted by "web".
    assert "firewall:drop-two=2" in out
    assert "firewall:default=1" in out
    assert "firewall:web=" in out


def _client_hello() -> bytes:
    """The bytes a TLS client sends first (its ClientHello), made by the ssl module."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="a.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture
def tls_gateway(tmp_path: Path, origin: tuple[Proc, int]) -> tuple[int, Path]:
    _, oport = origin
    port = free_port()
    ca = trustme.CA()
    cert = ca.issue_cert("a.test")
    cert.private_key_pem.write_to_path(str(tmp_path / "a.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "a.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "rules.yaml").write_text(
        f"""
default: drop
rules:
  - {{ id: reset-bad, action: reject, reject_with: tcp-reset, proto: tcp, src: 127.0.0.3 }}
  - {{ id: drop-bad, action: drop, src: 127.0.0.2 }}
  - {{ id: local-tls, action: accept, proto: tcp, src: 127.0.0.0/8, dport: {port} }}
"""
    )
    cfg = f"""
firewall: {{ rules: rules.yaml }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: [{{ address: "127.0.0.1:{port}", tls: true }}]
    tls: {{ certificate: a.crt, key: a.key }}
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    proc = start_gateway(tmp_path, cfg, [port])
    with running(proc):
        yield port, tmp_path / "ca.pem"


def test_tls_listener_serves_an_accepted_peer(tls_gateway: tuple[int, Path]) -> None:
    port, ca = tls_gateway
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        _connect_from("127.0.0.1", port) as raw,
        ctx.wrap_socket(raw, server_hostname="a.test") as s,
    ):
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        r = read_response(s, bytearray())
    assert (r.status, r.body) == (200, b"Hello, world\n")


def test_tls_listener_drops_before_the_handshake(tls_gateway: tuple[int, Path]) -> None:
    """A dropped peer's ClientHello is never answered: the connection is closed without a
    single byte of ServerHello."""
    port, _ = tls_gateway
    with _connect_from("127.0.0.2", port) as s:
        try:
            s.sendall(_client_hello())
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert data == b""


def test_tls_listener_resets_a_rejected_peer(tls_gateway: tuple[int, Path]) -> None:
    port, _ = tls_gateway
    hello = _client_hello()
    with _connect_from("127.0.0.3", port) as s, pytest.raises(ConnectionResetError):
        for _ in range(50):  # bounded: the reset arrives at once
            s.sendall(hello)
            if not s.recv(4096):
                break
