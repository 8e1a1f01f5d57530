"""Subrequests: the small HTTP/1.1 client the forward-auth phase uses to ask an auth
service (nginx auth_request). One connection per subrequest, no body either way: the
answer's status and header fields are all that count, so the body is never read."""

from __future__ import annotations

import asyncio
import ssl

import httptools

from ..http.headers import Headers
from ..policies.auth import Subrequest

__all__ = ["MAX_HEAD", "fetch_head"]

#: The most bytes of response head read from an auth service.
MAX_HEAD = 64 * 1024


class _Head:
    """httptools callbacks collecting a response head."""

    def __init__(self) -> None:
        self.headers: Headers = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


async def _exchange(sub: Subrequest) -> tuple[int, Headers]:
    ctx = ssl.create_default_context() if sub.scheme == "https" else None
    reader, writer = await asyncio.open_connection(
        sub.host, sub.port, ssl=ctx, server_hostname=sub.host if ctx else None
    )
    try:
        lines = [b"%s %s HTTP/1.1\r\n" % (sub.method, sub.target)]
        lines += [b"%s: %s\r\n" % (n, v) for n, v in sub.headers]
        lines.append(b"Connection: close\r\n\r\n")
        writer.write(b"".join(lines))
        head = _Head()
        parser = httptools.HttpResponseParser(head)
        seen = 0
        while not head.done:
            data = await reader.read(16384)
            if not data:
                raise ConnectionError("the auth service closed before its answer's head")
            seen += len(data)
            if seen > MAX_HEAD and not head.done:
                raise ConnectionError("the auth service's answer head is too large")
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                break
            except httptools.HttpParserError as exc:
                raise ConnectionError(f"malformed answer from the auth service: {exc}") from None
        return int(parser.get_status_code()), head.headers
    finally:
        writer.transport.abort()  # the body is not wanted


async def fetch_head(sub: Subrequest) -> tuple[int, Headers]:
    """Send ``sub``; its answer's status and header fields, within ``sub.timeout``.
    Raises OSError (ConnectionError) or TimeoutError when no usable answer came."""
    return await asyncio.wait_for(_exchange(sub), sub.timeout)
