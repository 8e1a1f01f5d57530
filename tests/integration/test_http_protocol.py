"""HTTP/1.1 behaviour over real sockets: keep-alive, pipelining, chunked bodies both ways,
strict framing (every malformed request refused with 400 and never forwarded), and
hop-by-hop / X-Forwarded-* header handling."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ..support import closed_by_peer, free_port, read_response, start_origin
from .conftest import (
    RecordingOrigin,
    assert_not_forwarded,
    connect,
    echo_json,
    gateway,
    marker_request,
    raw_outcome,
    send_quietly,
)


@dataclass
class Setup:
    port: int  # proxies to the demo origin
    rport: int  # proxies to the recording origin
    rec: RecordingOrigin


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: RecordingOrigin) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("http-protocol")
    origin, oport = start_origin(tmp)
    port, rport = free_port(), free_port()
    cfg = f"""
upstreams:
  demo: {{ servers: ["127.0.0.1:{oport}"] }}
  rec: {{ servers: ["127.0.0.1:{recorder.port}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: demo }}
  - listen: "127.0.0.1:{rport}"
    locations:
      - location: /
        proxy: {{ upstream: rec }}
"""
    try:
        with gateway(tmp, cfg, [port, rport]):
            yield Setup(port, rport, recorder)
    finally:
        origin.stop()


def _req(path: str, extra: str = "", method: str = "GET", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: localhost\r\n{extra}\r\n".encode()


# -- keep-alive -----------------------------------------------------------------------------


def test_keep_alive_many_requests_on_one_connection(gw: Setup) -> None:
    with connect(gw.port) as s:
        buf = bytearray()
        for i in range(20):
            path = ["/", "/bytes/1000", f"/echo?i={i}", "/chunked/3"][i % 4]
            s.sendall(_req(path))
            r = read_response(s, buf)
            assert r.status == 200
            assert r.header("connection") is None or "close" not in r.header("connection").lower()
            if path == "/":
                assert r.body == b"Hello, world\n"
            elif path.startswith("/bytes/"):
                assert len(r.body) == 1000
            elif path.startswith("/echo"):
                assert echo_json(r)["target"] == f"/echo?i={i}"
            else:
                assert len(r.body) == 3 * 1024
        assert buf == b""
        # still open: one more request works
        s.sendall(_req("/"))
        assert read_response(s, buf).status == 200


def test_connection_close_is_honoured(gw: Setup) -> None:
    with connect(gw.port) as s:
        buf = bytearray()
        s.sendall(_req("/", "Connection: close\r\n"))
        r = read_response(s, buf)
        assert r.status == 200 and r.body == b"Hello, world\n"
        assert (r.header("connection") or "").lower() == "close"
        assert closed_by_peer(s, 3.0)


def test_http10_without_keep_alive_closes(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        r = read_response(s, bytearray())
        assert r.status == 200 and r.body == b"Hello, world\n"
        assert closed_by_peer(s, 3.0)


def test_http10_without_host_is_accepted(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        r = read_response(s, bytearray())
        assert r.status == 200 and r.body == b"Hello, world\n"


def test_http10_keep_alive(gw: Setup) -> None:
    with connect(gw.port) as s:
        buf = bytearray()
        for _ in range(3):
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            r = read_response(s, buf)
            assert r.status == 200 and r.body == b"Hello, world\n"
            assert (r.header("connection") or "").lower() == "keep-alive"
        s.sendall(b"GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n")  # no keep-alive: last one
        r = read_response(s, buf)
        assert r.status == 200
        assert closed_by_peer(s, 3.0)


def test_http10_client_gets_chunked_upstream_response_unchunked(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(b"GET /chunked/5 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        r = read_response(s, bytearray())  # close-delimited: reads to EOF
    assert r.status == 200
    assert r.header("transfer-encoding") is None
    assert r.header("content-length") is None
    assert (r.header("connection") or "").lower() == "close"
    assert r.body == (b"0123456789abcdef" * 64) * 5
    assert r.raw_head.startswith(b"HTTP/1.")


# -- pipelining -----------------------------------------------------------------------------


def test_pipelined_requests_answered_in_order(gw: Setup) -> None:
    body = os.urandom(5000)
    raw = (
        _req("/slow/300")
        + _req("/")
        + f"POST /echo?n=3 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
        "\r\n".encode()
        + body
        + _req("/bytes/70000")
        + _req("/slow/50?last")
    )
    with connect(gw.port) as s:
        s.sendall(raw)
        buf = bytearray()
        r1 = read_response(s, buf)
        r2 = read_response(s, buf)
        r3 = read_response(s, buf)
        r4 = read_response(s, buf)
        r5 = read_response(s, buf)
        assert buf == b""
    assert echo_json(r1)["target"] == "/slow/300"
    assert r2.body == b"Hello, world\n"
    doc = echo_json(r3)
    assert doc["target"] == "/echo?n=3"
    assert doc["method"] == "POST"
    assert doc["body_length"] == len(body)
    assert doc["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert len(r4.body) == 70000
    assert echo_json(r5)["target"] == "/slow/50?last"


def test_pipelined_chunked_body_then_request(gw: Setup) -> None:
    raw = (
        b"POST /slow/200 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + _req("/echo?after")
    )
    with connect(gw.port) as s:
        s.sendall(raw)
        buf = bytearray()
        r1 = read_response(s, buf)
        r2 = read_response(s, buf)
    d1 = echo_json(r1)
    assert d1["target"] == "/slow/200"
    assert d1["body_length"] == 11
    assert d1["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    d2 = echo_json(r2)
    assert d2["target"] == "/echo?after"
    assert d2["body_length"] == 0


def test_pipelined_requests_after_a_malformed_one_are_not_served(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    raw = (
        _req("/first")
        + b"GET /bad HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n"
        + _req("/never")
    )
    with connect(gw.rport) as s:
        s.sendall(raw)
        buf = bytearray()
        r1 = read_response(s, buf)
        assert r1.status == 200
        assert echo_json(r1)["target"] == "/first"
        r2 = read_response(s, buf)
        assert r2.status == 400
        assert closed_by_peer(s, 3.0)
    assert gw.rec.wait_for(lambda: len(gw.rec.lines_since(mark)) >= 1)
    time.sleep(0.1)
    lines = gw.rec.lines_since(mark)
    assert lines == ["GET /first HTTP/1.1"]


# -- chunked both ways ------------------------------------------------------------------------


def test_chunked_request_body_reaches_origin_intact(gw: Setup) -> None:
    rng = hashlib.sha256(b"seed")
    pieces = []
    for i in range(200):
        rng.update(b"%d" % i)
        n = int.from_bytes(rng.digest()[:2], "big") % 9000
        pieces.append(os.urandom(n))
    whole = b"".join(pieces)
    with connect(gw.port) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i, p in enumerate(pieces):
            if not p:
                continue
            ext = b";name=value" if i % 7 == 0 else b""
            s.sendall(b"%x%s\r\n%s\r\n" % (len(p), ext, p))
        s.sendall(b"0\r\nX-Trailer: t\r\n\r\n")
        r = read_response(s, bytearray())
    doc = echo_json(r)
    assert doc["body_length"] == len(whole)
    assert doc["body_sha256"] == hashlib.sha256(whole).hexdigest()
    names = {n.lower() for n, _ in doc["headers"]}  # type: ignore[union-attr]
    assert "x-trailer" not in names


def test_chunked_request_body_reframed_for_upstream(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        s.sendall(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;ext=1\r\nabc\r\n0\r\n\r\n"
        )
        r = read_response(s, bytearray())
    assert r.status == 200
    [got] = gw.rec.requests_since(mark)
    assert got.target == "/up"
    assert got.body_length == 3
    assert got.body_sha256 == hashlib.sha256(b"abc").hexdigest()
    te = [v.lower() for v in got.header_all("transfer-encoding")]
    cl = got.header_all("content-length")
    assert (te == ["chunked"] and not cl) or (cl == ["3"] and not te)


def test_chunked_response_reaches_client_intact(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(_req("/chunked/100"))
        r = read_response(s, bytearray())
    assert r.status == 200
    assert (r.header("transfer-encoding") or "").lower() == "chunked"
    assert r.body == (b"0123456789abcdef" * 64) * 100


def test_content_length_response_keeps_length(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(_req("/bytes/123456"))
        r = read_response(s, bytearray())
    assert r.header("content-length") == "123456"
    assert r.header("transfer-encoding") is None
    assert r.body == (b"0123456789abcdef" * 7800)[:123456]


def test_head_request_gets_no_body(gw: Setup) -> None:
    with connect(gw.port) as s:
        buf = bytearray()
        s.sendall(_req("/bytes/500", method="HEAD") + _req("/"))
        r = read_response(s, buf, head_request=True)
        assert r.status == 200
        r2 = read_response(s, buf)
        assert r2.body == b"Hello, world\n"


# -- malformed framing: 400, closed, never forwarded ----------------------------------------------

H = b"Host: localhost\r\n"
MALFORMED: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "cl-and-te": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        (400,),
    ),
    "te-and-cl": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n",
        (400,),
    ),
    "te-chunked-chunked": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        (400,),
    ),
    "te-twice": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (400,),
    ),
    "te-gzip-chunked": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        (400, 501),
    ),
    "te-unknown": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: foo\r\n\r\n0\r\n\r\n",
        (400, 501),
    ),
    "te-identity": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
        (400, 501),
    ),
    "te-chunked-in-quotes": (
        b"POST /x HTTP/1.1\r\n" + H + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n',
        (400, 501),
    ),
    "te-x-chunked": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        (400, 501),
    ),
    "two-different-cl": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        (400,),
    ),
    "duplicate-cl": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        (400,),
    ),
    "cl-list": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
        (400,),
    ),
    "cl-negative": (b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", (400,)),
    "cl-plus": (b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", (400,)),
    "cl-hex": (b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", (400,)),
    "obs-fold": (
        b"GET /x HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n",
        (400,),
    ),
    "obs-fold-tab": (
        b"GET /x HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n",
        (400,),
    ),
    "space-before-colon": (
        b"GET /x HTTP/1.1\r\n" + H + b"X-A : v\r\n\r\n",
        (400,),
    ),
    "space-before-colon-te": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        (400,),
    ),
    "tab-before-colon": (
        b"GET /x HTTP/1.1\r\n" + H + b"X-A\t: v\r\n\r\n",
        (400,),
    ),
    "no-colon": (b"GET /x HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", (400,)),
    "space-in-name": (b"GET /x HTTP/1.1\r\n" + H + b"Bad Header: x\r\n\r\n", (400,)),
    "bare-lf-head": (b"GET /x HTTP/1.1\n" + b"Host: localhost\n\n", (400,)),
    "missing-host": (b"GET /x HTTP/1.1\r\n\r\n", (400,)),
    "two-hosts": (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", (400,)),
    "two-same-hosts": (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", (400,)),
    "host-with-space": (b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", (400,)),
    "host-with-slash": (b"GET /x HTTP/1.1\r\nHost: exa/mple\r\n\r\n", (400,)),
    "host-with-at": (b"GET /x HTTP/1.1\r\nHost: user@example\r\n\r\n", (400,)),
    "host-bad-port": (b"GET /x HTTP/1.1\r\nHost: example:80x\r\n\r\n", (400,)),
    "host-empty-http11": (b"GET /x HTTP/1.1\r\nHost:\r\n\r\n", (400,)),
    "http09": (b"GET /\r\n", (400,)),
    "http09-path": (b"GET /x\r\n\r\n", (400,)),
    "http10-chunked": (
        b"POST /x HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        (400,),
    ),
    "http12": (b"GET /x HTTP/1.2\r\n" + H + b"\r\n", (400, 505)),
    "http20": (b"GET /x HTTP/2.0\r\n" + H + b"\r\n", (400, 505)),
    "http110": (b"GET /x HTTP/1.10\r\n" + H + b"\r\n", (400, 505)),
    "http-lowercase": (b"GET /x http/1.1\r\n" + H + b"\r\n", (400, 505)),
    "version-garbage": (b"GET /x HTTP/x.y\r\n" + H + b"\r\n", (400, 505)),
    "nul-in-header-value": (b"GET /x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", (400,)),
    "nul-in-target": (b"GET /x\x00y HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    "cr-in-header-value": (b"GET /x HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", (400,)),
    "expect-unknown": (b"GET /x HTTP/1.1\r\n" + H + b"Expect: something\r\n\r\n", (417,)),
    "fragment-in-target": (b"GET /x#frag HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    "space-in-target": (b"GET /x y HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    "asterisk-get": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    "relative-target": (b"GET x HTTP/1.1\r\n" + H + b"\r\n", (400,)),
    # Request smuggling classics: the body hides a second request a lax backend would see.
    "smuggle-cl-te": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nSMUGGLED",
        (400,),
    ),
    "smuggle-te-cl": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5c\r\nGPOST /smuggled HTTP/1.1\r\nHost: localhost\r\nContent-Length: 15\r\n\r\n"
        b"x=1\r\n0\r\n\r\n",
        (400,),
    ),
    "smuggle-te-te-obfuscated": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n"
        b"\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        (400,),
    ),
    "smuggle-te-space-value": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 3\r\n"
        b"\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        (400,),
    ),
    "smuggle-te-cl-newline-name": (
        b"POST /x HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n"
        b"Foo: bar\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        (400,),
    ),
}


# Malformed chunked framing in the body: the head was valid, so the request may already be
# on its way upstream when the body turns out malformed (bodies stream, never buffered
# whole). The gateway must then answer 400, close, and abort the upstream request so that
# the origin never receives a complete request, nor anything after it.
BODY_MALFORMED: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "bare-lf-after-chunk-size": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        (400,),
    ),
    "bare-lf-after-chunk-data": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
        (400,),
    ),
    "bare-lf-in-chunk-ext": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;a=b\nabc\r\n0\r\n\r\n",
        (400,),
    ),
    "bare-lf-last-chunk": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\n\n",
        (400,),
    ),
    "invalid-chunk-size": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        (400,),
    ),
    "chunk-size-overflow": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        (400, 413),
    ),
    "chunk-data-too-long": (
        b"POST /x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        (400,),
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_request_refused_closed_and_never_forwarded(gw: Setup, name: str) -> None:
    raw, statuses = MALFORMED[name]
    mark = gw.rec.snapshot()
    out = raw_outcome(gw.rport, raw, timeout=3.0)
    assert out.response is not None, f"no response: {out.error}"
    assert out.status in statuses, f"{name}: got {out.status}"
    assert out.closed, f"{name}: connection left open after {out.status}"
    assert_not_forwarded(gw.rport, gw.rec, mark)


@pytest.mark.parametrize("name", sorted(BODY_MALFORMED))
def test_malformed_chunked_body_refused_and_never_completed_upstream(gw: Setup, name: str) -> None:
    raw, statuses = BODY_MALFORMED[name]
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        s.sendall(raw[: raw.index(b"\r\n\r\n") + 4])
        time.sleep(0.1)  # the head alone: it may be forwarded before the body is seen
        send_quietly(s, raw[raw.index(b"\r\n\r\n") + 4 :] + _req("/after"))
        r = read_response(s, bytearray())
        assert r.status in statuses, f"{name}: got {r.status}"
        assert closed_by_peer(s, 3.0)
    marker_request(gw.rport, gw.rec)
    got = gw.rec.requests_since(mark)
    assert [q.target for q in got if not q.target.startswith("/__marker/")] == []
    assert all(line.startswith(("POST /x ", "GET /__marker/")) for line in gw.rec.lines_since(mark))


@pytest.mark.parametrize("name", sorted(BODY_MALFORMED))
def test_malformed_chunked_body_in_one_write_never_forwarded(gw: Setup, name: str) -> None:
    """When the whole malformed request is in the gateway's hands before it forwards
    anything, not even its head may reach the origin (issue 2: "never forwarded")."""
    raw, statuses = BODY_MALFORMED[name]
    mark = gw.rec.snapshot()
    out = raw_outcome(gw.rport, raw, timeout=3.0)
    assert out.status in statuses, f"{name}: got {out.status} {out.error}"
    assert out.closed
    assert_not_forwarded(gw.rport, gw.rec, mark)


@pytest.mark.parametrize("name", ["cl-and-te", "obs-fold", "missing-host", "smuggle-te-cl"])
def test_malformed_request_after_a_good_one_on_the_same_connection(gw: Setup, name: str) -> None:
    raw, statuses = MALFORMED[name]
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        buf = bytearray()
        s.sendall(_req("/good"))
        assert read_response(s, buf).status == 200
        send_quietly(s, raw)
        r = read_response(s, buf)
        assert r.status in statuses
        assert closed_by_peer(s, 3.0)
    lines = gw.rec.lines_since(mark)
    assert lines == ["GET /good HTTP/1.1"]
    mark = gw.rec.snapshot()
    assert_not_forwarded(gw.rport, gw.rec, mark)


def test_oversized_chunk_extension_refused(gw: Setup) -> None:
    """100 KB of chunk extension: refused (400, or 431 as an oversized section), closed,
    never forwarded as a complete request."""
    mark = gw.rec.snapshot()
    raw = (
        b"POST /ext HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"3;" + b"a" * 100_000 + b"\r\nabc\r\n0\r\n\r\n"
    )
    with connect(gw.rport) as s:
        s.sendall(raw[:200])
        time.sleep(0.05)
        send_quietly(s, raw[200:])
        try:
            r = read_response(s, bytearray())
            status: int | None = r.status
        except (ConnectionError, OSError):
            status = None
        assert closed_by_peer(s, 3.0)
    assert status in (400, 413, 431), f"oversized chunk extension answered {status}"
    time.sleep(0.1)
    assert not [r for r in gw.rec.requests_since(mark) if r.target == "/ext"]


def test_smuggled_request_never_reaches_origin(gw: Setup) -> None:
    """Classic CL.TE and TE.CL payloads on a kept-alive connection: neither the smuggled
    request nor the carrier reaches the origin."""
    for name in ("smuggle-cl-te", "smuggle-te-cl", "smuggle-te-te-obfuscated"):
        raw, _ = MALFORMED[name]
        mark = gw.rec.snapshot()
        with connect(gw.rport) as s:
            send_quietly(s, raw + _req("/after"))
            r = read_response(s, bytearray())
            assert r.status == 400
            assert closed_by_peer(s, 3.0)
        assert_not_forwarded(gw.rport, gw.rec, mark)
        assert not [t for t in gw.rec.targets() if "smuggled" in t.lower()]


def test_upgrade_request_not_relayed_as_upgrade(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        r = read_response(s, bytearray())
        assert r.status != 101
        assert closed_by_peer(s, 3.0)
    for got in gw.rec.requests_since(mark):
        assert "upgrade" not in got.header_names()
        assert "connection" not in got.header_names() or all(
            "upgrade" not in v.lower() for v in got.header_all("connection")
        )


# -- hop-by-hop and X-Forwarded-* -------------------------------------------------------------


def _forwarded(gw: Setup, extra: bytes, path: str = "/hdr") -> tuple[int, dict[str, list[str]]]:
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: example.test:8080\r\n".encode() + extra + b"\r\n")
        r = read_response(s, bytearray())
    [got] = [q for q in gw.rec.requests_since(mark) if q.target == path]
    headers: dict[str, list[str]] = {}
    for n, v in got.headers:
        headers.setdefault(n.lower(), []).append(v)
    return r.status, headers


def test_x_forwarded_headers_set(gw: Setup) -> None:
    status, h = _forwarded(gw, b"")
    assert status == 200
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] in (["example.test"], ["example.test:8080"])
    assert h["host"] == ["example.test:8080"]


def test_client_x_forwarded_for_is_appended_to(gw: Setup) -> None:
    status, h = _forwarded(gw, b"X-Forwarded-For: 203.0.113.7\r\n")
    assert status == 200
    assert h["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    status, h = _forwarded(
        gw, b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.1\r\n"
    )
    assert h["x-forwarded-for"] == ["203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1"]


def test_client_x_forwarded_proto_and_host_are_replaced(gw: Setup) -> None:
    status, h = _forwarded(
        gw, b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nX-Real-IP: 1.2.3.4\r\n"
    )
    assert status == 200
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] in (["example.test"], ["example.test:8080"])
    assert h.get("x-real-ip", ["127.0.0.1"]) == ["127.0.0.1"]


@pytest.mark.parametrize(
    "conn",
    [
        "X-Forwarded-For",
        "x-forwarded-for, X-Real-IP",
        "X-Real-IP",
        "close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
    ],
)
def test_connection_header_cannot_erase_proxy_headers(gw: Setup, conn: str) -> None:
    status, h = _forwarded(gw, f"Connection: {conn}\r\n".encode())
    assert status == 200
    assert h.get("x-forwarded-for") == ["127.0.0.1"]
    assert h.get("x-forwarded-proto") == ["http"]
    assert "x-forwarded-host" in h
    assert "connection" not in h or all(
        "forwarded" not in v.lower() and "real-ip" not in v.lower() for v in h["connection"]
    )
    if "x-real-ip" in h:
        assert h["x-real-ip"] == ["127.0.0.1"]


def test_connection_header_with_client_xff_keeps_the_chain(gw: Setup) -> None:
    status, h = _forwarded(gw, b"Connection: X-Forwarded-For\r\nX-Forwarded-For: 203.0.113.7\r\n")
    assert status == 200
    assert h.get("x-forwarded-for") in (["203.0.113.7, 127.0.0.1"], ["127.0.0.1"])


def test_hop_by_hop_request_headers_not_forwarded(gw: Setup) -> None:
    status, h = _forwarded(
        gw,
        b"Connection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: secret\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
        b"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Trailer: X-T\r\nX-End-To-End: kept\r\n",
    )
    assert status == 200
    for name in (
        "x-custom-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
        "trailer",
    ):
        assert name not in h, f"{name} was forwarded: {h.get(name)}"
    assert "connection" not in h or all("x-custom-hop" not in v.lower() for v in h["connection"])
    assert h["x-end-to-end"] == ["kept"]


def test_hop_by_hop_response_headers_not_forwarded(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(_req("/headers"))
        r = read_response(s, bytearray())
    assert r.status == 200 and r.body == b"ok"
    assert r.header("x-secret") is None
    assert r.header("keep-alive") is None
    for v in r.header_all("connection"):
        assert "x-secret" not in v.lower()
    assert r.header("x-powered-by") == "Express"  # an end-to-end field is kept


def test_response_through_proxy_keeps_connection_usable(gw: Setup) -> None:
    """The origin's ``Connection: X-Secret`` does not leak into the client connection state."""
    with connect(gw.port) as s:
        buf = bytearray()
        for _ in range(3):
            s.sendall(_req("/headers"))
            r = read_response(s, buf)
            assert r.status == 200
        s.sendall(_req("/"))
        assert read_response(s, buf).body == b"Hello, world\n"


def test_expect_100_continue(gw: Setup) -> None:
    body = b"x" * 1000
    with connect(gw.port) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        buf = bytearray()
        s.settimeout(3.0)
        first = read_response(s, buf)
        if first.status == 100:
            s.sendall(body)
            r = read_response(s, buf)
        else:  # pragma: no cover - a gateway may answer without 100
            raise AssertionError(f"expected 100 Continue, got {first.status}")
    doc = echo_json(r)
    assert doc["body_length"] == 1000
    names = {n.lower() for n, _ in doc["headers"]}  # type: ignore[union-attr]
    assert "expect" not in names


def test_absolute_form_target(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.rport) as s:
        s.sendall(b"GET http://example.test/abs/./x?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n")
        r = read_response(s, bytearray())
    assert r.status == 200
    [got] = gw.rec.requests_since(mark)
    assert got.target == "/abs/x?q=1"


def test_half_close_after_request_still_answered(gw: Setup) -> None:
    with connect(gw.port) as s:
        s.sendall(_req("/slow/100"))
        s.shutdown(socket.SHUT_WR)
        r = read_response(s, bytearray())
        assert r.status == 200
        assert closed_by_peer(s, 3.0)
