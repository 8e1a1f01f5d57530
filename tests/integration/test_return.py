"""``return`` locations over real sockets: an HTTP -> HTTPS redirect that keeps host and URI,
fixed statuses and bodies, HEAD without a body, and keep-alive across local answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import Response, exchange, free_port, read_response, running, start_gateway


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("return")
    port = free_port()
    cfg = f"""
servers:
  - listen: "127.0.0.1:{port}"
    server_names: [example.com, www.example.com]
    locations:
      - location: /
        return: {{ status: 301, location: "https://$host$request_uri" }}
      - location: = /teapot
        return: {{ status: 418, body: "I'm a teapot\\n" }}
      - location: = /fixed
        return: {{ status: 200, body: '{{"ok": true}}', content_type: application/json }}
      - location: = /gone
        return: {{ status: 410 }}
      - location: = /empty
        return: {{ status: 204 }}
      - location: /old/
        return: {{ status: 308, location: "$scheme://new.example.com$uri?was=$args" }}
"""
    with running(start_gateway(tmp, cfg, [port])):
        yield port


def send(port: int, raw: bytes, head: bool = False) -> Response:
    return exchange(port, raw, head=head)


def test_redirect_keeps_host_and_uri_with_query(port: int) -> None:
    r = send(port, b"GET /a/b?x=1&y=two HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 301
    assert r.header("location") == "https://example.com/a/b?x=1&y=two"
    assert int(r.header("content-length") or "0") == len(r.body)


def test_redirect_uses_the_host_name_without_port_and_raw_target(port: int) -> None:
    r = send(
        port,
        b"GET /caf%C3%A9/%7Euser?q=%2F&x HTTP/1.1\r\nHost: WWW.Example.com:8080\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert r.status == 301
    # $host: the lower-cased name without the port; $request_uri: the target as sent.
    assert r.header("location") == "https://www.example.com/caf%C3%A9/%7Euser?q=%2F&x"


def test_redirect_with_other_variables(port: int) -> None:
    r = send(port, b"GET /old/page?id=7 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 308
    assert r.header("location") == "http://new.example.com/old/page?was=id=7"


def test_fixed_status_and_body(port: int) -> None:
    r = send(port, b"GET /teapot HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 418
    assert r.body == b"I'm a teapot\n"
    assert r.header("content-length") == str(len(b"I'm a teapot\n"))
    assert (r.header("content-type") or "").startswith("text/plain")
    r = send(port, b"GET /fixed HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 200
    assert r.body == b'{"ok": true}'
    assert r.header_all("content-type") == ["application/json"]


def test_status_without_body(port: int) -> None:
    r = send(port, b"GET /gone HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 410
    r = send(port, b"GET /empty HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert r.status == 204
    assert r.header("content-length") is None
    assert r.header("transfer-encoding") is None


def test_head_gets_headers_but_no_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        buf = bytearray()
        s.sendall(b"HEAD /teapot HTTP/1.1\r\nHost: example.com\r\n\r\n")
        r = read_response(s, buf, head_request=True)
        assert r.status == 418
        assert r.header("content-length") == str(len(b"I'm a teapot\n"))
        s.sendall(b"HEAD /x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        r = read_response(s, buf, head_request=True)
        assert r.status == 301
        assert r.header("location") == "https://example.com/x?y=1"
        # Had a body followed either head, it would now stand where the next response is.
        s.sendall(b"GET /teapot HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        r = read_response(s, buf)
        assert r.status == 418 and r.body == b"I'm a teapot\n"
        s.settimeout(2.0)
        assert s.recv(100) == b""
        assert not buf


def test_keep_alive_and_pipelining_across_local_answers(port: int) -> None:
    reqs = (
        b"".join(b"GET /p%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % i for i in range(5))
        + b"GET /teapot HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(reqs)
        buf = bytearray()
        for i in range(5):
            r = read_response(s, buf)
            assert r.status == 301
            assert r.header("location") == f"https://example.com/p{i}"
            assert r.header("connection") is None
        r = read_response(s, buf)
        assert r.status == 418


def test_request_body_to_a_return_location_is_read_and_dropped(port: int) -> None:
    body = b"k=" + b"v" * 5000
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as s:
        s.sendall(
            b"POST /teapot HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
            + b"GET /fixed HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        )
        buf = bytearray()
        assert read_response(s, buf).status == 418
        r = read_response(s, buf)  # the body was not taken for the next request
        assert r.status == 200 and r.body == b'{"ok": true}'
