"""A small, fast HTTP/1.1 origin for trials, tests and benchmarks (`ramparts origin`).

Routes: ``/`` a 13-byte greeting; ``/bytes/N`` N bytes; ``/html/N`` an N-byte HTML page;
``/echo`` the request as JSON (method, target, headers, body length and SHA-256);
``/status/N``; ``/slow/MS`` (answer after MS milliseconds); ``/chunked/N`` N chunks of
1 KiB; ``/headers/...`` answers with an Express-like ``X-Powered-By`` and ``Server``;
``/close`` answers and closes; ``/reset`` resets the connection mid-body. Anything else:
the echo.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from typing import Any, cast

import httptools

__all__ = ["OriginProtocol", "serve_origin"]

_HELLO = b"Hello, world\n"
_BLOBS: dict[int, bytes] = {}


_PARAGRAPH = (
    b"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    b'incididunt ut labore et dolore magna aliqua. <a href="/docs?page=2">more</a></p>\n'
)


def _page(n: int) -> bytes:
    """``n`` bytes of an ordinary HTML page (for response inspection)."""
    return (_PARAGRAPH * (n // len(_PARAGRAPH) + 1))[:n]


def _blob(n: int) -> bytes:
    data = _BLOBS.get(n)
    if data is None:
        data = (b"0123456789abcdef" * (n // 16 + 1))[:n]
        if len(_BLOBS) < 64:
            _BLOBS[n] = data
    return data


class OriginProtocol(asyncio.Protocol):
    def __init__(self, name: str = "origin") -> None:
        self.name = name.encode()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = hashlib.sha256()
        self.body_len = 0
        self.loop = asyncio.get_event_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = hashlib.sha256()
        self.body_len = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.update(body)
        self.body_len += len(body)

    def on_message_complete(self) -> None:
        url = self.url
        path = url.split(b"?", 1)[0]
        t = self.transport
        if t is None:
            return
        if path == b"/":
            t.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\n"
                + _HELLO
            )
            return
        if path.startswith(b"/bytes/"):
            n = int(path[7:] or b"0")
            t.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % n
            )
            t.write(_blob(n))
            return
        if path.startswith(b"/html/"):
            n = int(path[6:] or b"0")
            t.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                b"Content-Length: %d\r\n\r\n" % n
            )
            t.write(_page(n))
            return
        if path.startswith(b"/status/"):
            code = int(path[8:])
            t.write(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % code)
            return
        if path.startswith(b"/slow/"):
            ms = int(path[6:])
            self.loop.call_later(ms / 1000, self._send_echo, t, self._echo())
            return
        if path.startswith(b"/chunked/"):
            n = int(path[9:])
            t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(n):
                t.write(b"400\r\n" + _blob(1024) + b"\r\n")
            t.write(b"0\r\n\r\n")
            return
        if path.startswith(b"/headers"):
            t.write(
                b"HTTP/1.1 200 OK\r\nX-Powered-By: Express\r\nServer: origin/1.0\r\n"
                b"Connection: X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\n"
                b"Content-Length: 2\r\n\r\nok"
            )
            return
        if path == b"/close":
            t.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclosed by origin")
            t.close()
            return
        if path == b"/reset":
            t.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + _blob(1000))
            self.loop.call_later(0.05, t.abort)
            return
        self._send_echo(t, self._echo())

    def _echo(self) -> bytes:
        doc: dict[str, Any] = {
            "origin": self.name.decode(),
            "method": self.parser.get_method().decode(),
            "target": self.url.decode("latin-1"),
            "version": self.parser.get_http_version(),
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "body_length": self.body_len,
            "body_sha256": self.body.hexdigest(),
        }
        return json.dumps(doc).encode()

    def _send_echo(self, t: asyncio.Transport, body: bytes) -> None:
        if t.is_closing():
            return
        t.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"X-Origin: %s\r\nContent-Length: %d\r\n\r\n" % (self.name, len(body)) + body
        )


async def serve_origin(host: str, port: int, name: str = "origin") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: OriginProtocol(name), host, port, reuse_address=True)


def run_origin(host: str, port: int, name: str = "origin") -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass

    async def main() -> None:
        server = await serve_origin(host, port, name)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
