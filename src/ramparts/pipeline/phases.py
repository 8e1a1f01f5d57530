"""The phase chain's vocabulary: a request phase returns ``None`` to continue, a
``Respond`` to stop with an answer, or a ``Wait`` to suspend the chain (a rate limit's
delay, a shared store's answer, a subrequest); a response phase edits the response head
in place.

Stopping is a normal result, not an exception; ``decided_by`` names the layer and rule
(``access:rule-3``) so every refusal in a log or a trace can be explained.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..http.headers import Headers
from .context import Context

__all__ = ["BodyCheck", "Chain", "RequestPhase", "Respond", "ResponsePhase", "Wait"]


@dataclass(frozen=True, slots=True)
class Respond:
    """Stop the chain and answer with this."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    decided_by: str = ""
    close: bool = False


class Wait:
    """Suspend the chain. The shell waits ``delay`` seconds, or for ``awaitable``, whose
    result stands for the phase's own (None to go on, a Respond, or another Wait), and then
    goes on with the next phase. Pure phases only build these; the shell does the waiting.
    """

    __slots__ = ("awaitable", "delay")

    def __init__(
        self, delay: float = 0.0, awaitable: Awaitable[Respond | Wait | None] | None = None
    ) -> None:
        self.delay = delay
        self.awaitable = awaitable

    def __repr__(self) -> str:
        what = "an awaitable" if self.awaitable is not None else f"{self.delay:.3f}s"
        return f"Wait({what})"


BodyJudge = Callable[[bytes, bool], "Respond | Awaitable[Respond | None] | None"]


class BodyCheck:
    """A response phase's request to see the response body before the client does (the
    WAF's response-body rules). The shell holds the answer back, buffers at most
    ``limit`` bytes of its body and calls ``check`` once: with the whole body
    (``complete``), or with its first ``limit`` bytes when it is longer, after which the
    rest streams. ``check`` returns None to let the answer go, the Respond to send
    instead (the upstream's answer is then dropped), or an awaitable of either (a long
    inspection done elsewhere; the answer waits for it, and the upstream is not read
    meanwhile)."""

    __slots__ = ("check", "limit")

    def __init__(self, limit: int, check: BodyJudge) -> None:
        self.limit = limit
        self.check = check

    def __repr__(self) -> str:
        return f"BodyCheck(limit={self.limit})"


RequestPhase = Callable[[Context], "Respond | Wait | None"]
ResponsePhase = Callable[[Context, int, Headers], None]


@dataclass(frozen=True, slots=True)
class Chain:
    """The phases of one location, in order; compiled once per plan."""

    request: tuple[RequestPhase, ...] = ()
    response: tuple[ResponsePhase, ...] = field(default=())

    def run_request(self, ctx: Context, start: int = 0) -> Respond | Wait | None:
        """Run the request phases from ``start``. On a Wait, ``ctx.resume_at`` is the phase
        to go on with once the wait is over."""
        phases = self.request
        for i in range(start, len(phases)):
            result = phases[i](ctx)
            if result is not None:
                if type(result) is Wait:
                    ctx.resume_at = i + 1
                    return result
                if not ctx.decided_by:
                    ctx.decided_by = result.decided_by  # type: ignore[union-attr]
                return result
        return None

    def run_response(self, ctx: Context, status: int, headers: Headers) -> None:
        for phase in self.response:
            phase(ctx, status, headers)
