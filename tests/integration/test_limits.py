"""Client limits over real sockets: each answered with its own status (431, 414, 413, 408)
or a close, before anything reaches the upstream; idle, slow and surplus connections are
closed."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ..support import closed_by_peer, free_port, read_response
from .conftest import (
    Outcome,
    RecordingOrigin,
    assert_not_forwarded,
    connect,
    gateway,
    marker_request,
    raw_outcome,
    send_quietly,
)

MAX_HEADER_SIZE = 1024
MAX_HEADERS = 10
MAX_URI = 256
MAX_BODY = 1000
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.5


@dataclass
class Setup:
    port: int
    rec: RecordingOrigin


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, recorder: RecordingOrigin) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    cfg = f"""
limits:
  max_header_size: {MAX_HEADER_SIZE}
  max_headers: {MAX_HEADERS}
  max_uri_length: {MAX_URI}
  max_body_size: {MAX_BODY}
  client_header_timeout: {HEADER_TIMEOUT}s
  client_body_timeout: {BODY_TIMEOUT}s
  keepalive_timeout: {KEEPALIVE_TIMEOUT}s
upstreams:
  rec: {{ servers: ["127.0.0.1:{recorder.port}"] }}
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        proxy: {{ upstream: rec }}
      - location: /big/
        max_body_size: 1m
        proxy: {{ upstream: rec }}
"""
    with gateway(tmp, cfg, [port]):
        yield Setup(port, recorder)


def _head(path: str = "/x", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


def _refused(gw: Setup, raw: bytes, statuses: tuple[int, ...]) -> Outcome:
    mark = gw.rec.snapshot()
    out = raw_outcome(gw.port, raw, timeout=5.0)
    assert out.response is not None, f"no response: {out.error}"
    assert out.status in statuses, f"got {out.status}"
    assert out.closed, "connection left open"
    assert_not_forwarded(gw.port, gw.rec, mark)
    return out


def test_within_limits_is_served(gw: Setup) -> None:
    headers = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS - 2))  # + Host = 9 fields
    raw = _head("/" + "a" * (MAX_URI - 10), headers)
    assert len(raw) < MAX_HEADER_SIZE
    out = raw_outcome(gw.port, raw + _head("/close", "Connection: close\r\n"))
    assert out.status == 200
    body = b"b" * MAX_BODY
    out = raw_outcome(
        gw.port,
        b"POST /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body),
    )
    assert out.status == 200


def test_header_too_large_in_one_write(gw: Setup) -> None:
    raw = _head("/x", "X-Big: " + "v" * (MAX_HEADER_SIZE * 2) + "\r\n")
    _refused(gw, raw, (431,))


def test_header_too_large_many_small_fields_in_one_write(gw: Setup) -> None:
    raw = _head("/x", "".join(f"X-{i}: " + "v" * 200 + "\r\n" for i in range(MAX_HEADERS - 3)))
    assert len(raw) > MAX_HEADER_SIZE
    _refused(gw, raw, (431,))


def test_header_too_large_sent_in_pieces(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    raw = _head("/x", "X-Big: " + "v" * (MAX_HEADER_SIZE * 2) + "\r\n")
    with connect(gw.port) as s:
        for i in range(0, len(raw), 300):
            send_quietly(s, raw[i : i + 300])
            time.sleep(0.02)
        r = read_response(s, bytearray())
        assert r.status == 431
        assert closed_by_peer(s, 3.0)
    assert_not_forwarded(gw.port, gw.rec, mark)


def test_header_too_large_endless_field(gw: Setup) -> None:
    """A head that never ends is cut off at the limit, not read for ever."""
    with connect(gw.port) as s:
        send_quietly(s, b"GET /x HTTP/1.1\r\nHost: localhost\r\nX-Endless: ")
        status = None
        for _ in range(200):  # up to 200 * 512 bytes = 100x the limit
            try:
                s.sendall(b"v" * 512)
            except OSError:
                break
            time.sleep(0.002)
        with contextlib.suppress(ConnectionError, OSError):
            status = read_response(s, bytearray()).status
        assert status == 431
        assert closed_by_peer(s, 3.0)


def test_too_many_headers(gw: Setup) -> None:
    raw = _head("/x", "".join(f"X-{i}: v\r\n" for i in range(MAX_HEADERS + 5)))
    assert len(raw) < MAX_HEADER_SIZE
    _refused(gw, raw, (431,))


def test_uri_too_long(gw: Setup) -> None:
    _refused(gw, _head("/" + "u" * (MAX_URI + 10)), (414,))


def test_uri_too_long_in_query(gw: Setup) -> None:
    _refused(gw, _head("/x?" + "q" * (MAX_URI + 10)), (414,))


def test_content_length_over_limit(gw: Setup) -> None:
    raw = b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    _refused(gw, raw + b"x" * (MAX_BODY + 1), (413,))


def test_content_length_over_limit_refused_before_body_is_sent(gw: Setup) -> None:
    """413 comes as soon as the head is read; the client need not send the body."""
    mark = gw.rec.snapshot()
    with connect(gw.port) as s:
        s.sendall(b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n")
        r = read_response(s, bytearray())
        assert r.status == 413
        assert closed_by_peer(s, 3.0)
    assert_not_forwarded(gw.port, gw.rec, mark)


def test_chunked_body_growing_over_limit(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.port) as s:
        s.sendall(b"POST /grow HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        status = None
        for _ in range(20):  # 20 * 200 bytes: well over the 1000-byte limit
            try:
                s.sendall(b"c8\r\n" + b"z" * 200 + b"\r\n")
            except OSError:
                break
            time.sleep(0.01)
        send_quietly(s, b"0\r\n\r\n")
        with contextlib.suppress(ConnectionError, OSError):
            status = read_response(s, bytearray()).status
        assert status == 413
        assert closed_by_peer(s, 3.0)
    marker_request(gw.port, gw.rec)
    # The head may have been streamed upstream already; the request must never complete.
    assert [r.target for r in gw.rec.requests_since(mark) if r.target == "/grow"] == []


def test_chunked_body_over_limit_in_one_write(gw: Setup) -> None:
    body = b"".join(b"c8\r\n" + b"z" * 200 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
    mark = gw.rec.snapshot()
    out = raw_outcome(
        gw.port,
        b"POST /grow1 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
    )
    assert out.status == 413
    assert out.closed
    marker_request(gw.port, gw.rec)
    assert [r.target for r in gw.rec.requests_since(mark) if r.target == "/grow1"] == []


def _wait_outcome(s: socket.socket, timeout: float) -> tuple[int | None, bool, float]:
    """Wait for a response and/or a close: (status or None, closed, seconds waited)."""
    t0 = time.monotonic()
    s.settimeout(timeout)
    buf = bytearray()
    status = None
    try:
        status = read_response(s, buf).status
    except (ConnectionError, OSError):
        return None, True, time.monotonic() - t0
    return status, closed_by_peer(s, 2.0), time.monotonic() - t0


def test_slow_head_slowloris(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.port) as s:
        s.sendall(b"GET /slowloris HTTP/1.1\r\nHost: localhost\r\n")
        status, closed, waited = None, False, 0.0
        t0 = time.monotonic()
        for i in range(40):  # keep dribbling one header line every 0.1 s
            try:
                s.sendall(b"X-%d: a\r\n" % i)
            except OSError:
                closed = True
                break
            s.settimeout(0.1)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            s.settimeout(3.0)
            buf = bytearray(data)
            with contextlib.suppress(ConnectionError, OSError):
                if data:
                    status = read_response(s, buf).status
            closed = True if not data else closed_by_peer(s, 2.0)
            break
        waited = time.monotonic() - t0
    assert closed, "a dribbling head kept the connection open"
    assert status in (408, None)
    assert waited < HEADER_TIMEOUT + 2.0, f"closed only after {waited:.1f}s"
    assert_not_forwarded(gw.port, gw.rec, mark)


def test_head_stalled_partway_times_out(gw: Setup) -> None:
    mark = gw.rec.snapshot()
    with connect(gw.port) as s:
        s.sendall(b"GET /stalled HTTP/1.1\r\nHost: local")
        status, closed, waited = _wait_outcome(s, HEADER_TIMEOUT + 3.0)
    assert closed
    assert status in (408, None)
    assert HEADER_TIMEOUT - 0.3 <= waited < HEADER_TIMEOUT + 2.0
    assert_not_forwarded(gw.port, gw.rec, mark)


def test_silent_connection_closed(gw: Setup) -> None:
    """A connection that sends nothing at all is closed too."""
    with connect(gw.port) as s:
        status, closed, _ = _wait_outcome(s, max(HEADER_TIMEOUT, KEEPALIVE_TIMEOUT) + 3.0)
    assert closed
    assert status in (408, None)


@pytest.mark.parametrize("length", [500, 500_000], ids=["small-rest", "large-rest"])
def test_stalled_body_times_out(gw: Setup, length: int) -> None:
    """A body that stops arriving: 408 (or a close) after client_body_timeout, and the
    connection closed, whatever is left of the body."""
    mark = gw.rec.snapshot()
    target = f"/big/stall{length}"
    with connect(gw.port) as s:
        head = f"POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n"
        s.sendall(head.encode() + b"\r\n" + b"x" * 10)
        status, closed, waited = _wait_outcome(s, BODY_TIMEOUT + 3.0)
    assert status in (408, None)
    assert closed, f"connection left open after {status}"
    assert waited < BODY_TIMEOUT + 2.0
    marker_request(gw.port, gw.rec)
    assert [r.target for r in gw.rec.requests_since(mark) if r.target == target] == []


def test_slow_but_steady_body_is_not_cut(gw: Setup) -> None:
    """client_body_timeout is a pause between reads, not a deadline for the whole body."""
    with connect(gw.port) as s:
        s.sendall(b"POST /steady HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):  # 8 * 0.3 s = 2.4 s in total, > BODY_TIMEOUT
            s.sendall(b"s")
            time.sleep(0.3)
        r = read_response(s, bytearray())
    assert r.status == 200


def test_idle_keep_alive_connection_closed(gw: Setup) -> None:
    with connect(gw.port) as s:
        buf = bytearray()
        s.sendall(_head("/a"))
        assert read_response(s, buf).status == 200
        time.sleep(KEEPALIVE_TIMEOUT / 3)
        s.sendall(_head("/b"))  # still open before the timeout
        assert read_response(s, buf).status == 200
        t0 = time.monotonic()
        assert closed_by_peer(s, KEEPALIVE_TIMEOUT + 3.0)
        waited = time.monotonic() - t0
    assert KEEPALIVE_TIMEOUT - 0.3 <= waited < KEEPALIVE_TIMEOUT + 2.0


def test_max_connections(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("maxconn")
    port = free_port()
    cfg = f"""
limits:
  max_connections: 3
servers:
  - listen: "127.0.0.1:{port}"
    locations:
      - location: /
        return: {{ status: 200, body: "ok" }}
"""
    with gateway(tmp, cfg, [port]), contextlib.ExitStack() as stack:
        time.sleep(0.3)  # wait_port's probe connections are gone
        held = []
        for _ in range(3):
            s = stack.enter_context(connect(port))
            buf = bytearray()
            s.sendall(_head("/"))
            assert read_response(s, buf).status == 200
            held.append(s)
        # A fourth connection is closed without being served.
        extra = stack.enter_context(connect(port))
        send_quietly(extra, _head("/"))
        extra.settimeout(3.0)
        data = b""
        with contextlib.suppress(ConnectionError, OSError):
            data = extra.recv(65536)
        assert not data.startswith(b"HTTP/1.1 200"), data
        assert data == b"" or data.startswith(b"HTTP/1.1 503")
        # The held connections still work.
        for s in held:
            s.sendall(_head("/"))
            assert read_response(s, bytearray()).status == 200
        # Once one is closed, a new connection is accepted again.
        held[0].close()
        ok = False
        for _ in range(50):
            time.sleep(0.05)
            with contextlib.suppress(ConnectionError, OSError), connect(port) as s:
                s.sendall(_head("/", "Connection: close\r\n"))
                if read_response(s, bytearray()).status == 200:
                    ok = True
                    break
        assert ok


def test_location_max_body_size_overrides_the_global_limit(gw: Setup) -> None:
    body = b"y" * 5000  # over the global limit, under the /big/ location's 1 MiB
    raw = b"POST /big/ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    out = raw_outcome(gw.port, raw + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert out.status == 200
    raw = b"POST /big/no HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
    _refused(gw, raw, (413,))
