"""The connection phase: each accepted connection's 5-tuple is judged by the firewall rule
set before a byte is read; accepted ones are served, dropped ones closed at once, rejected
ones reset, and nothing from a refused peer reaches the upstream."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

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
