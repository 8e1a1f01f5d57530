"""The client side of HTTP/1.1: one ``ClientConnection`` per accepted connection parses
requests (llhttp via httptools), enforces limits and timeouts, keeps pipelined requests in
order, and hands each request to an ``Exchange`` that runs the phase chain and then relays
it to an upstream, serves a file, or answers itself.

Bodies stream both ways with backpressure; framing is rebuilt for the other side, never
copied. Requests are refused before anything reaches an upstream when their head is
malformed (400), too large (431, 414), or their body too large (413).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, cast

import httptools

from ..config.plan import ProxyRoute, ReturnRoute, Route, StaticRoute
from ..errors import ProtocolError
from ..http.headers import HOP_BY_HOP, Headers
from ..http.request import Request, parse_head
from ..http.status import reason, status_line
from ..pipeline.context import Context
from ..pipeline.phases import Respond, Wait
from ..policies.headers import HeaderEdit
from .static import serve_static
from .timer import Deadline

if TYPE_CHECKING:
    from ..config.plan import ListenerPlan, LocationPlan, Plan
    from ..policies.headers import HeaderEdit
    from .balance import PeerState
    from .static import FileSender
    from .upstream import UpstreamConnection, UpstreamGroup
    from .worker import Worker

__all__ = ["ClientConnection", "Exchange"]

log = logging.getLogger("ramparts.http")

# Reasons to stop reading from the client (a bit mask).
_PAUSE_QUEUE = 1  # a pipelined request waits for its turn
_PAUSE_BODY = 2  # request body buffered while no upstream is connected yet
_PAUSE_UPSTREAM = 4  # the upstream is not draining the request body
_PAUSE_DEAD = 8  # the parser failed; nothing more is read

_IDLE, _HEAD, _BODY = 0, 1, 2

_BODY_BUFFER = 65536  # request body kept before an upstream takes it / kept for a retry
_DISCARD_LIMIT = 65536  # unread request body we read and drop to keep a connection alive
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# Request fields never copied from the client: hop-by-hop ones, and those the proxy sets
# itself (framing, Host, Expect; the X-Forwarded-* family when it adds its own).
_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
_DROP_FORWARDED = _DROP | {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-real-ip",
}


def _edit_head(parts: list[bytes], edits: HeaderEdit) -> list[bytes]:
    """Apply per-location request header edits to a head under construction (slow path)."""
    head = b"".join(parts)
    first, _, rest = head.partition(b"\r\n")
    headers: Headers = []
    for line in rest.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            headers.append((name, value))
    edits.apply(headers)
    out = [first, b"\r\n"]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    return out


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NO_BODY: tuple[bytes, ...] = ()  # the replay copy of a request without a body

# Response fields handled by the proxy itself (everything else is end-to-end).
_R_HOP, _R_LENGTH, _R_CHUNKED, _R_CONNECTION = range(4)
_RESP_SPECIAL: dict[bytes, int] = dict.fromkeys(HOP_BY_HOP, _R_HOP)
_RESP_SPECIAL[b"content-length"] = _R_LENGTH
_RESP_SPECIAL[b"transfer-encoding"] = _R_CHUNKED
_RESP_SPECIAL[b"connection"] = _R_CONNECTION
_STATUS_LINES = {code: status_line(code) for code in range(100, 600) if reason(code)}

# Response body framing towards the client.
_NONE, _LENGTH, _CHUNKED, _CLOSE = 0, 1, 2, 3


class ClientConnection:
    """One client connection: parsing, limits, timeouts, ordering, keep-alive.

    An asyncio protocol by its methods (the event loop needs no base class, and a plain
    class compiles to a native one).
    """

    def __init__(self, worker: Worker, key: tuple[str, int], tls: bool) -> None:
        self.worker = worker
        self.key = key
        self.scheme = "https" if tls else "http"
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer_ip = ""
        self.peer_port = 0
        self._phase = _IDLE
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0
        self._head_started = 0.0
        self._parsing: Exchange | None = None
        self.current: Exchange | None = None
        self._queue: deque[Exchange] | None = None
        self._paused = 0
        self._pending_error: ProtocolError | None = None
        self._write_paused = False
        self._requests = 0
        self._parsed = 0
        self.closing = False
        self._limits = worker.plan.limits
        self._idle_since = 0.0
        self._body_read = 0.0
        self.dead = False
        self._forwarded: bytes | None = None
        self._feeding = False
        self._start_pending: Exchange | None = None
        self._feed_body = self._feed_heads = self._feed_chunks = 0
        self._ext_run = 0
        self._wait_chunk: Exchange | None = None
        self._chunked_ex: Exchange | None = None
        self._listener: ListenerPlan | None = None
        self._plan: Plan | None = None
        self.deadline = Deadline(worker.loop, self._on_deadline)
        self._send_deadline: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        worker = self.worker
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
            self.peer_port = peer[1]
            if self.peer_ip.startswith("::ffff:") and "." in self.peer_ip:
                self.peer_ip = self.peer_ip[7:]
        # TLS connections were judged by the acceptor, before their handshake.
        if self.scheme == "http" and len(worker.bans.table) and worker.banned(self.peer_ip):
            self.dead = self.closing = True
            transport.close()
            return
        if (
            worker.plan.firewall is not None
            and self.scheme == "http"
            and not worker.admit(self.peer_ip, peer, transport)
        ):
            self.dead = self.closing = True
            return
        if not worker.accept(self):
            transport.abort()
            return
        self._head_started = self._idle_since = worker.loop.time()
        self.deadline.set(self._head_started + worker.plan.limits.client_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.dead = True
        self.deadline.cancel()
        if self._send_deadline is not None:
            self._send_deadline.cancel()
        self.worker.release(self)
        current = self.current
        if current is not None:
            self.current = None
            current.client_lost()
        if self._queue:
            self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._paused & _PAUSE_DEAD:
            return
        if self._phase != _BODY:
            self._head_bytes += len(data)
        # Requests are started only after the whole read is parsed, so a request whose
        # framing turns out to be malformed within this read never reaches an upstream.
        self._feeding = True
        self._feed_body = self._feed_heads = self._feed_chunks = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            err = exc.__context__
            if isinstance(err, ProtocolError):
                self._protocol_error(err)
            else:
                log.exception("internal error while parsing a request", exc_info=err)
                self._protocol_error(ProtocolError(500, "internal error"))
        except httptools.HttpParserUpgrade:
            self._on_upgrade()
        except httptools.HttpParserError as exc:
            status = 400
            if isinstance(exc, httptools.HttpParserInvalidMethodError):
                status = 501 if data[:24].find(b" ") >= 0 and data[:1].isupper() else 400
            self._protocol_error(ProtocolError(status, str(exc) or "malformed request"))
        else:
            phase = self._phase
            if phase == _HEAD:
                if self._head_bytes > self._limits.max_header_size:
                    self._protocol_error(ProtocolError(431, "request header too large"))
                elif (
                    self._url
                    and not self._headers
                    and data.find(b"\n") >= 0
                    and self.parser.get_http_version() == "0.0"
                ):
                    # A request line without a version (HTTP/0.9): llhttp would wait
                    # for a header section that never comes.
                    self._protocol_error(ProtocolError(400, "HTTP/0.9 is not supported"))
                elif not self._head_started:
                    self._head_started = self.worker.loop.time()
            elif phase == _BODY:
                self._body_read = self.worker.loop.time()
            if self._feed_chunks or (self._parsing is not None and self._parsing.request.chunked):
                self._check_chunk_framing(len(data))
        self._feeding = False
        cur = self.current
        if cur is not None and cur._up_out:
            cur.flush_upstream()
        ex = self._start_pending
        if ex is not None:
            self._start_pending = None
            if self.current is ex and not ex.resp_started:
                ex.start()

    def _check_chunk_framing(self, fed: int) -> None:
        """Bound chunk-size lines (extensions included): the bytes of a read that are
        neither body nor request heads are chunk framing; a size line may take 4 KiB."""
        limits = self._limits
        overhead = fed - self._feed_body - self._feed_heads * limits.max_header_size
        if self._feed_chunks or self._feed_body:
            self._ext_run = overhead
        else:
            self._ext_run += overhead  # still inside one size line
        if self._ext_run > 4096 * (self._feed_chunks + 1) + limits.max_header_size:
            err = ProtocolError(400, "chunk extensions too large")
            target = self._parsing or self._chunked_ex
            self._chunked_ex = None
            if target is not None and self._parsing is None:
                # The message ended within this read: answer for it, not after it.
                self.pause(_PAUSE_DEAD)
                target.protocol_error(err)
            else:
                self._protocol_error(err)

    def on_chunk_header(self) -> None:
        self._feed_chunks += 1
        ex = self._parsing
        self._chunked_ex = ex
        if ex is not None and ex is self._wait_chunk:
            # A chunked request starts once its first chunk-size line has parsed.
            self._wait_chunk = None
            if self.current is ex:
                self._start_pending = ex

    def eof_received(self) -> bool | None:
        # A half-close from the client: finish what is in flight, then close.
        if self.current is None and not self._queue:
            return False
        self.closing = True
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        ex = self.current
        if ex is not None:
            ex.client_pause_writing()
        self._send_deadline = self.worker.loop.call_later(
            self.worker.plan.limits.send_timeout, self._on_send_timeout
        )

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None
        ex = self.current
        if ex is not None:
            ex.client_resume_writing()

    # -- httptools callbacks ----------------------------------------------------------
    def on_url(self, url: bytes) -> None:
        # The first callback of every request (httptools has no cheaper begin hook).
        if self._phase != _HEAD:
            self._phase = _HEAD
            self._url = url
            self._headers = []
            self._limits = self.worker.plan.limits
        else:
            self._url += url
        if len(self._url) > self._limits.max_uri_length:
            raise ProtocolError(414, "request-target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        # (the count is checked once the head is complete; the head's byte size, checked
        # after every read, bounds the list meanwhile)
        if self._phase == _HEAD:
            self._headers.append((name, value))
        else:
            # A chunked trailer field: never forwarded, but bounded like the head.
            self._head_bytes += len(name) + len(value)
            if self._head_bytes > self._limits.max_header_size:
                raise ProtocolError(431, "trailer section too large")

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        worker = self.worker
        plan = worker.plan
        parser = self.parser
        headers = self._headers
        limits = self._limits
        if len(headers) > limits.max_headers:
            raise ProtocolError(431, "too many header fields")
        if self._head_bytes > limits.max_header_size:
            # The read that completed the head was large: measure the head itself.
            size = len(self._url) + 16 + sum(len(n) + len(v) + 4 for n, v in headers)
            if size > limits.max_header_size:
                raise ProtocolError(431, "request header too large")
        self._feed_heads += 1
        req = parse_head(
            parser.get_method(),
            self._url,
            parser.get_http_version(),
            headers,
            plan.keep_encoded_slash,
        )
        listener = self._listener
        if listener is None or self._plan is not plan:
            self._plan = plan
            listener = self._listener = plan.listeners.get(self.key)
            if listener is None:  # this address was removed by a reload
                raise ProtocolError(503, "listener removed")
        ex = Exchange(self, req, listener, monotonic())
        self._parsed += 1
        if self._parsed >= limits.keepalive_requests:
            # The last request this connection may carry: its response says so.
            ex.keep_alive = False
        self._head_bytes = 0
        self._head_started = 0.0
        self._body_read = 0.0
        ex.started_loop = worker.loop.time() if req.has_body else 0.0
        self._parsing = ex
        if self.current is None:
            self.current = ex
            if req.chunked and not req.expect_continue:
                self._wait_chunk = ex
            else:
                self._start_pending = ex  # started once the read is parsed
        else:
            if self._queue is None:
                self._queue = deque()
            self._queue.append(ex)
            self.pause(_PAUSE_QUEUE)

    def on_body(self, data: bytes) -> None:
        self._feed_body += len(data)
        ex = self._parsing
        if ex is not None:
            ex.body_data(data)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._head_started = 0.0
        ex = self._parsing
        if ex is not None:
            self._parsing = None
            ex.body_end()

    def forwarded_headers(self) -> bytes:
        """X-Forwarded-For / X-Real-IP / X-Forwarded-Proto for this connection's peer,
        built once per connection."""
        fwd = self._forwarded
        if fwd is None:
            ip = self.peer_ip.encode()
            fwd = self._forwarded = (
                b"X-Forwarded-For: %b\r\nX-Real-IP: %b\r\nX-Forwarded-Proto: %b\r\n"
                % (ip, ip, self.scheme.encode())
            )
        return fwd

    # -- flow control -----------------------------------------------------------------
    def pause(self, reason: int) -> None:
        was = self._paused
        self._paused = was | reason
        if not was and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def unpause(self, reason: int) -> None:
        was = self._paused
        if not was & reason:
            return
        self._paused = now = was & ~reason
        if not now and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- ending exchanges -------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        """``ex`` has written its whole response."""
        self.worker.record(ex)
        self.current = None
        self._requests += 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if (
            not ex.keep_alive
            or self.closing
            or not ex.body_complete
            or self._requests >= self.worker.plan.limits.keepalive_requests
        ):
            self.close()
            return
        queue = self._queue
        if queue:
            nxt = queue.popleft()
            if not queue:
                self.unpause(_PAUSE_QUEUE)
            self.current = nxt
            if self._feeding:
                self._start_pending = nxt
            else:
                nxt.start()
            return
        if self._paused:
            self.unpause(_PAUSE_QUEUE)
        if self._pending_error is not None:
            err, self._pending_error = self._pending_error, None
            self._send_error(err)
            return
        self._idle_since = self.worker.loop.time()

    def close(self) -> None:
        self.closing = True
        self.dead = True
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        self.dead = True
        self.deadline.cancel()
        if self.transport is not None:
            self.transport.abort()

    def _protocol_error(self, err: ProtocolError) -> None:
        self.pause(_PAUSE_DEAD)
        target = self._parsing
        self._parsing = None
        if target is not None:
            target.protocol_error(err)
            return
        if self.current is not None:
            self._pending_error = err  # answered once the requests before it are done
            return
        self._send_error(err)

    def _send_error(self, err: ProtocolError) -> None:
        log.info("%s:%d: %d %s", self.peer_ip, self.peer_port, err.status, err.reason)
        self.worker.count_refusal(err.status)
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.worker.error_response(err.status, close=True))
        self.worker.record_error(self, err)
        self.close()

    def _on_upgrade(self) -> None:
        # CONNECT or an Upgrade request: this gateway relays HTTP/1.1 only, so the request
        # is answered as plain HTTP and the connection closed after it.
        self.pause(_PAUSE_DEAD)
        ex = self._parsing or self.current
        if ex is not None:
            ex.keep_alive = False
            if not ex.body_complete and ex.request.has_body:
                ex.protocol_error(ProtocolError(400, "body on an upgrade request"))
        elif self.current is None:
            self._send_error(ProtocolError(400, "unexpected upgrade"))

    def _on_deadline(self) -> None:
        """The connection's one timer; what it checks depends on the state (so the hot path
        only stores timestamps and never re-arms it)."""
        limits = self.worker.plan.limits
        now = self.worker.loop.time()
        phase = self._phase
        parsing = self._parsing
        if phase == _BODY and parsing is not None:
            due = max(self._body_read, parsing.started_loop) + limits.client_body_timeout
            if now >= due:
                self._protocol_error(ProtocolError(408, "request body timeout"))
                return
        elif self.current is not None or self._queue:
            due = now + limits.keepalive_timeout  # a request in flight: upstream timers rule
        elif phase == _HEAD:
            due = self._head_started + limits.client_header_timeout
            if now >= due:
                self._protocol_error(ProtocolError(408, "request header timeout"))
                return
        else:
            due = self._idle_since + limits.keepalive_timeout
            if now >= due:
                self.close()  # keep-alive idle timeout: close quietly
                return
        if not self.dead:
            self.deadline.set(max(due, now + 0.01))

    def _on_send_timeout(self) -> None:
        self._send_deadline = None
        if self._write_paused:
            log.info("%s:%d: send timeout, closing", self.peer_ip, self.peer_port)
            self.abort()


class Exchange(Context):
    """One request from head to the last byte of its response."""

    __slots__ = (
        "_body_buf",
        "_body_buffered",
        "_body_framing",
        "_body_waiter",
        "_continued",
        "_done_conn",
        "_head_cache",
        "_held",
        "_out",
        "_replay",
        "_resp_framing",
        "_tried",
        "_until_close",
        "_up_out",
        "_up_start",
        "body_complete",
        "body_received",
        "conn",
        "discarding",
        "failed",
        "group",
        "keep_alive",
        "loc",
        "peer",
        "resp_started",
        "route",
        "sender",
        "started_loop",
        "streaming",
        "tries",
        "upstream",
        "waiting",
    )

    def __init__(self, conn: ClientConnection, req: Request, listener: ListenerPlan, now: float):
        # Context fields, set inline (this runs for every request)
        self.request = req
        self.peer_ip = self.client_ip = conn.peer_ip
        self.peer_port = conn.peer_port
        self.scheme = conn.scheme
        self.started = now
        self.decided_by = ""
        self.status = 0
        self.bytes_sent = 0
        self.upstream_addr = ""
        self.upstream_status = 0
        self.upstream_time = -1.0
        self.vars = None
        self.resume_at = 0
        self.cleanup = None
        self.local = conn.key
        self.scratch = None
        self.body = b""  # unused: read_body reads from the client
        self.refuse = None
        self.hold = None
        # exchange state
        self.waiting: asyncio.Future[Respond | Wait | None] | asyncio.TimerHandle | None = None
        self._body_waiter: tuple[asyncio.Future[bytes], int] | None = None
        self._continued = False
        self.conn = conn
        self.keep_alive = req.keep_alive
        self.body_complete = not (req.chunked or req.content_length)
        self.body_received = 0
        self.started_loop = 0.0
        self.discarding = self.streaming = self.resp_started = False
        self.failed: ProtocolError | None = None
        self.upstream: UpstreamConnection | None = None
        self.sender: FileSender | None = None
        self.group: UpstreamGroup | None = None
        self.peer: PeerState | None = None
        self.tries = 0
        self._tried: set[PeerState] | None = None
        self._body_buf: list[bytes] | None = None
        self._body_buffered = 0
        self._replay: list[bytes] | tuple[bytes, ...] | None = None
        self._head_cache: bytes | None = None
        self._held: bytearray | None = None
        self._done_conn: UpstreamConnection | None = None
        self._until_close = False
        self._out: list[bytes] | None = None
        self._up_out: list[bytes] | None = None
        self._resp_framing = self._body_framing = _NONE
        self._up_start = 0.0
        self.server, loc = listener.resolve(req.host, req.path)
        self.loc: LocationPlan | None = loc
        self.location = loc
        if loc is not None:
            self.route: Route | None = loc.route
            if loc.max_body_size and req.content_length > loc.max_body_size:
                self.failed = ProtocolError(413, "request body too large")
                self.decided_by = "limits:max_body_size"
        else:
            self.route = None

    # -- request side ---------------------------------------------------------------------
    def start(self) -> None:
        """It is this request's turn: run the chain, then its handler."""
        if self.failed is not None:
            self._answer_error(self.failed)
            return
        loc = self.loc
        if loc is None:
            self.decided_by = "router:no-location"
            self.respond(Respond(404, body=b"404 Not Found\n"))
            return
        if loc.chain.request:
            result = loc.chain.run_request(self)
            if result is not None:
                if type(result) is Wait:
                    self._wait(result)
                else:
                    self.respond(result)  # type: ignore[arg-type]
                return
        self._dispatch(loc)

    def _wait(self, w: Wait) -> None:
        """Suspend the chain (a phase returned a Wait); ``_resume`` goes on."""
        if w.awaitable is not None:
            fut = asyncio.ensure_future(w.awaitable)
            self.waiting = fut
            fut.add_done_callback(self._waited)
        else:
            self.waiting = self.conn.worker.loop.call_later(w.delay, self._resume, None)

    def _waited(self, fut: asyncio.Future[Respond | Wait | None]) -> None:
        if self.waiting is not fut or fut.cancelled():
            return  # the client went away meanwhile
        exc = fut.exception()
        if exc is not None:
            # Fail closed: a phase that cannot decide does not wave the request through.
            log.error("a request phase failed: %r", exc)
            self.waiting = None
            self.respond(Respond(500, decided_by="gateway:phase-error"))
            return
        self._resume(fut.result())

    def _resume(self, result: Respond | Wait | None) -> None:
        self.waiting = None
        loc = self.loc
        if self.conn.dead or self.conn.current is not self or loc is None:
            return
        if result is None:
            result = loc.chain.run_request(self, self.resume_at)
        if result is None:
            self._dispatch(loc)
        elif type(result) is Wait:
            self._wait(result)
        else:
            if not self.decided_by:
                self.decided_by = result.decided_by  # type: ignore[union-attr]
            self.respond(result)  # type: ignore[arg-type]

    def _dispatch(self, loc: LocationPlan) -> None:
        """The phases let the request through: hand it to the location's handler."""
        route = self.route
        if type(route) is ProxyRoute:
            group = self.conn.worker.groups.get(route.upstream.name)
            single = group.balancer.single if group is not None else None
            if (
                single is not None
                and not self.request.has_body
                and not single.fails
                and not single.health_down
            ):
                # Fast path: no body, one healthy peer, an idle pooled connection.
                conn = group.get_idle(single)  # type: ignore[union-attr]
                if conn is not None:
                    self.group = group
                    self.decided_by = loc.name
                    self.tries = 1
                    self.peer = single
                    single.active += 1
                    single.requests += 1
                    self.upstream = conn
                    self.upstream_addr = single.label
                    self.streaming = True
                    self._replay = _NO_BODY
                    self._up_start = monotonic()
                    self._head_cache = head = self._build_head(route, single.label)
                    conn.start(
                        self,
                        head,
                        route.read_timeout,
                        self.request.method == b"HEAD",
                        route.send_timeout,
                    )
                    return
            self._proxy(route)
        elif type(route) is ReturnRoute:
            self.decided_by = loc.name
            self._return(route)
        else:
            assert isinstance(route, StaticRoute)
            self.decided_by = loc.name
            serve_static(self, route)

    def body_data(self, data: bytes) -> None:
        self.body_received += len(data)
        loc = self.loc
        if loc is not None and loc.max_body_size and self.body_received > loc.max_body_size:
            raise ProtocolError(413, "request body too large")
        if self.streaming:
            if self.upstream is not None:
                # Collected and written once the read is parsed (see ClientConnection).
                out = self._up_out
                if out is None:
                    self._up_out = out = []
                if self._body_framing == _CHUNKED:
                    out.append(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    out.append(data)
            replay = self._replay
            if replay is not None:
                if self.body_received <= _BODY_BUFFER and isinstance(replay, list):
                    replay.append(data)
                else:
                    self._replay = None
            return
        if self.discarding:
            return
        buf = self._body_buf
        if buf is None:
            self._body_buf = buf = []
        buf.append(data)
        self._body_buffered += len(data)
        waiter = self._body_waiter
        if waiter is not None:
            if self._body_buffered >= waiter[1]:
                self._body_ready()
            return  # a phase reads the body: keep reading up to its limit
        if self._body_buffered > _BODY_BUFFER and self.conn.current is self:
            self.conn.pause(_PAUSE_BODY)

    def read_body(self, limit: int) -> bytes | asyncio.Future[bytes]:
        """The request body for a phase that inspects it: the whole body once complete,
        or its first ``limit`` bytes and more once that many have arrived (a future when
        it has to be waited for). The body stays buffered for the upstream."""
        if self.body_complete or self._body_buffered >= limit:
            return b"".join(self._body_buf or ())
        fut: asyncio.Future[bytes] = self.conn.worker.loop.create_future()
        self._body_waiter = (fut, limit)
        self.conn.unpause(_PAUSE_BODY)
        if self.request.expect_continue and self.body_received == 0:
            self._continued = True
            self.write(_CONTINUE)
        return fut

    def _body_ready(self) -> None:
        waiter = self._body_waiter
        self._body_waiter = None
        if waiter is not None and not waiter[0].done():
            waiter[0].set_result(b"".join(self._body_buf or ()))
        if self._body_buffered > _BODY_BUFFER and not self.body_complete:
            self.conn.pause(_PAUSE_BODY)  # the rest waits for the upstream

    def body_end(self) -> None:
        self.body_complete = True
        if self._body_waiter is not None:
            self._body_ready()
        if self.streaming and self.upstream is not None:
            if self._body_framing == _CHUNKED:
                out = self._up_out
                if out is None:
                    self._up_out = out = []
                out.append(b"0\r\n\r\n")
        elif self.discarding and self.resp_started and self.conn.current is self:
            self.conn.exchange_done(self)

    def flush_upstream(self) -> None:
        """Send the request body bytes one client read produced."""
        out = self._up_out
        self._up_out = None
        up = self.upstream
        if out and up is not None:
            up.write(out[0] if len(out) == 1 else b"".join(out))

    def protocol_error(self, err: ProtocolError) -> None:
        """The request's own bytes were malformed (head already accepted)."""
        self.keep_alive = False
        self._up_out = None
        if self.conn.current is not self:
            self.failed = err  # a queued request: answered when its turn comes
            return
        if self.upstream is not None:
            up, self.upstream = self.upstream, None
            up.peer.active -= 1
            up.detach()
        if self.resp_started:
            self.conn.abort()
            return
        self._answer_error(err)

    def _answer_error(self, err: ProtocolError) -> None:
        if not self.decided_by:
            self.decided_by = "http:protocol"
        self.conn.worker.count_refusal(err.status)
        self.keep_alive = False
        self.respond(Respond(err.status, body=b"", close=True))

    # -- answering locally --------------------------------------------------------------
    def respond(self, r: Respond) -> None:
        """Send a complete response made by the gateway."""
        worker = self.conn.worker
        if r.close:
            self.keep_alive = False
        if not self.body_complete:
            req = self.request
            if (
                not self.keep_alive
                or self.conn._paused & _PAUSE_DEAD
                or req.chunked
                or req.content_length - self.body_received > _DISCARD_LIMIT
            ):
                self.keep_alive = False
            else:
                self.discarding = True
            self.conn.unpause(_PAUSE_BODY)
        if r.decided_by and not self.decided_by:
            self.decided_by = r.decided_by
        loc = self.loc
        headers: tuple[tuple[bytes, bytes], ...] | Headers = r.headers
        if loc is not None and loc.chain.response:
            # the location's header rules hold for the gateway's own answers too
            headers = list(r.headers)
            loc.chain.run_response(self, r.status, headers)
        data = worker.local_response(
            r.status,
            headers,
            r.body,
            keep_alive=self.keep_alive,
            head=self.request.method == b"HEAD",
            version10=self.request.version == "1.0",
            server=loc is None or not loc.hide_server,
        )
        self.status = r.status
        self.bytes_sent = len(data)
        self.resp_started = True
        self.write(data)
        if self.discarding and not self.body_complete:
            return  # done once the rest of the body is read
        self.conn.exchange_done(self)

    def _return(self, route: ReturnRoute) -> None:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        body = route.body
        if route.location is not None:
            headers = ((b"Location", route.location.render(self)),)
        if body:
            headers += ((b"Content-Type", route.content_type),)
        self.respond(Respond(route.status, headers, body))

    def write(self, data: bytes) -> None:
        conn = self.conn
        if not conn.dead:
            conn.transport.write(data)  # type: ignore[union-attr]

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        """Start a response the gateway produces itself (static files)."""
        loc = self.loc
        if loc is not None and loc.chain.response:
            loc.chain.run_response(self, status, headers)
        data = self.conn.worker.response_head(
            status,
            headers,
            length,
            keep_alive=self.keep_alive and not self.conn.closing,
            version10=self.request.version == "1.0",
            server=loc is None or not loc.hide_server,
        )
        self.status = status
        self.resp_started = True
        self.bytes_sent = len(data)
        self.write(data)

    def send_body(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.write(data)

    def finish_body(self) -> None:
        if not self.body_complete:
            self.keep_alive = False
        if self.conn.current is self:
            self.conn.exchange_done(self)

    # -- proxying -----------------------------------------------------------------------
    def _proxy(self, route: ProxyRoute) -> None:
        worker = self.conn.worker
        group = worker.groups.get(route.upstream.name)
        if group is None:
            group = worker.group_for(route.upstream)
        self.group = group
        self.decided_by = self.loc.name if self.loc is not None else ""
        if self._body_buf is None and not self.body_complete:
            self._body_buf = []
        self._next_peer(None, 0)

    def _next_peer(self, reason: str | None, status: int) -> None:
        group = self.group
        assert group is not None
        now = group.loop.time()
        if self.tries >= group.max_tries:
            self._fail(reason or "no peer left to try", status or 502)
            return
        tried = self._tried
        if tried is None and self.peer is not None:
            tried = self._tried = {self.peer}
        peer = group.balancer.choose(self.client_ip, now, tried or frozenset())
        if peer is None:
            if reason is None:
                self._fail(f"no live peer in upstream {group.plan.name}", 503)
            else:
                self._fail(reason, status)
            return
        self.tries += 1
        self.peer = peer
        if tried is None:
            self._tried = tried = set()
        tried.add(peer)
        self._up_start = monotonic()
        conn = group.get_idle(peer)
        if conn is not None:
            self._send(conn)
        else:
            route = self.route
            assert isinstance(route, ProxyRoute)
            group.connect(peer, route.connect_timeout, self._connected)

    def _connected(self, conn: UpstreamConnection | None, reason: str, status: int) -> None:
        peer = self.peer
        group = self.group
        assert peer is not None and group is not None
        if self.conn.current is not self or self.resp_started:
            if conn is not None:  # the client went away meanwhile: keep it for others
                group.put_idle(conn)
            return
        if conn is None:
            peer.failed(group.loop.time())
            log.warning("upstream %s: %s", group.plan.name, reason)
            self._next_peer(reason, status)
            return
        self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        route = self.route
        assert isinstance(route, ProxyRoute)
        peer = conn.peer
        peer.active += 1
        peer.requests += 1
        self.upstream = conn
        self.upstream_addr = peer.label
        head = self._head_cache
        if head is None:
            head = self._head_cache = self._build_head(route, peer.label)
        buf = self._body_buf
        self._body_buf = None
        self.streaming = True
        if buf:
            body = b"".join(buf)
            self._body_buffered = 0
            self._replay = [body] if self.body_received <= _BODY_BUFFER else None
            if self._body_framing == _CHUNKED:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            head += body
            self.conn.unpause(_PAUSE_BODY)
        else:
            self._replay = _NO_BODY if self.body_received == 0 else None
        if self.body_complete and self._body_framing == _CHUNKED:
            head += b"0\r\n\r\n"
        conn.start(
            self, head, route.read_timeout, self.request.method == b"HEAD", route.send_timeout
        )
        if (
            self.request.expect_continue
            and not self.body_complete
            and self.body_received == 0
            and not self._continued
        ):
            self.write(_CONTINUE)

    def _build_head(self, route: ProxyRoute, peer_label: str) -> bytes:
        """The request head for the upstream: framing rebuilt, hop-by-hop fields and those
        named in Connection removed, X-Forwarded-* set by us, never taken from the client."""
        req = self.request
        drop = _DROP_FORWARDED if route.x_forwarded else _DROP
        if req.conn_tokens:
            drop = drop | req.conn_tokens
        if route.host is None:
            host = req.authority or self.server.primary_name or peer_label.encode()
        elif route.host == b"":
            host = peer_label.encode()
        else:
            host = route.host
        parts = [req.method, b" ", req.uri, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
        xff: bytes | None = None
        for name, value in req.headers:
            lname = name.lower()
            if lname in drop:
                if lname == b"x-forwarded-for" and route.x_forwarded:
                    v = value.strip(b" \t")
                    xff = v if xff is None else xff + b", " + v
                continue
            parts += (name, b": ", value, b"\r\n")
        if route.x_forwarded:
            if self.client_ip == self.peer_ip:
                fwd = self.conn.forwarded_headers()
            else:  # the real-IP phase named the client: nginx's $remote_addr
                ip = self.client_ip.encode()
                fwd = b"X-Forwarded-For: %b\r\nX-Real-IP: %b\r\nX-Forwarded-Proto: %b\r\n" % (
                    ip,
                    ip,
                    self.scheme.encode(),
                )
            if xff is None:
                parts.append(fwd)
            else:
                parts += (b"X-Forwarded-For: ", xff, b", ", fwd[17:])
            if req.host is not None:
                parts += (b"X-Forwarded-Host: ", req.host, b"\r\n")
        loc = self.loc
        if loc is not None and not loc.request_headers.empty:
            parts = _edit_head(parts, loc.request_headers)
        if req.chunked:
            self._body_framing = _CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif req.content_length or req.method in (b"POST", b"PUT", b"PATCH"):
            self._body_framing = _LENGTH
            parts += (b"Content-Length: ", b"%d" % req.content_length, b"\r\n\r\n")
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    # upstream callbacks
    def upstream_head(self, conn: UpstreamConnection, status: int, headers: Headers) -> int:
        """The upstream's response head: hop-by-hop fields (and those its Connection names)
        dropped, response phases run, framing rebuilt for this client. Returns the body's
        Content-Length when the upstream framed it so, else -1."""
        self.status = self.upstream_status = status
        loc = self.loc
        length: bytes | None = None
        chunked = False
        parts = [_STATUS_LINES.get(status) or status_line(status)]
        phases = loc.chain.response if loc is not None else ()
        edit = phases[0] if len(phases) == 1 else None
        if type(edit) is not HeaderEdit:
            edit = None
        if not phases or edit is not None:
            # Fast path: one pass straight into the output (header rules folded into the
            # table: a removed field is skipped like a hop-by-hop one).
            table = _RESP_SPECIAL if edit is None else edit.table(_RESP_SPECIAL, _R_HOP)
            for name, value in headers:
                kind = table.get(name.lower())
                if kind is None:
                    parts += (name, b": ", value, b"\r\n")
                elif kind == _R_LENGTH:
                    length = value.strip(b" \t")
                elif kind == _R_CHUNKED:
                    chunked = True
                elif kind == _R_CONNECTION:
                    parts = self._filtered_head(status, headers)
                    edit = None
                    break
            if edit is not None:
                parts.append(edit.tail)
        else:
            parts = self._filtered_head(status, headers)
            refuse = self.refuse
            if refuse is not None:
                # A response phase (the WAF) refused this answer: drop it and the
                # upstream connection, and answer with the refusal instead.
                self.refuse = None
                self._refuse_answer(refuse)
                return -1
        if length is None or chunked:
            # (the slow path does not report framing: read it again, rarely needed)
            for name, value in headers:
                kind = _RESP_SPECIAL.get(name.lower())
                if kind == _R_LENGTH:
                    length = value.strip(b" \t")
                elif kind == _R_CHUNKED:
                    chunked = True
        req = self.request
        version10 = req.version == "1.0"
        keep = self.keep_alive and not self.conn.closing
        if req.method == b"HEAD" or status == 304 or status == 204:
            framing = _NONE
            if length is not None and status != 204:
                parts += (b"Content-Length: ", length, b"\r\n")
        elif length is not None and not chunked:
            framing = _LENGTH
            parts += (b"Content-Length: ", length, b"\r\n")
        elif version10:
            framing = _CLOSE
            keep = False
        else:
            framing = _CHUNKED
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if not keep:
            self.keep_alive = False
            parts.append(b"Connection: close\r\n\r\n")
        elif version10:
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self._resp_framing = framing
        self._until_close = length is None and not chunked and framing != _NONE
        self.resp_started = True
        data = b"".join(parts)
        self.bytes_sent = len(data)
        self._out = [data]
        if self.hold is not None:
            # A response phase reads the body before the client sees any of the answer
            # (judged when the body ends, or when it passes the phase's limit).
            self._held = bytearray()
        if length is not None and not chunked and framing != _NONE:
            return int(length)
        return -1

    def _drop_answer(self) -> None:
        """Forget the upstream's answer, of which nothing was sent (it was held)."""
        self._out = None
        self._held = None
        self.hold = None
        self.resp_started = False

    def _refuse_answer(self, refusal: Respond) -> None:
        """Drop the upstream's answer (nothing of it was sent) and its connection, and send
        ``refusal`` instead."""
        self._drop_answer()
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.peer.active -= 1
            up.detach()
        self.decided_by = refusal.decided_by or self.decided_by
        self.respond(refusal)

    def _check_held(self, complete: bool) -> bool:
        """Show the buffered body to the phase that holds the answer. True when the
        answer may go on now; False when it was refused, or when the judgement is
        awaited (``waiting``; ``_judged`` goes on)."""
        held = self._held
        hold = self.hold
        self._held = None
        self.hold = None
        if held is None or hold is None:
            return True
        verdict = hold.check(bytes(held), complete)
        if verdict is None:
            return True
        if type(verdict) is Respond:
            self._refuse_held(verdict)
            return False
        fut = asyncio.ensure_future(verdict)  # type: ignore[arg-type]
        self.waiting = fut  # type: ignore[assignment]
        fut.add_done_callback(self._judged)
        up = self.upstream
        if up is not None and not complete:
            up.pause_reading()  # the rest of the body waits in the socket meanwhile
        return False

    def _judged(self, fut: asyncio.Future[Respond | None]) -> None:
        if self.waiting is not fut or fut.cancelled():
            return  # the client or the upstream went away meanwhile
        self.waiting = None
        up = self.upstream
        if up is not None:
            up.resume_reading()  # (paused for a judgement on the first part of a body)
        exc = fut.exception()
        if exc is not None:
            # Fail closed: an answer that could not be judged is not sent.
            log.error("a response phase failed: %r", exc)
            self._refuse_held(Respond(500, decided_by="gateway:phase-error"))
            return
        refusal = fut.result()
        if refusal is not None:
            self._refuse_held(refusal)
            return
        conn = self._done_conn
        if conn is not None:
            self._done_conn = None
            self._complete(conn)
            return
        self.flush()

    def _refuse_held(self, refusal: Respond) -> None:
        """A held answer is refused: if the upstream had sent all of it, its connection
        can serve another request; then the refusal goes out instead."""
        conn = self._done_conn
        if conn is not None:
            self._done_conn = None
            self._end_upstream(conn)
        self._refuse_answer(refusal)

    def _filtered_head(self, status: int, headers: Headers) -> list[bytes]:
        """Status line and end-to-end fields, with response phases applied (no framing)."""
        out: Headers = []
        tokens: set[bytes] = set()
        for name, value in headers:
            kind = _RESP_SPECIAL.get(name.lower())
            if kind is None:
                out.append((name, value))
            elif kind == _R_CONNECTION:
                tokens.update(t.strip(b" \t").lower() for t in value.split(b","))
        if tokens:
            out = [h for h in out if h[0].lower() not in tokens]
        loc = self.loc
        if loc is not None and loc.chain.response:
            loc.chain.run_response(self, status, out)
        parts = [_STATUS_LINES.get(status) or status_line(status)]
        for name, value in out:
            parts += (name, b": ", value, b"\r\n")
        return parts

    def upstream_body(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        out = self._out
        if out is None:
            self._out = out = []
        if self._resp_framing == _CHUNKED:
            out.append(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            out.append(data)
        held = self._held
        if held is not None:
            held += data
            hold = self.hold
            if hold is not None and len(held) > hold.limit:
                # Longer than the phase reads: it judges the first part, the rest streams.
                self._check_held(False)

    def flush(self) -> None:
        """Write what one upstream read produced in one go (one send for head and body)."""
        out = self._out
        if out and self._held is None and self.waiting is None:
            self._out = None
            self.write(out[0] if len(out) == 1 else b"".join(out))

    def upstream_done(self, conn: UpstreamConnection) -> None:
        if self._held is not None or self.waiting is not None:
            # A held answer: complete once judged (now, or when the judgement comes).
            self._done_conn = conn
            if self.waiting is not None or not self._check_held(True):
                return
            self._done_conn = None
        self._complete(conn)

    def _complete(self, conn: UpstreamConnection) -> None:
        """The upstream's answer is whole and may go: send the rest and end."""
        out = self._out
        if self._resp_framing == _CHUNKED:
            if out is None:
                out = []
            out.append(b"0\r\n\r\n")
        if out:
            self._out = None
            if not self.conn.dead:
                self.conn.transport.write(  # type: ignore[union-attr]
                    out[0] if len(out) == 1 else b"".join(out)
                )
        self._end_upstream(conn)
        if self.conn.current is self:
            self.conn.exchange_done(self)

    def _end_upstream(self, conn: UpstreamConnection) -> None:
        """The upstream sent its whole answer: its connection goes back to the pool."""
        self.upstream = None
        peer = conn.peer
        peer.active -= 1
        if peer.fails:
            peer.fails = 0
        self.upstream_time = monotonic() - self._up_start
        if self.body_complete:
            conn.release()
        else:
            # The upstream answered before reading the whole request body: this
            # connection cannot be reused, and the client's body is not read further.
            conn.close()
            self.keep_alive = False

    def upstream_failed(self, conn: UpstreamConnection, reason: str, status: int) -> None:
        if self._until_close and status == 502 and reason.endswith("connection"):
            # The end of a body delimited by the close of the upstream connection
            # (RFC 9112 6.3): a complete response, whatever the client's framing.
            self.upstream_done(conn)
            return
        if self._held is not None or self.waiting is not None:
            # Nothing of this held answer was sent: the client gets a clean error instead.
            waiting = self.waiting
            if waiting is not None:
                self.waiting = None
                waiting.cancel()
            self._drop_answer()
        self.flush()
        self.upstream = None
        peer = conn.peer
        peer.active -= 1
        group = conn.group
        now = group.loop.time()
        if self.conn.current is not self:
            return
        if self.resp_started:
            log.warning(
                "upstream %s %s: %s after the response began", group.plan.name, peer.label, reason
            )
            self.keep_alive = False
            self.conn.abort()
            self.conn.exchange_done(self)
            return
        stale = conn.requests > 1 and not conn.received and status == 502
        replayable = self.body_complete and self._replay is not None
        if stale and replayable:
            # A reused keep-alive connection the peer had already closed: try a new one
            # to the same peer; this is not the peer's failure.
            self.tries -= 1
            if self._tried is not None:
                self._tried.discard(peer)
            self.peer = None
            self._resend()
            return
        peer.failed(now)
        log.warning("upstream %s %s: %s", group.plan.name, peer.label, reason)
        if replayable and self.request.method in _IDEMPOTENT and status in (502, 504):
            self._resend(reason, status)
            return
        self._fail(reason, status)

    def _resend(self, reason: str | None = None, status: int = 0) -> None:
        self.streaming = False
        self._body_buf = list(self._replay) if self._replay else None
        self._replay = None
        self._next_peer(reason, status)

    def _fail(self, reason: str, status: int) -> None:
        self.decided_by = f"upstream:{self.group.plan.name if self.group else ''}"
        log.warning(
            "%s %s: %d (%s)",
            self.request.method.decode(),
            self.request.path.decode("latin-1"),
            status,
            reason,
        )
        self.respond(Respond(status, body=b""))

    def upstream_pause_writing(self) -> None:
        self.conn.pause(_PAUSE_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self.conn.unpause(_PAUSE_UPSTREAM)

    # client flow control
    def client_pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()
        elif self.sender is not None:
            self.sender.pause()

    def client_resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()
        elif self.sender is not None:
            self.sender.resume()

    def client_lost(self) -> None:
        """The client closed while this request was in flight."""
        self.keep_alive = False
        waiting = self.waiting
        if waiting is not None:
            self.waiting = None
            waiting.cancel()
        if not self.resp_started:
            self.status = 499
        up = self.upstream
        if up is not None:
            self.upstream = None
            up.peer.active -= 1
            up.detach()
        sender = self.sender
        if sender is not None and sender.task is not None:
            self.sender = None
            sender.task.cancel()
        self.conn.worker.record(self)
