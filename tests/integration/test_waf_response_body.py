"""The WAF reads response bodies (``waf.response_body: true``): the gateway holds an
upstream's answer back until its body (up to ``response_body_limit``) has been inspected,
so a refused answer is replaced whole and none of its bytes reach the client, whatever
the upstream's framing (Content-Length, chunked, or the end of the connection). Bodies
longer than the limit are judged on their first part and the rest streams; media types
outside the inspected ones pass untouched; detection-only records and never refuses; the
CRS's own data-leakage rules (an SQL error in a page) refuse through the outbound score.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..support import Response, exchange, free_port, get, read_response, running, start_gateway
from .test_waf_gateway import record

pytestmark = [pytest.mark.timeout(60)]

SECRET = b"secret-token-4242"
SECRET_RULE = (
    f'SecRule RESPONSE_BODY "@contains {SECRET.decode()}" '
    "\"id:10020,phase:4,deny,status:502,log,msg:'secret in a response'\""
)
# What a PHP/MySQL page shows when a query breaks: the CRS's MySQL error leakage rule 951230.
SQL_ERROR = (
    b"<html><body><p>You have an error in your SQL syntax; check the manual that "
    b"corresponds to your MySQL server version for the right syntax to use near "
    b"''' at line 1</p></body></html>"
)
LIMIT = 4096
PAGE = b"<html><body>" + b"<p>ordinary text</p>" * 40 + b"</body></html>"
# past the size the gateway inspects on its event loop: inspected in a process
BIG = b"<html><body>" + b"<p>a long page of ordinary text</p>\n" * 6000 + b"</body></html>"
BIG_LIMIT = 512 * 1024


def _chunked(body: bytes, size: int = 100) -> bytes:
    out = b"".join(
        b"%x\r\n%b\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


def _answer(path: str) -> tuple[bytes, bool]:
    """The canned answer for ``path`` and whether the connection closes after it."""
    html = b"Content-Type: text/html; charset=utf-8\r\n"
    leak = PAGE[:100] + SECRET + PAGE[100:]
    if path == "/clean":
        return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (html, len(PAGE), PAGE), False
    if path == "/leak":
        return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (html, len(leak), leak), False
    if path == "/leak-chunked":
        return b"HTTP/1.1 200 OK\r\n%bTransfer-Encoding: chunked\r\n\r\n%b" % (
            html,
            _chunked(leak),
        ), False
    if path == "/leak-close":
        return b"HTTP/1.1 200 OK\r\n%bConnection: close\r\n\r\n%b" % (html, leak), True
    if path == "/clean-close":
        return b"HTTP/1.1 200 OK\r\n%bConnection: close\r\n\r\n%b" % (html, PAGE), True
    if path == "/leak-json":
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b"
            % (
                len(leak),
                leak,
            ),
            False,
        )
    if path in ("/late-leak", "/early-leak"):
        filler = b"x" * (LIMIT * 4)
        body = filler + SECRET if path == "/late-leak" else SECRET + filler
        return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (html, len(body), body), False
    if path == "/late-leak-chunked":
        body = b"y" * (LIMIT * 4) + SECRET
        return b"HTTP/1.1 200 OK\r\n%bTransfer-Encoding: chunked\r\n\r\n%b" % (
            html,
            _chunked(body, 1000),
        ), False
    if path in ("/big", "/big-leak"):
        body = BIG if path == "/big" else BIG[:-14] + SECRET + BIG[-14:]
        return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (html, len(body), body), False
    if path == "/big-leak-chunked":
        body = BIG[:-14] + SECRET + BIG[-14:]
        return b"HTTP/1.1 200 OK\r\n%bTransfer-Encoding: chunked\r\n\r\n%b" % (
            html,
            _chunked(body, 8192),
        ), False
    if path == "/sql-error":
        return b"HTTP/1.1 500 Internal Server Error\r\n%bContent-Length: %d\r\n\r\n%b" % (
            html,
            len(SQL_ERROR),
            SQL_ERROR,
        ), False
    if path == "/broken":
        # promises more than it sends, then closes: nothing of it may reach the client
        return b"HTTP/1.1 200 OK\r\n%bContent-Length: 5000\r\n\r\n%b" % (html, PAGE[:300]), True
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", False


@dataclass
class Origin:
    port: int
    requests: list[str]
    connections: int = 0


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10.0)
        self.server.origin.connections += 1
        buf = b""
        for _ in range(1000):  # requests per connection, bounded
            while b"\r\n\r\n" not in buf:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            method, path = head.split(b" ", 2)[:2]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:  # the request body: read and dropped
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
            buf = buf[length:]
            self.server.origin.requests.append(path.decode())
            answer, close = _answer(path.decode().split("?", 1)[0])
            if method == b"HEAD":
                answer = answer.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
            try:
                sock.sendall(answer)
            except OSError:
                return
            if close:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    origin: Origin


@contextlib.contextmanager
def canned_origin() -> Iterator[Origin]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.origin = Origin(int(server.server_address[1]), [])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server.origin
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Setup:
    port: int  # blocking, the CRS and the secret rule
    detect: int  # the same in detection-only mode
    crs: int  # the Core Rule Set at paranoia 1, blocking
    big: int  # blocking, the secret rule, the default 512 KB limit
    log: Path
    origin: Origin


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("waf-resp-body")
    port, detect, crs, big = free_port(), free_port(), free_port(), free_port()
    log = tmp / "access.log"
    with canned_origin() as origin:

        def server(listen: int, waf: dict[str, object]) -> dict[str, object]:
            return {
                "listen": f"127.0.0.1:{listen}",
                "waf": waf,
                "locations": [
                    {"location": "/", "proxy": {"upstream": "app"}},
                    # its failures mark its peer down: not the one the other tests use
                    {"location": "/broken", "proxy": {"upstream": "flaky"}},
                ],
            }

        own = {
            "rules": [SECRET_RULE],
            "response_body": True,
            "response_body_limit": LIMIT,
        }
        config = {
            "access_log": {"path": str(log), "buffer": 0},
            "upstreams": {
                "app": {"servers": [f"127.0.0.1:{origin.port}"]},
                "flaky": {"servers": [f"127.0.0.1:{origin.port}"]},
            },
            "servers": [
                server(port, {"mode": "on", **own}),
                server(detect, {"mode": "detection_only", **own}),
                server(crs, {"mode": "on", "response_body": True}),
                server(big, {"mode": "on", "rules": [SECRET_RULE], "response_body": True}),
            ],
        }
        proc = start_gateway(tmp, json.dumps(config), [port, detect, crs, big])
        with running(proc):
            yield Setup(port, detect, crs, big, log, origin)


def marked(path: str) -> tuple[str, str]:
    """``path`` with a unique query, and the query to find its access-log record by."""
    mark = uuid.uuid4().hex
    return f"{path}?t={mark}", mark


def keepalive_get(port: int, paths: list[str]) -> list[Response]:
    """GET each path in turn on one connection (the refusals must keep it usable)."""
    raw = b"".join(b"GET %b HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode() for p in paths)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        buf = bytearray()
        return [read_response(sock, buf) for _ in paths]


@pytest.mark.parametrize("path", ["/leak", "/leak-chunked", "/leak-close"])
def test_a_refused_body_is_replaced_whole(gw: Setup, path: str) -> None:
    target, mark = marked(path)
    r = get(gw.port, target)
    assert r.status == 502
    assert SECRET not in r.body and b"ordinary text" not in r.body
    rec = record(gw.log, mark)
    assert rec["status"] == 502 and rec["decided_by"] == "waf:10020"
    assert 10020 in rec["waf_rules"]  # type: ignore[operator]


@pytest.mark.parametrize("path", ["/clean", "/clean-close"])
def test_a_clean_body_arrives_intact(gw: Setup, path: str) -> None:
    target, mark = marked(path)
    r = get(gw.port, target)
    assert r.status == 200 and r.body == PAGE
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert "waf_rules" not in record(gw.log, mark)


def test_other_media_types_are_not_inspected(gw: Setup) -> None:
    r = get(gw.port, "/leak-json")
    assert r.status == 200 and SECRET in r.body


def test_the_first_part_of_a_long_body_is_judged(gw: Setup) -> None:
    early = get(gw.port, "/early-leak")
    assert early.status == 502 and SECRET not in early.body
    # past the limit, the rest streams uninspected: the answer arrives whole
    for path in ("/late-leak", "/late-leak-chunked"):
        late = get(gw.port, path)
        assert late.status == 200, path
        assert late.body.endswith(SECRET) and len(late.body) == LIMIT * 4 + len(SECRET)


def test_refusals_keep_the_client_connection_in_order(gw: Setup) -> None:
    got = keepalive_get(gw.port, ["/clean", "/leak", "/clean", "/leak-chunked", "/clean"])
    assert [r.status for r in got] == [200, 502, 200, 502, 200]
    assert all(r.body == PAGE for r in got[::2])


def test_head_requests_pass(gw: Setup) -> None:
    r = exchange(gw.port, b"HEAD /leak HTTP/1.1\r\nHost: t\r\n\r\n", head=True)
    assert r.status == 200 and r.body == b""


def test_a_failing_upstream_gives_a_clean_502(gw: Setup) -> None:
    """The answer is held: when the upstream breaks mid-body, nothing of it was sent, so
    the client gets a proper 502 rather than a truncated 200."""
    r = get(gw.port, "/broken")
    assert r.status == 502 and b"ordinary text" not in r.body


def test_detection_only_records_and_passes(gw: Setup) -> None:
    target, mark = marked("/leak")
    r = get(gw.detect, target)
    assert r.status == 200 and SECRET in r.body
    rec = record(gw.log, mark)
    assert 10020 in rec["waf_rules"]  # type: ignore[operator]


def test_the_crs_refuses_an_sql_error_page(gw: Setup) -> None:
    target, mark = marked("/sql-error")
    r = get(gw.crs, target)
    assert r.status == 403 and b"SQL syntax" not in r.body
    rec = record(gw.log, mark)
    rules = rec["waf_rules"]
    assert 951230 in rules and 959100 in rules  # type: ignore[operator]
    assert rec["decided_by"] == "waf:959100"
    ok = get(gw.crs, "/clean")
    assert ok.status == 200 and ok.body == PAGE


@pytest.mark.parametrize("path", ["/big-leak", "/big-leak-chunked"])
def test_a_long_body_is_judged_in_a_process(gw: Setup, path: str) -> None:
    """A body past WAF_INLINE_RESPONSE goes to an inspection process (its transaction
    replays the request there); the answer still waits for the verdict, and the rule
    that refused it is logged with the exchange."""
    assert len(BIG) > 16384
    target, mark = marked(path)
    r = get(gw.big, target)
    assert r.status == 502 and SECRET not in r.body
    rec = record(gw.log, mark)
    assert rec["decided_by"] == "waf:10020" and 10020 in rec["waf_rules"]  # type: ignore[operator]


def test_a_long_clean_body_arrives_intact(gw: Setup) -> None:
    got = keepalive_get(gw.big, ["/big", "/big-leak", "/big"])
    assert [r.status for r in got] == [200, 502, 200]
    assert got[0].body == BIG and got[2].body == BIG


def _post(port: int, path: str, body: bytes) -> Response:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return exchange(port, head.encode() + body)


@pytest.mark.parametrize("path", ["/leak", "/big-leak"])
def test_the_response_to_a_request_inspected_in_a_process_is_inspected(
    gw: Setup, path: str
) -> None:
    """A request body past WAF_INLINE_BODY is inspected in a process; its response is
    then judged there too, on a transaction of its own."""
    form = b"comment=" + b"a+plain+remark+" * 1000
    assert len(form) > 8192
    target, mark = marked(path)
    r = _post(gw.big, target, form)
    assert r.status == 502 and SECRET not in r.body
    rec = record(gw.log, mark)
    assert rec["decided_by"] == "waf:10020"
    ok = _post(gw.big, "/big", form)
    assert ok.status == 200 and ok.body == BIG
