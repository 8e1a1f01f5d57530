"""The per-request context every phase reads and writes: the judged request, who sent it,
which server and location it was routed to, and what the log will say about it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..http.request import Request
    from .phases import BodyCheck

__all__ = ["Context"]


class Context:
    """One request's state. Shell code creates it; pure phases only read and annotate it.

    ``client_ip`` starts as the peer address; the real-IP phase may replace it.
    ``vars`` holds what policies want logged (``{"limit_req": "delayed"}``); ``cleanup``
    callbacks run once when the exchange ends, however it ends (a connection-limit slot
    is given back there).
    """

    __slots__ = (
        "body",
        "bytes_sent",
        "cleanup",
        "client_ip",
        "decided_by",
        "hold",
        "local",
        "location",
        "peer_ip",
        "peer_port",
        "refuse",
        "request",
        "resume_at",
        "scheme",
        "scratch",
        "server",
        "started",
        "status",
        "upstream_addr",
        "upstream_status",
        "upstream_time",
        "vars",
    )

    def __init__(
        self,
        request: Request,
        peer_ip: str,
        peer_port: int,
        scheme: str,
        started: float,
    ) -> None:
        self.request = request
        self.peer_ip = self.client_ip = peer_ip
        self.peer_port = peer_port
        self.scheme = scheme
        self.started = started
        self.server: Any = None
        self.location: Any = None
        self.decided_by = ""
        self.status = 0
        self.bytes_sent = 0
        self.upstream_addr = ""
        self.upstream_status = 0
        self.upstream_time = -1.0
        self.vars: dict[str, Any] | None = None
        self.resume_at = 0
        self.cleanup: list[Callable[[], None]] | None = None
        # the address the client connected to; a phase's own per-request state
        self.local: tuple[str, int] = ("", 0)
        self.scratch: Any = None
        self.body = b""
        # set by a response phase that refuses an upstream's answer: the Respond to send
        # instead (the upstream's answer is dropped)
        self.refuse: Any = None
        # set by a response phase that must read the response body first: a BodyCheck
        # (the shell buffers the body and asks it before sending anything)
        self.hold: BodyCheck | None = None

    def read_body(self, limit: int) -> bytes | Awaitable[bytes]:
        """The request body for a phase that inspects it (the whole body, or at least its
        first ``limit`` bytes): bytes when already there, else something to await. The
        server's exchange reads it from the client; a context made outside the server
        (tests, tools) holds it whole in ``body``."""
        return self.body
