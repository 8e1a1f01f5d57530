"""The quickest end-to-end check: a request through the gateway reaches the origin."""

from __future__ import annotations

from pathlib import Path

from ..support import free_port, get, running, start_gateway


def test_proxy_round_trip(tmp_path: Path, origin: tuple[object, int]) -> None:
    _, oport = origin
    port = free_port()
    cfg = f"""
upstreams:
  app: {{ servers: ["127.0.0.1:{oport}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: app }}
"""
    with running(start_gateway(tmp_path, cfg, [port])):
        r = get(port, "/")
        assert r.status == 200
        assert r.body == b"Hello, world\n"
        r = get(port, "/echo?q=1")
        assert r.status == 200
        assert b'"target": "/echo?q=1"' in r.body
