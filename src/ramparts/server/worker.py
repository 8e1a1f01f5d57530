"""A worker: one event loop serving the current plan on its listeners. It owns the
listening sockets (SO_REUSEPORT, shared with sibling workers), the upstream groups, the
access log, connection accounting, plan swaps on reload, and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, cast

from ..config.plan import Plan, UpstreamPlan
from ..config.policies import forget_waf_engines, waf_warm_up
from ..firewall.model import Action, Verdict, evaluate
from ..http.headers import Headers
from ..http.status import reason, status_line
from ..net.addr import parse_ip
from ..net.packet import SYN, Packet
from ..observe.accesslog import AccessLog, format_record, format_refusal
from ..state.memory import MemoryStore
from ..state.redis import RedisStore
from .bans import BanKeeper
from .http1 import ClientConnection, Exchange
from .listener import TlsAcceptor, bind_socket, duplicate_socket, refuse_socket
from .upstream import UpstreamGroup

if TYPE_CHECKING:
    from ..errors import ProtocolError

__all__ = ["Worker"]

log = logging.getLogger("ramparts.worker")

_SERVER = b"Server: ramparts\r\n"


def make_store(plan: Plan) -> MemoryStore | RedisStore:
    """The store ``plan`` asks for: this process's memory (the zones sized as configured),
    or Redis, shared by every worker and every gateway of a fleet."""
    cfg = plan.config.store
    if cfg.backend == "redis":
        return RedisStore(
            cfg.url,
            prefix=cfg.prefix,
            socket_timeout=cfg.timeout,
            connect_timeout=cfg.timeout,
            backoff_s=cfg.retry,
        )
    sizes = {n: z.size for n, z in plan.config.limit_req_zones.items()}
    sizes.update({n: z.size for n, z in plan.config.limit_conn_zones.items()})
    return MemoryStore(zone_keys=sizes)


class Worker:
    """Serves one plan at a time; ``reload`` swaps it whole."""

    def __init__(self, plan: Plan, loop: asyncio.AbstractEventLoop) -> None:
        self.plan = plan
        self.loop = loop
        self.groups: dict[str, UpstreamGroup] = {}
        self._old_groups: list[UpstreamGroup] = []
        self._closing: set[asyncio.Task[None]] = set()
        self.connections: set[ClientConnection] = set()
        self.servers: dict[tuple[str, int], tuple[asyncio.Server | TlsAcceptor, object]] = {}
        self.access_log: AccessLog | None = None
        self.refused: dict[int, int] = {}
        self.firewall_counts: dict[str, int] = {}
        self.requests = 0
        self.rejected_connections = 0
        self._date = b""
        self._ticker: asyncio.TimerHandle | None = None
        self.stopping = False
        # CPU-heavy policy checks (bcrypt) run here, never on the event loop.
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ramparts-check")
        self.store = make_store(plan)
        self.bans = BanKeeper(plan, self.store, loop)
        self.waf_pool: ProcessPoolExecutor | None = None
        self._waf_pool_keys: set[int] = set()
        plan.policy.attach(loop, self.pool, self.store, self.bans.table)
        self._attach_waf(plan)
        self._build_groups(plan)
        self._open_log(plan)

    # -- setup -----------------------------------------------------------------------
    def _attach_waf(self, plan: Plan) -> None:
        """WAF inspection runs in processes forked from this worker (they inherit the
        loaded rules): ModSecurity holds the GIL for the whole of a long inspection, and
        on the event loop it would stall every other client. A plan with new engines
        gets new processes; the old ones finish what they were given, then exit."""
        keys = plan.policy.waf_keys()
        if not keys:
            plan.policy.inspect = None
            return
        if self.waf_pool is None or not keys <= self._waf_pool_keys:
            old = self.waf_pool
            forget_waf_engines(keys)
            size = max(1, min(4, os.cpu_count() or 1))
            pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("fork"))
            pool.submit(waf_warm_up).result(timeout=30)  # fork them now, with these engines
            self.waf_pool, self._waf_pool_keys = pool, keys
            if old is not None:
                old.shutdown(wait=False)
            log.info("WAF inspection in %d process(es)", size)
        pool = self.waf_pool
        loop = self.loop

        def inspect(fn: Callable[[Any], Any], job: Any) -> Awaitable[tuple[Any, Any]]:
            return loop.run_in_executor(pool, fn, job)

        plan.policy.inspect = inspect

    def _build_groups(self, plan: Plan) -> None:
        old = self.groups
        self.groups = {name: UpstreamGroup(up, self.loop) for name, up in plan.upstreams.items()}
        for g in self.groups.values():
            g.start()
        for g in old.values():
            # A replaced group serves only the requests already in flight: its health
            # checks stop and its connections are not pooled again (each reload would
            # otherwise leave one more health-check loop running).
            task = self.loop.create_task(g.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            self._old_groups.append(g)

    def group_for(self, up: UpstreamPlan) -> UpstreamGroup:
        """The group of an upstream written inline (proxy: upstream: http://host:port)."""
        group = self.groups.get(up.name)
        if group is None:
            group = self.groups[up.name] = UpstreamGroup(up, self.loop)
            group.start()
        return group

    def _open_log(self, plan: Plan) -> None:
        cfg = plan.access_log
        current = self.access_log
        if cfg is None:
            if current is not None:
                current.close()
            self.access_log = None
            return
        if current is not None and current.path == cfg.path:
            current.buffer_size = cfg.buffer
            current.flush_interval = cfg.flush
            return
        if current is not None:
            current.close()
        self.access_log = AccessLog(cfg.path, cfg.buffer, cfg.flush)

    async def start(self) -> None:
        await self._sync_listeners()
        self._tick()

    async def _sync_listeners(self) -> None:
        plan = self.plan
        for key, listener in plan.listeners.items():
            existing = self.servers.get(key)
            ctx = listener.ssl_context
            if existing is not None and existing[1] is ctx:
                continue  # unchanged (plain listeners always are)
            if existing is not None and isinstance(existing[0], TlsAcceptor) and ctx is not None:
                existing[0].ssl_context = ctx  # new certificates: the next handshakes use them
                self.servers[key] = (existing[0], ctx)
                continue
            if existing is not None:
                # Switching between TLS and plain on an address already served: keep the very
                # socket (a duplicate of its descriptor outlives the old listener), so
                # connections in its accept queue are not reset and the SO_REUSEPORT group
                # is unchanged.
                sock = duplicate_socket(existing[0].sockets[0])
            else:
                sock = bind_socket(listener.host, listener.port)
            tls = listener.tls

            def factory(key: tuple[str, int] = key, tls: bool = tls) -> asyncio.Protocol:
                return cast(asyncio.Protocol, ClientConnection(self, key, tls))

            server: asyncio.Server | TlsAcceptor
            try:
                if ctx is not None:
                    # The handshake counts against the header timeout (as in nginx): a client
                    # that connects and never finishes it is not held for the loop's 60 s.
                    server = TlsAcceptor(
                        self.loop,
                        sock,
                        factory,
                        ctx,
                        plan.limits.client_header_timeout,
                        self._admit_socket,
                    )
                else:
                    server = await self.loop.create_server(factory, sock=sock, backlog=1024)
            except BaseException:
                sock.close()
                raise
            if existing is not None:
                existing[0].close()
            self.servers[key] = (server, ctx)
            log.info("listening on %s:%d%s", listener.host, listener.port, " (TLS)" if tls else "")
        for key in list(self.servers):
            if key not in plan.listeners:
                old, _ = self.servers.pop(key)
                old.close()
                log.info("stopped listening on %s:%d", *key)

    def _tick(self) -> None:
        """Once a second: refresh the Date header and flush a due access log."""
        now = time.time()
        self._date = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        if self.access_log is not None and self.access_log.due(time.monotonic()):
            self.access_log.flush()
        if self._old_groups:
            self._old_groups = [g for g in self._old_groups if any(p.active for p in g.peers)]
        self.bans.sync()
        self._ticker = self.loop.call_at(self.loop.time() + 1.0 - (now % 1.0), self._tick)

    # -- reload and shutdown ----------------------------------------------------------------
    async def reload(self, plan: Plan) -> None:
        """Swap to ``plan`` (already compiled and validated)."""
        old = self.plan
        if plan.config.store != old.config.store:
            # A new store: the old one's state is left behind (limits start afresh).
            closing = self.store
            self.store = make_store(plan)
            task = self.loop.create_task(closing.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self.bans.configure(plan, self.store)
        plan.policy.attach(self.loop, self.pool, self.store, self.bans.table)
        self._attach_waf(plan)
        self.plan = plan
        try:
            await self._sync_listeners()
        except OSError as exc:
            self.plan = old
            await self._sync_listeners()
            raise RuntimeError(f"cannot listen: {exc}") from exc
        self._build_groups(plan)
        self._open_log(plan)

    def reopen_logs(self) -> None:
        if self.access_log is not None:
            self.access_log.reopen()

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``timeout``), then close."""
        self.stopping = True
        for server, _ in self.servers.values():
            server.close()
        deadline = self.loop.time() + timeout
        while True:
            for conn in list(self.connections):
                if conn.current is None and not conn.closing:
                    conn.close()  # idle keep-alive connection
                else:
                    conn.closing = True  # close after the response in flight
            if not self.connections or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        for g in list(self.groups.values()) + self._old_groups:
            await g.close()
        if self._ticker is not None:
            self._ticker.cancel()
        if self.access_log is not None:
            self.access_log.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.waf_pool is not None:
            self.waf_pool.shutdown(wait=False, cancel_futures=True)
        await self.store.aclose()
        if self.firewall_counts:
            counts = ", ".join(f"{k}={v}" for k, v in sorted(self.firewall_counts.items()))
            log.info("firewall decisions on connections: %s", counts)

    # -- used by connections ------------------------------------------------------------
    def judge(self, peer: tuple[str, int], local: tuple[str, int]) -> Verdict | None:
        """The connection phase: the peer's 5-tuple against the firewall rule set, before
        anything is read; every decision is counted under the rule that made it. ``None``
        when the connection cannot be judged: it is refused (fail closed)."""
        fw = self.plan.firewall
        if fw is None:
            return None
        try:
            version, src = parse_ip(peer[0])
            _, dst = parse_ip(local[0])
            packet = Packet(
                version,
                src,
                dst,
                6,
                peer[1],
                local[1],
                tcp_flags=SYN,
                direction="in",
                ct_state="new",
            )
            lookup = self.plan.firewall_lookup
            verdict = lookup(packet) if lookup is not None else evaluate(fw, packet)
        except (ValueError, TypeError, IndexError) as exc:
            log.warning("firewall: cannot judge a connection from %s: %s", peer, exc)
            return None
        key = verdict.decided_by
        self.firewall_counts[key] = self.firewall_counts.get(key, 0) + 1
        if verdict.action is not Action.ACCEPT:
            log.debug("firewall: %s %s:%s (%s)", verdict.action.value, peer[0], peer[1], key)
        return verdict

    def admit(
        self, peer_ip: str, peer: tuple[str, int] | None, transport: asyncio.Transport
    ) -> bool:
        """The connection phase on a plain listener's transport: a drop closes the
        connection at once, a reject resets it."""
        local = transport.get_extra_info("sockname")
        verdict = self.judge((peer_ip, peer[1] if peer else 0), local) if local else None
        if verdict is not None and verdict.action is Action.ACCEPT:
            return True
        sock = transport.get_extra_info("socket")
        if verdict is not None and verdict.action is Action.REJECT and sock is not None:
            # SO_LINGER 0: closing sends a reset instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        elif verdict is None:
            transport.abort()
        else:
            transport.close()
        return False

    def banned(self, peer_ip: str) -> bool:
        """Whether ``peer_ip`` is banned: its connection is then dropped unread."""
        if self.bans.table.banned(peer_ip, time.time()) is None:
            return False
        self.bans.refused_connections += 1
        key = "ban"
        self.firewall_counts[key] = self.firewall_counts.get(key, 0) + 1
        return True

    def _admit_socket(self, sock: socket.socket, peer: tuple[str, int]) -> bool:
        """The connection phase on a TLS listener, on the raw socket before the handshake."""
        ip = peer[0][7:] if peer[0].startswith("::ffff:") and "." in peer[0] else peer[0]
        if len(self.bans.table) and self.banned(ip):
            refuse_socket(sock, reset=False)
            return False
        if self.plan.firewall is None:
            return True
        try:
            local = sock.getsockname()
        except OSError:
            sock.close()
            return False
        verdict = self.judge((ip, peer[1]), local)
        if verdict is not None and verdict.action is Action.ACCEPT:
            return True
        refuse_socket(sock, reset=verdict is not None and verdict.action is Action.REJECT)
        return False

    def accept(self, conn: ClientConnection) -> bool:
        if self.stopping or len(self.connections) >= self.plan.limits.max_connections:
            self.rejected_connections += 1
            return False
        self.connections.add(conn)
        return True

    def release(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)

    def count_refusal(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def record(self, ex: Exchange) -> None:
        """An exchange ended (answered, or its client gone): run its cleanup, log it."""
        self.requests += 1
        if ex.status >= 400 and self.bans.auto is not None:
            self.bans.refused(ex.client_ip, ex.decided_by, ex.status)
        cleanup = ex.cleanup
        if cleanup is not None:
            ex.cleanup = None
            for fn in cleanup:
                try:
                    fn()
                except Exception:  # one failing cleanup must not skip the others
                    log.exception("request cleanup failed")
        alog = self.access_log
        if alog is not None and ex.status:
            alog.write(format_record(ex, time.time(), time.monotonic() - ex.started))

    def record_error(self, conn: ClientConnection, err: ProtocolError) -> None:
        """Log a request refused before its head could be read."""
        alog = self.access_log
        if alog is None:
            return
        alog.write(
            format_refusal(conn.peer_ip, conn.peer_port, err.status, err.reason, time.time())
        )

    # -- response heads made here ------------------------------------------------------------
    def date(self) -> bytes:
        return self._date or b"Date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"

    def response_head(
        self,
        status: int,
        headers: Headers,
        length: int | None,
        *,
        keep_alive: bool,
        version10: bool,
        server: bool = True,
    ) -> bytes:
        parts = (
            [status_line(status), self.date(), _SERVER]
            if server
            else [
                status_line(status),
                self.date(),
            ]
        )
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if length is not None:
            parts += (b"Content-Length: ", b"%d" % length, b"\r\n")
        if not keep_alive:
            parts.append(b"Connection: close\r\n")
        elif version10:
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def local_response(
        self,
        status: int,
        headers: tuple[tuple[bytes, bytes], ...] | Headers,
        body: bytes,
        *,
        keep_alive: bool,
        head: bool,
        version10: bool,
        server: bool = True,
    ) -> bytes:
        hdrs: Headers = list(headers)
        if not body and status >= 400:
            body = b"%d %s\n" % (status, reason(status))
            hdrs.append((b"Content-Type", b"text/plain; charset=utf-8"))
        elif body and not any(n.lower() == b"content-type" for n, _ in hdrs):
            hdrs.append((b"Content-Type", b"text/plain; charset=utf-8"))
        no_body = status == 204 or status == 304 or status < 200
        data = self.response_head(
            status,
            hdrs,
            None if no_body else len(body),
            keep_alive=keep_alive,
            version10=version10,
            server=server,
        )
        if head or no_body:
            return data
        return data + body

    def error_response(self, status: int, *, close: bool) -> bytes:
        return self.local_response(
            status, (), b"", keep_alive=not close, head=False, version10=False
        )
