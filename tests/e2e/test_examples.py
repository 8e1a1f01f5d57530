"""The example configs, served as a user would run them (ports moved to free ones): the
quickstart in front of the demo origin, the reverse proxy in front of an Express-like API
(scenario 4), and the API gateway behind a load balancer."""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..support import Response, free_port, get, running, start_gateway, start_origin


def _ported(text: str, ports: dict[str, int]) -> str:
    """The example's text with each ``host:port`` moved to a free port."""
    for old, new in ports.items():
        assert old in text, f"the example no longer mentions {old}"
        text = text.replace(old, f"{old.rsplit(':', 1)[0]}:{new}")
    return text


def test_quickstart(tmp_path: Path, examples_copy: Path) -> None:
    origin, oport = start_origin(tmp_path)
    port = free_port()
    text = (examples_copy / "quickstart.yaml").read_text()
    cfg = _ported(text, {"127.0.0.1:8080": port, "127.0.0.1:3000": oport})
    with running(origin), running(start_gateway(examples_copy, cfg, [port], name="quick")):
        r = get(port, "/")
        assert (r.status, r.body) == (200, b"Hello, world\n")
        assert r.header("X-Content-Type-Options") == "nosniff"
        r = get(port, "/healthz")
        assert (r.status, r.body) == (200, b"ok\n")
        r = get(port, "/old/page")
        assert r.status == 301
        assert r.header("Location") == "http://localhost/new/"
        r = get(port, "/headers")  # the origin sends X-Powered-By: Express
        assert r.status == 200
        assert r.header("X-Powered-By") is None


class _ExpressLike(BaseHTTPRequestHandler):
    """A Node-like API: answers every request with what it saw, plus the headers that
    give its stack away (X-Powered-By: Express and a Server header)."""

    protocol_version = "HTTP/1.1"
    server_version = "Express-ish/4"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _API(ThreadingHTTPServer):
    """The API server; ``stop`` also closes the keep-alive connections it is serving."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExpressLike)
        self.open: set[socket.socket] = set()
        self.stopped = False

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open.add(request)
        super().process_request(request, client_address)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.shutdown()
        self.server_close()
        for sock in list(self.open):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def api() -> Iterator[_API]:
    server = _API()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.stop()


def _https(
    port: int,
    cafile: Path,
    path: str,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> Response:
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection(
        "localhost",
        port,
        context=ctx,
        timeout=10,
        source_address=(source, 0) if source else None,
    )
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        version = conn.sock.version() if conn.sock else None
    finally:
        conn.close()
    out = Response(resp.status, resp.reason, list(resp.getheaders()), body)
    out.raw_head = (version or "").encode()
    return out


def test_reverse_proxy_api(tmp_path: Path, examples_copy: Path, api: _API) -> None:
    http_port, tls_port = free_port(), free_port()
    api_port = int(api.server_address[1])
    text = (examples_copy / "reverse-proxy-api.yaml").read_text()
    cfg = _ported(
        text,
        {"127.0.0.1:8080": http_port, "127.0.0.1:8443": tls_port, "127.0.0.1:3000": api_port},
    ).replace("$host:8443", f"$host:{tls_port}")
    ca = examples_copy / "certs" / "cert.pem"
    gateway = start_gateway(examples_copy, cfg, [http_port, tls_port], name="api-test")
    with running(gateway):
        # Plain HTTP: a 301 to https that keeps host and URI.
        r = get(http_port, "/api/users?page=2")
        assert r.status == 301
        assert r.header("Location") == f"https://localhost:{tls_port}/api/users?page=2"

        # The API, over TLS 1.2+, with the backend's give-away headers removed.
        r = _https(tls_port, ca, "/api/users?page=2", {"X-Forwarded-For": "203.0.113.9"})
        assert r.status == 200, r.body
        assert r.raw_head in (b"TLSv1.2", b"TLSv1.3")
        assert r.header("X-Powered-By") is None
        assert r.header("Server") is None
        seen = json.loads(r.body)
        assert seen["path"] == "/api/users?page=2"
        sent = {k.lower(): v for k, v in seen["headers"].items()}
        assert sent["x-forwarded-proto"] == "https"
        assert sent["x-real-ip"] == "127.0.0.1"  # the real peer, not the client's claim
        assert sent["x-forwarded-for"].endswith("127.0.0.1")

        # Internal paths, however they are spelled.
        for path in (
            "/internal",
            "/internal/users",
            "/metrics",
            "/health/debug",
            "/%69nternal",
            "//internal",
            "/api/../internal",
        ):
            r = _https(tls_port, ca, path)
            assert r.status == 403, path

        # Static files with long-lived caching; nothing outside the root.
        r = _https(tls_port, ca, "/static/")
        assert r.status == 200
        assert b"Served by ramparts" in r.body
        r = _https(tls_port, ca, "/static/style.css")
        assert r.status == 200
        assert r.body == (examples_copy / "static" / "style.css").read_bytes()
        assert r.header("Cache-Control") == "public, immutable"
        expires = email.utils.parsedate_to_datetime(r.header("Expires") or "")
        ahead = expires - datetime.datetime.now(datetime.UTC)
        assert abs(ahead.total_seconds() - 30 * 86400) < 120
        r = _https(tls_port, ca, "/static/../reverse-proxy-api.yaml")
        assert r.status == 404
        assert b"upstreams" not in r.body

        # /api/ is rate limited per client: 30r/m, burst 10, nodelay. One /api/ request went
        # through above, so 10 more pass and the next is refused with 429 and Retry-After.
        got = [_https(tls_port, ca, "/api/n") for _ in range(11)]
        assert [r.status for r in got] == [200] * 10 + [429]
        assert int(got[-1].header("Retry-After") or 0) > 0
        # another client has its own budget
        assert _https(tls_port, ca, "/api/n", source="127.0.0.2").status == 200

        # The backend goes away: 502, not a hang.
        api.stop()
        r = _https(tls_port, ca, "/api/users", source="127.0.0.4")  # a client within its limit
        assert r.status == 502


def test_api_gateway(tmp_path: Path, examples_copy: Path, api: _API) -> None:
    """examples/api-gateway.yaml behind a load balancer (here 127.0.0.1 stands in for the
    example's 10.0.0.2): the client address from X-Forwarded-For, the private range for
    internal paths, a per-client rate limit, hidden and added headers, a JSON log."""
    http_port, tls_port = free_port(), free_port()
    text = (examples_copy / "api-gateway.yaml").read_text()
    cfg = _ported(
        text,
        {
            "127.0.0.1:8080": http_port,
            "127.0.0.1:8443": tls_port,
            "127.0.0.1:3000": int(api.server_address[1]),
        },
    ).replace("$host:8443", f"$host:{tls_port}")
    assert "from: [10.0.0.2]" in cfg
    cfg = cfg.replace("from: [10.0.0.2]", "from: [127.0.0.1]")
    ca = examples_copy / "certs" / "cert.pem"

    def via_lb(path: str, client: str) -> Response:
        return _https(tls_port, ca, path, {"X-Forwarded-For": client})

    gateway = start_gateway(examples_copy, cfg, [http_port, tls_port], name="gw-test")
    with running(gateway):
        assert get(http_port, "/api/x").status == 301

        r = via_lb("/api/users", "203.0.113.9")
        assert r.status == 200
        assert r.header("Server") is None and r.header("X-Powered-By") is None
        assert r.header("Strict-Transport-Security") == "max-age=31536000; includeSubDomains"
        assert r.header("X-Content-Type-Options") == "nosniff"
        sent = {k.lower(): v for k, v in json.loads(r.body)["headers"].items()}
        assert sent["x-real-ip"] == "203.0.113.9"  # the client, not the load balancer

        # internal paths: the client's address decides, not the load balancer's
        assert via_lb("/internal/x", "10.1.2.3").status == 200
        denied = via_lb("/metrics", "203.0.113.9")
        assert denied.status == 403
        # the header rules hold for the gateway's own answers: no Server, HSTS kept
        assert denied.header("Server") is None
        assert denied.header("Strict-Transport-Security")
        assert via_lb("/health/debug", "192.168.1.1").status == 403
        # a peer that is not the load balancer cannot claim a private address
        spoof = _https(tls_port, ca, "/internal/x", {"X-Forwarded-For": "10.1.2.3"}, "127.0.0.3")
        assert spoof.status == 403

        # per client: 203.0.113.9 has used 1 of its 11; 10 more, then 429
        statuses = [via_lb("/api/r", "203.0.113.9").status for _ in range(11)]
        assert statuses == [200] * 10 + [429]
        assert via_lb("/api/r", "203.0.113.10").status == 200
    log = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    refused = [r for r in log if r["status"] in (403, 429)]
    assert {r["decided_by"] for r in refused} == {"access:public", "ratelimit:per_client"}
    limited = [r for r in refused if r["status"] == 429]
    assert limited[0]["client"] == "203.0.113.9"
    assert str(limited[0]["peer"]).startswith("127.0.0.1:")
