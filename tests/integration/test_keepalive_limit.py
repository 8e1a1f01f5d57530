"""keepalive_requests: the last response a connection may carry says Connection: close,
and the gateway closes only after it (never a silent close a client reads as an error)."""

from __future__ import annotations

import socket
from pathlib import Path

from ..support import Proc, closed_by_peer, free_port, read_response, running, start_gateway


def test_last_allowed_request_is_answered_with_connection_close(
    tmp_path: Path, origin: tuple[Proc, int]
) -> None:
    _, oport = origin
    port = free_port()
    cfg = f"""
limits: {{ keepalive_requests: 3 }}
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    with (
        running(start_gateway(tmp_path, cfg, [port])),
        socket.create_connection(("127.0.0.1", port), timeout=5) as s,
    ):
        buf = bytearray()
        seen = []
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            r = read_response(s, buf)
            assert r.status == 200
            seen.append(r.header("connection"))
        assert seen == [None, None, "close"]
        assert closed_by_peer(s, 3.0)
