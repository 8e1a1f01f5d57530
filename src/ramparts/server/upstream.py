"""Upstream groups at run time: peers with their health, keep-alive connection pools,
connecting with a timeout, active health checks, and the upstream connection protocol that
parses responses (llhttp via httptools) for the exchange it serves."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

import httptools

from ..config.plan import PeerPlan, UpstreamPlan
from .balance import Balancer, PeerState, make_balancer
from .timer import Deadline

if TYPE_CHECKING:
    from ..http.headers import Headers

__all__ = ["UpstreamConnection", "UpstreamGroup", "UpstreamUser"]

log = logging.getLogger("ramparts.upstream")


class UpstreamUser(Protocol):
    """What an upstream connection reports to the exchange it is serving."""

    def upstream_head(self, conn: UpstreamConnection, status: int, headers: Headers) -> int: ...
    def upstream_body(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def upstream_done(self, conn: UpstreamConnection) -> None: ...
    def upstream_failed(self, conn: UpstreamConnection, reason: str, status: int) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


class _StopParsing(Exception):
    """Raised from a parser callback to end a response whose body the parser cannot know
    is absent (the answer to HEAD)."""


class UpstreamConnection:
    """One TCP connection to a peer, used by one exchange at a time (an asyncio protocol
    by its methods, like ClientConnection)."""

    __slots__ = (
        "_headers",
        "_keepalive",
        "_left",
        "_send_timer",
        "_stopped",
        "_time",
        "deadline",
        "ex",
        "group",
        "head_only",
        "in_pool",
        "last_read",
        "parser",
        "peer",
        "read_timeout",
        "received",
        "requests",
        "send_timeout",
        "transport",
    )

    def __init__(self, group: UpstreamGroup, peer: PeerState) -> None:
        self.group = group
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: UpstreamUser | None = None
        self.requests = 0
        self.received = False  # any byte of the current response
        self.head_only = False
        self.in_pool = False
        self._headers: Headers = []
        self._stopped = False
        self._keepalive = False
        self._left = -1  # bytes of a Content-Length body still to come, -1 when not in one
        self.read_timeout = 60.0
        self.send_timeout = 60.0
        self._send_timer: asyncio.TimerHandle | None = None
        self._time = group.loop.time
        self.last_read = 0.0
        self.deadline = Deadline(group.loop, self._on_deadline)

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:
            # Bytes while idle: the peer is confused; never reuse this connection.
            self.close()
            return
        self.received = True
        self.last_read = self._time()
        left = self._left
        if left > 0:
            # Inside a Content-Length body whose head was parsed earlier: relay the bytes
            # as they are (no parser pass, no copy) and count them down.
            n = len(data)
            if n < left:
                self._left = left - n
                ex.upstream_body(data)
                ex.flush()
                return
            self._left = -1
            if n > left:
                data = data[:left]
                self._stopped = True  # bytes after the response: never reuse this one
            ex.upstream_body(data)
            if self.ex is not ex:
                return  # the exchange dropped this answer (a response phase refused it)
            # The parser was left mid-body: the next response starts on a fresh one.
            self.parser = httptools.HttpResponseParser(self)
            self.ex = None
            ex.upstream_done(self)
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _StopParsing) or self._stopped:
                return
            raise
        except httptools.HttpParserError as exc:
            self._fail(f"invalid response from upstream: {exc}", 502)
            return
        except httptools.HttpParserUpgrade:
            self._fail("upstream switched protocols unasked", 502)
            return
        ex = self.ex
        if ex is not None:
            ex.flush()

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.cancel()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self.group.forget(self)
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_failed(self, "upstream closed the connection", 502)

    def pause_writing(self) -> None:
        if self.ex is not None:
            self.ex.upstream_pause_writing()
            self._send_timer = self.group.loop.call_later(self.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        if self.ex is not None:
            self.ex.upstream_resume_writing()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if self.ex is not None:
            self._fail("upstream did not read the request in time", 504)

    # -- httptools callbacks ------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._headers = []
            return  # interim response: dropped, the final one follows
        ex = self.ex
        headers = self._headers
        self._headers = []
        if ex is None:
            return
        self._keepalive = self.parser.should_keep_alive()
        self._left = ex.upstream_head(self, status, headers)
        if self.head_only and self.ex is not None:
            self._stopped = True
            self.ex = None
            ex.upstream_done(self)
            raise _StopParsing()

    def on_body(self, data: bytes) -> None:
        if self._left > 0:
            self._left -= len(data)
        ex = self.ex
        if ex is not None:
            ex.upstream_body(data)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            return
        self._left = -1
        ex = self.ex
        if ex is not None:
            self.ex = None
            ex.upstream_done(self)

    # -- used by the exchange -------------------------------------------------------------
    def start(
        self,
        ex: UpstreamUser,
        data: bytes,
        read_timeout: float,
        head_only: bool,
        send_timeout: float = 60.0,
    ) -> None:
        """Send a request head (and any body bytes at hand) for ``ex``."""
        self.ex = ex
        self.send_timeout = send_timeout
        self.requests += 1
        self.received = False
        self.head_only = head_only
        self.read_timeout = read_timeout
        self.last_read = now = self._time()
        self.deadline.set(now + read_timeout)
        assert self.transport is not None
        self.transport.write(data)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def detach(self) -> None:
        """The exchange no longer wants this connection's answer."""
        self.ex = None
        self.close()

    def release(self) -> None:
        """The response is complete: keep the connection for reuse, or close it."""
        self.ex = None
        transport = self.transport
        if self._stopped or transport is None or transport.is_closing() or not self._keepalive:
            self.close()
            return
        # Reading may have been paused for a slow client (or a held answer) when the
        # response ended: a pooled connection must read its next response.
        transport.resume_reading()
        self.group.put_idle(self)

    def close(self) -> None:
        self.deadline.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.group.forget(self)

    def abort(self) -> None:
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.abort()
        self.group.forget(self)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _fail(self, reason: str, status: int) -> None:
        ex = self.ex
        self.ex = None
        self.abort()
        if ex is not None:
            ex.upstream_failed(self, reason, status)

    def _on_deadline(self) -> None:
        """One timer per connection: the read timeout while a response is awaited (measured
        from the last read), the keep-alive timeout while idle in the pool."""
        now = self._time()
        if self.ex is not None:
            due = self.last_read + self.read_timeout
            if now < due - 0.001:
                self.deadline.set(due)  # data arrived meanwhile: read timeout restarts
                return
            self._fail("upstream timed out", 504)
        elif self.in_pool:
            due = self.last_read + self.group.plan.keepalive_timeout
            if now < due - 0.001:
                self.deadline.set(due)
                return
            self.close()  # idle too long in the pool


class UpstreamGroup:
    """The run-time side of one upstream group for one plan."""

    def __init__(self, plan: UpstreamPlan, loop: asyncio.AbstractEventLoop) -> None:
        self.plan = plan
        self.loop = loop
        self.peers = [PeerState(p) for p in plan.peers]
        self.balancer: Balancer = make_balancer(plan.balance, self.peers)
        self._idle: dict[PeerState, list[UpstreamConnection]] = {p: [] for p in self.peers}
        self._all: set[UpstreamConnection] = set()
        self._health_task: asyncio.Task[None] | None = None
        self.closed = False
        self.max_tries = plan.tries or len(self.peers)

    # -- pools ------------------------------------------------------------------------
    def get_idle(self, peer: PeerState) -> UpstreamConnection | None:
        idle = self._idle[peer]
        while idle:
            conn = idle.pop()
            conn.in_pool = False
            t = conn.transport
            if t is not None and not t.is_closing():
                return conn
        return None

    def put_idle(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.peer)
        if (
            self.closed
            or idle is None
            or len(idle) >= self.plan.keepalive
            or conn.requests >= self.plan.keepalive_requests
        ):
            conn.close()
            return
        conn.in_pool = True
        conn.last_read = self.loop.time()  # idle since
        if not conn.deadline.pending:
            conn.deadline.set(conn.last_read + self.plan.keepalive_timeout)
        idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        if conn.in_pool:
            conn.in_pool = False
            idle = self._idle.get(conn.peer)
            if idle is not None and conn in idle:
                idle.remove(conn)

    def connect(
        self,
        peer: PeerState,
        timeout: float,
        done: Callable[[UpstreamConnection | None, str, int], None],
    ) -> asyncio.Task[Any]:
        """Open a new connection to ``peer``; ``done(conn, reason, status)`` is called with the
        connection, or with None, a reason and the status to answer (502 refused, 504 timeout)."""

        async def run() -> None:
            p = peer.plan
            try:
                _, proto = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: cast(asyncio.Protocol, UpstreamConnection(self, peer)),
                        p.host,
                        p.port,
                    ),
                    timeout,
                )
            except TimeoutError:
                done(None, f"connect to {peer.label} timed out", 504)
                return
            except OSError as exc:
                done(None, f"connect to {peer.label} failed: {exc.strerror or exc}", 502)
                return
            conn = cast(UpstreamConnection, proto)
            self._all.add(conn)
            done(conn, "", 0)

        return self.loop.create_task(run())

    # -- active health ------------------------------------------------------------------
    def start(self) -> None:
        hc = self.plan.health_check
        if hc is not None and self._health_task is None:
            self._health_task = self.loop.create_task(self._health_loop())

    async def _health_loop(self) -> None:
        hc = self.plan.health_check
        assert hc is not None
        while not self.closed:
            await asyncio.gather(*(self._probe(p) for p in self.peers))
            await asyncio.sleep(hc.interval)

    async def _probe(self, peer: PeerState) -> None:
        hc = self.plan.health_check
        assert hc is not None
        ok, why = await probe_http(peer.plan, hc.path, hc.host, hc.timeout, hc.expect_status)
        if ok:
            if peer.health_streak < 0:
                peer.health_streak = 0
            peer.health_streak += 1
            if peer.health_down and peer.health_streak >= hc.passes:
                peer.health_down = False
                peer.fails = 0
                log.warning("upstream %s peer %s is up again", self.plan.name, peer.label)
        else:
            if peer.health_streak > 0:
                peer.health_streak = 0
            peer.health_streak -= 1
            if not peer.health_down and -peer.health_streak >= hc.fails:
                peer.health_down = True
                log.warning(
                    "upstream %s peer %s marked down by health check: %s",
                    self.plan.name,
                    peer.label,
                    why,
                )

    async def close(self) -> None:
        self.closed = True
        if self._health_task is not None:
            self._health_task.cancel()
            try:
                await self._health_task
            except asyncio.CancelledError:
                pass
        for idle in self._idle.values():
            for conn in list(idle):
                conn.close()
            idle.clear()


async def probe_http(
    peer: PeerPlan, path: str, host: str | None, timeout: float, expect: tuple[int, int]
) -> tuple[bool, str]:
    """One health probe: GET ``path``; healthy when the status is within ``expect``."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(peer.host, peer.port)
            try:
                req = (
                    f"GET {path} HTTP/1.1\r\nHost: {host or peer.label}\r\n"
                    "User-Agent: ramparts-health\r\nConnection: close\r\n\r\n"
                )
                writer.write(req.encode())
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return False, "timed out"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return False, "not an HTTP response"
    status = int(parts[1])
    if expect[0] <= status <= expect[1]:
        return True, ""
    return False, f"status {status}"
