"""A minimal pipelined Redis connection for the per-request hot path (one rate-limit
decision per proxied request): RESP2 over one asyncio connection, replies parsed by
hiredis, matched to requests in order.

Why not redis.asyncio for this: its per-command cost (pool checkout, locks, a coroutine
and a task per call) is several times the whole proxying cost of a request. Here a call
encodes one command, appends it to a buffer flushed once per loop iteration (so the
commands of many concurrent requests leave in one write and come back in one read), and
returns a future that the reply resolves, already converted by the caller's function: no
coroutine, no task.

Failures: a connection that drops, cannot be made, or whose oldest unanswered command is
older than ``timeout`` is closed and every waiting call gets the ``on_error`` value; the
next call reconnects. ``on_up`` and ``on_down`` tell the owner (for its back-off and its
"store unavailable" / "recovered" log lines).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

__all__ = ["ReplyError", "RespConnection", "encode_command", "parse_url"]


def encode_command(args: tuple[bytes | str | int, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def parse_url(url: str) -> tuple[str, int, int, str | None]:
    """(host, port, db, password) of ``redis://[:password@]host[:port][/db]``."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"the fast path speaks redis:// only, not {parts.scheme}://")
    db = int(parts.path.strip("/") or 0)
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, password


class _Call:
    __slots__ = ("fut", "noscript", "on_error", "on_reply", "sent")

    def __init__(
        self,
        fut: asyncio.Future[Any],
        on_reply: Callable[[Any], Any],
        on_error: Callable[[Exception], Any],
        sent: float,
        noscript: Callable[[], bytes] | None = None,
    ) -> None:
        self.fut = fut
        self.on_reply = on_reply
        self.on_error = on_error
        self.sent = sent
        self.noscript = noscript


def _ignore(_: Any) -> None:
    return None


class RespConnection(asyncio.Protocol):
    """One pipelined connection. ``setup`` commands (AUTH, SELECT, SCRIPT LOAD ...) are sent
    first on every new connection, their replies checked."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        url: str,
        *,
        timeout: float,
        setup: list[tuple[bytes | str | int, ...]] | None = None,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[Exception], None] | None = None,
    ) -> None:
        self.loop = loop
        self.host, self.port, db, password = parse_url(url)
        self.timeout = timeout
        first: list[tuple[bytes | str | int, ...]] = []
        if password:
            first.append(("AUTH", password))
        if db:
            first.append(("SELECT", db))
        self._setup = b"".join(encode_command(c) for c in first + list(setup or ()))
        self._setup_count = len(first) + len(setup or ())
        self.on_up = on_up
        self.on_down = on_down
        self.transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reader = hiredis.Reader(replyError=_ReplyError)
        self._pending: deque[_Call] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    # -- calls -----------------------------------------------------------------------
    def call(
        self,
        command: bytes,
        on_reply: Callable[[Any], Any],
        on_error: Callable[[Exception], Any],
        noscript: Callable[[], bytes] | None = None,
    ) -> asyncio.Future[Any]:
        """Send ``command`` (already encoded); the future's result is ``on_reply(reply)``,
        or ``on_error(exc)`` when no reply comes (or the reply is an error). ``noscript``:
        for an EVALSHA, the command to send instead if Redis no longer has the script."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append(_Call(fut, on_reply, on_error, time.monotonic(), noscript))
        self._out.append(command)
        if self.transport is None:
            if self._connecting is None and not self.closed:
                self._connecting = self.loop.create_task(self._connect())
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.transport is not None and self._out:
            data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
            self._out = []
            self.transport.write(data)

    async def _connect(self) -> None:
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: self, self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            self._connecting = None
            self._fail(
                ConnectionError(f"cannot connect to redis at {self.host}:{self.port}: {exc}")
            )

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._connecting = None
        self._reader = hiredis.Reader(replyError=_ReplyError)
        if self._setup_count:
            # The setup replies come first: consume them before the queued calls'.
            now = time.monotonic()
            fut: asyncio.Future[Any] = self.loop.create_future()
            for _ in range(self._setup_count):
                self._pending.appendleft(_Call(fut, _ignore, _ignore, now))
            self._out.insert(0, self._setup)
        self._flush()
        if self._watchdog is None:
            self._watchdog = self.loop.call_later(self.timeout, self._watch)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        ok = False
        while True:
            reply = reader.gets()
            if reply is False:
                break
            if not pending:
                self._fail(ConnectionError("a reply from redis that nobody asked for"))
                return
            c = pending.popleft()
            if c.fut.done():
                continue
            if isinstance(reply, _ReplyError):
                if c.noscript is not None and str(reply).startswith("NOSCRIPT"):
                    # the script cache was flushed: the same call once more, as EVAL
                    self._pending.append(_Call(c.fut, c.on_reply, c.on_error, c.sent))
                    self._out.append(c.noscript())
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        self.loop.call_soon(self._flush)
                    continue
                c.fut.set_result(c.on_error(reply))
            else:
                ok = True
                c.fut.set_result(c.on_reply(reply))
        if ok and self.on_up is not None:
            self.on_up()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.closed:
            return
        self._fail(ConnectionError(f"redis at {self.host}:{self.port} closed the connection"))

    # -- failures --------------------------------------------------------------------------
    def _watch(self) -> None:
        """The oldest unanswered command waited too long: the connection is useless."""
        self._watchdog = None
        if self.closed:
            return
        pending = self._pending
        if pending and time.monotonic() - pending[0].sent > self.timeout:
            t = self.transport
            self.transport = None
            if t is not None:
                t.abort()
            self._fail(TimeoutError(f"redis at {self.host}:{self.port} did not answer in time"))
        if self.transport is not None or pending:
            self._watchdog = self.loop.call_later(self.timeout / 2, self._watch)

    def _fail(self, exc: Exception) -> None:
        calls, self._pending = self._pending, deque()
        self._out = []
        for c in calls:
            if not c.fut.done():
                c.fut.set_result(c.on_error(exc))
        if self.on_down is not None:
            self.on_down(exc)

    def close(self) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._connecting is not None:
            self._connecting.cancel()
        t, self.transport = self.transport, None
        if t is not None:
            t.close()
        calls, self._pending = self._pending, deque()
        for c in calls:
            if not c.fut.done():
                c.fut.cancel()


class ReplyError(Exception):
    """An error reply (``-ERR ...``), handed over by hiredis as a value."""


_ReplyError = ReplyError
