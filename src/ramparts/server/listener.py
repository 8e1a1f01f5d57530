"""Listeners: the listening sockets (SO_REUSEPORT, shared with sibling workers) and the
TLS acceptor, which takes connections off the socket itself so that the connection phase
(the firewall) judges each peer before the TLS handshake reads a byte, as it does on
plain listeners.

A plain listener is an ``asyncio.Server``: the firewall runs in the protocol's
``connection_made``, which the loop calls before it reads. With ``create_server(ssl=)``
that call comes only after the handshake, so TLS listeners accept here instead, judge
the raw socket, and hand admitted ones to ``loop.connect_accepted_socket(ssl=)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import struct
from collections.abc import Callable

__all__ = ["TlsAcceptor", "bind_socket", "duplicate_socket", "refuse_socket"]

log = logging.getLogger("ramparts.worker")

#: Connections taken per wake-up before other work gets a turn.
ACCEPT_BATCH = 64
#: Pause before accepting again when the process is out of descriptors (EMFILE).
ACCEPT_BACKOFF = 0.1


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket with SO_REUSEADDR and SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def duplicate_socket(sock: socket.socket) -> socket.socket:
    """A new descriptor for a listening socket (the same socket in the kernel)."""
    dup = socket.socket(fileno=os.dup(sock.fileno()))
    dup.setblocking(False)
    return dup


def refuse_socket(sock: socket.socket, reset: bool) -> None:
    """Close a refused connection: with a reset (SO_LINGER 0) or a plain FIN."""
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


class TlsAcceptor:
    """Accepts TLS connections on ``sock``: ``admit(sock, peer)`` decides first (and
    closes what it refuses), then the handshake and the protocol run on the loop.

    ``ssl_context`` may be replaced at any time (a reload with new certificates): each
    connection uses the context current when it was accepted.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext,
        handshake_timeout: float,
        admit: Callable[[socket.socket, tuple[str, int]], bool],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.ssl_context = ssl_context
        self.handshake_timeout = handshake_timeout
        self.admit = admit
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closed = False
        self._backoff: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self.sock,)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # gone before we took it
            except OSError as exc:
                # Out of descriptors (or buffers): stop accepting for a moment instead of
                # spinning on a socket that stays readable.
                log.warning("accept failed on %s: %s; pausing accepts", self._name(), exc)
                self.loop.remove_reader(self.sock.fileno())
                self._backoff = self.loop.call_later(ACCEPT_BACKOFF, self._resume)
                return
            conn.setblocking(False)
            if not self.admit(conn, peer):
                continue
            task = self.loop.create_task(self._handshake(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _resume(self) -> None:
        self._backoff = None
        if not self._closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _handshake(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(
                self.factory,
                conn,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except OSError as exc:  # SSLError, resets and the handshake timeout among them
            # A client that fails or abandons its handshake: nothing was served.
            log.debug("TLS handshake failed on %s: %r", self._name(), exc)
            conn.close()  # a no-op when the transport already took the descriptor

    def _name(self) -> str:
        try:
            host, port = self.sock.getsockname()[:2]
        except OSError:
            return "a closed listener"
        return f"{host}:{port}"

    def close(self) -> None:
        """Stop accepting; handshakes under way finish (like ``Server.close``)."""
        if self._closed:
            return
        self._closed = True
        if self._backoff is not None:
            self._backoff.cancel()
        else:
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
